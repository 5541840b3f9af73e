"""report.md's "What this run shows": sentences computed from the numbers, warnings first."""

from __future__ import annotations

from collections.abc import Mapping

from faceid.evaluate import CROSS_CONDITION
from faceid.report.lookup import (
    ORIGINAL,
    SAME_CONDITION,
    Roles,
    _auc,
    _cell,
    _ci,
    _delta,
    _number,
    roles,
)
from faceid.report.tables import _auc_ci, _fmt, _threshold

COLLAPSED_IMPOSTOR_MEDIAN = 0.9  # different people this similar: the embedding has collapsed
COLLAPSED_THRESHOLD = 0.99


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
