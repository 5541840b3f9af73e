"""Pair similarity and verification metrics (ROC AUC, EER, TAR@FAR, thresholds).

Conventions shared by the verification functions here and in `faceid.evaluate.metrics.bootstrap`:

- A pair is *accepted* at threshold `t` when its similarity is strictly greater than `t`
  (the study's "similarity > t"). FAR = FMR = share of impostor pairs accepted; TAR =
  share of genuine pairs accepted; FNMR = 1 - TAR.
- An operating point at a target false-accept rate `far` over `n` impostors may accept at
  most `k = floor(far * n)` impostors; the threshold is the (k+1)-th highest impostor
  similarity, so the achieved FAR is <= `far`.
- Measurability rule: a FAR is *measurable* only when `k >= 1`, i.e. there are at least
  `ceil(1 / far)` impostors. With fewer, "FAR <= far" cannot be told apart from
  "FAR = 0", so TAR@FAR is reported as NaN with a reason instead of a number that
  silently means TAR@FAR=0.
- Empty genuine or impostor samples are an error (`MetricError`): the caller decides how
  to report an empty cell.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from faceid.errors import FaceidError

# Float products like 1000 * 1e-3 may land a hair below the integer they mean.
_RATE_EPS = 1e-9


class MetricError(FaceidError, ValueError):
    """Inputs a metric cannot be computed from (empty sample, mismatched shapes…)."""


# --------------------------------------------------------------------------- similarity


def pair_similarity(
    embeddings: np.ndarray,
    index_a: np.ndarray,
    index_b: np.ndarray,
    chunk_size: int = 16384,
    norm_tolerance: float = 1e-3,
) -> np.ndarray:
    """Cosine similarity of pairs (embeddings[index_a[i]], embeddings[index_b[i]]).

    `embeddings` is (N, D) and L2-normalised, so the cosine is the dot product; rows
    whose norm is off by more than `norm_tolerance` are an error. Pairs are processed
    in chunks so 100k pairs of 512-d vectors never materialise at once; when the pairs
    cover most of the (images a) x (images b) table, the table is computed instead
    (`_similarity_table`, the same bits).
    """
    embeddings = np.asarray(embeddings)
    index_a = np.asarray(index_a, dtype=np.int64)
    index_b = np.asarray(index_b, dtype=np.int64)
    if embeddings.ndim != 2:
        raise MetricError(f"embeddings: expected an (N, D) array, got shape {embeddings.shape}")
    if index_a.shape != index_b.shape or index_a.ndim != 1:
        raise MetricError(
            f"index_a/index_b: expected two 1-D arrays of one length, got {index_a.shape} and {index_b.shape}"
        )
    norms = np.linalg.norm(embeddings, axis=1)
    bad = np.flatnonzero(np.abs(norms - 1.0) > norm_tolerance)
    if len(bad):
        raise MetricError(
            f"embeddings: {len(bad)} of {len(norms)} rows are not L2-normalised "
            f"(row {bad[0]} has norm {norms[bad[0]]:.4f}); normalise them before comparing"
        )
    rows_a, rows_b = np.unique(index_a), np.unique(index_b)
    if rows_a.size * rows_b.size <= 2 * len(index_a):
        return _similarity_table(embeddings, rows_a, rows_b, chunk_size)[
            np.searchsorted(rows_a, index_a), np.searchsorted(rows_b, index_b)
        ]
    out = np.empty(len(index_a), dtype=np.float64)
    for start in range(0, len(index_a), chunk_size):
        stop = start + chunk_size
        a = embeddings[index_a[start:stop]]
        b = embeddings[index_b[start:stop]]
        out[start:stop] = np.einsum("ij,ij->i", a, b, dtype=np.float64)
    return out


def _similarity_table(embeddings: np.ndarray, rows_a: np.ndarray, rows_b: np.ndarray, chunk_size: int) -> np.ndarray:
    """(len(rows_a), len(rows_b)) dot products of the rows, the same bits as the pairwise
    einsum: both run numpy's einsum kernel once per pair on the two contiguous float64 rows,
    the D products summed in the same order, without gathering two rows per pair. Used
    when the pairs cover most of the table (all pairs of few images: the val and test
    pairs), where gathering 2 x 512 floats per pair costs more than the extra products."""
    table = embeddings.astype(np.float64)  # exact; einsum's dtype=float64 casts the same way
    b = table[rows_b]
    block = max(1, chunk_size // max(1, rows_b.size))
    out = np.empty((rows_a.size, rows_b.size))
    for start in range(0, rows_a.size, block):
        out[start : start + block] = np.einsum("kj,ij->ki", table[rows_a[start : start + block]], b)
    return out


def similarity_summary(similarity: np.ndarray, percentiles: Sequence[int] = (1, 5, 25, 50, 75, 95, 99)) -> dict:
    """Count, mean, std (ddof=0), min, max and percentiles `p<k>` of a similarity sample.

    Percentiles are whole numbers so the keys (`p50` is the median) hold no '.', which
    DVC would read as nesting. An empty sample gives count 0 and NaN elsewhere
    (summaries are descriptive, not tests).
    """
    x = np.asarray(similarity, dtype=np.float64)
    keys = [f"p{int(k)}" for k in percentiles]
    if x.size == 0:
        nan = float("nan")
        return {"count": 0, "mean": nan, "std": nan, "min": nan, "max": nan, **dict.fromkeys(keys, nan)}
    values = np.percentile(x, percentiles)
    return {
        "count": int(x.size),
        "mean": float(x.mean()),
        "std": float(x.std()),
        "min": float(x.min()),
        "max": float(x.max()),
        **{key: float(v) for key, v in zip(keys, values, strict=True)},
    }


# --------------------------------------------------------------------------- verification


def _scores(genuine: np.ndarray, impostor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    genuine = np.asarray(genuine, dtype=np.float64).ravel()
    impostor = np.asarray(impostor, dtype=np.float64).ravel()
    if genuine.size == 0 or impostor.size == 0:
        raise MetricError(
            f"need genuine and impostor similarities, got {genuine.size} genuine and "
            f"{impostor.size} impostor; report the cell as empty instead"
        )
    return genuine, impostor


def _labelled(genuine: np.ndarray, impostor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.r_[np.ones(genuine.size, dtype=np.int8), np.zeros(impostor.size, dtype=np.int8)]
    return labels, np.r_[genuine, impostor]


def roc_auc(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """ROC AUC of genuine vs impostor similarities (ties count one half)."""
    genuine, impostor = _scores(genuine, impostor)
    return float(roc_auc_score(*_labelled(genuine, impostor)))


@dataclass(frozen=True)
class EqualErrorRate:
    eer: float  # where FNMR = FMR, linearly interpolated between ROC points
    threshold: float  # highest threshold (accept: similarity > it) with FNMR <= FMR


def eer(genuine: np.ndarray, impostor: np.ndarray) -> EqualErrorRate:
    """Equal error rate, interpolated on the ROC where FNMR (1 - TPR) crosses FPR."""
    genuine, impostor = _scores(genuine, impostor)
    fpr, tpr, thresholds = roc_curve(*_labelled(genuine, impostor), drop_intermediate=False)
    gap = fpr - (1.0 - tpr)  # rises from -1 (threshold +inf) to +1 (lowest threshold)
    # 1/3 - (1 - 2/3) is -5e-17 in floats: treat rounding-level gaps as a crossing
    i = int(np.argmax(gap >= -1e-12))  # >= 1, since roc_curve starts at (0, 0)
    w = gap[i - 1] / (gap[i - 1] - gap[i])
    rate = fpr[i - 1] + w * (fpr[i] - fpr[i - 1])
    # roc_curve accepts similarity >= thresholds[i]; with every distinct score listed
    # (drop_intermediate=False) that is similarity > the next lower score.
    if i + 1 < thresholds.size:
        threshold = thresholds[i + 1]
    else:
        threshold = np.nextafter(thresholds[i], -np.inf)
    return EqualErrorRate(float(rate), float(threshold))


def far_unmeasurable_reason(n_impostor: int, far: float) -> str | None:
    """None when `far` is measurable on `n_impostor` impostors, else why it is not."""
    if not 0.0 < far <= 1.0:
        raise MetricError(f"far: expected a rate in (0, 1], got {far}")
    needed = math.ceil(1.0 / far - _RATE_EPS)
    if n_impostor < needed:
        return (
            f"unmeasurable: FAR {far:g} needs at least {needed} impostor pairs "
            f"(one false accept), the cell has {n_impostor}"
        )
    return None


def _threshold_for_rate(impostor_desc: np.ndarray, far: float) -> float:
    """Threshold accepting at most floor(far * n) impostors (`impostor_desc` sorted high→low)."""
    n = impostor_desc.size
    k = math.floor(far * n + _RATE_EPS)
    if k >= n:
        # accept everything: one step below the lowest impostor, finite for JSON
        return float(np.nextafter(impostor_desc[-1], -np.inf))
    return float(impostor_desc[k])


def threshold_at_fmr(impostor: np.ndarray, fmr: float) -> float:
    """Global threshold with FMR <= `fmr` on (pooled) impostors; NaN if unmeasurable."""
    impostor = np.asarray(impostor, dtype=np.float64).ravel()
    if impostor.size == 0:
        raise MetricError("threshold_at_fmr: no impostor similarities to set a threshold on")
    if far_unmeasurable_reason(impostor.size, fmr) is not None:
        return float("nan")
    return _threshold_for_rate(np.sort(impostor)[::-1], fmr)


def threshold_accuracy(genuine: np.ndarray, threshold: float) -> float:
    """The study's accuracy: share of genuine pairs with similarity > threshold (= TAR)."""
    genuine = np.asarray(genuine, dtype=np.float64)
    if genuine.size == 0:
        raise MetricError("threshold_accuracy: no genuine similarities")
    return float(np.mean(genuine > threshold))


def false_accept_rate(impostor: np.ndarray, threshold: float) -> float:
    """Share of impostor pairs with similarity > threshold (FAR = FMR)."""
    impostor = np.asarray(impostor, dtype=np.float64)
    if impostor.size == 0:
        raise MetricError("false_accept_rate: no impostor similarities")
    return float(np.mean(impostor > threshold))


@dataclass(frozen=True)
class ErrorRateAt:
    threshold: float
    fnmr: float  # share of genuine pairs rejected (similarity <= threshold)
    fmr: float  # share of impostor pairs accepted (similarity > threshold)


def error_rates_at(genuine: np.ndarray, impostor: np.ndarray, threshold: float) -> ErrorRateAt:
    """FNMR and FMR at a fixed threshold; NaN rates for a NaN threshold."""
    genuine, impostor = _scores(genuine, impostor)
    if math.isnan(threshold):
        return ErrorRateAt(threshold, float("nan"), float("nan"))
    return ErrorRateAt(
        float(threshold),
        1.0 - threshold_accuracy(genuine, threshold),
        false_accept_rate(impostor, threshold),
    )


@dataclass(frozen=True)
class OperatingPoint:
    far: float  # the requested false-accept rate
    tar: float  # NaN when unmeasurable
    threshold: float  # accept when similarity > threshold; NaN when unmeasurable
    achieved_far: float  # <= far; NaN when unmeasurable
    reason: str | None  # None when measurable

    @property
    def measurable(self) -> bool:
        return self.reason is None


def tar_at_far(genuine: np.ndarray, impostor: np.ndarray, far: float) -> OperatingPoint:
    """TAR at the threshold that accepts at most floor(far * n_impostor) impostors.

    Equals the highest TPR with FPR <= far on scikit-learn's ROC. Fewer than
    ceil(1/far) impostors make the point unmeasurable: NaN with the reason.
    """
    genuine, impostor = _scores(genuine, impostor)
    reason = far_unmeasurable_reason(impostor.size, far)
    if reason is not None:
        nan = float("nan")
        return OperatingPoint(far, nan, nan, nan, reason)
    threshold = _threshold_for_rate(np.sort(impostor)[::-1], far)
    return OperatingPoint(
        far,
        threshold_accuracy(genuine, threshold),
        threshold,
        false_accept_rate(impostor, threshold),
        None,
    )


def log_fpr_grid(size: int, min_fpr: float) -> np.ndarray:
    """`size` FPR values log-spaced from `min_fpr` to 1."""
    if size < 2 or not 0.0 < min_fpr < 1.0:
        raise MetricError(f"log_fpr_grid: need size >= 2 and 0 < min_fpr < 1, got {size}, {min_fpr}")
    return np.geomspace(min_fpr, 1.0, size)


def roc_on_grid(genuine: np.ndarray, impostor: np.ndarray, fpr_grid: np.ndarray) -> list[dict]:
    """ROC points {fpr, tpr, threshold} at the measurable FPRs of a fixed grid.

    Each point is the operating point of `tar_at_far` at that FPR (the ROC's upper-left
    envelope); grid FPRs below 1/n_impostor are left out (see the measurability rule).
    """
    genuine, impostor = _scores(genuine, impostor)
    impostor_desc = np.sort(impostor)[::-1]
    genuine_asc = np.sort(genuine)
    points = []
    for fpr in np.asarray(fpr_grid, dtype=np.float64):
        if far_unmeasurable_reason(impostor.size, fpr) is not None:
            continue
        threshold = _threshold_for_rate(impostor_desc, fpr)
        if fpr >= 1.0:  # accept everything, genuine below every impostor included
            threshold = min(threshold, float(np.nextafter(genuine_asc[0], -np.inf)))
        accepted = genuine.size - np.searchsorted(genuine_asc, threshold, side="right")
        points.append({"fpr": float(fpr), "tpr": float(accepted / genuine.size), "threshold": threshold})
    return points
