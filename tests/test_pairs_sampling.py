"""sample_pairs: every valid pair when there are too few, distinct valid pairs otherwise,
every pair equally likely."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from faceid.pairs import sample_pairs


def brute_force(left_ids, right_ids, kind):
    """Every valid pair of positions, by enumeration."""
    same_pool = right_ids is None
    right = left_ids if same_pool else right_ids
    found = set()
    for i, j in itertools.product(range(len(left_ids)), range(len(right))):
        if same_pool and j <= i:
            continue
        if (left_ids[i] == right[j]) == (kind == "genuine"):
            found.add((i, j))
    return found


@pytest.mark.parametrize("kind", ["genuine", "impostor"])
@pytest.mark.parametrize("same_pool", [True, False])
def test_sample_pairs_takes_every_valid_pair_when_short(kind, same_pool):
    left = np.array([1, 1, 1, 2, 4, 4, 7])
    right = None if same_pool else np.array([1, 2, 2, 3, 4, 9, 9, 9])
    expected = brute_force(left, right, kind)
    a, b, available = sample_pairs(left, right, kind, 1000, np.random.default_rng(0))
    assert available == len(expected)
    assert set(zip(a.tolist(), b.tolist(), strict=True)) == expected
    assert len(a) == len(expected)  # no repeats


@pytest.mark.parametrize("kind", ["genuine", "impostor"])
@pytest.mark.parametrize("same_pool", [True, False])
def test_sample_pairs_draws_distinct_valid_pairs(kind, same_pool):
    rng = np.random.default_rng(3)
    left = np.sort(rng.integers(0, 12, 80))
    right = None if same_pool else np.sort(rng.integers(0, 12, 70))
    expected = brute_force(left, right, kind)
    a, b, available = sample_pairs(left, right, kind, 50, np.random.default_rng(1))
    drawn = list(zip(a.tolist(), b.tolist(), strict=True))
    assert available == len(expected) > 50
    assert len(drawn) == len(set(drawn)) == 50
    assert set(drawn) <= expected


def test_sample_pairs_is_roughly_uniform():
    # 3 identities of sizes 1, 2, 3 → 11 impostor pairs; 11,000 draws of one pair each
    left = np.array([0, 1, 1, 2, 2, 2])
    hits = pd.Series(
        [tuple(np.concatenate(sample_pairs(left, None, "impostor", 1, np.random.default_rng(s))[:2]))
         for s in range(4400)]
    ).value_counts()
    assert len(hits) == 11
    assert hits.min() > 300 and hits.max() < 500  # expected 400 each; sd ≈ 19
