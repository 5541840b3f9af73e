import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from faceid.evaluate import metrics


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _unit(angles_deg):
    a = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    return np.stack([np.cos(a), np.sin(a)], axis=1)


def _tied_scores(rng, n_genuine=300, n_impostor=3000):
    """Scores rounded to 0.05 so ties between and within classes are common."""
    genuine = np.round(rng.normal(0.6, 0.15, n_genuine) * 20) / 20
    impostor = np.round(rng.normal(0.2, 0.15, n_impostor) * 20) / 20
    return genuine, impostor


def _sk(genuine, impostor):
    labels = np.r_[np.ones(len(genuine)), np.zeros(len(impostor))]
    return labels, np.r_[genuine, impostor]


# --------------------------------------------------------------------------- similarity


def test_pair_similarity_is_cosine_of_indexed_rows():
    emb = _unit([0, 90, 60])
    sims = metrics.pair_similarity(emb, np.array([0, 0, 2, 1]), np.array([1, 2, 2, 2]), chunk_size=3)
    np.testing.assert_allclose(sims, [0.0, 0.5, 1.0, math.sqrt(3) / 2], atol=1e-12)


def test_pair_similarity_rejects_unnormalised_rows():
    emb = np.array([[1.0, 0.0], [3.0, 4.0]])
    with pytest.raises(metrics.MetricError, match=r"1 of 2 rows are not L2-normalised \(row 1 has norm 5"):
        metrics.pair_similarity(emb, np.array([0]), np.array([1]))


def test_similarity_summary_hand_case():
    s = metrics.similarity_summary([0.0, 1.0, 2.0, 3.0, 4.0], percentiles=(50, 25))
    assert s["count"] == 5 and s["mean"] == 2.0 and s["min"] == 0.0 and s["max"] == 4.0
    assert s["std"] == pytest.approx(math.sqrt(2.0))
    assert s["p50"] == 2.0 and s["p25"] == 1.0
    assert not any("." in key for key in metrics.similarity_summary([0.5])), "DVC reads '.' as nesting"
    empty = metrics.similarity_summary([])
    assert empty["count"] == 0 and math.isnan(empty["mean"]) and math.isnan(empty["p50"])


# --------------------------------------------------------------------------- verification


def _concordance(genuine, impostor) -> float:
    """AUC by its definition, independent of scikit-learn (which metrics.roc_auc calls): the
    share of (genuine, impostor) pairs where the genuine pair scores higher, ties one half."""
    g, i = np.asarray(genuine)[:, None], np.asarray(impostor)[None, :]
    return float(((g > i) + 0.5 * (g == i)).mean())


def test_roc_auc_hand_case_and_ties():
    # 0.9 and 0.8 beat all three impostors, 0.4 beats two: 8 of 9 comparisons
    assert metrics.roc_auc([0.9, 0.8, 0.4], [0.5, 0.3, 0.2]) == pytest.approx(8 / 9)
    assert metrics.roc_auc([0.5], [0.5]) == 0.5
    # ties across the classes count one half: 0.9 beats all 3 impostors (3); each 0.5 ties
    # 0.5 and beats 0.2, 0.1 (2.5 + 2.5); 0.2 ties 0.2 and beats 0.1 (1.5): 9.5 of 12
    assert metrics.roc_auc([0.9, 0.5, 0.5, 0.2], [0.5, 0.2, 0.1]) == pytest.approx(9.5 / 12)
    assert metrics.roc_auc([0.1, 0.2], [0.3, 0.4]) == 0.0  # every impostor above: not flipped to 1
    # ties within a class change nothing: 0.5 beats one impostor and ties the other, twice
    assert metrics.roc_auc([0.5, 0.5], [0.5, 0.4]) == pytest.approx(0.75)


def test_roc_auc_is_the_share_of_concordant_pairs_on_many_ties(rng):
    genuine, impostor = _tied_scores(rng)  # 300 x 3000 pairs, scores on a 0.05 grid
    assert (genuine[:, None] == impostor[None, :]).any()  # the case has ties across classes
    assert metrics.roc_auc(genuine, impostor) == pytest.approx(_concordance(genuine, impostor), abs=1e-12)


def test_empty_sample_is_an_error():
    with pytest.raises(metrics.MetricError, match="got 0 genuine and 2 impostor"):
        metrics.roc_auc([], [0.1, 0.2])


def test_eer_hand_case():
    # > 0.4 accepts 0.9, 0.8 (genuine) and 0.5 (impostor): FNMR = FMR = 1/3
    result = metrics.eer([0.9, 0.8, 0.4], [0.5, 0.3, 0.2])
    assert result.eer == pytest.approx(1 / 3)
    assert result.threshold == 0.4


def test_eer_interpolates_across_a_tie():
    # the tie at 0.5 joins (FPR 0, FNMR 1/2) to (FPR 1/2, FNMR 0) in one diagonal step;
    # FPR = FNMR halfway along it
    result = metrics.eer([0.9, 0.5], [0.5, 0.1])
    assert result.eer == pytest.approx(0.25)
    assert result.threshold == 0.1  # > 0.1 accepts the tied pair: FNMR 0 <= FMR 1/2


def test_eer_threshold_balances_error_rates(rng):
    genuine = rng.normal(1.0, 1.0, 5000)
    impostor = rng.normal(-1.0, 1.0, 5000)
    result = metrics.eer(genuine, impostor)
    fnmr = np.mean(genuine <= result.threshold)
    fmr = np.mean(impostor > result.threshold)
    assert abs(fnmr - fmr) < 2e-3
    # two unit-variance normals two apart: EER = Phi(-1) ≈ 0.1587
    assert result.eer == pytest.approx(0.1587, abs=0.01)


def test_tar_at_far_hand_case():
    impostor = np.arange(1000) / 1000  # 0.000 … 0.999
    point = metrics.tar_at_far([0.9985, 0.9995, 0.5], impostor, 1e-3)
    assert point.measurable
    assert point.threshold == 0.998  # one impostor (0.999) above it
    assert point.achieved_far == pytest.approx(1e-3)
    assert point.tar == pytest.approx(2 / 3)


def test_tar_at_far_unmeasurable_with_too_few_impostors():
    point = metrics.tar_at_far([0.9], np.arange(999) / 999, 1e-3)
    assert not point.measurable
    assert math.isnan(point.tar) and math.isnan(point.threshold)
    assert point.reason == (
        "unmeasurable: FAR 0.001 needs at least 1000 impostor pairs (one false accept), the cell has 999"
    )


@pytest.mark.parametrize("far", [1e-3, 1e-2, 0.05, 0.5])
def test_tar_at_far_matches_sklearn_roc(rng, far):
    genuine, impostor = _tied_scores(rng)
    fpr, tpr, _ = roc_curve(*_sk(genuine, impostor))
    point = metrics.tar_at_far(genuine, impostor, far)
    assert point.tar == pytest.approx(tpr[fpr <= far + 1e-12].max())
    assert point.achieved_far <= far


def test_threshold_accuracy_and_false_accept_are_strict():
    assert metrics.threshold_accuracy([0.5, 0.6, 0.7, 0.8], 0.6) == 0.5
    assert metrics.false_accept_rate([0.5, 0.6, 0.7, 0.8], 0.7) == 0.25


def test_threshold_at_fmr_and_error_rates():
    impostor = np.arange(100) / 100
    threshold = metrics.threshold_at_fmr(impostor, 0.05)
    assert threshold == 0.94  # 0.95 … 0.99 accepted: FMR 5/100
    rates = metrics.error_rates_at([0.93, 0.95, 0.99, 0.2], impostor, threshold)
    assert rates.fmr == pytest.approx(0.05)
    assert rates.fnmr == pytest.approx(0.5)
    assert math.isnan(metrics.threshold_at_fmr(impostor, 1e-3))


def test_roc_on_grid_points_lie_on_sklearn_envelope(rng):
    genuine, impostor = _tied_scores(rng, n_impostor=500)
    grid = metrics.log_fpr_grid(9, 1e-4)
    points = metrics.roc_on_grid(genuine, impostor, grid)
    fpr, tpr, _ = roc_curve(*_sk(genuine, impostor))
    # grid FPRs below 1/500 are unmeasurable and left out
    assert [p["fpr"] for p in points] == pytest.approx([f for f in grid if f >= 1 / 500])
    for p in points:
        assert p["tpr"] == pytest.approx(tpr[fpr <= p["fpr"] + 1e-12].max())
    assert points[-1]["fpr"] == 1.0 and points[-1]["tpr"] == 1.0
    assert all(np.isfinite(p["threshold"]) for p in points)


# --------------------------------------------------------------------------- bootstrap


def test_weighted_auc_matches_sklearn_sample_weight(rng):
    genuine, impostor = _tied_scores(rng)
    gw = rng.integers(0, 4, (6, genuine.size))
    iw = rng.integers(0, 4, (6, impostor.size))
    labels, scores = _sk(genuine, impostor)
    expected = [roc_auc_score(labels, scores, sample_weight=np.r_[gw[r], iw[r]]) for r in range(6)]
    np.testing.assert_allclose(metrics.weighted_auc(genuine, impostor, gw, iw), expected, rtol=1e-12)


def test_weighted_auc_nan_when_a_class_has_no_weight():
    result = metrics.weighted_auc([0.9, 0.8], [0.1], np.array([[1, 1], [0, 0]]), np.array([[1], [1]]))
    assert result[0] == 1.0 and math.isnan(result[1])


class _FixedDraws:
    """A stand-in generator whose every replicate draws identity k exactly counts[k] times."""

    def __init__(self, counts):
        self.counts = np.asarray(counts)

    def integers(self, low, high, size):
        assert (low, high) == (0, len(self.counts)) and size[1] == self.counts.sum() == len(self.counts)
        return np.tile(np.repeat(np.arange(len(self.counts)), self.counts), (size[0], 1))


def test_bootstrap_weights_genuine_by_draws_and_impostors_by_product_of_draws():
    genuine = np.array([0.9, 0.4, 0.7])
    genuine_ids = np.array([[10, 10], [20, 20], [30, 30]])
    impostor = np.array([0.5, 0.8, 0.1])
    impostor_ids = np.array([[10, 20], [20, 30], [10, 30]])
    counts = np.array([2, 0, 1])  # identity 10 drawn twice, 20 never, 30 once
    interval = metrics.bootstrap_auc(genuine, impostor, genuine_ids, impostor_ids, 3, _FixedDraws(counts), level=0.95)
    weight_of = dict(zip([10, 20, 30], counts, strict=True))
    gw = [weight_of[a] for a, _ in genuine_ids]  # [2, 0, 1]
    iw = [weight_of[a] * weight_of[b] for a, b in impostor_ids]  # [0, 0, 2]
    expected = roc_auc_score(*_sk(genuine, impostor), sample_weight=np.r_[gw, iw])
    assert interval.low == pytest.approx(expected) and interval.high == pytest.approx(expected)
    assert interval.n_identities == 3 and interval.n_degenerate == 0


def _materialise(counts, genuine, genuine_ids, impostor, impostor_ids):
    """The resampled pair sets, built pair by pair: every drawn copy of an identity is a
    new person; a genuine pair exists once per copy of its identity, an impostor pair
    once per (copy of one side, copy of the other)."""
    copies = {identity: [f"{identity}#{c}" for c in range(n)] for identity, n in counts.items()}
    g = [s for s, i in zip(genuine, genuine_ids, strict=True) for _ in copies[i]]
    imp = [s for s, (i, j) in zip(impostor, impostor_ids, strict=True) for _a in copies[i] for _b in copies[j]]
    return np.array(g), np.array(imp)


def test_bootstrap_replicate_equals_auc_of_explicitly_resampled_pairs(rng):
    n_ids = 6
    genuine_ids = rng.integers(0, n_ids, 25)
    impostor_ids = np.array([rng.choice(n_ids, 2, replace=False) for _ in range(40)])
    genuine = np.round(rng.normal(0.6, 0.2, genuine_ids.size), 1)  # rounded: ties included
    impostor = np.round(rng.normal(0.2, 0.2, len(impostor_ids)), 1)
    uniques = np.unique(np.r_[genuine_ids, impostor_ids.ravel()])
    for draw in range(5):
        counts = rng.multinomial(uniques.size, np.full(uniques.size, 1 / uniques.size))
        g, imp = _materialise(dict(zip(uniques, counts, strict=True)), genuine, genuine_ids, impostor, impostor_ids)
        if g.size == 0 or imp.size == 0:
            continue
        interval = metrics.bootstrap_auc(
            genuine, impostor, genuine_ids, impostor_ids, 1, _FixedDraws(counts), level=0.95
        )
        assert interval.low == pytest.approx(metrics.roc_auc(g, imp), abs=1e-12), draw


def test_bootstrap_rejects_genuine_pairs_of_two_identities():
    with pytest.raises(metrics.MetricError, match="genuine pair has two different identities"):
        metrics.bootstrap_auc(
            [0.9], [0.1], np.array([[1, 2]]), np.array([[1, 2]]), 2, np.random.default_rng(0), level=0.95
        )


def _clustered_scores(rng, n_identities, pairs_per_identity, separation):
    """Scores with a per-identity offset, so pairs of one identity are correlated."""
    ids = np.repeat(np.arange(n_identities), pairs_per_identity)
    offset = rng.normal(0, 0.5, n_identities)[ids]
    genuine = separation + offset + rng.normal(0, 0.3, ids.size)
    partner = (ids + 1 + rng.integers(0, n_identities - 1, ids.size)) % n_identities
    impostor = offset + rng.normal(0, 0.3, ids.size)
    return genuine, impostor, ids, np.stack([ids, partner], axis=1)


def test_bootstrap_interval_covers_auc_and_shrinks_with_identities(rng):
    widths = []
    for n_identities in (20, 400):
        genuine, impostor, g_ids, i_ids = _clustered_scores(rng, n_identities, 10, 0.8)
        auc = metrics.roc_auc(genuine, impostor)
        interval = metrics.bootstrap_auc(genuine, impostor, g_ids, i_ids, 200, np.random.default_rng(1), level=0.95)
        assert interval.low < auc < interval.high
        widths.append(interval.high - interval.low)
    assert widths[1] < widths[0] / 2


def test_bootstrap_same_seed_same_interval(rng):
    genuine, impostor, g_ids, i_ids = _clustered_scores(rng, 30, 5, 0.5)
    a = metrics.bootstrap_auc(genuine, impostor, g_ids, i_ids, 50, np.random.default_rng(7), level=0.95)
    b = metrics.bootstrap_auc(genuine, impostor, g_ids, i_ids, 50, np.random.default_rng(7), level=0.95)
    c = metrics.bootstrap_auc(genuine, impostor, g_ids, i_ids, 50, np.random.default_rng(8), level=0.95)
    assert a == b and a != c


def test_bootstrap_rejects_misshaped_ids():
    with pytest.raises(metrics.MetricError, match=r"genuine_ids: expected \(2,\) or \(2, 2\)"):
        metrics.bootstrap_auc(
            [0.9, 0.8], [0.1], np.array([1, 2, 3]), np.array([[1, 2]]), 5, np.random.default_rng(0), level=0.95
        )


# --------------------------------------------------------------------------- identification


def test_identification_hand_case():
    # identity 0 at 0° and 10°, identity 1 at 30° and 100°, identity 2 alone at 95°
    emb = _unit([0, 10, 30, 100, 95])
    ids = np.array([0, 0, 1, 1, 2])
    # probe 30°: identity 0 (cos 20°) and 2 (cos 65°) beat its own (cos 70°) → rank 3
    # probe 100°: identity 2 (cos 5°) beats its own (cos 70°) → rank 2; others rank 1
    for score in ("max", "mean"):
        result = metrics.identification(emb, ids, score=score, ks=(1, 2, 3), chunk_size=2, max_rank=20)
        assert result.top_k == {1: 0.5, 2: 0.75, 3: 1.0}
        assert result.cmc == [0.5, 0.75, 1.0]  # capped at the gallery size
        assert (result.gallery_size, result.n_probes, result.n_excluded) == (3, 4, 1)


def _brute_force_ranks(emb, ids, score):
    sims = emb @ emb.T
    ranks = []
    for p in range(len(ids)):
        others = np.arange(len(ids)) != p
        if not np.any(others & (ids == ids[p])):
            continue
        per_identity = {}
        for identity in np.unique(ids):
            members = others & (ids == identity)
            per_identity[identity] = sims[p, members].max() if score == "max" else sims[p, members].mean()
        true = per_identity[ids[p]]
        ranks.append(sum(v >= true for v in per_identity.values()))
    return np.array(ranks)


@pytest.mark.parametrize("score", ["max", "mean"])
def test_identification_matches_brute_force(rng, score):
    ids = rng.integers(0, 25, 120)
    centres = rng.normal(size=(25, 16))
    emb = centres[ids] + 1.5 * rng.normal(size=(120, 16))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    ranks = _brute_force_ranks(emb, ids, score)
    result = metrics.identification(emb, ids, score=score, ks=(1, 5), max_rank=10, chunk_size=7)
    assert result.top_k[1] == pytest.approx(np.mean(ranks <= 1), abs=1e-6)
    assert result.top_k[5] == pytest.approx(np.mean(ranks <= 5), abs=1e-6)
    np.testing.assert_allclose(result.cmc, [np.mean(ranks <= r) for r in range(1, 11)], atol=1e-6)
    assert result.n_probes == len(ranks)
    assert 0.1 < result.top_k[1] < 0.99  # the planted structure is neither trivial nor absent


def test_identification_needs_a_repeated_identity():
    with pytest.raises(metrics.MetricError, match="no identity has two images"):
        metrics.identification(_unit([0, 90]), np.array([1, 2]), score="max", ks=(1, 2, 3, 5), max_rank=20)
