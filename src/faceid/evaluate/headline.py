"""Level 2 of an evaluation: the same 12 headline numbers for every model, from its detail."""

from __future__ import annotations

import math

from faceid.config.evaluate import EvaluateParams
from faceid.evaluate.attribute_map import CROSS_CONDITION
from faceid.evaluate.evaluation import POOLED, json_ready

__all__ = ["headline", "task_cell"]


def task_cell(detail: dict, task: str) -> dict | None:
    """A task's all-conditions cell: `pooled`, or the one condition of a single-condition task."""
    cells = detail["tasks"].get(task)
    if not cells:
        return None
    return cells.get(POOLED) or next(iter(cells.values()))


def _median(summary: dict) -> float:
    return summary["p50"]


def headline(detail: dict, params: EvaluateParams) -> dict[str, float | None]:
    """Level 2: the same 12 numbers for every model, from its detail (`evaluate_embeddings`).

    Names are short because `dvc metrics show -R metrics/eval` prints them as one table
    row per model: `auc` with `auc_lo`/`auc_hi` (its interval), `tar_<fmr>`, `gen_median`
    and `imp_median` (cosine medians) keep the default's table within 200 characters.

    On the global task's cell (`orig`): AUC with its interval, EER, TAR at the global
    FMR (= 1 - FNMR at the global threshold, which is set on these impostors), the global
    threshold, genuine and impostor cosine medians; identification top-1 and top-k for
    the largest k; and on the model's own attribute task (fine-tuned models only; null
    otherwise) the cross-condition (A/notA) AUC and FNMR at the global threshold.
    """
    cell = task_cell(detail, params.global_task) or {}
    nan = math.nan
    own_task = (detail.get("model") or {}).get("task")
    own = detail["tasks"].get(own_task, {}).get(CROSS_CONDITION) if own_task != params.global_task else None
    ident = detail.get("identification") or {}
    top_k = ident.get("top_k", {})
    ks = [min(params.identification.ks), max(params.identification.ks)]
    values = {
        "auc": cell.get("auc", nan),
        "auc_lo": cell.get("auc_ci", {}).get("low", nan),
        "auc_hi": cell.get("auc_ci", {}).get("high", nan),
        "eer": cell.get("eer", nan),
        "tar_op": 1.0 - detail["global_threshold"].get("fnmr", nan),
        "op_fmr": detail["global_threshold"]["fmr"],
        "threshold": detail["global_threshold"]["threshold"],
        "gen_median": _median(cell["similarity"]["genuine"]) if cell else nan,
        "imp_median": _median(cell["similarity"]["impostor"]) if cell else nan,
        **{f"top{k}": top_k.get(f"top{k}", nan) for k in ks},
        "task_auc": own["auc"] if own else nan,
        "task_fnmr": own["at_global_threshold"]["fnmr"] if own else nan,
    }
    return json_ready(values)
