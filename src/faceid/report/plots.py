"""Plot data for `dvc plots show` (ROC per task, CMC) and the figures beside report.md."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from faceid.evaluate.evaluation import json_ready
from faceid.report import robustness
from faceid.report.lookup import ORIGINAL, Roles, _cell, roles
from faceid.report.tables import _fmt


def _curve_models(found: Roles, task: str, original_task: str) -> list[tuple[str, str]]:
    """(model, label) drawn for a task: per backbone its start, orig (before), and the
    model fine-tuned on the task (after)."""
    out = []
    for backbone in found.backbones:
        out += [(found.start.get(backbone), "start"), (found.orig.get(backbone), "orig")]
        if task != original_task:
            out.append((found.tuned.get((task, backbone)), "after"))
    return [(m, label) for m, label in out if m is not None]


def plot_data(evaluations: Mapping[str, dict], original_task: str = ORIGINAL) -> dict[str, dict]:
    """Plot files by relative path: `roc/<task>.json` as {"roc": [{model, fpr, tpr}]}
    (the task's all-conditions cell of each drawn model) and `cmc.json` as
    {"cmc": [{model, rank, rate}]} (start and orig models), one `model` field per row
    for the by-model templates in .dvc/plots."""
    found = roles(evaluations, original_task)
    tasks = [original_task, *found.tasks]
    files = {}
    for task in tasks:
        rows = [
            {"model": model, "fpr": p["fpr"], "tpr": p["tpr"]}
            for model, _ in _curve_models(found, task, original_task)
            for p in (_cell(evaluations, model, task) or {}).get("roc", [])
        ]
        files[f"roc/{_slug(task)}.json"] = {"roc": rows}
    files["cmc.json"] = {
        "cmc": [
            {"model": model, **point}
            for model in [*found.start.values(), *found.orig.values()]
            for point in (evaluations[model].get("identification") or {}).get("cmc", [])
        ]
    }
    return json_ready(files)


STYLES = {"start": ":", "orig": "--", "after": "-"}  # a backbone's start, orig and fine-tuned model


def _canvas(plt, found: Roles, size: tuple[float, float]):
    """(figure, axes, a colour per backbone)."""
    colours = dict(zip(found.backbones, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
    fig, ax = plt.subplots(figsize=size)
    return fig, ax, colours


def _finish(fig, ax, path: str | Path) -> Path:
    """Grid, the legend below the axes (it covers no curve), saved and closed."""
    import matplotlib.pyplot as plt

    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_attribute_roc(
    evaluations: Mapping[str, dict], task: str, path: str | Path, original_task: str = ORIGINAL
) -> Path:
    """ROC of the task's all-conditions cell: per backbone (one colour) its start
    (dotted), orig (dashed) and the model fine-tuned on `task` (solid), log FPR axis."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display; selected here so importing stays side-effect free
    import matplotlib.pyplot as plt

    found = roles(evaluations, original_task)
    fig, ax, colours = _canvas(plt, found, (6, 4.5))
    for model, label in _curve_models(found, task, original_task):
        cell = _cell(evaluations, model, task)
        if not cell or not cell.get("roc"):
            continue
        roc = cell["roc"]
        ax.plot([p["fpr"] for p in roc], [p["tpr"] for p in roc], STYLES[label], marker=".",
                color=colours[evaluations[model]["model"]["backbone"]],
                label=f"{model} ({label}), AUC {_fmt(cell['auc'])}")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.set_ylim(0, 1.01)
    ax.set_title(f"{task}: ROC before/after fine-tuning")
    return _finish(fig, ax, path)


def plot_det(evaluations: Mapping[str, dict], task: str, path: str | Path, original_task: str = ORIGINAL) -> Path:
    """DET of the task's all-conditions cell (FNMR against FMR, both on log axes, the
    biometric convention): per backbone its start (dotted), orig (dashed) and the model
    fine-tuned on `task` (solid), each with its 95% identity-bootstrap band; the legend
    sits below the axes so it covers no curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    found = roles(evaluations, original_task)
    fig, ax, colours = _canvas(plt, found, (6, 5.5))
    floor = 1e-3  # log axes: a rate of 0 is drawn at the floor
    for model, label in _curve_models(found, task, original_task):
        det = (_cell(evaluations, model, task) or {}).get("det") or []
        if not det:
            continue
        colour = colours[evaluations[model]["model"]["backbone"]]
        fmr = [p["fmr"] for p in det]
        ax.plot(fmr, [max(p["fnmr"], floor) for p in det], STYLES[label], color=colour, label=f"{model} ({label})")
        ax.fill_between(fmr, [max(p["low"], floor) for p in det], [max(p["high"], floor) for p in det],
                        color=colour, alpha=0.12, linewidth=0)  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("false match rate (FMR)")
    ax.set_ylabel("false non-match rate (FNMR)")
    ax.set_title(f"{task}: DET with 95% bands")
    return _finish(fig, ax, path)


def figure_plan(evaluations: Mapping[str, dict], original_task: str = ORIGINAL) -> list[tuple[str, str]]:
    """The report's figures in order, as (kind, task or backbone): per task its ROC and DET;
    per backbone its robustness map (start vs orig); per fine-tuned task its before/after map."""
    found = roles(evaluations, original_task)
    plan = [(kind, task) for task in [original_task, *found.tasks] for kind in ("roc", "det")]
    return plan + [("map", b) for b in found.backbones] + [("finetune_map", t) for t in found.tasks]


def render_figure(
    evaluations: Mapping[str, dict], folder: Path, original_task: str, kind: str, key: str
) -> Path | None:
    """One figure of `figure_plan` into `folder`; None for a map with nothing to draw."""
    if kind == "roc":
        return plot_attribute_roc(evaluations, key, folder / f"roc_{_slug(key)}.png", original_task)
    if kind == "det":
        return plot_det(evaluations, key, folder / f"det_{_slug(key)}.png", original_task)
    found = roles(evaluations, original_task)
    if kind == "map":  # the backbone's start vs orig, over every attribute
        series = [(m, evaluations[m]) for m in (found.start.get(key), found.orig.get(key))
                  if m and evaluations[m].get("attributes")]  # fmt: skip
        if not series:
            return None
        title, order = f"{key}: attributes that lower matching (ΔAUC, CI)", robustness.ranked_attributes(series[-1][1])
        return robustness.plot_costs(series, title, folder / f"map_{_slug(key)}.png", order)
    series = []  # finetune_map: the task's fine-tunes before/after, over every attribute
    for backbone in found.backbones:
        after = found.tuned.get((key, backbone))
        before = found.init.get(after) if after else None
        series += [(f"{m} ({when})", evaluations[m]) for m, when in ((before, "before"), (after, "after"))
                   if m and evaluations[m].get("attributes")]  # fmt: skip
    if not series:
        return None
    title, order = f"fine-tuning on {key}: ΔAUC per attribute before/after", robustness.ranked_attributes(series[0][1])
    return robustness.plot_costs(series, title, folder / f"finetune_map_{_slug(key)}.png", order)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text)
