"""Old (naive) against new implementations of the evaluation's hot spots, on the same
synthetic data of the default pipeline's size (259 images, 512-d, all their pairs; 40
attributes x 3 conditions), in one run: prints new/old time ratios and checks the results
are the same bits. Ratios, not absolute times (the machine is shared).

    python benchmarks/bench_evaluate.py
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from faceid.evaluate.attribute_map import PairColumns, pair_sample
from faceid.evaluate.metrics import pair_similarity
from faceid.evaluate.metrics.bootstrap import RankedScores, _draws, _Identities, _pair_weights
from faceid.evaluate.metrics.inference import _weighted_thresholds


def naive_pair_similarity(embeddings: np.ndarray, index_a: np.ndarray, index_b: np.ndarray) -> np.ndarray:
    """The gather-every-pair version (before the similarity table)."""
    out = np.empty(len(index_a))
    for start in range(0, len(index_a), 16384):
        a, b = embeddings[index_a[start : start + 16384]], embeddings[index_b[start : start + 16384]]
        out[start : start + 16384] = np.einsum("ij,ij->i", a, b, dtype=np.float64)
    return out


def naive_weighted_thresholds(impostor_desc: np.ndarray, cumulative: np.ndarray, fmr: float) -> np.ndarray:
    allowed = fmr * cumulative[:, -1:] + 1e-9
    k = np.count_nonzero(cumulative <= allowed, axis=1)
    return impostor_desc[np.minimum(k, impostor_desc.size - 1)]


def naive_samples(frame: pd.DataFrame) -> list:
    """Per (task, condition) cell, pair_sample of a pandas-filtered frame (before PairColumns)."""
    out = []
    for _, pairs in frame.groupby("task", sort=True):
        for _, cell in pairs.groupby("condition", sort=True):
            scored = cell[cell["acquired"]]
            genuine = (scored["kind"] == "genuine").to_numpy()
            sims, ids = scored["similarity"].to_numpy(), scored[["identity_a", "identity_b"]].to_numpy()
            out.append((sims[genuine], sims[~genuine], ids[genuine][:, 0], ids[~genuine]))
    return out


def new_samples(frame: pd.DataFrame) -> list:
    columns, out = PairColumns.of(frame), []
    for _, rows in columns.groups("task"):
        pairs = columns.take(rows)
        for _, cell in pairs.groups("condition"):
            s = pair_sample(pairs.take(cell))
            out.append((s.genuine, s.impostor, s.genuine_ids, s.impostor_ids))
    return out


def _time(function, repeat: int = 5) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def _compare(name: str, old, new, same) -> None:
    old_s, old_r = _time(old)
    new_s, new_r = _time(new)
    print(f"{name:<42} new/old time {new_s / old_s:5.2f}  (old/new {old_s / new_s:4.1f}x)  same: {same(old_r, new_r)}")


def _bits(a, b) -> bool:
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _frame(rng: np.random.Generator, n: int, people: int) -> pd.DataFrame:
    identity_a = rng.integers(0, people, n).astype(np.int32)
    genuine = rng.random(n) < 0.3
    identity_b = np.where(genuine, identity_a, rng.integers(0, people, n)).astype(np.int32)
    return pd.DataFrame({
        "task": pd.array(rng.choice([f"attr{i:02d}" for i in range(40)], n), dtype="str"),
        "condition": pd.array(rng.choice(["A/A", "A/notA", "notA/notA"], n), dtype="str"),
        "kind": pd.array(np.where(genuine, "genuine", "impostor"), dtype="str"),
        "identity_a": identity_a, "identity_b": identity_b,
        "similarity": rng.normal(0.3, 0.2, n) + 0.4 * genuine, "acquired": rng.random(n) < 0.97,
    })  # fmt: skip


def main() -> None:
    rng = np.random.default_rng(0)
    embeddings = rng.standard_normal((259, 512)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    a, b = np.triu_indices(259, 1)  # every pair of the test images, as the val pairs are
    _compare("pair_similarity, 33k pairs of 259 images", lambda: naive_pair_similarity(embeddings, a, b),
             lambda: pair_similarity(embeddings, a, b), _bits)  # fmt: skip

    genuine, impostor = rng.normal(0.6, 0.2, 3000), rng.normal(0.2, 0.2, 30000)
    ids = _Identities([rng.integers(0, 250, (3000, 1)), rng.integers(0, 250, (30000, 2))])
    draws = _draws(rng, ids.n, 32)
    order = np.argsort(-impostor, kind="stable")
    cumulative = np.cumsum(_pair_weights(draws, ids.codes[1][order]), axis=1)
    _compare("weighted thresholds, 32 x 30k impostors", lambda: naive_weighted_thresholds(impostor[order], cumulative,
             1e-3), lambda: _weighted_thresholds(impostor[order], cumulative, 1e-3), _bits)  # fmt: skip

    ranked = RankedScores(genuine, impostor)
    codes = ranked.rank_codes(*ids.codes)
    _compare("bootstrap AUC, 32 replicates, 33k pairs",
             lambda: ranked.auc(_pair_weights(draws, ids.codes[0]), _pair_weights(draws, ids.codes[1])),
             lambda: ranked.draws_auc(draws, codes), _bits)  # fmt: skip

    frame = _frame(rng, 144_000, 250)
    _compare("cells of 144k attribute pairs (120 cells)", lambda: naive_samples(frame), lambda: new_samples(frame),
             lambda x, y: all(_bits(p, q) for s, t in zip(x, y, strict=True) for p, q in zip(s, t, strict=True)))


if __name__ == "__main__":
    main()
