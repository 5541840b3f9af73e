"""The evaluation's fast paths give the same bits as the straightforward code they replace
(each reference written out here): the similarity table, the bootstrap weights drawn in
score order, the weighted thresholds by binary search, and cells cut from numpy columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from faceid.config.evaluate import BootstrapParams, EvaluateParams
from faceid.evaluate.attribute_map import PairColumns, pair_sample
from faceid.evaluate.evaluation import evaluate_cell, mark_acquired, score_pairs
from faceid.evaluate.metrics import pair_similarity
from faceid.evaluate.metrics.bootstrap import RankedScores, _draws, _Identities, _pair_weights
from faceid.evaluate.metrics.inference import _weighted_thresholds
from tests._params import section


def _bits(a, b) -> bool:
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _embeddings(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    e = rng.standard_normal((n, d)).astype(np.float32)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


@pytest.mark.parametrize("d", [3, 100, 512, 513])
def test_similarity_table_is_the_pairwise_einsum_bit_for_bit(d: int) -> None:
    rng = np.random.default_rng(d)
    e = _embeddings(rng, 40, d)
    a, b = np.triu_indices(40, 1)  # every pair: the table path
    dense = pair_similarity(e, a, b)
    sparse = pair_similarity(e, a[:5], b[:5])  # a few pairs of many images: the gather path
    reference = np.array([np.einsum("j,j->", e[i], e[j], dtype=np.float64) for i, j in zip(a, b, strict=True)])
    gathered = np.einsum("ij,ij->i", e[a], e[b], dtype=np.float64)
    assert _bits(dense, gathered) and _bits(sparse, gathered[:5])
    np.testing.assert_allclose(dense, reference, rtol=0, atol=1e-12)


def test_similarity_table_keeps_the_order_of_repeated_and_reversed_pairs() -> None:
    rng = np.random.default_rng(1)
    e = _embeddings(rng, 6, 512)
    a, b = rng.integers(0, 6, 50), rng.integers(0, 6, 50)
    assert _bits(pair_similarity(e, a, b), np.einsum("ij,ij->i", e[a], e[b], dtype=np.float64))


def test_draws_auc_equals_auc_of_gathered_weights() -> None:
    rng = np.random.default_rng(2)
    genuine, impostor = np.round(rng.normal(0.6, 0.2, 300), 2), np.round(rng.normal(0.3, 0.2, 2000), 2)  # ties
    ids = _Identities([rng.integers(0, 30, (300, 1)), rng.integers(0, 30, (2000, 2))])
    ranked = RankedScores(genuine, impostor)
    draws = _draws(rng, ids.n, 16)
    slow = ranked.auc(_pair_weights(draws, ids.codes[0]), _pair_weights(draws, ids.codes[1]))
    assert _bits(ranked.draws_auc(draws, ranked.rank_codes(*ids.codes)), slow)
    wrong = ranked.rank_codes(ids.codes[0], ids.codes[1][::-1])  # a permutation that is not the ranking
    assert not _bits(ranked.draws_auc(draws, wrong), slow)


@pytest.mark.parametrize("fmr", [1e-3, 0.01, 0.3, 1.0])
def test_weighted_thresholds_equal_counting_every_entry(fmr: float) -> None:
    rng = np.random.default_rng(3)
    impostor_desc = np.sort(rng.normal(size=500))[::-1]
    weights = rng.integers(0, 4, (20, 500)).astype(np.float64) * rng.integers(0, 3, (20, 500))
    cumulative = np.cumsum(weights, axis=1)
    allowed = fmr * cumulative[:, -1:] + 1e-9
    reference = impostor_desc[np.minimum(np.count_nonzero(cumulative <= allowed, axis=1), 499)]
    assert _bits(_weighted_thresholds(impostor_desc, cumulative, fmr), reference)
    grid = _weighted_thresholds(impostor_desc, cumulative, np.array([fmr, fmr / 2]))
    assert _bits(grid[:, 0], reference)


def _scored(rng: np.random.Generator, n: int) -> tuple[pd.DataFrame, pd.Series]:
    images = [f"{i:03d}.jpg" for i in range(30)]
    embeddings = _embeddings(rng, 30, 16)
    a, b = rng.integers(0, 30, n), rng.integers(0, 31, n)  # image 30 has no embedding
    names = np.array([*images, "missing.jpg"])
    genuine = rng.random(n) < 0.3
    frame = pd.DataFrame({
        "task": pd.array(rng.choice(["Eyeglasses", "Blurry"], n), dtype="str"), "split": "test",
        "kind": pd.array(np.where(genuine, "genuine", "impostor"), dtype="str"),
        "condition": pd.array(rng.choice(["A/A", "A/notA", "notA/notA"], n), dtype="str"),
        "image_a": pd.array(names[a], dtype="str"), "image_b": pd.array(names[b], dtype="str"),
        "identity_a": (a % 7).astype(np.int32), "identity_b": np.where(genuine, a % 7, b % 7).astype(np.int32),
    })  # fmt: skip
    status = pd.Series(rng.choice(["detected", "fallback"], 31, p=[0.9, 0.1]), index=names)
    return mark_acquired(score_pairs(embeddings, images, frame), status), status


def test_pair_sample_of_columns_equals_the_filtered_frame() -> None:
    scored, _ = _scored(np.random.default_rng(4), 600)
    columns = PairColumns.of(scored)
    for (task, rows), (label, cell) in zip(columns.groups("task"), scored.groupby("task", sort=True), strict=True):
        assert task == label
        fast, slow = pair_sample(columns.take(rows)), pair_sample(cell)
        kept = cell[cell["acquired"]]
        is_genuine = (kept["kind"] == "genuine").to_numpy()
        assert _bits(fast.genuine, kept["similarity"].to_numpy()[is_genuine])
        assert _bits(fast.impostor_ids, kept[["identity_a", "identity_b"]].to_numpy()[~is_genuine])
        for x, y in zip((fast.genuine, fast.impostor, fast.genuine_ids), (slow.genuine, slow.impostor,
                        slow.genuine_ids), strict=True):  # fmt: skip
            assert _bits(x, y)


def test_cell_counts_and_detection_from_columns_match_pandas() -> None:
    rng = np.random.default_rng(5)
    scored, status = _scored(rng, 400)
    params = section(EvaluateParams, min_genuine_pairs=1, min_identities=1, bootstrap=BootstrapParams(20, 20, 0, 0.95))
    result = evaluate_cell(scored, status, 0.5, params, np.random.default_rng(0), None)
    dropped = scored[~scored["has_embedding"]]["kind"].value_counts()
    assert result["n_pairs_without_embedding"] == {k: int(dropped.get(k, 0)) for k in ("genuine", "impostor")}
    images = pd.unique(np.r_[scored["image_a"].to_numpy(), scored["image_b"].to_numpy()])
    counts = status.reindex(images).value_counts()
    assert result["detection"]["status_counts"] == {str(k): int(v) for k, v in counts.sort_index().items()}
    assert result["detection"]["n_images"] == len(images)
