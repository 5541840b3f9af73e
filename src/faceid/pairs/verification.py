"""Verification pairs: uniform sampling of genuine/impostor pairs per task x split x condition.

Also the per-stream random generators every part of the pairs stage draws from (seeded
by purpose, task, split, kind and condition codes; see `faceid.pairs`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from faceid.config.pairs import PairsParams
from faceid.config.tasks import ORIG_TASK
from faceid.data.celeba import ATTRIBUTE_NAMES

EVAL_SPLITS: dict[str, int] = {"val": 1, "test": 2}
CONDITIONS = ("A/A", "A/notA", "notA/notA")
ALL_CONDITION = "all"
KINDS = ("genuine", "impostor")

# codes for the per-stream seeds (see module docstring); never renumber
_PURPOSE = {"pairs": 1, "train": 2, "identification": 3, "attribute_pairs": 4}
_TASK_CODES = {task: i for i, task in enumerate((ORIG_TASK, *ATTRIBUTE_NAMES))}
_KIND_CODES = {kind: i for i, kind in enumerate(KINDS)}
_CONDITION_CODES = {c: i for i, c in enumerate((ALL_CONDITION, *CONDITIONS))}


def _partner_ranges(
    left_ids: np.ndarray, right_ids: np.ndarray, kind: str, same_pool: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per left element, its valid partners as ranges [lo1, hi1) and [lo2, hi2) of right positions.

    Both pools must be sorted by identity; `same_pool` means left and right are one pool.
    """
    n_right = len(right_ids)
    start = np.searchsorted(right_ids, left_ids, side="left")  # its identity's block
    end = np.searchsorted(right_ids, left_ids, side="right")
    empty = np.zeros_like(start)
    if kind == "genuine" and same_pool:
        return np.arange(1, len(left_ids) + 1), end, empty, empty
    if kind == "genuine":
        return start, end, empty, empty
    if same_pool:
        return end, np.full_like(end, n_right), empty, empty
    return empty, start, end, np.full_like(end, n_right)


def sample_pairs(
    left_ids: np.ndarray,
    right_ids: np.ndarray | None,
    kind: str,
    n: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Draw up to `n` distinct genuine or impostor pairs between two pools of images.

    `left_ids`, `right_ids`: identities of the pools' images, each sorted; `right_ids=None`
    pairs the left pool with itself (unordered pairs, left position < right position).
    Returns (left positions, right positions, available): all valid pairs when
    `available <= n`, else `n` drawn uniformly without replacement, in index order.
    """
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    same_pool = right_ids is None
    right = left_ids if same_pool else right_ids
    assert np.all(np.diff(left_ids) >= 0) and np.all(np.diff(right) >= 0), "pools must be sorted"
    lo1, hi1, lo2, hi2 = _partner_ranges(left_ids, right, kind, same_pool)
    len1 = hi1 - lo1
    offsets = np.concatenate(([0], np.cumsum(len1 + (hi2 - lo2), dtype=np.int64)))
    available = int(offsets[-1])
    if available <= n:
        index = np.arange(available, dtype=np.int64)
    else:
        index = np.sort(rng.choice(available, size=n, replace=False))
    left = np.searchsorted(offsets, index, side="right") - 1
    rank = index - offsets[left]
    right_pos = np.where(rank < len1[left], lo1[left] + rank, lo2[left] + rank - len1[left])
    return left, right_pos, available


def stream_rng(
    seed: int, purpose: str, task: str, split: str = "", kind: str = "", condition: str = ""
) -> np.random.Generator:
    # equal-length keys: SeedSequence pads entropy, so [s, 1] and [s, 1, 0] could coincide
    key = [
        seed,
        _PURPOSE[purpose],
        _TASK_CODES[task],
        EVAL_SPLITS.get(split, 0),
        _KIND_CODES.get(kind, 0),
        _CONDITION_CODES.get(condition, 0),
    ]
    return np.random.default_rng(key)


def _condition_pools(table: pd.DataFrame, task: str) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Condition → (left pool, right pool or None for self-pairing) as positions in `table`."""
    everything = np.arange(len(table))
    if task == ORIG_TASK:
        return {ALL_CONDITION: (everything, None)}
    has = table[task].to_numpy()
    a, not_a = everything[has], everything[~has]
    return {"A/A": (a, None), "A/notA": (a, not_a), "notA/notA": (not_a, None)}


def verification_cells(
    table: pd.DataFrame, task: str, split: str, params: PairsParams, purpose: str = "pairs"
) -> tuple[list[pd.DataFrame], dict[str, Any], list[str]]:
    """All cells of one task x split. `table`: usable images of the split, sorted by identity.
    `purpose` keys the random streams, so an evaluation attribute's pairs are drawn apart
    from a training task's of the same name."""
    images = table["image"].to_numpy()
    identities = table["identity"].to_numpy()
    fallback = (table["status"] == "fallback").to_numpy()
    counts = params.verification
    requested = {
        "genuine": counts.orig_genuine if task == ORIG_TASK else counts.genuine_per_condition,
        "impostor": counts.orig_impostor if task == ORIG_TASK else counts.impostor_per_condition,
    }
    frames, metrics, shortfalls = [], {kind: {} for kind in KINDS}, []
    for condition, (left_pool, right_pool) in _condition_pools(table, task).items():
        for kind in KINDS:
            rng = stream_rng(params.seed, purpose, task, split, kind, condition)
            left, right, available = sample_pairs(
                identities[left_pool],
                None if right_pool is None else identities[right_pool],
                kind,
                requested[kind],
                rng,
            )
            a = left_pool[left]
            b = (left_pool if right_pool is None else right_pool)[right]
            n_fallback = fallback[a].astype(np.int8) + fallback[b]
            frames.append(
                pd.DataFrame(
                    {
                        "task": task,
                        "split": split,
                        "kind": kind,
                        "condition": condition,
                        "image_a": images[a],
                        "image_b": images[b],
                        "identity_a": identities[a],
                        "identity_b": identities[b],
                        "fallback": n_fallback.astype(np.int8),
                    }
                )
            )
            shortfall = max(0, requested[kind] - available)
            metrics[kind][condition] = {
                "pairs": len(a),
                "requested": requested[kind],
                "available": available,
                "shortfall": shortfall,
                "identities": len(np.union1d(identities[a], identities[b])),
                "pairs_with_fallback": int((n_fallback > 0).sum()),
            }
            if shortfall:
                shortfalls.append(
                    f"{'' if purpose == 'pairs' else 'attribute '}{task}/{split}/{kind}/{condition}: "
                    f"{available} of {requested[kind]} pairs (all that exist)"
                )
    return frames, metrics, shortfalls
