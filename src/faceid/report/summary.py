"""summary.json: the study's answer (level 1, docs/evaluation.md), nested by backbone."""

from __future__ import annotations

from collections.abc import Mapping

from faceid.evaluate.evaluation import json_ready
from faceid.report.lookup import ORIGINAL, _auc, _number, roles


def _hurt(detail: dict | None) -> str | None:
    """The attributes the map's false-discovery control found harmful, comma-joined."""
    tests = (detail or {}).get("attribute_tests")
    if tests is None:
        return None
    return ",".join(tests["hurt"]) or "none"


def _gated_ratio(detail: dict | None) -> float | None:
    """The largest demographic ratio whose groups meet the sample-size and error rules."""
    values = [
        _number(entry.get(key, {}).get("value"))
        for entry in ((detail or {}).get("groups") or {}).values()
        for key in ("fnmr_ratio", "fmr_ratio")
        if (entry.get(key) or {}).get("sufficient")
    ]
    values = [v for v in values if v is not None]
    return max(values) if values else None


def summarize(evaluations: Mapping[str, dict], comparisons: Mapping[str, dict] | None = None,
              original_task: str = ORIGINAL) -> dict:  # fmt: skip
    """Level 1, nested by backbone (DVC shows `<backbone>.<key>`), the same sets as the
    report's first screen: start and orig AUC; orig FNMR at the operating point (the
    report names its FMR and false-match support) and top-1; per attribute task the
    paired change of its A/notA AUC against the model it was fine-tuned from (`delta`,
    0 for a model that equals its start) and the report's word for it (`verdict`);
    `mean_delta` over the fine-tunes that trained (a model equal to its start is left
    out; null when none did); `hurt_attributes`: the orig model's (else the start's)
    attributes found harmful after false-discovery-rate control ("none" when none);
    `max_group_ratio`: its largest demographic ratio among groups that meet the rules.
    Null where a number does not exist."""
    comparisons = comparisons or {}
    found = roles(evaluations, original_task)
    summary: dict[str, dict] = {}
    for backbone in found.backbones:
        start, orig = found.start.get(backbone), found.orig.get(backbone)
        ident = (evaluations[orig].get("identification") or {}) if orig else {}
        point = evaluations[orig]["global_threshold"] if orig else {}
        entry: dict = {
            "start_auc": _auc(evaluations, start, original_task),
            "orig_auc": _auc(evaluations, orig, original_task),
            "orig_fnmr": _number(point.get("fnmr")),
            "orig_top1": _number(ident.get("top_k", {}).get("top1")),
        }
        deltas = []
        for task in found.tasks:
            model = found.tuned.get((task, backbone))
            if model is None:
                continue
            compared = comparisons.get(model) or {}
            cell = compared.get("attribute") or {}
            delta = 0.0 if compared.get("equals_start") else _number(cell.get("delta"))
            entry[task] = {"delta": delta, "verdict": cell.get("verdict", "not compared")}
            if not compared.get("equals_start"):
                deltas.append(delta)
        if any((task, backbone) in found.tuned for task in found.tasks):
            entry["mean_delta"] = None if not deltas or None in deltas else sum(deltas) / len(deltas)
        reference = evaluations.get(orig) or evaluations.get(start)
        if reference and reference.get("attributes"):
            entry["hurt_attributes"] = _hurt(reference)
        if reference and reference.get("groups"):
            entry["max_group_ratio"] = _gated_ratio(reference)
        summary[backbone] = entry
    return json_ready(summary)


def _count_keys(tree: dict) -> int:
    return sum(_count_keys(v) if isinstance(v, dict) else 1 for v in tree.values())


def summary_size(summary: dict) -> int:
    """Number of leaf values DVC shows for a summary (for the ≤ 40 budget)."""
    return _count_keys(summary)
