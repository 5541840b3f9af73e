"""Embeddings + verification pairs + crop manifest → one evaluation of one model.

Results come in three levels (docs/evaluation.md):

- `evaluate_embeddings` → the *detail* (level 3, metrics/detail/<model>.json): for every
  (task, condition) cell of the chosen split, plus a `pooled` cell for tasks with several
  conditions, the study's threshold accuracy and false-accept rate, ROC AUC with a
  bootstrap interval over identities, EER, TAR@FAR, FNMR/FMR at one global threshold,
  similarity statistics, counts and the detection failure rate; ROC points on a fixed
  FPR grid for the cell the plots and report draw (a task's pooled cell); and the
  identification (top-k, CMC) result.
- `headline` → the same 12 numbers for every model (level 2, metrics/eval/<model>.json).

With attribute pairs, the detail also holds the robustness map and demographic
differentials (`faceid.evaluate.attribute_map`). `faceid.evaluate.run` runs one model's
evaluation end to end (the evaluate stage).

Pairs whose image has no embedding are counted per cell and left out of the metrics.
Numbers that cannot be computed are NaN beside a `reason`; `json_ready` turns NaN into
null for writing. No key holds a '.', which DVC would read as nesting: rates and
thresholds are values in lists of records, not keys.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from faceid.config.evaluate import EvaluateParams
from faceid.errors import FaceidError
from faceid.evaluate import metrics
from faceid.evaluate.attribute_map import (
    CROSS_CONDITION,
    PairColumns,
    evaluate_attributes,
    evaluate_groups,
    pair_sample,
)

__all__ = [
    "CROSS_CONDITION",
    "PAIR_COLUMNS",
    "POOLED",
    "EvaluateError",
    "evaluate_attributes",
    "evaluate_cell",
    "evaluate_embeddings",
    "evaluate_groups",
    "evaluate_identification",
    "json_ready",
    "mark_acquired",
    "pair_sample",
    "rate_key",
    "rate_name",
    "score_pairs",
]

log = logging.getLogger(__name__)

PAIR_COLUMNS = ("task", "split", "kind", "condition", "image_a", "image_b", "identity_a", "identity_b")
POOLED = "pooled"  # the all-conditions cell of a task with several conditions
DETECTED = "detected"


class EvaluateError(FaceidError, ValueError):
    """Inputs of an evaluation that do not fit together."""


def rate_key(value: float) -> str:
    """Stable text of a threshold or rate: 0.6 → '0.6', 1e-3 → '0.001'."""
    return f"{value:g}"


def rate_name(value: float) -> str:
    """A rate as a key part without '.': 1e-3 → '1e-3', 0.0015 → '1p5e-3'."""
    mantissa, exponent = f"{value:e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa.replace('.', 'p')}e{int(exponent)}"


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


def mark_acquired(scored: pd.DataFrame, status: pd.Series) -> pd.DataFrame:
    """`scored` with `acquired`: both images detected as faces and embedded. A pair with a
    fallback, missing or unreadable crop is a failure to acquire (ISO/IEC 19795-1): never
    scored in a cell, counted, and a non-match in the FNMR that includes them."""
    detected = status.eq(DETECTED)
    both = detected.reindex(scored["image_a"]).to_numpy(dtype=bool, na_value=False) & detected.reindex(
        scored["image_b"]
    ).to_numpy(dtype=bool, na_value=False)
    return scored.assign(acquired=scored["has_embedding"].to_numpy() & both)


def _detection(cell: PairColumns) -> dict:
    """The cell's images (each once) by crop status; `cell` made with the status."""
    statuses = cell.image_status[np.unique(cell.images)]
    counts = np.bincount(statuses[statuses >= 0], minlength=len(cell.labels["status"]))
    labels = [str(label) for label in cell.labels["status"]]
    n = statuses.size
    failures = int(n - (counts[labels.index(DETECTED)] if DETECTED in labels else 0))
    return {
        "n_images": n,
        "failure_rate": failures / n if n else math.nan,
        "status_counts": {label: int(k) for label, k in zip(labels, counts, strict=True) if k},
    }


def _threshold_rows(genuine: np.ndarray, impostor: np.ndarray, thresholds: Sequence[float]) -> list[dict]:
    """The study's accuracy (genuine > t) and the false-accept rate at the same t."""
    return [
        {
            "threshold": t,
            "accuracy": metrics.threshold_accuracy(genuine, t) if genuine.size else math.nan,
            "far": metrics.false_accept_rate(impostor, t) if impostor.size else math.nan,
        }
        for t in thresholds
    ]


def _two_sided(genuine, impostor, ids_g, ids_i, global_threshold, params, rng, grid) -> dict:
    """Metrics needing both genuine and impostor similarities (both non-empty)."""
    interval = metrics.bootstrap_auc(
        genuine, impostor, ids_g, ids_i, params.bootstrap.n_boot, rng, level=params.bootstrap.level
    )
    equal = metrics.eer(genuine, impostor)
    at_global = metrics.error_rates_at(genuine, impostor, global_threshold)
    result = {
        "auc": metrics.roc_auc(genuine, impostor),
        "auc_ci": dataclasses.asdict(interval),
        "eer": equal.eer,
        "eer_threshold": equal.threshold,
        "tar_at_far": [
            {"far": far, "tar": p.tar, "threshold": p.threshold, "achieved_far": p.achieved_far, "reason": p.reason}
            for far in params.fars
            for p in [metrics.tar_at_far(genuine, impostor, far)]
        ],
        "at_global_threshold": {"fnmr": at_global.fnmr, "fmr": at_global.fmr},
    }
    if grid is not None:
        result["roc"] = metrics.roc_on_grid(genuine, impostor, grid)
        sample = metrics.PairSample(genuine, impostor, ids_g, ids_i)
        result["det"] = metrics.det_curve(sample, grid, params.bootstrap.n_boot, rng, params.bootstrap.level)
    return result


def _empty_two_sided(params: EvaluateParams, reason: str, with_roc: bool) -> dict:
    nan = math.nan
    result = {
        "auc": nan,
        "auc_ci": dataclasses.asdict(metrics.BootstrapInterval(nan, nan, params.bootstrap.level, 0, 0, 0)),
        "eer": nan,
        "eer_threshold": nan,
        "tar_at_far": [
            {"far": far, "tar": nan, "threshold": nan, "achieved_far": nan, "reason": reason} for far in params.fars
        ],
        "at_global_threshold": {"fnmr": nan, "fmr": nan},
    }
    if with_roc:
        result["roc"] = []
        result["det"] = []
    return result


def evaluate_cell(
    cell: pd.DataFrame,
    status: pd.Series,
    global_threshold: float,
    params: EvaluateParams,
    rng: np.random.Generator,
    fpr_grid: np.ndarray | None,
) -> dict:
    """All verification metrics of one cell of scored pairs (see `score_pairs`); ROC
    points on `fpr_grid` unless it is None."""
    return _evaluate_cell(PairColumns.of(cell, status), global_threshold, params, rng, fpr_grid)


def _evaluate_cell(
    cell: PairColumns, global_threshold: float, params: EvaluateParams, rng: np.random.Generator,
    fpr_grid: np.ndarray | None,
) -> dict:  # fmt: skip
    """`evaluate_cell` of a cell's columns (made with the crop status)."""
    scored = cell.take(cell.acquired)
    is_genuine = scored.genuine
    genuine = scored.similarity[is_genuine]
    impostor = scored.similarity[~is_genuine]
    ids = scored.ids
    dropped, failed = ~cell.has_embedding, cell.has_embedding & ~cell.acquired
    genuine_ids = int(np.unique(ids[is_genuine]).size)
    support = metrics.cell_support(genuine.size, genuine_ids, params.min_genuine_pairs, params.min_identities)
    result = {
        "n_pairs": {"genuine": int(genuine.size), "impostor": int(impostor.size)},
        "n_pairs_without_embedding": {k: int((dropped & getattr(cell, k)).sum()) for k in ("genuine", "impostor")},
        "n_pairs_failed_to_acquire": {k: int((failed & getattr(cell, k)).sum()) for k in ("genuine", "impostor")},
        "n_identities": {
            "genuine": genuine_ids,
            "impostor": int(np.unique(ids[~is_genuine]).size),
            "all": int(np.unique(ids).size),
        },
        "support": dataclasses.asdict(support),
        "detection": _detection(cell),
        "threshold_accuracy": _threshold_rows(genuine, impostor, params.thresholds),
        "similarity": {
            "genuine": metrics.similarity_summary(genuine),
            "impostor": metrics.similarity_summary(impostor),
        },
        "reason": None,
    }
    if genuine.size and impostor.size:
        result.update(
            _two_sided(
                genuine, impostor, ids[is_genuine][:, 0], ids[~is_genuine], global_threshold, params, rng, fpr_grid
            )
        )
    else:
        result["reason"] = (
            f"empty cell: {genuine.size} genuine and {impostor.size} impostor pairs with embeddings"
        )
        result.update(_empty_two_sided(params, result["reason"], fpr_grid is not None))
    return result


def _operating_point(scored: pd.DataFrame, params: EvaluateParams) -> dict:
    """The global threshold at `global_fmr` on the global task's acquired impostors when
    it rests on >= `min_false_matches` false matches (else at the lowest rate that does,
    said in `reason`); FNMR and FMR at it with identity-bootstrap intervals; and
    the same rates over every attempted comparison, failures to acquire counted as
    non-matches (ISO/IEC 19795-1's generalised FNMR/FMR)."""
    pool = scored[scored["task"] == params.global_task]
    sample = pair_sample(pool)
    base = {"task": params.global_task, "fmr_requested": params.global_fmr, "fmr": params.global_fmr,
            "threshold": math.nan, "n_impostor": int(sample.impostor.size)}  # fmt: skip
    if sample.impostor.size == 0 or sample.genuine.size == 0:
        return {
            **base,
            "reason": f"no acquired genuine and impostor pairs of task {params.global_task!r} on this split",
        }
    rng = np.random.default_rng([params.bootstrap.seed, 2])  # its own stream: cells' intervals unchanged
    point = metrics.operating_point(sample, params.global_fmr, params.min_false_matches,
                                    params.bootstrap.n_boot_conclusions, rng, params.bootstrap.level)  # fmt: skip
    attempted = pool["kind"].value_counts()
    failed_genuine = int(((pool["kind"] == "genuine") & ~pool["acquired"]).sum())
    n_genuine, n_impostor = int(attempted.get("genuine", 0)), int(attempted.get("impostor", 0))
    return {
        **base, "fmr": point.fmr, "threshold": point.threshold, "false_matches": point.false_matches,
        "supported": point.supported, "n_genuine": point.n_genuine,
        "fnmr": point.fnmr, "fnmr_ci": {"low": point.fnmr_low, "high": point.fnmr_high},
        "fmr_achieved": point.fmr_achieved, "fmr_ci": {"low": point.fmr_low, "high": point.fmr_high},
        "with_failures_to_acquire": {
            "fnmr": (point.fnmr * point.n_genuine + failed_genuine) / n_genuine,
            "fmr": point.false_matches / n_impostor,
            "n_genuine": n_genuine, "n_impostor": n_impostor, "failed_genuine": failed_genuine,
            "failed_impostor": n_impostor - point.n_impostor,
        },
        "reason": point.reason,
    }  # fmt: skip


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
    rng = np.random.default_rng([params.bootstrap.seed, 3])
    intervals = metrics.bootstrap_top_k(result.ranks, result.probe_identities, settings.ks,
                                        params.bootstrap.n_boot_conclusions, rng, params.bootstrap.level)  # fmt: skip
    return {
        "score": settings.score,
        "top_k": {f"top{k}": v for k, v in result.top_k.items()},
        "top_k_ci": {f"top{k}": {"low": low, "high": high} for k, (low, high) in intervals.items()},
        "n_probe_identities": int(np.unique(result.probe_identities).size),
        "cmc": [{"rank": r, "rate": v} for r, v in enumerate(result.cmc, start=1)],
        "gallery_size": result.gallery_size,
        "n_probes": result.n_probes,
        "n_excluded_single_image": result.n_excluded,
        "n_images_without_embedding": int((~has).sum()),
    }


def _check_inputs(
    pairs: pd.DataFrame, manifest: pd.DataFrame, params: EvaluateParams
) -> tuple[pd.DataFrame, pd.Series]:
    """The pairs of the evaluated split and each image's crop status; EvaluateError when
    the inputs do not fit together."""
    _require_columns(pairs, PAIR_COLUMNS, "pairs")
    _require_columns(manifest, ("image", "status"), "manifest")
    split = pairs[pairs["split"] == params.split]
    if split.empty:
        raise EvaluateError(
            f"pairs: no pairs on split {params.split!r} (splits present: {sorted(pairs['split'].unique())}); "
            "check evaluate.split in params.yaml"
        )
    status = manifest.set_index("image")["status"]
    unknown = pd.Index(pd.unique(np.r_[split["image_a"].to_numpy(), split["image_b"].to_numpy()])).difference(
        status.index
    )
    if len(unknown):
        raise EvaluateError(
            f"pairs: {len(unknown)} images are not in the crop manifest (e.g. {list(unknown[:3])}); "
            "pairs and crops come from different datasets: re-run `dvc repro pairs`"
        )
    return split, status


def _evaluate_tasks(
    scored: pd.DataFrame, status: pd.Series, threshold: float, params: EvaluateParams, rng: np.random.Generator
) -> dict[str, dict]:
    """Every (task, condition) cell, plus `pooled` for tasks with several conditions; ROC
    points only in the cell the plots read (a task's pooled cell, or its only one)."""
    grid = metrics.log_fpr_grid(params.fpr_grid_size, params.fpr_grid_min)
    tasks: dict[str, dict] = {}
    columns = PairColumns.of(scored, status)
    for task, rows in columns.groups("task"):
        task_pairs = columns.take(rows)
        groups = task_pairs.groups("condition")
        single = len(groups) == 1  # orig's `all`: no pooled twin of one condition
        cells = {
            condition: _evaluate_cell(task_pairs.take(cell), threshold, params, rng, grid if single else None)
            for condition, cell in groups
        }
        if not single:
            cells[POOLED] = _evaluate_cell(task_pairs, threshold, params, rng, grid)
        tasks[task] = cells
    return tasks


def evaluate_embeddings(
    embeddings: np.ndarray,
    images: Sequence[str],
    pairs: pd.DataFrame,
    manifest: pd.DataFrame,
    identification: pd.DataFrame | None,
    params: EvaluateParams,
    attribute_pairs: pd.DataFrame | None = None,
) -> dict:
    """The evaluation dict of one model (see the module docstring for its contents).

    `embeddings` (N, D) L2-normalised, row i for `images[i]`; `pairs` as in
    data/pairs/pairs.parquet; `manifest` as data/crops/manifest.parquet (needs `image`
    and `status`); `identification` as data/pairs/identification.parquet or None;
    `attribute_pairs` as data/pairs/attribute_pairs.parquet, or None for no robustness map.
    """
    split, status = _check_inputs(pairs, manifest, params)
    scored = mark_acquired(score_pairs(embeddings, images, split), status)
    n_dropped = int((~scored["has_embedding"]).sum())
    if n_dropped:
        log.warning("%d of %d pairs have an image without embedding; counted per cell", n_dropped, len(scored))
    global_threshold = _operating_point(scored, params)
    rng = np.random.default_rng(params.bootstrap.seed)
    tasks = _evaluate_tasks(scored, status, global_threshold["threshold"], params, rng)
    result = {
        "split": params.split,
        "n_pairs": len(scored),
        "n_pairs_without_embedding": n_dropped,
        "n_pairs_failed_to_acquire": int((scored["has_embedding"] & ~scored["acquired"]).sum()),
        "global_threshold": global_threshold,
        "tasks": tasks,
        "identification": (
            None if identification is None else evaluate_identification(embeddings, images, identification, params)
        ),
    }
    if attribute_pairs is not None and len(attribute_pairs):
        _require_columns(attribute_pairs, PAIR_COLUMNS, "attribute pairs")
        by_attribute = mark_acquired(score_pairs(embeddings, images, attribute_pairs), status)
        # its own stream: adding the map leaves the task cells' intervals as they were
        map_rng = np.random.default_rng([params.bootstrap.seed, 1])
        threshold = global_threshold["threshold"]
        result["attributes"], result["attribute_tests"] = evaluate_attributes(by_attribute, threshold, params, map_rng)
        result["groups"] = evaluate_groups(by_attribute, params.groups, threshold, params, map_rng)
    return result


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
