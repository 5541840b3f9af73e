"""Verification and identification metrics: arrays in, numbers out, no I/O.

Conventions shared by every function here:

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
from typing import Literal

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from faceid.errors import FaceidError

__all__ = [
    "BootstrapInterval",
    "EqualErrorRate",
    "ErrorRateAt",
    "Identification",
    "MetricError",
    "OperatingPoint",
    "PairSample",
    "bootstrap_auc",
    "bootstrap_auc_difference",
    "bootstrap_rates",
    "eer",
    "error_rates_at",
    "false_accept_rate",
    "far_unmeasurable_reason",
    "identification",
    "log_fpr_grid",
    "pair_similarity",
    "percentile_interval",
    "roc_auc",
    "roc_on_grid",
    "similarity_summary",
    "tar_at_far",
    "threshold_accuracy",
    "threshold_at_fmr",
    "weighted_auc",
]

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
    in chunks so 100k pairs of 512-d vectors never materialise at once.
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
    out = np.empty(len(index_a), dtype=np.float64)
    for start in range(0, len(index_a), chunk_size):
        stop = start + chunk_size
        a = embeddings[index_a[start:stop]]
        b = embeddings[index_b[start:stop]]
        out[start:stop] = np.einsum("ij,ij->i", a, b, dtype=np.float64)
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


# --------------------------------------------------------------------------- bootstrap


def _tie_bounds(sorted_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each position of an ascending array: index of its tie group's first and last item."""
    n = sorted_scores.size
    new_group = np.r_[True, sorted_scores[1:] != sorted_scores[:-1]]
    starts = np.flatnonzero(new_group)
    ends = np.r_[starts[1:], n] - 1
    group = np.cumsum(new_group) - 1
    return starts[group], ends[group]


def weighted_auc(
    genuine: np.ndarray, impostor: np.ndarray, genuine_weight: np.ndarray, impostor_weight: np.ndarray
) -> np.ndarray:
    """Mann–Whitney AUC with per-pair weights, for many weightings at once.

    Weights are (R, n_genuine) and (R, n_impostor) (or 1-D for one weighting); returns R
    AUCs, equal to `roc_auc_score(..., sample_weight=w)`. One sort serves all R: the
    weighted impostor mass below each genuine score is a cumulative sum in score order.
    NaN where a class has zero total weight.
    """
    genuine, impostor = _scores(genuine, impostor)
    gw = np.atleast_2d(np.asarray(genuine_weight, dtype=np.float64))
    iw = np.atleast_2d(np.asarray(impostor_weight, dtype=np.float64))
    scores = np.r_[genuine, impostor]
    order = np.argsort(scores, kind="stable")
    first, last = _tie_bounds(scores[order])
    is_genuine = order < genuine.size
    genuine_pos = np.flatnonzero(is_genuine)
    # impostor weights in score order (0 at genuine positions), cumulated
    mass = np.zeros((iw.shape[0], scores.size))
    mass[:, ~is_genuine] = iw[:, order[~is_genuine] - genuine.size]
    cum = np.cumsum(mass, axis=1)
    below = np.where(first[genuine_pos] > 0, cum[:, np.maximum(first[genuine_pos] - 1, 0)], 0.0)
    tied = cum[:, last[genuine_pos]] - below
    credit = below + 0.5 * tied  # (R, n_genuine) impostor mass beaten by each genuine pair
    numerator = np.einsum("rg,rg->r", gw[:, order[genuine_pos]], credit)
    denominator = gw.sum(axis=1) * iw.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / denominator, np.nan)


@dataclass(frozen=True)
class BootstrapInterval:
    low: float
    high: float
    level: float  # e.g. 0.95
    n_boot: int
    n_identities: int  # clusters resampled
    n_degenerate: int  # replicates with no genuine or no impostor pair (left out)


def _identity_columns(ids: np.ndarray, n_pairs: int, name: str) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim == 1:
        ids = ids[:, None]
    if ids.ndim != 2 or ids.shape[0] != n_pairs:
        raise MetricError(f"{name}: expected ({n_pairs},) or ({n_pairs}, 2) identities, got {ids.shape}")
    return ids


def _draws(rng: np.random.Generator, n_ids: int, size: int) -> np.ndarray:
    """(size, n_ids) draw counts: each replicate draws n_ids identities with replacement.

    Counted from uniform integer draws: numpy's multinomial over thousands of categories
    is a chain of binomials, 20x slower at CelebA's test identities."""
    drawn = rng.integers(0, n_ids, (size, n_ids)) + np.arange(size)[:, None] * n_ids
    return np.bincount(drawn.ravel(), minlength=size * n_ids).reshape(size, n_ids).astype(np.float64)


def _pair_weights(draws: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """(R, n) weights of pairs whose identities are `codes` (n, 1) or (n, 2): the product
    of their identities' draw counts (n_i for a genuine pair, n_i * n_j for an impostor)."""
    return np.prod(draws[:, codes], axis=2)


def percentile_interval(values: np.ndarray, level: float) -> tuple[float, float, int]:
    """(low, high, number of NaN replicates left out) of a two-sided percentile interval."""
    valid = values[~np.isnan(values)]
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(valid, [tail, 100.0 - tail]) if valid.size else (np.nan, np.nan)
    return float(low), float(high), int(values.size - valid.size)


class _Identities:
    """Identity codes of several pair samples over one shared set of identities."""

    def __init__(self, columns: list[np.ndarray]):
        uniques, codes = np.unique(np.concatenate([c.ravel() for c in columns]), return_inverse=True)
        self.n = uniques.size
        self.codes, start = [], 0
        for column in columns:
            self.codes.append(codes[start : start + column.size].reshape(column.shape))
            start += column.size


def _genuine_column(ids: np.ndarray, n_pairs: int, name: str) -> np.ndarray:
    ids = _identity_columns(ids, n_pairs, name)
    if ids.shape[1] == 2 and np.any(ids[:, 0] != ids[:, 1]):
        raise MetricError(f"{name}: a genuine pair has two different identities; pass one identity per pair")
    return ids[:, :1]


def bootstrap_auc(
    genuine: np.ndarray,
    impostor: np.ndarray,
    genuine_ids: np.ndarray,
    impostor_ids: np.ndarray,
    n_boot: int,
    rng: np.random.Generator,
    level: float = 0.95,
    chunk_size: int = 32,
) -> BootstrapInterval:
    """Percentile interval of the AUC from a cluster bootstrap over identities.

    Ids are (n,) or (n, 2) identities per pair (the identity of a genuine pair, both
    sides of an impostor pair; a genuine pair's second column, if given, must repeat
    the first). A replicate draws the identities with replacement, n_i copies of
    identity i, and takes the pairs that exist among the drawn copies: a genuine pair of
    i once per copy (weight n_i), an impostor pair (i, j) once per copy of i and copy of
    j (weight n_i * n_j). See docs/evaluation.md for why the product. The replicate AUC
    is the weighted Mann–Whitney statistic (`weighted_auc`), computed for `chunk_size`
    replicates per pass, with no per-replicate re-sort.
    """
    genuine, impostor = _scores(genuine, impostor)
    _check_bootstrap(n_boot, level)
    ids = _Identities([_genuine_column(genuine_ids, genuine.size, "genuine_ids"),
                       _identity_columns(impostor_ids, impostor.size, "impostor_ids")])  # fmt: skip
    aucs = np.empty(n_boot)
    for start in range(0, n_boot, chunk_size):
        draws = _draws(rng, ids.n, min(chunk_size, n_boot - start))
        aucs[start : start + len(draws)] = weighted_auc(
            genuine, impostor, _pair_weights(draws, ids.codes[0]), _pair_weights(draws, ids.codes[1])
        )
    low, high, degenerate = percentile_interval(aucs, level)
    return BootstrapInterval(low, high, level, n_boot, ids.n, degenerate)


def _check_bootstrap(n_boot: int, level: float) -> None:
    if n_boot < 1 or not 0.0 < level < 1.0:
        raise MetricError(f"bootstrap: need n_boot >= 1 and 0 < level < 1, got {n_boot}, {level}")


@dataclass(frozen=True)
class PairSample:
    """Genuine and impostor similarities of one cell with their identities."""

    genuine: np.ndarray
    impostor: np.ndarray
    genuine_ids: np.ndarray  # (n,) or (n, 2) with equal columns
    impostor_ids: np.ndarray  # (n, 2)


def bootstrap_auc_difference(
    a: PairSample, b: PairSample, n_boot: int, rng: np.random.Generator, level: float = 0.95, chunk_size: int = 32
) -> tuple[float, BootstrapInterval]:
    """AUC(a) - AUC(b) and its interval, both cells resampled with the *same* identity
    draws per replicate (the cells share identities, so their AUCs are correlated)."""
    ga, ia = _scores(a.genuine, a.impostor)
    gb, ib = _scores(b.genuine, b.impostor)
    _check_bootstrap(n_boot, level)
    ids = _Identities([
        _genuine_column(a.genuine_ids, ga.size, "a.genuine_ids"), _identity_columns(a.impostor_ids, ia.size, "a.impostor_ids"),
        _genuine_column(b.genuine_ids, gb.size, "b.genuine_ids"), _identity_columns(b.impostor_ids, ib.size, "b.impostor_ids"),
    ])  # fmt: skip
    diffs = np.empty(n_boot)
    for start in range(0, n_boot, chunk_size):
        draws = _draws(rng, ids.n, min(chunk_size, n_boot - start))
        w = [_pair_weights(draws, c) for c in ids.codes]
        diffs[start : start + len(draws)] = weighted_auc(ga, ia, w[0], w[1]) - weighted_auc(gb, ib, w[2], w[3])
    low, high, degenerate = percentile_interval(diffs, level)
    point = weighted_auc(ga, ia, np.ones(ga.size), np.ones(ia.size)) - weighted_auc(gb, ib, np.ones(gb.size), np.ones(ib.size))
    return float(point[0]), BootstrapInterval(low, high, level, n_boot, ids.n, degenerate)


def bootstrap_rates(
    events: Sequence[np.ndarray], ids: Sequence[np.ndarray], n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """(n_boot, k) replicate rates of k samples of pairs under shared identity draws.

    `events[s]` is a boolean per pair (e.g. genuine rejected at a threshold) and `ids[s]`
    its identities, (n,) / (n, 1) for genuine pairs or (n, 2) for impostor pairs; a rate is
    the pair-weighted share of events (weights as in `bootstrap_auc`); NaN where a
    replicate leaves a sample no weight.
    """
    columns = [_identity_columns(i, len(e), f"ids[{s}]") for s, (e, i) in enumerate(zip(events, ids, strict=True))]
    shared = _Identities(columns)
    draws = _draws(rng, shared.n, n_boot)
    rates = np.empty((n_boot, len(events)))
    for s, (event, codes) in enumerate(zip(events, shared.codes, strict=True)):
        weights = _pair_weights(draws, codes)
        total = weights.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            rates[:, s] = np.where(total > 0, weights @ np.asarray(event, dtype=np.float64) / total, np.nan)
    return rates


# --------------------------------------------------------------------------- identification


@dataclass(frozen=True)
class Identification:
    top_k: dict[int, float]  # k -> share of probes whose identity ranks <= k
    cmc: list[float]  # cmc[r - 1] = share of probes ranked <= r, r = 1..len(cmc)
    gallery_size: int  # identities every probe is ranked against
    n_probes: int  # probes evaluated
    n_excluded: int  # probes whose identity has no other image


def identification(
    embeddings: np.ndarray,
    identities: np.ndarray,
    score: Literal["max", "mean"] = "max",
    ks: Sequence[int] = (1, 2, 3, 5),
    max_rank: int = 20,
    chunk_size: int = 1024,
) -> Identification:
    """Closed-set leave-one-out identification on one set of images.

    Each image is a probe against all the others: an identity's score is the max (or
    mean) similarity of its images other than the probe. Rank = 1 + number of other
    identities scoring >= the true one (ties count against the probe). Probes whose
    identity has no other image are excluded and counted. `embeddings` (N, D) are
    L2-normalised; similarities are computed `chunk_size` probes at a time.
    """
    # float64 like the pair similarities: float32 dot products of near-identical
    # embeddings tie (or swap) identities that float64 tells apart
    embeddings = np.asarray(embeddings, dtype=np.float64)
    identities = np.asarray(identities)
    if embeddings.ndim != 2 or identities.shape != (embeddings.shape[0],):
        raise MetricError(
            f"identification: expected (N, D) embeddings and N identities, got "
            f"{embeddings.shape} and {identities.shape}"
        )
    if score not in ("max", "mean"):
        raise MetricError(f"identification: score must be 'max' or 'mean', got {score!r}")
    order = np.argsort(identities, kind="stable")
    emb = embeddings[order]
    uniques, codes, counts = np.unique(identities[order], return_inverse=True, return_counts=True)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    probes = np.flatnonzero(counts[codes] > 1)
    if probes.size == 0:
        raise MetricError("identification: no identity has two images; nothing to probe")
    # mean of dot products = dot product with the identity's summed embedding, so the
    # mean score needs a (B, identities) product instead of (B, N)
    sums = np.add.reduceat(emb, starts, axis=0) if score == "mean" else None
    ranks = np.empty(probes.size, dtype=np.int64)
    for begin in range(0, probes.size, chunk_size):
        batch = probes[begin : begin + chunk_size]
        rows = np.arange(batch.size)
        own = codes[batch]
        if score == "max":
            sims = emb[batch] @ emb.T  # (B, N), images grouped by identity
            sims[rows, batch] = -np.inf
            per_identity = np.maximum.reduceat(sims, starts, axis=1)
        else:
            probe = emb[batch]
            per_identity = probe @ sums.T  # (B, identities)
            divisor = np.broadcast_to(counts.astype(np.float64), per_identity.shape).copy()
            per_identity[rows, own] -= np.einsum("ij,ij->i", probe, probe)  # leave the probe out
            divisor[rows, own] -= 1
            per_identity /= divisor
        true = per_identity[rows, own]
        ranks[begin : begin + batch.size] = (per_identity >= true[:, None]).sum(axis=1)
    max_rank = min(max_rank, uniques.size)
    cmc = [float(np.mean(ranks <= r)) for r in range(1, max_rank + 1)]
    top_k = {int(k): float(np.mean(ranks <= k)) for k in ks}
    return Identification(top_k, cmc, int(uniques.size), int(probes.size), int(embeddings.shape[0] - probes.size))
