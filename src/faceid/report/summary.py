"""summary.json: the study's answer (level 1, docs/evaluation.md), nested by backbone."""

from __future__ import annotations

from collections.abc import Mapping

from faceid import robustness
from faceid.evaluate import CROSS_CONDITION, json_ready, rate_name
from faceid.report.lookup import ORIGINAL, _auc, _cell, _delta, _number, roles


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


def summary_size(summary: dict) -> int:
    """Number of leaf values DVC shows for a summary (for the ≤ 40 budget)."""
    return _count_keys(summary)
