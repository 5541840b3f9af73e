"""Embeddings + verification pairs + crop manifest → one evaluation dict per model.

`evaluate_embeddings` is what the evaluate stage calls. The result holds, for every
(task, condition) cell of the chosen split (plus a `pooled` cell per task), the study's
threshold accuracy and false-accept rate, ROC AUC with a bootstrap interval over
identities, EER, TAR@FAR, FNMR/FMR at one global threshold, similarity statistics,
counts, the detection failure rate and ROC points on a fixed FPR grid; and the
identification (top-k, CMC) result. Pairs whose image has no embedding are counted per
cell and left out of the metrics.

Numbers that cannot be computed are NaN beside a `reason`; `json_ready` turns NaN into
null for writing.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from faceid import metrics
from faceid.config import EvaluateParams
from faceid.errors import FaceidError

__all__ = [
    "PAIR_COLUMNS",
    "POOLED",
    "EvaluateError",
    "evaluate_cell",
    "evaluate_embeddings",
    "evaluate_identification",
    "json_ready",
    "plot_data",
    "rate_key",
    "score_pairs",
]

log = logging.getLogger(__name__)

PAIR_COLUMNS = ("task", "split", "kind", "condition", "image_a", "image_b", "identity_a", "identity_b")
POOLED = "pooled"  # the all-conditions cell added to every task
DETECTED = "detected"


class EvaluateError(FaceidError, ValueError):
    """Inputs of an evaluation that do not fit together."""


def rate_key(value: float) -> str:
    """Stable dict key of a threshold or rate: 0.6 → '0.6', 1e-3 → '0.001'."""
    return f"{value:g}"


def _require_columns(table: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise EvaluateError(
            f"{name}: missing columns {missing}; expected at least {list(columns)} "
            "(see docs/ARCHITECTURE.md); re-run the stage that writes it"
        )


def score_pairs(embeddings: np.ndarray, images: Sequence[str], pairs: pd.DataFrame) -> pd.DataFrame:
    """`pairs` with `similarity` (NaN where an image has no embedding) and `has_embedding`."""
    images = pd.Index(images)
    if images.has_duplicates:
        raise EvaluateError(f"images: {images[images.duplicated()][0]} listed twice; one row per image expected")
    if len(images) != len(embeddings):
        raise EvaluateError(
            f"embeddings: {len(embeddings)} rows for {len(images)} image names; they must match one to one"
        )
    row_a = images.get_indexer(pairs["image_a"])
    row_b = images.get_indexer(pairs["image_b"])
    has = (row_a >= 0) & (row_b >= 0)
    similarity = np.full(len(pairs), np.nan)
    similarity[has] = metrics.pair_similarity(embeddings, row_a[has], row_b[has])
    return pairs.assign(similarity=similarity, has_embedding=has)


def _detection(cell: pd.DataFrame, status: pd.Series) -> dict:
    cell_images = pd.unique(np.r_[cell["image_a"].to_numpy(), cell["image_b"].to_numpy()])
    counts = status.reindex(cell_images).value_counts()
    n = len(cell_images)
    failures = int(n - counts.get(DETECTED, 0))
    return {
        "n_images": n,
        "failure_rate": failures / n if n else math.nan,
        "status_counts": {str(k): int(v) for k, v in counts.sort_index().items()},
    }


def _one_sided(scores: np.ndarray, fn, thresholds: Sequence[float]) -> dict:
    return {rate_key(t): (fn(scores, t) if scores.size else math.nan) for t in thresholds}


def _two_sided(genuine, impostor, ids_g, ids_i, global_threshold, params, rng, grid) -> dict:
    """Metrics needing both genuine and impostor similarities (both non-empty)."""
    interval = metrics.bootstrap_auc(
        genuine, impostor, ids_g, ids_i, params.bootstrap.n_boot, rng, level=params.bootstrap.level
    )
    equal = metrics.eer(genuine, impostor)
    at_global = metrics.error_rates_at(genuine, impostor, global_threshold)
    return {
        "auc": metrics.roc_auc(genuine, impostor),
        "auc_ci": dataclasses.asdict(interval),
        "eer": equal.eer,
        "eer_threshold": equal.threshold,
        "tar_at_far": {
            rate_key(far): {"tar": p.tar, "threshold": p.threshold, "achieved_far": p.achieved_far, "reason": p.reason}
            for far in params.fars
            for p in [metrics.tar_at_far(genuine, impostor, far)]
        },
        "global": {"threshold": at_global.threshold, "fnmr": at_global.fnmr, "fmr": at_global.fmr},
        "roc": metrics.roc_on_grid(genuine, impostor, grid),
    }


def _empty_two_sided(params: EvaluateParams, reason: str) -> dict:
    nan = math.nan
    return {
        "auc": nan,
        "auc_ci": dataclasses.asdict(metrics.BootstrapInterval(nan, nan, params.bootstrap.level, 0, 0, 0)),
        "eer": nan,
        "eer_threshold": nan,
        "tar_at_far": {
            rate_key(far): {"tar": nan, "threshold": nan, "achieved_far": nan, "reason": reason}
            for far in params.fars
        },
        "global": {"threshold": nan, "fnmr": nan, "fmr": nan},
        "roc": [],
    }


def evaluate_cell(
    cell: pd.DataFrame,
    status: pd.Series,
    global_threshold: float,
    params: EvaluateParams,
    rng: np.random.Generator,
    fpr_grid: np.ndarray,
) -> dict:
    """All verification metrics of one cell of scored pairs (see `score_pairs`)."""
    scored = cell[cell["has_embedding"]]
    is_genuine = (scored["kind"] == "genuine").to_numpy()
    genuine = scored["similarity"].to_numpy()[is_genuine]
    impostor = scored["similarity"].to_numpy()[~is_genuine]
    ids = scored[["identity_a", "identity_b"]].to_numpy()
    dropped = cell[~cell["has_embedding"]]["kind"].value_counts()
    result = {
        "n_pairs": {"genuine": int(genuine.size), "impostor": int(impostor.size)},
        "n_pairs_without_embedding": {k: int(dropped.get(k, 0)) for k in ("genuine", "impostor")},
        "n_identities": {
            "genuine": int(np.unique(ids[is_genuine]).size),
            "impostor": int(np.unique(ids[~is_genuine]).size),
            "all": int(np.unique(ids).size),
        },
        "detection": _detection(cell, status),
        "threshold_accuracy": _one_sided(genuine, metrics.threshold_accuracy, params.thresholds),
        "false_accept_rate": _one_sided(impostor, metrics.false_accept_rate, params.thresholds),
        "similarity": {
            "genuine": metrics.similarity_summary(genuine),
            "impostor": metrics.similarity_summary(impostor),
        },
        "reason": None,
    }
    if genuine.size and impostor.size:
        result.update(
            _two_sided(genuine, impostor, ids[is_genuine], ids[~is_genuine], global_threshold, params, rng, fpr_grid)
        )
    else:
        result["reason"] = (
            f"empty cell: {genuine.size} genuine and {impostor.size} impostor pairs with embeddings"
        )
        result.update(_empty_two_sided(params, result["reason"]))
    return result


def _global_threshold(scored: pd.DataFrame, params: EvaluateParams) -> dict:
    pool = scored[(scored["task"] == params.global_task) & (scored["kind"] == "impostor") & scored["has_embedding"]]
    impostor = pool["similarity"].to_numpy()
    if impostor.size == 0:
        reason = f"no impostor pairs of task {params.global_task!r} with embeddings on this split"
    else:
        reason = metrics.far_unmeasurable_reason(impostor.size, params.global_fmr)
    threshold = math.nan if reason else metrics.threshold_at_fmr(impostor, params.global_fmr)
    return {
        "task": params.global_task,
        "fmr": params.global_fmr,
        "threshold": threshold,
        "n_impostor": int(impostor.size),
        "reason": reason,
    }


def evaluate_identification(
    embeddings: np.ndarray, images: Sequence[str], protocol: pd.DataFrame, params: EvaluateParams
) -> dict:
    """Top-k and CMC of the identification protocol (`image, identity` rows)."""
    _require_columns(protocol, ("image", "identity"), "identification")
    rows = pd.Index(images).get_indexer(protocol["image"])
    has = rows >= 0
    settings = params.identification
    result = metrics.identification(
        embeddings[rows[has]],
        protocol["identity"].to_numpy()[has],
        score=settings.score,
        ks=settings.ks,
        max_rank=settings.cmc_max_rank,
    )
    return {
        "score": settings.score,
        "top_k": {str(k): v for k, v in result.top_k.items()},
        "cmc": [{"rank": r, "rate": v} for r, v in enumerate(result.cmc, start=1)],
        "gallery_size": result.gallery_size,
        "n_probes": result.n_probes,
        "n_excluded_single_image": result.n_excluded,
        "n_images_without_embedding": int((~has).sum()),
    }


def evaluate_embeddings(
    embeddings: np.ndarray,
    images: Sequence[str],
    pairs: pd.DataFrame,
    manifest: pd.DataFrame,
    identification: pd.DataFrame | None,
    params: EvaluateParams,
) -> dict:
    """The evaluation dict of one model (see the module docstring for its contents).

    `embeddings` (N, D) L2-normalised, row i for `images[i]`; `pairs` as in
    data/pairs/pairs.parquet; `manifest` as data/crops/manifest.parquet (needs `image`
    and `status`); `identification` as data/pairs/identification.parquet or None.
    """
    _require_columns(pairs, PAIR_COLUMNS, "pairs")
    _require_columns(manifest, ("image", "status"), "manifest")
    split = pairs[pairs["split"] == params.split]
    if split.empty:
        raise EvaluateError(
            f"pairs: no pairs on split {params.split!r} (splits present: {sorted(pairs['split'].unique())}); "
            "check evaluate.split in params.yaml"
        )
    status = manifest.set_index("image")["status"]
    unknown = pd.Index(pd.unique(np.r_[split["image_a"].to_numpy(), split["image_b"].to_numpy()])).difference(status.index)
    if len(unknown):
        raise EvaluateError(
            f"pairs: {len(unknown)} images are not in the crop manifest (e.g. {list(unknown[:3])}); "
            "pairs and crops come from different datasets: re-run `dvc repro pairs`"
        )
    scored = score_pairs(embeddings, images, split)
    n_dropped = int((~scored["has_embedding"]).sum())
    if n_dropped:
        log.warning("%d of %d pairs have an image without embedding; counted per cell", n_dropped, len(scored))
    global_threshold = _global_threshold(scored, params)
    rng = np.random.default_rng(params.bootstrap.seed)
    grid = metrics.log_fpr_grid(params.fpr_grid_size, params.fpr_grid_min)
    tasks: dict[str, dict] = {}
    for task, task_pairs in scored.groupby("task", sort=True):
        cells = {
            str(condition): evaluate_cell(cell, status, global_threshold["threshold"], params, rng, grid)
            for condition, cell in task_pairs.groupby("condition", sort=True)
        }
        # a single-condition task (orig: `all`) is its own pooled cell
        cells[POOLED] = (
            next(iter(cells.values())) if len(cells) == 1
            else evaluate_cell(task_pairs, status, global_threshold["threshold"], params, rng, grid)
        )  # fmt: skip
        tasks[str(task)] = cells
    return {
        "split": params.split,
        "n_pairs": len(scored),
        "n_pairs_without_embedding": n_dropped,
        "global_threshold": global_threshold,
        "tasks": tasks,
        "identification": (
            None if identification is None else evaluate_identification(embeddings, images, identification, params)
        ),
    }


def json_ready(value):
    """A copy of `value` with NaN/inf as None and numpy scalars as Python numbers."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def plot_data(evaluation: dict) -> dict[str, dict]:
    """Small plot files of one evaluation, by relative path: `roc/<task>/<condition>.json`
    as {"roc": [{fpr, tpr, threshold}]} (the '/' of a condition becomes '_') and
    `cmc.json` as {"cmc": [{rank, rate}]}, for dvc.yaml's `template: simple` plots."""
    files = {
        f"roc/{task}/{condition.replace('/', '_')}.json": {"roc": cell["roc"]}
        for task, cells in evaluation["tasks"].items()
        for condition, cell in cells.items()
    }
    if evaluation.get("identification"):
        files["cmc.json"] = {"cmc": evaluation["identification"]["cmc"]}
    return json_ready(files)
