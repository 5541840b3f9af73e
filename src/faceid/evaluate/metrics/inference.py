"""Inference on top of the identity bootstrap: paired differences with p-values, the
false-discovery-rate control over many attributes, sample-size rules, an operating point
with its false-match support, interval of rates and ratios, top-k intervals.

Pure functions, arrays in, numbers out (docs/evaluation.md, "Conclusions"):

- `paired_difference`: statistic(a) - statistic(b) on two pair samples under the *same*
  identity draws per replicate, with its percentile interval and two-sided bootstrap
  p-values (`bootstrap_p_value`).
- `benjamini_hochberg`: which of m p-values are discoveries at false-discovery rate q.
- `cell_support`: whether a cell has enough genuine pairs and people to be ranked or
  concluded from (the sample-size rule).
- `operating_point`: the threshold at a false-match rate that rests on at least
  `min_false_matches` false matches (ISO/IEC 19795-1's rule of 30), FNMR and FMR at it
  with intervals.
- `ratio_interval`: a ratio of two rates in a fixed orientation (worse over better on the
  full sample), so its percentile interval contains its estimate (a max/min ratio's
  replicates are biased upwards: every replicate is >= 1).
- `bootstrap_top_k`: top-k accuracy of a closed-set protocol with intervals, probes
  resampled by identity over a fixed gallery.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from faceid.evaluate.metrics.bootstrap import (
    PairSample,
    RankedScores,
    _draws,
    _genuine_column,
    _Identities,
    _identity_columns,
    _pair_weights,
    percentile_interval,
    weighted_auc,
)
from faceid.evaluate.metrics.verification import MetricError, _threshold_for_rate

__all__ = [
    "Difference",
    "OperatingPointEstimate",
    "Support",
    "benjamini_hochberg",
    "bootstrap_p_value",
    "bootstrap_top_k",
    "cell_support",
    "det_curve",
    "operating_point",
    "paired_difference",
    "ratio_interval",
    "supported_fmr",
]


def bootstrap_p_value(replicates: np.ndarray, estimate: float) -> tuple[float, float]:
    """Two-sided p-values of "the difference is 0" from bootstrap replicates of it.

    (wald, tail): `wald` = 2 Φ(-|estimate| / sd(replicates)), the bootstrap standard
    error's normal test; `tail` = 2 x the smaller share of replicates on either side of 0,
    each side +1 corrected ((k + 1) / (R + 1)), capped at 1. The tail p-value cannot go
    below 2 / (R + 1) (0.002 at R = 1000), above Benjamini–Hochberg's first step over 40
    attributes (0.05 / 40 = 0.00125): the false-discovery control uses `wald`, whose
    resolution does not depend on R. NaN replicates are left out."""
    values = np.asarray(replicates, dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size < 2:
        return math.nan, math.nan
    below = (np.count_nonzero(values <= 0.0) + 1) / (values.size + 1)
    above = (np.count_nonzero(values >= 0.0) + 1) / (values.size + 1)
    tail = float(min(1.0, 2.0 * min(below, above)))
    spread = float(np.std(values, ddof=1))
    if spread == 0.0:
        wald = 1.0 if estimate == 0.0 else 0.0
    else:
        wald = math.erfc(abs(estimate) / spread / math.sqrt(2.0))
    return wald, tail


def benjamini_hochberg(p_values: Sequence[float], q: float) -> tuple[np.ndarray, np.ndarray]:
    """(discovered, adjusted) for m p-values at false-discovery rate `q`
    (Benjamini & Hochberg 1995: sort, find the largest k with p(k) <= k q / m, reject the
    k smallest). `adjusted` are the BH-adjusted p-values (q-values): p is a discovery
    exactly when its adjusted value <= q. NaN p-values are not tested (never discovered,
    adjusted NaN) and do not count in m."""
    if not 0.0 < q < 1.0:
        raise MetricError(f"benjamini_hochberg: q must be in (0, 1), got {q}")
    p = np.asarray(p_values, dtype=np.float64)
    tested = np.flatnonzero(~np.isnan(p))
    adjusted = np.full(p.shape, np.nan)
    discovered = np.zeros(p.shape, dtype=bool)
    m = tested.size
    if m == 0:
        return discovered, adjusted
    order = tested[np.argsort(p[tested], kind="stable")]
    scaled = p[order] * m / np.arange(1, m + 1)
    # step-up: the adjusted value of rank k is the min of the scaled values from k on
    monotone = np.minimum.accumulate(scaled[::-1])[::-1]
    adjusted[order] = np.minimum(monotone, 1.0)
    discovered[order] = adjusted[order] <= q
    return discovered, adjusted


@dataclass(frozen=True)
class Support:
    """Whether a cell is large enough to rank, headline or conclude from."""

    sufficient: bool
    genuine_pairs: int
    genuine_identities: int  # people contributing genuine pairs
    reason: str | None  # why not, naming the rule


def cell_support(genuine_pairs: int, genuine_identities: int, min_pairs: int, min_identities: int) -> Support:
    """The sample-size rule: at least `min_pairs` genuine pairs from at least
    `min_identities` people (a cell of one or two people says nothing about the rest)."""
    short = []
    if genuine_pairs < min_pairs:
        short.append(f"{genuine_pairs} genuine pairs < {min_pairs}")
    if genuine_identities < min_identities:
        short.append(f"{genuine_identities} people with genuine pairs < {min_identities}")
    reason = f"insufficient: {' and '.join(short)} (evaluate.min_genuine_pairs / min_identities)" if short else None
    return Support(not short, int(genuine_pairs), int(genuine_identities), reason)


@dataclass(frozen=True)
class Difference:
    """statistic(a) - statistic(b) under shared identity draws."""

    value: float
    low: float
    high: float
    p_value: float  # bootstrap-SE normal test (`bootstrap_p_value`)
    p_tail: float  # percentile tail share, +1 corrected
    level: float
    n_boot: int
    n_identities: int
    n_degenerate: int

    @property
    def excludes_zero(self) -> bool:
        return bool(self.low > 0.0 or self.high < 0.0)


def _unit(n: int) -> np.ndarray:
    return np.ones((1, n))


def paired_difference(
    a: PairSample, b: PairSample, n_boot: int, rng: np.random.Generator, level: float, chunk_size: int = 32
) -> Difference:
    """AUC(a) - AUC(b) with its interval and p-value. The two samples may be the same
    pairs scored by two models (a model against its start) or two cells of one model
    (A/notA against notA/notA): either way each replicate draws the identities once and
    weighs both samples' pairs by the same draw counts."""
    ids = _Identities([
        _genuine_column(a.genuine_ids, np.size(a.genuine), "a.genuine_ids"),
        _identity_columns(a.impostor_ids, np.size(a.impostor), "a.impostor_ids"),
        _genuine_column(b.genuine_ids, np.size(b.genuine), "b.genuine_ids"),
        _identity_columns(b.impostor_ids, np.size(b.impostor), "b.impostor_ids"),
    ])  # fmt: skip
    if n_boot < 1 or not 0.0 < level < 1.0:
        raise MetricError(f"bootstrap: need n_boot >= 1 and 0 < level < 1, got {n_boot}, {level}")
    diffs = np.empty(n_boot)
    ranked_a, ranked_b = RankedScores(a.genuine, a.impostor), RankedScores(b.genuine, b.impostor)
    codes_a, codes_b = ranked_a.rank_codes(*ids.codes[:2]), ranked_b.rank_codes(*ids.codes[2:])
    for start in range(0, n_boot, chunk_size):
        draws = _draws(rng, ids.n, min(chunk_size, n_boot - start))
        diffs[start : start + len(draws)] = ranked_a.draws_auc(draws, codes_a) - ranked_b.draws_auc(draws, codes_b)
    point = (weighted_auc(a.genuine, a.impostor, _unit(np.size(a.genuine)), _unit(np.size(a.impostor)))
             - weighted_auc(b.genuine, b.impostor, _unit(np.size(b.genuine)), _unit(np.size(b.impostor))))  # fmt: skip
    low, high, degenerate = percentile_interval(diffs, level)
    wald, tail = bootstrap_p_value(diffs, float(point[0]))
    return Difference(float(point[0]), low, high, wald, tail, level, n_boot, ids.n, degenerate)


def supported_fmr(n_impostor: int, requested: float, min_false_matches: int) -> float | None:
    """`requested` when a threshold there rests on at least `min_false_matches` false
    matches (floor(rate x n) >= it), else the lowest rate that does, rounded up to two
    significant digits (30 false matches of 29,401 impostors: 0.0011); None when even
    that would be above 0.5 (too few impostors to set a threshold at all)."""
    if math.floor(requested * n_impostor + 1e-9) >= min_false_matches:
        return float(requested)
    if n_impostor <= 0:
        return None
    lowest = min_false_matches / n_impostor
    digits = 1 - math.floor(math.log10(lowest))
    rate = math.ceil(lowest * 10**digits - 1e-9) / 10**digits
    while math.floor(rate * n_impostor + 1e-9) < min_false_matches:  # rounding at the edge
        rate += 10**-digits
    return float(rate) if rate <= 0.5 else None


@dataclass(frozen=True)
class OperatingPointEstimate:
    fmr_requested: float
    fmr: float  # the rate the threshold is set at (requested, or the lowest supported)
    threshold: float
    false_matches: int  # impostor pairs above the threshold
    n_impostor: int
    n_genuine: int
    supported: bool  # false_matches >= the rule
    fnmr: float
    fnmr_low: float  # threshold re-set at `fmr` in every replicate
    fnmr_high: float
    fmr_achieved: float
    fmr_low: float  # at the fixed threshold
    fmr_high: float
    reason: str | None


def _weighted_thresholds(impostor_desc: np.ndarray, cumulative: np.ndarray, fmr: float | np.ndarray) -> np.ndarray:
    """Per replicate (and per rate, for an array of rates: (R, rates)), the threshold that
    accepts at most `fmr` of the impostor weight; `cumulative`: each replicate's impostor
    weights cumulated in the order of `impostor_desc` (high→low)."""
    allowed = np.multiply.outer(cumulative[:, -1], np.asarray(fmr, dtype=np.float64)) + 1e-9
    # impostors accepted: a row of non-negative weights cumulates to an ascending row, so
    # the count of its entries <= allowed is a binary search, not a pass over the row
    k = np.stack([np.searchsorted(row, limit, side="right") for row, limit in zip(cumulative, allowed, strict=True)])
    return impostor_desc[np.minimum(k, impostor_desc.size - 1)]


def _sorted_sample(sample: PairSample) -> tuple[np.ndarray, np.ndarray, _Identities]:
    """(genuine, impostors high→low, identity codes in that order): sorted once, so no
    replicate gathers its weights into score order."""
    genuine, impostor = np.asarray(sample.genuine, float), np.asarray(sample.impostor, float)
    order = np.argsort(-impostor, kind="stable")
    ids = _Identities([_genuine_column(sample.genuine_ids, genuine.size, "genuine_ids"),
                       _identity_columns(sample.impostor_ids, impostor.size, "impostor_ids")[order]])  # fmt: skip
    return genuine, impostor[order], ids


def operating_point(
    sample: PairSample, fmr: float, min_false_matches: int, n_boot: int, rng: np.random.Generator,
    level: float, chunk_size: int = 32,
) -> OperatingPointEstimate:  # fmt: skip
    """The threshold at `fmr` on the sample's impostors when it rests on at least
    `min_false_matches` false matches, else at the lowest rate that does
    (`supported_fmr`, said in `reason`); with none, at `fmr`, marked unsupported. FNMR at it
    with an interval that re-sets the threshold in every replicate (the uncertainty of
    "FNMR at FMR x"), FMR at the fixed threshold with its interval."""
    if np.size(sample.genuine) == 0 or np.size(sample.impostor) == 0:
        raise MetricError("operating_point: needs genuine and impostor similarities")
    genuine, impostor_desc, ids = _sorted_sample(sample)
    impostor = impostor_desc
    chosen = supported_fmr(impostor.size, fmr, min_false_matches)
    rate = fmr if chosen is None else chosen
    threshold = _threshold_for_rate(impostor_desc, rate)
    false_matches = int(np.count_nonzero(impostor > threshold))
    reason = None
    if chosen is None:
        reason = (f"unsupported: {false_matches} false matches at FMR {rate:g} on {impostor.size} impostor "
                  f"pairs, fewer than {min_false_matches} (evaluate.min_false_matches), and no rate up to 0.5 "
                  "has them")  # fmt: skip
    elif chosen != fmr:
        reason = (f"moved from FMR {fmr:g}, where it would rest on {math.floor(fmr * impostor.size + 1e-9)} false "
                  f"matches, fewer than {min_false_matches}")  # fmt: skip
    fnmr_r, fmr_r = np.empty(n_boot), np.empty(n_boot)
    for start in range(0, n_boot, chunk_size):
        draws = _draws(rng, ids.n, min(chunk_size, n_boot - start))
        gw, iw = _pair_weights(draws, ids.codes[0]), _pair_weights(draws, ids.codes[1])
        thresholds = _weighted_thresholds(impostor_desc, np.cumsum(iw, axis=1), rate)
        with np.errstate(invalid="ignore", divide="ignore"):
            rejected = (gw * (genuine[None, :] <= thresholds[:, None])).sum(axis=1) / gw.sum(axis=1)
            accepted = iw @ (impostor > threshold).astype(float) / iw.sum(axis=1)
        fnmr_r[start : start + len(draws)], fmr_r[start : start + len(draws)] = rejected, accepted
    fnmr_low, fnmr_high, _ = percentile_interval(fnmr_r, level)
    fmr_low, fmr_high, _ = percentile_interval(fmr_r, level)
    return OperatingPointEstimate(
        fmr_requested=float(fmr), fmr=float(rate), threshold=float(threshold), false_matches=false_matches,
        n_impostor=int(impostor.size), n_genuine=int(genuine.size), supported=chosen is not None,
        fnmr=float(np.mean(genuine <= threshold)), fnmr_low=fnmr_low, fnmr_high=fnmr_high,
        fmr_achieved=false_matches / impostor.size, fmr_low=fmr_low, fmr_high=fmr_high, reason=reason,
    )  # fmt: skip


def ratio_interval(numerator: np.ndarray, denominator: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval of numerator / denominator over replicates (a fixed
    orientation: the same group on top in every replicate, chosen on the full sample).
    A replicate with a zero denominator is +inf (a zero numerator too: NaN, left out), so
    an unbounded upper end shows as inf."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = np.asarray(numerator, float) / np.asarray(denominator, float)
    ratios = ratios[~np.isnan(ratios)]
    if ratios.size == 0:
        return math.nan, math.nan
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(ratios, [tail, 100.0 - tail], method="lower")
    return float(low), float(high)


def bootstrap_top_k(
    ranks: np.ndarray, probe_ids: np.ndarray, ks: Sequence[int], n_boot: int, rng: np.random.Generator,
    level: float,
) -> dict[int, tuple[float, float]]:  # fmt: skip
    """Per k, the percentile interval of top-k accuracy (share of probes ranked <= k) with
    probes resampled by identity (each probe weighted by its identity's draw count); the
    gallery is held fixed, so this is the uncertainty over which people are probed."""
    ranks = np.asarray(ranks)
    uniques, codes = np.unique(np.asarray(probe_ids), return_inverse=True)
    draws = _draws(rng, uniques.size, n_boot)[:, codes]  # (R, probes)
    total = draws.sum(axis=1)
    out = {}
    for k in ks:
        with np.errstate(invalid="ignore", divide="ignore"):
            shares = draws @ (ranks <= k).astype(float) / total
        low, high, _ = percentile_interval(shares, level)
        out[int(k)] = (low, high)
    return out


def det_curve(sample: PairSample, fmr_grid: np.ndarray, n_boot: int, rng: np.random.Generator,
              level: float, chunk_size: int = 32) -> list[dict]:  # fmt: skip
    """DET points {fmr, fnmr, low, high}: FNMR at the threshold of each measurable grid FMR
    (at least one false match: floor(fmr x n) >= 1), with a band from the identity
    bootstrap that re-sets the threshold at that FMR in every replicate."""
    n_impostor = np.size(sample.impostor)
    grid = [float(f) for f in fmr_grid if math.floor(f * n_impostor + 1e-9) >= 1 and f < 1.0]
    if not grid or np.size(sample.genuine) == 0:
        return []
    genuine, impostor_desc, ids = _sorted_sample(sample)
    genuine_order = np.argsort(genuine, kind="stable")
    genuine_sorted = genuine[genuine_order]
    genuine_codes = ids.codes[0][genuine_order]  # weights drawn straight in score order
    replicates = np.empty((n_boot, len(grid)))
    for start in range(0, n_boot, chunk_size):
        draws = _draws(rng, ids.n, min(chunk_size, n_boot - start))
        cumulative = np.cumsum(_pair_weights(draws, ids.codes[1]), axis=1)
        # genuine weight at or below a threshold: cumulated in score order, looked up
        genuine_cumulative = np.cumsum(_pair_weights(draws, genuine_codes), axis=1)
        total = genuine_cumulative[:, -1]
        thresholds = _weighted_thresholds(impostor_desc, cumulative, np.asarray(grid))  # (R, grid)
        below = np.searchsorted(genuine_sorted, thresholds, side="right")  # genuine <= threshold
        rows = np.arange(len(draws))[:, None]
        rejected = np.where(below > 0, genuine_cumulative[rows, np.maximum(below - 1, 0)], 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            replicates[start : start + len(draws)] = rejected / total[:, None]
    points = []
    for j, fmr in enumerate(grid):
        threshold = _threshold_for_rate(impostor_desc, fmr)
        low, high, _ = percentile_interval(replicates[:, j], level)
        points.append({"fmr": fmr, "fnmr": float(np.mean(genuine <= threshold)), "low": low, "high": high})
    return points
