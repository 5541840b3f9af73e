"""Identity (cluster) bootstrap intervals for AUC, AUC differences and error rates.

Pairs share identities, so pairs are not independent draws: a replicate resamples
identities with replacement and weighs each pair by the draw counts of its identities
(docs/evaluation.md, "Intervals").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from faceid.evaluate.metrics.verification import MetricError, _scores


class RankedScores:
    """Genuine and impostor scores ranked once, for the weighted AUC under many weightings
    (every bootstrap chunk of one sample reuses the same order)."""

    def __init__(self, genuine: np.ndarray, impostor: np.ndarray):
        genuine, impostor = _scores(genuine, impostor)
        self.n_genuine, self.n_impostor = genuine.size, impostor.size
        # genuine pairs in ascending score order (ties by index): the order of the sum
        self.genuine_order = np.argsort(genuine, kind="stable")
        self.impostor_order = np.argsort(impostor, kind="stable")
        ranked = impostor[self.impostor_order]
        scores = genuine[self.genuine_order]
        self.below = np.searchsorted(ranked, scores, side="left")  # impostors strictly below
        self.not_above = np.searchsorted(ranked, scores, side="right")  # ... or tied

    def auc(self, genuine_weight: np.ndarray, impostor_weight: np.ndarray) -> np.ndarray:
        gw = np.atleast_2d(np.asarray(genuine_weight, dtype=np.float64))
        iw = np.atleast_2d(np.asarray(impostor_weight, dtype=np.float64))
        ranked_gw, ranked_iw = gw[:, self.genuine_order], iw[:, self.impostor_order]
        return self._auc(ranked_gw, ranked_iw, gw.sum(axis=1) * iw.sum(axis=1))

    def rank_codes(self, genuine_codes: np.ndarray, impostor_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Identity codes of the pairs (`_Identities`) in score order, for `draws_auc`."""
        return genuine_codes[self.genuine_order], impostor_codes[self.impostor_order]

    def draws_auc(self, draws: np.ndarray, ranked_codes: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """`auc` under the bootstrap weights of `draws` (`_pair_weights` of the codes), drawn
        straight in score order (`rank_codes`): the same numbers without gathering each
        replicate's weights into that order. The sums of the weights, whole numbers far
        below 2**53, are exact in any order."""
        gw, iw = _pair_weights(draws, ranked_codes[0]), _pair_weights(draws, ranked_codes[1])
        return self._auc(gw, iw, gw.sum(axis=1) * iw.sum(axis=1))

    def _auc(self, ranked_gw: np.ndarray, ranked_iw: np.ndarray, denominator: np.ndarray) -> np.ndarray:
        # cum[:, k]: the weight of the k lowest impostors, summed in ascending order
        cum = np.zeros((ranked_iw.shape[0], self.n_impostor + 1))
        np.cumsum(ranked_iw, axis=1, out=cum[:, 1:])
        below = cum[:, self.below]
        credit = below + 0.5 * (cum[:, self.not_above] - below)  # (R, n_genuine) impostor mass beaten
        numerator = np.einsum("rg,rg->r", ranked_gw, credit)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denominator > 0, numerator / denominator, np.nan)


def weighted_auc(
    genuine: np.ndarray, impostor: np.ndarray, genuine_weight: np.ndarray, impostor_weight: np.ndarray
) -> np.ndarray:
    """Mann–Whitney AUC with per-pair weights, for many weightings at once.

    Weights are (R, n_genuine) and (R, n_impostor) (or 1-D for one weighting); returns R
    AUCs, equal to `roc_auc_score(..., sample_weight=w)`. One sort serves all R: the
    weighted impostor mass below each genuine score is a cumulative sum in score order
    (`RankedScores`: rank once, then weigh as often as needed). NaN where a class has zero
    total weight.
    """
    return RankedScores(genuine, impostor).auc(genuine_weight, impostor_weight)


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
    if codes.shape[1] == 1:
        return draws[:, codes[:, 0]]
    return draws[:, codes[:, 0]] * draws[:, codes[:, 1]]


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
    level: float,
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
    ranked = RankedScores(genuine, impostor)
    codes = ranked.rank_codes(*ids.codes)
    for start in range(0, n_boot, chunk_size):
        draws = _draws(rng, ids.n, min(chunk_size, n_boot - start))
        aucs[start : start + len(draws)] = ranked.draws_auc(draws, codes)
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
    a: PairSample, b: PairSample, n_boot: int, rng: np.random.Generator, level: float, chunk_size: int = 32
) -> tuple[float, BootstrapInterval]:
    """AUC(a) - AUC(b) and its interval, both cells resampled with the *same* identity
    draws per replicate (the cells share identities, so their AUCs are correlated)."""
    ga, ia = _scores(a.genuine, a.impostor)
    gb, ib = _scores(b.genuine, b.impostor)
    _check_bootstrap(n_boot, level)
    ids = _Identities([
        _genuine_column(a.genuine_ids, ga.size, "a.genuine_ids"),
        _identity_columns(a.impostor_ids, ia.size, "a.impostor_ids"),
        _genuine_column(b.genuine_ids, gb.size, "b.genuine_ids"),
        _identity_columns(b.impostor_ids, ib.size, "b.impostor_ids"),
    ])  # fmt: skip
    diffs = np.empty(n_boot)
    ranked_a, ranked_b = RankedScores(ga, ia), RankedScores(gb, ib)
    codes_a, codes_b = ranked_a.rank_codes(*ids.codes[:2]), ranked_b.rank_codes(*ids.codes[2:])
    for start in range(0, n_boot, chunk_size):
        draws = _draws(rng, ids.n, min(chunk_size, n_boot - start))
        diffs[start : start + len(draws)] = ranked_a.draws_auc(draws, codes_a) - ranked_b.draws_auc(draws, codes_b)
    low, high, degenerate = percentile_interval(diffs, level)
    point = weighted_auc(ga, ia, np.ones(ga.size), np.ones(ia.size)) - weighted_auc(
        gb, ib, np.ones(gb.size), np.ones(ib.size)
    )
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
