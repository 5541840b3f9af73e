"""Detailed evaluations of the current models → summary.json, report.md, plot data, figures.

Input everywhere: `{model_name: detail}`, each detail as made by
`faceid.evaluate.evaluate_embeddings` with its `model` metadata (backbone, task, init,
start). A backbone's starting point is named `pretrained-<backbone>` or
`untrained-<backbone>`; a trained model `<task>-<backbone>` (`orig-<backbone>` for the
model trained on the whole training partition).

- summary.json (level 1, docs/evaluation.md): per backbone the start and orig AUC, orig
  TAR at the global FMR and top-1; per attribute task the cross-condition (A/notA) AUC
  after fine-tuning and its change from the model it was fine-tuned from; their mean.
- report.md: "What this run shows" (sentences computed from the numbers), then the
  study's three tables (threshold accuracy per attribute; fine-tuning AUC on filtered,
  cross-condition and original pairs; top-k per model).
- plot data for `dvc plots show` (ROC per task, CMC) and roc_<task>.png beside report.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from faceid import robustness
from faceid.errors import FaceidError
from faceid.evaluate import CROSS_CONDITION, json_ready, rate_name, task_cell

__all__ = [
    "MISSING",
    "ReportError",
    "Roles",
    "accuracy_table",
    "findings",
    "finetune_table",
    "identification_table",
    "markdown_table",
    "plot_attribute_roc",
    "plot_data",
    "render_report",
    "roles",
    "summarize",
    "summary_size",
    "write_report",
]

MISSING = "—"  # shown for numbers that do not exist (unmeasurable, empty, not run)
ORIGINAL = "orig"
SAME_CONDITION = "notA/notA"  # the attribute-free reference cell of an attribute task
COLLAPSED_IMPOSTOR_MEDIAN = 0.9  # different people this similar: the embedding has collapsed
COLLAPSED_THRESHOLD = 0.99


class ReportError(FaceidError, ValueError):
    """Evaluations that cannot be put side by side."""


def _number(value) -> float | int | None:
    value = json_ready(value)
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


# --------------------------------------------------------------------------- roles


@dataclass(frozen=True)
class Roles:
    """Which model plays which part, per backbone."""

    start: dict[str, str] = field(default_factory=dict)  # backbone → starting point
    orig: dict[str, str] = field(default_factory=dict)  # backbone → model trained on everything
    tuned: dict[tuple[str, str], str] = field(default_factory=dict)  # (task, backbone) → fine-tuned
    init: dict[str, str | None] = field(default_factory=dict)  # model → the model it started from

    @property
    def backbones(self) -> list[str]:
        return sorted(set(self.start) | set(self.orig) | {b for _, b in self.tuned})

    @property
    def tasks(self) -> list[str]:
        return sorted({t for t, _ in self.tuned})


def roles(evaluations: Mapping[str, dict], original_task: str = ORIGINAL) -> Roles:
    """Roles from each detail's `model` metadata (not from its name)."""
    found = Roles()
    for name, detail in evaluations.items():
        meta = detail.get("model") or {}
        backbone, task = meta.get("backbone"), meta.get("task")
        if backbone is None:
            raise ReportError(f"model {name!r}: its evaluation has no model.backbone; re-run its evaluate stage")
        slot = found.start if task is None else found.orig if task == original_task else None
        key = backbone if slot is not None else (task, backbone)
        slot = slot if slot is not None else found.tuned
        if key in slot:
            raise ReportError(f"models {slot[key]!r} and {name!r} play the same part for {key}; report one")
        slot[key] = name
    for name, detail in evaluations.items():
        meta = detail["model"]
        if meta.get("task") is None:
            found.init[name] = None
        elif meta.get("init") == original_task and meta.get("task") != original_task:
            found.init[name] = found.orig.get(meta["backbone"])
        else:
            found.init[name] = found.start.get(meta["backbone"])
    return found


def _cell(evaluations, model: str | None, task: str, condition: str | None = None) -> dict | None:
    if model is None or model not in evaluations:
        return None
    if condition is None:
        return task_cell(evaluations[model], task)
    return evaluations[model]["tasks"].get(task, {}).get(condition)


def _auc(evaluations, model, task, condition=None) -> float | None:
    cell = _cell(evaluations, model, task, condition)
    return None if cell is None else _number(cell["auc"])


def _ci(cell: dict | None) -> tuple[float | None, float | None]:
    if cell is None:
        return None, None
    return _number(cell["auc_ci"]["low"]), _number(cell["auc_ci"]["high"])


# --------------------------------------------------------------------------- summary.json


def _delta(before, after):
    return None if before is None or after is None else after - before


def summarize(evaluations: Mapping[str, dict], global_fmr: float, original_task: str = ORIGINAL) -> dict:
    """Level 1, nested by backbone (DVC shows `<backbone>.<key>`): start and orig AUC,
    orig TAR at the global FMR and top-1; per attribute task `after` (A/notA AUC of the
    fine-tuned model) and `delta` (after minus the A/notA AUC of the model it was
    fine-tuned from); `mean_delta` over the tasks; with a robustness map, the orig model's
    (else the start's) three most harmful attributes (`worst_attributes`, comma-joined)
    and its largest demographic max/min ratio (`max_group_ratio`). Null where a number
    does not exist."""
    found = roles(evaluations, original_task)
    summary: dict[str, dict] = {}
    for backbone in found.backbones:
        start, orig = found.start.get(backbone), found.orig.get(backbone)
        orig_cell = _cell(evaluations, orig, original_task)
        ident = (evaluations[orig].get("identification") or {}) if orig else {}
        fnmr = _number(orig_cell["at_global_threshold"]["fnmr"]) if orig_cell else None
        entry: dict = {
            "start_auc": _auc(evaluations, start, original_task),
            "orig_auc": _auc(evaluations, orig, original_task),
            f"orig_tar_at_far_{rate_name(global_fmr)}": None if fnmr is None else 1.0 - fnmr,
            "orig_top1": _number(ident.get("top_k", {}).get("top1")),
        }
        deltas = []
        for task in found.tasks:
            model = found.tuned.get((task, backbone))
            if model is None:
                continue
            after = _auc(evaluations, model, task, CROSS_CONDITION)
            delta = _delta(_auc(evaluations, found.init[model], task, CROSS_CONDITION), after)
            entry[task] = {"after": after, "delta": delta}
            deltas.append(delta)
        if deltas:
            entry["mean_delta"] = None if None in deltas else sum(deltas) / len(deltas)
        reference = evaluations.get(orig) or evaluations.get(start)
        if reference and reference.get("attributes"):
            entry["worst_attributes"] = robustness.worst_attributes(reference)
        if reference and reference.get("groups"):
            largest = robustness.largest_ratio(reference)
            entry["max_group_ratio"] = None if largest is None else largest[0]
        summary[backbone] = entry
    return json_ready(summary)


def _count_keys(tree: dict) -> int:
    return sum(_count_keys(v) if isinstance(v, dict) else 1 for v in tree.values())


# --------------------------------------------------------------------------- formatting


def _fmt(value, digits: int = 3) -> str:
    value = _number(value)
    if value is None:
        return MISSING
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def _threshold(value) -> str:
    """Thresholds get 4 decimals: 0.9995 and 0.9999 are different operating points."""
    return _fmt(value, 4)


def _auc_ci(cell: dict | None) -> str:
    if cell is None:
        return MISSING
    low, high = _ci(cell)
    return f"{_fmt(cell['auc'])} [{_fmt(low)}, {_fmt(high)}]"


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- tables


def accuracy_table(evaluations: Mapping[str, dict], original_task: str = ORIGINAL) -> str:
    """Table 1: per model, task and condition, the study's threshold accuracy (with the
    false-accept rate at the same threshold), TAR@FAR (with its threshold), AUC with its
    interval, EER, FNMR/FMR at the global threshold, detection failures and counts.

    Starting points and orig models get a row per task; a fine-tuned model only its own
    task (its other tasks are in its detail file), which keeps the table readable.
    """
    any_cell = next(c for ev in evaluations.values() for cells in ev["tasks"].values() for c in cells.values())
    thresholds = [row["threshold"] for row in any_cell["threshold_accuracy"]]
    fars = [point["far"] for point in any_cell["tar_at_far"]]
    headers = ["model", "task", "condition"]
    headers += [f"acc > {_threshold(t)} (FAR)" for t in thresholds] + [f"TAR@FAR {f:g} (threshold)" for f in fars]
    headers += ["AUC [95% CI]", "EER", "FNMR / FMR @ global", "detect. fail", "pairs gen/imp (ids)"]
    rows = []
    for model, ev in evaluations.items():
        own_task = ev["model"].get("task")
        for task, cells in ev["tasks"].items():
            if own_task not in (None, original_task) and task != own_task:
                continue
            for condition, cell in cells.items():
                row = [model, task, condition]
                row += [f"{_fmt(r['accuracy'])} ({_fmt(r['far'])})" for r in cell["threshold_accuracy"]]
                row += [f"{_fmt(p['tar'])} ({_threshold(p['threshold'])})" for p in cell["tar_at_far"]]
                at = cell["at_global_threshold"]
                row += [
                    _auc_ci(cell),
                    _fmt(cell["eer"]),
                    f"{_fmt(at['fnmr'])} / {_fmt(at['fmr'])}",
                    _fmt(cell["detection"]["failure_rate"]),
                    f"{cell['n_pairs']['genuine']}/{cell['n_pairs']['impostor']} ({cell['n_identities']['all']})",
                ]
                rows.append(row)
    return markdown_table(headers, rows)


def _before_after(evaluations, before, after, task, condition=None) -> str:
    b, a = _auc(evaluations, before, task, condition), _auc(evaluations, after, task, condition)
    d = _delta(b, a)
    return f"{_fmt(b)} → {_fmt(a)} ({MISSING if d is None else f'{d:+.3f}'})"


def finetune_table(evaluations: Mapping[str, dict], original_task: str = ORIGINAL) -> str:
    """Table 2: per attribute task and backbone, AUC before (the model it was fine-tuned
    from, and the backbone's starting point) and after fine-tuning on the task: on the
    task's pooled pairs, its cross-condition (A/notA) pairs and the original pairs; and
    FNMR on the original pairs at the global fixed-FMR threshold (non-regression)."""
    found = roles(evaluations, original_task)
    headers = ["task", "backbone", "before", "AUC filtered before → after (Δ)", "AUC A/notA before → after (Δ)",
               "AUC original before → after (Δ)", "FNMR @ global FMR, original before → after",
               "AUC filtered, start"]  # fmt: skip
    rows = []
    for (task, backbone), model in sorted(found.tuned.items()):
        before = found.init.get(model)
        fnmr = [_cell(evaluations, m, original_task) for m in (before, model)]
        rows.append([
            task, backbone, before or MISSING,
            _before_after(evaluations, before, model, task),
            _before_after(evaluations, before, model, task, CROSS_CONDITION),
            _before_after(evaluations, before, model, original_task),
            " → ".join(MISSING if c is None else _fmt(c["at_global_threshold"]["fnmr"]) for c in fnmr),
            _fmt(_auc(evaluations, found.start.get(backbone), task)),
        ])  # fmt: skip
    return markdown_table(headers, rows)


def identification_table(evaluations: Mapping[str, dict]) -> str:
    """Table 3: closed-set top-k per model, with gallery size and probe counts."""
    idents = {m: ev["identification"] for m, ev in evaluations.items() if ev.get("identification")}
    if not idents:
        return "_no identification results_"
    ks = list(next(iter(idents.values()))["top_k"])
    headers = ["model", "score", "gallery", "probes", "excluded (single image)", *[k.replace("top", "top-") for k in ks]]
    rows = [
        [
            m, i["score"], str(i["gallery_size"]), str(i["n_probes"]),
            str(i["n_excluded_single_image"]), *[_fmt(i["top_k"][k]) for k in ks],
        ]
        for m, i in idents.items()
    ]  # fmt: skip
    return markdown_table(headers, rows)


# --------------------------------------------------------------------------- what this run shows


def _versus(cell_a: dict | None, cell_b: dict | None) -> str:
    """'above' / 'below' when the AUC intervals do not overlap, else 'overlaps'."""
    (low_a, high_a), (low_b, high_b) = _ci(cell_a), _ci(cell_b)
    if None in (low_a, high_a, low_b, high_b):
        return "unknown"
    if low_a > high_b:
        return "above"
    if high_a < low_b:
        return "below"
    return "overlaps"


def _beat_start(evaluations, found: Roles, original_task: str) -> list[str]:
    lines = []
    for model in [*found.orig.values(), *found.tuned.values()]:
        start = found.start.get(evaluations[model]["model"]["backbone"])
        mine, theirs = _cell(evaluations, model, original_task), _cell(evaluations, start, original_task)
        if mine is None or theirs is None:
            continue
        verdict = {
            "above": "beat its start",
            "below": "is worse than its start",
            "overlaps": "is not distinguishable from its start",
            "unknown": "cannot be compared with its start (no interval)",
        }[_versus(mine, theirs)]
        lines.append(
            f"{model} {verdict} {start} on the original pairs: AUC {_auc_ci(mine)} vs {_auc_ci(theirs)}."
        )
    return lines


def _attribute_costs(evaluations, found: Roles, original_task: str) -> list[str]:
    """Per backbone, attributes ranked by how much A/notA falls below notA/notA."""
    lines = []
    for backbone in found.backbones:
        model = found.orig.get(backbone) or found.start.get(backbone)
        if model is None:
            continue
        costs = []
        for task, cells in evaluations[model]["tasks"].items():
            cross, same = cells.get(CROSS_CONDITION), cells.get(SAME_CONDITION)
            if task == original_task or cross is None or same is None:
                continue
            drop = _delta(_number(cross["auc"]), _number(same["auc"]))
            if drop is not None:
                costs.append((drop, task, cross, same))
        if not costs:
            continue
        costs.sort(key=lambda c: (-c[0], c[1]))
        apart = {"below": "apart", "above": "apart, reversed", "overlaps": "overlapping", "unknown": "unknown"}
        parts = [
            f"{task} (A/notA {_auc_ci(cross)} vs notA/notA {_auc_ci(same)}, intervals "
            f"{apart[_versus(cross, same)]}; "
            f"FNMR at the global threshold {_fmt(cross['at_global_threshold']['fnmr'])} vs "
            f"{_fmt(same['at_global_threshold']['fnmr'])})"
            for _, task, cross, same in costs[:3]
        ]
        lines.append(f"For {model}, the attributes that lower cross-condition matching most: " + "; ".join(parts) + ".")
    return lines


def _finetune_effects(evaluations, found: Roles, original_task: str) -> list[str]:
    lines = []
    for (task, _backbone), model in sorted(found.tuned.items()):
        before = found.init.get(model)
        b, a = _auc(evaluations, before, task, CROSS_CONDITION), _auc(evaluations, model, task, CROSS_CONDITION)
        orig_before, orig_after = _cell(evaluations, before, original_task), _cell(evaluations, model, original_task)
        if None in (b, a) or orig_before is None or orig_after is None:
            lines.append(f"{model}: no before/after comparison (a number is missing).")
            continue
        raised = "raised" if a > b else "did not raise"
        low = _number(orig_before["auc_ci"]["low"])
        after_auc = _number(orig_after["auc"])
        kept = low is not None and after_auc is not None and after_auc >= low
        lines.append(
            f"Fine-tuning on {task} {raised} {model}'s A/notA AUC ({_fmt(b)} → {_fmt(a)}, from {before}) "
            + ("and kept" if kept else "and lowered")
            + f" its original AUC {'within' if kept else 'below'} the interval of {before} "
            f"({_fmt(after_auc)} vs {_auc_ci(orig_before)})."
        )
    return lines


def _warnings(evaluations, found: Roles, original_task: str) -> list[str]:
    lines = []
    for model, started in found.init.items():
        mine, theirs = _auc(evaluations, model, original_task), _auc(evaluations, started, original_task)
        if mine is not None and theirs is not None and mine < theirs:
            lines.append(
                f"**Warning:** {model} ended worse than where it started ({started}): original AUC "
                f"{_fmt(theirs)} → {_fmt(mine)}."
            )
    for model, detail in evaluations.items():
        cell = _cell(evaluations, model, original_task)
        median = None if cell is None else _number(cell["similarity"]["impostor"]["p50"])
        threshold = _number(detail["global_threshold"]["threshold"])
        if (median is not None and median > COLLAPSED_IMPOSTOR_MEDIAN) or (
            threshold is not None and threshold >= COLLAPSED_THRESHOLD
        ):
            lines.append(
                f"**Warning:** {model} looks collapsed: median impostor cosine {_threshold(median)}, "
                f"global threshold {_threshold(threshold)} (different people are near-identical to it)."
            )
    return lines


def findings(evaluations: Mapping[str, dict], original_task: str = ORIGINAL) -> list[str]:
    """'What this run shows': sentences computed from the numbers, warnings first."""
    found = roles(evaluations, original_task)
    return [
        *_warnings(evaluations, found, original_task),
        *_beat_start(evaluations, found, original_task),
        *_attribute_costs(evaluations, found, original_task),
        *_finetune_effects(evaluations, found, original_task),
    ]


# --------------------------------------------------------------------------- report


def _map_sections(evaluations: Mapping[str, dict], figures: list[Path], flips, original_task: str) -> list[str]:
    found = roles(evaluations, original_task)
    lines: list[str] = []
    if any(ev.get("attributes") for ev in evaluations.values()):
        lines += ["## 4. Robustness map: which attributes lower cross-condition matching", "",
                  "ΔAUC = AUC(A/notA) − AUC(notA/notA) on evaluation-only test pairs per attribute "
                  "(negative: photos with the attribute match photos without it worse), identity-bootstrap "
                  "intervals; label flips: share of identities whose label differs between their photos "
                  "(noise for a stable trait, expected for a transient one).", ""]  # fmt: skip
        for backbone in found.backbones:
            start, orig = found.start.get(backbone), found.orig.get(backbone)
            lines += [f"### {backbone}", "", robustness.robustness_table(evaluations, start, orig, flips), ""]
        lines += [f"![{p.stem}]({p.name})" for p in figures if p.stem.startswith(("map_", "finetune_map_"))]
        lines.append("")
    groups = [m for m in [*found.start.values(), *found.orig.values()] if evaluations[m].get("groups")]
    if groups:
        lines += ["## 5. Demographic differentials (NIST FRVT Part 3 style, at each model's global threshold)", "",
                  robustness.demographic_paragraph(evaluations, groups), "",
                  robustness.demographics_table(evaluations, groups), ""]  # fmt: skip
    return lines


def render_report(
    evaluations: Mapping[str, dict], figures: list[Path], original_task: str = ORIGINAL,
    flips: Mapping[str, dict] | None = None,
) -> str:  # fmt: skip
    splits = sorted({ev["split"] for ev in evaluations.values()})
    thresholds = {m: ev["global_threshold"] for m, ev in evaluations.items()}
    lines = [
        "# Evaluation report",
        "",
        "## What this run shows",
        "",
        *[f"- {sentence}" for sentence in findings(evaluations, original_task)],
        "",
        f"Split: {', '.join(splits)}. Models: {', '.join(evaluations)}.",
        f"`{MISSING}`: not measurable (TAR@FAR needs at least 1/FAR impostor pairs), an empty "
        "cell, or a model not evaluated. Accuracy is the share of genuine pairs with "
        "similarity > t; FAR in brackets is the share of impostor pairs above the same t. "
        "Intervals: identity (cluster) bootstrap, see docs/evaluation.md.",
        "",
        "Global thresholds (fixed FMR on the pooled impostors of the original pairs): "
        + "; ".join(f"{m}: {_threshold(t['threshold'])} at FMR {t['fmr']:g}" for m, t in thresholds.items()),
        "",
        "## 1. Same-person threshold accuracy per attribute",
        "",
        accuracy_table(evaluations, original_task),
        "",
        "## 2. Fine-tuning: AUC on filtered, cross-condition and original pairs",
        "",
        finetune_table(evaluations, original_task),
        "",
        "## 3. Identification (closed set, leave-one-out)",
        "",
        identification_table(evaluations),
        "",
        *_map_sections(evaluations, figures, flips, original_task),
        "## ROC before/after fine-tuning",
        "",
        *[f"![{p.stem}]({p.name})" for p in figures if p.stem.startswith("roc_")],
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- plots


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


def plot_attribute_roc(
    evaluations: Mapping[str, dict], task: str, path: str | Path, original_task: str = ORIGINAL
) -> Path:
    """ROC of the task's all-conditions cell: per backbone (one colour) its start
    (dotted), orig (dashed) and the model fine-tuned on `task` (solid), log FPR axis."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display; selected here so importing stays side-effect free
    import matplotlib.pyplot as plt

    found = roles(evaluations, original_task)
    styles = {"start": ":", "orig": "--", "after": "-"}
    colours = dict(zip(found.backbones, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for model, label in _curve_models(found, task, original_task):
        cell = _cell(evaluations, model, task)
        if not cell or not cell.get("roc"):
            continue
        roc = cell["roc"]
        ax.plot([p["fpr"] for p in roc], [p["tpr"] for p in roc], styles[label], marker=".",
                color=colours[evaluations[model]["model"]["backbone"]],
                label=f"{model} ({label}), AUC {_fmt(cell['auc'])}")  # fmt: skip
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


def _map_figures(evaluations: Mapping[str, dict], found: Roles, folder: Path) -> list[Path]:
    """Per backbone, start vs orig; per fine-tuned task, before vs after, over every attribute."""
    figures = []
    for backbone in found.backbones:
        series = [(m, evaluations[m]) for m in (found.start.get(backbone), found.orig.get(backbone))
                  if m and evaluations[m].get("attributes")]  # fmt: skip
        if series:
            order = robustness.ranked_attributes(series[-1][1])
            figures.append(robustness.plot_costs(series, f"{backbone}: attributes that lower matching (ΔAUC, CI)",
                                                 folder / f"map_{_slug(backbone)}.png", order))  # fmt: skip
    for task in found.tasks:
        series = []
        for backbone in found.backbones:
            after = found.tuned.get((task, backbone))
            before = found.init.get(after) if after else None
            series += [(f"{m} ({when})", evaluations[m]) for m, when in ((before, "before"), (after, "after"))
                       if m and evaluations[m].get("attributes")]  # fmt: skip
        if series:
            order = robustness.ranked_attributes(series[0][1])
            figures.append(robustness.plot_costs(series, f"fine-tuning on {task}: ΔAUC per attribute before/after",
                                                 folder / f"finetune_map_{_slug(task)}.png", order))  # fmt: skip
    return figures


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text)


def _write_json(path: Path, content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=1, allow_nan=False) + "\n")
    return path


def write_report(
    evaluations: Mapping[str, dict],
    summary_path: str | Path,
    report_path: str | Path,
    plots_dir: str | Path,
    global_fmr: float,
    original_task: str = ORIGINAL,
    flips: Mapping[str, dict] | None = None,
) -> list[Path]:
    """Write summary.json, report.md with its figures beside it (roc_<task>.png; with a
    robustness map map_<backbone>.png and finetune_map_<task>.png), and the plot data
    under `plots_dir`; return the paths written. `flips`: label-flip shares per attribute
    (metrics/pairs_detail.json), shown beside the map."""
    if not evaluations:
        raise ReportError("no evaluations to report; run the evaluate stages first")
    report_path = Path(report_path)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    found = roles(evaluations, original_task)
    figures = [
        plot_attribute_roc(evaluations, task, report_path.parent / f"roc_{_slug(task)}.png", original_task)
        for task in found.tasks
    ]
    figures += _map_figures(evaluations, found, report_path.parent)
    report_path.write_text(render_report(evaluations, figures, original_task, flips))
    summary = summarize(evaluations, global_fmr, original_task)
    plots = [_write_json(Path(plots_dir) / rel, data) for rel, data in plot_data(evaluations, original_task).items()]
    return [_write_json(Path(summary_path), summary), report_path, *figures, *plots]


def summary_size(summary: dict) -> int:
    """Number of leaf values DVC shows for a summary (for the ≤ 40 budget)."""
    return _count_keys(summary)

