"""Evaluation dicts of several models → summary.json, report.md and ROC figures.

Input everywhere: `{model_name: evaluation dict}` as made by
`faceid.evaluate.evaluate_embeddings`. Model names follow the pipeline: a backbone's
starting point is `pretrained-<backbone>` or `untrained-<backbone>`; a model fine-tuned
on a task is `<task>-<backbone>`.

- summary.json: flat `<model>.<task>.<condition>.<metric>` keys (and
  `<model>.identification.top<k>`), so `dvc metrics diff` reads like the study.
- report.md: the study's three tables (threshold accuracy per attribute; fine-tuning
  AUC filtered/original; top-k per model).
- roc_<task>.png beside report.md: ROC before/after fine-tuning, backbones overlaid.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from faceid.errors import FaceidError
from faceid.evaluate import POOLED, json_ready

__all__ = [
    "STARTING_POINTS",
    "ModelName",
    "ReportError",
    "accuracy_table",
    "finetune_table",
    "flatten_summary",
    "identification_table",
    "markdown_table",
    "parse_model_name",
    "plot_attribute_roc",
    "render_report",
    "write_report",
    "write_summary",
]

STARTING_POINTS = ("pretrained", "untrained")
MISSING = "—"  # shown for numbers that do not exist (unmeasurable, empty, not run)


class ReportError(FaceidError, ValueError):
    """Evaluations that cannot be put side by side."""


@dataclass(frozen=True)
class ModelName:
    name: str
    backbone: str
    task: str | None  # the fine-tuning task; None for a starting point
    start: str | None  # "pretrained" / "untrained" for a starting point; None if fine-tuned


def parse_model_name(name: str, tasks: set[str] | frozenset[str]) -> ModelName:
    """Split `pretrained-<backbone>` / `untrained-<backbone>` / `<task>-<backbone>`.

    Tasks may contain '-', so the longest known task prefix wins.
    """
    for start in STARTING_POINTS:
        if name.startswith(f"{start}-"):
            return ModelName(name, name[len(start) + 1 :], None, start)
    for task in sorted(tasks, key=len, reverse=True):
        if name.startswith(f"{task}-") and len(name) > len(task) + 1:
            return ModelName(name, name[len(task) + 1 :], task, None)
    raise ReportError(
        f"model {name!r}: expected 'pretrained-<backbone>', 'untrained-<backbone>' or "
        f"'<task>-<backbone>' with a task in {sorted(tasks)}; rename the evaluation file"
    )


def _tasks(evaluations: Mapping[str, dict]) -> set[str]:
    return {task for ev in evaluations.values() for task in ev["tasks"]}


def _number(value) -> float | int | None:
    value = json_ready(value)
    return value if isinstance(value, int | float) else None


# --------------------------------------------------------------------------- summary.json


def _cell_summary(cell: dict) -> dict[str, float | int | None]:
    out = {
        "auc": cell["auc"],
        "auc_low": cell["auc_ci"]["low"],
        "auc_high": cell["auc_ci"]["high"],
        "eer": cell["eer"],
        "fnmr_at_global": cell["global"]["fnmr"],
        "fmr_at_global": cell["global"]["fmr"],
        "genuine_mean": cell["similarity"]["genuine"]["mean"],
        "impostor_mean": cell["similarity"]["impostor"]["mean"],
        "n_genuine": cell["n_pairs"]["genuine"],
        "n_impostor": cell["n_pairs"]["impostor"],
        "n_without_embedding": sum(cell["n_pairs_without_embedding"].values()),
        "detection_failure_rate": cell["detection"]["failure_rate"],
    }
    for t, value in cell["threshold_accuracy"].items():
        out[f"accuracy@{t}"] = value
    for t, value in cell["false_accept_rate"].items():
        out[f"far@{t}"] = value
    for far, point in cell["tar_at_far"].items():
        out[f"tar@far={far}"] = point["tar"]
    return {k: _number(v) for k, v in out.items()}


def flatten_summary(evaluations: Mapping[str, dict]) -> dict[str, float | int | None]:
    """Flat, sorted `<model>.<task>.<condition>.<metric>` → number (null when NaN)."""
    flat: dict[str, float | int | None] = {}
    for model, ev in evaluations.items():
        for task, cells in ev["tasks"].items():
            for condition, cell in cells.items():
                for metric, value in _cell_summary(cell).items():
                    flat[f"{model}.{task}.{condition}.{metric}"] = value
        ident = ev.get("identification")
        if ident:
            for k, value in ident["top_k"].items():
                flat[f"{model}.identification.top{k}"] = _number(value)
            flat[f"{model}.identification.gallery_size"] = ident["gallery_size"]
    return dict(sorted(flat.items()))


def write_summary(evaluations: Mapping[str, dict], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(flatten_summary(evaluations), indent=2, allow_nan=False) + "\n")
    return path


# --------------------------------------------------------------------------- tables


def _fmt(value, digits: int = 3) -> str:
    value = _number(value)
    if value is None:
        return MISSING
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def accuracy_table(evaluations: Mapping[str, dict]) -> str:
    """Table 1: per model, task and condition, the study's threshold accuracy (with the
    false-accept rate at the same threshold), TAR@FAR, AUC with its interval, EER,
    FNMR/FMR at the global threshold, detection failures and counts.

    Starting points get a row per task; a fine-tuned model only on its own task (its
    other tasks are in summary.json), which keeps the table readable.
    """
    tasks = _tasks(evaluations)
    first = next(iter(evaluations.values()))
    any_cell = next(iter(next(iter(first["tasks"].values())).values()))
    thresholds = list(any_cell["threshold_accuracy"])
    fars = list(any_cell["tar_at_far"])
    headers = ["model", "task", "condition"]
    headers += [f"acc > {t} (FAR)" for t in thresholds] + [f"TAR@FAR {f}" for f in fars]
    headers += ["AUC [95% CI]", "EER", "FNMR / FMR @ global", "detect. fail", "pairs gen/imp (ids)"]
    rows = []
    for model, ev in evaluations.items():
        own_task = parse_model_name(model, tasks).task
        for task, cells in ev["tasks"].items():
            if own_task is not None and task != own_task:
                continue
            for condition, cell in cells.items():
                if condition == POOLED and len(cells) == 2:
                    continue  # a single-condition task's pooled cell repeats that condition
                ci = cell["auc_ci"]
                row = [model, task, condition]
                row += [f"{_fmt(cell['threshold_accuracy'][t])} ({_fmt(cell['false_accept_rate'][t])})" for t in thresholds]
                row += [_fmt(cell["tar_at_far"][f]["tar"]) for f in fars]
                row += [
                    f"{_fmt(cell['auc'])} [{_fmt(ci['low'])}, {_fmt(ci['high'])}]",
                    _fmt(cell["eer"]),
                    f"{_fmt(cell['global']['fnmr'])} / {_fmt(cell['global']['fmr'])}",
                    _fmt(cell["detection"]["failure_rate"]),
                    f"{cell['n_pairs']['genuine']}/{cell['n_pairs']['impostor']} ({cell['n_identities']['all']})",
                ]
                rows.append(row)
    return markdown_table(headers, rows)


def _by_backbone(evaluations: Mapping[str, dict]) -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    """Starting point per backbone, and fine-tuned model per (task, backbone)."""
    tasks = _tasks(evaluations)
    starts: dict[str, str] = {}
    tuned: dict[tuple[str, str], str] = {}
    for name in evaluations:
        parsed = parse_model_name(name, tasks)
        if parsed.task is None:
            if parsed.backbone in starts:
                raise ReportError(
                    f"models {starts[parsed.backbone]!r} and {name!r} are both starting points of "
                    f"backbone {parsed.backbone!r}; report one per backbone"
                )
            starts[parsed.backbone] = name
        else:
            tuned[(parsed.task, parsed.backbone)] = name
    return starts, tuned


def _auc(evaluations, model: str | None, task: str) -> float | None:
    if model is None or task not in evaluations[model]["tasks"]:
        return None
    return _number(evaluations[model]["tasks"][task][POOLED]["auc"])


def _delta(before, after) -> str:
    return MISSING if before is None or after is None else f"{after - before:+.3f}"


def finetune_table(evaluations: Mapping[str, dict], original_task: str = "orig") -> str:
    """Table 2: per attribute task and backbone, AUC on the task's (filtered) pairs and on
    the original pairs, before (starting point) and after fine-tuning on the task, and
    FNMR on the original pairs at the global fixed-FMR threshold (non-regression)."""
    starts, tuned = _by_backbone(evaluations)
    headers = ["task", "backbone", "start", "AUC filtered before → after (Δ)",
               "AUC original before → after (Δ)", "FNMR @ global FMR, original before → after"]  # fmt: skip
    rows = []
    tasks = sorted({t for t, _ in tuned} | (_tasks(evaluations) - {original_task}))
    for task in tasks:
        for backbone in sorted(set(starts) | {b for t, b in tuned if t == task}):
            before, after = starts.get(backbone), tuned.get((task, backbone))
            cells = []
            for target in (task, original_task):
                b, a = _auc(evaluations, before, target), _auc(evaluations, after, target)
                cells.append(f"{_fmt(b)} → {_fmt(a)} ({_delta(b, a)})")
            fnmr = [
                _fmt(evaluations[m]["tasks"][original_task][POOLED]["global"]["fnmr"])
                if m is not None and original_task in evaluations[m]["tasks"] else MISSING
                for m in (before, after)
            ]  # fmt: skip
            rows.append([task, backbone, before or MISSING, *cells, " → ".join(fnmr)])
    return markdown_table(headers, rows)


def identification_table(evaluations: Mapping[str, dict]) -> str:
    """Table 3: closed-set top-k per model, with gallery size and probe counts."""
    idents = {m: ev["identification"] for m, ev in evaluations.items() if ev.get("identification")}
    if not idents:
        return "_no identification results_"
    ks = list(next(iter(idents.values()))["top_k"])
    headers = ["model", "score", "gallery", "probes", "excluded (single image)", *[f"top-{k}" for k in ks]]
    rows = [
        [
            m, i["score"], str(i["gallery_size"]), str(i["n_probes"]),
            str(i["n_excluded_single_image"]), *[_fmt(i["top_k"][k]) for k in ks],
        ]
        for m, i in idents.items()
    ]
    return markdown_table(headers, rows)


def render_report(evaluations: Mapping[str, dict], figures: list[Path], original_task: str = "orig") -> str:
    splits = sorted({ev["split"] for ev in evaluations.values()})
    thresholds = {m: ev["global_threshold"] for m, ev in evaluations.items()}
    lines = [
        "# Evaluation report",
        "",
        f"Split: {', '.join(splits)}. Models: {', '.join(evaluations)}.",
        f"`{MISSING}`: not measurable (TAR@FAR needs at least 1/FAR impostor pairs), an empty "
        "cell, or a model not evaluated. Accuracy is the share of genuine pairs with "
        "similarity > t; FAR in brackets is the share of impostor pairs above the same t.",
        "",
        "Global thresholds (fixed FMR on the pooled impostors of the original pairs): "
        + "; ".join(f"{m}: {_fmt(t['threshold'])} at FMR {t['fmr']:g}" for m, t in thresholds.items()),
        "",
        "## 1. Same-person threshold accuracy per attribute",
        "",
        accuracy_table(evaluations),
        "",
        "## 2. Fine-tuning: AUC on filtered and original pairs",
        "",
        finetune_table(evaluations, original_task),
        "",
        "## 3. Identification (closed set, leave-one-out)",
        "",
        identification_table(evaluations),
        "",
        "## ROC before/after fine-tuning",
        "",
        *[f"![{p.stem}]({p.name})" for p in figures],
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- figures


def plot_attribute_roc(evaluations: Mapping[str, dict], task: str, path: str | Path) -> Path:
    """ROC of the task's pooled cell: each backbone's starting point (dashed) and its
    model fine-tuned on `task` (solid), same colour per backbone, log FPR axis."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display; selected here so importing stays side-effect free
    import matplotlib.pyplot as plt

    starts, tuned = _by_backbone(evaluations)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    backbones = sorted(set(starts) | {b for t, b in tuned if t == task})
    for colour, backbone in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"], backbones, strict=False):
        for model, style, when in ((starts.get(backbone), "--", "before"), (tuned.get((task, backbone)), "-", "after")):
            if model is None or task not in evaluations[model]["tasks"]:
                continue
            cell = evaluations[model]["tasks"][task][POOLED]
            roc = cell["roc"]
            ax.plot([p["fpr"] for p in roc], [p["tpr"] for p in roc], style, color=colour, marker=".",
                    label=f"{backbone} {when} ({model}), AUC {_fmt(cell['auc'])}")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.set_ylim(0, 1.01)
    ax.set_title(f"{task}: ROC before/after fine-tuning")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def write_report(
    evaluations: Mapping[str, dict], summary_path: str | Path, report_path: str | Path, original_task: str = "orig"
) -> list[Path]:
    """Write summary.json, report.md and roc_<task>.png (beside report.md); return the paths."""
    if not evaluations:
        raise ReportError("no evaluations to report; run the evaluate stages first")
    report_path = Path(report_path)
    figures = [
        plot_attribute_roc(evaluations, task, report_path.parent / f"roc_{_slug(task)}.png")
        for task in sorted(_tasks(evaluations) - {original_task})
    ]
    report_path.write_text(render_report(evaluations, figures, original_task))
    return [write_summary(evaluations, summary_path), report_path, *figures]
