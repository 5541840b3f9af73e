"""Closed-set identification: leave-one-out rank of each probe's identity, top-k and CMC."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from faceid.evaluate.metrics.verification import MetricError


@dataclass(frozen=True)
class Identification:
    top_k: dict[int, float]  # k -> share of probes whose identity ranks <= k
    cmc: list[float]  # cmc[r - 1] = share of probes ranked <= r, r = 1..len(cmc)
    gallery_size: int  # identities every probe is ranked against
    n_probes: int  # probes evaluated
    n_excluded: int  # probes whose identity has no other image
    # per probe: its rank and identity (for intervals over people: metrics.bootstrap_top_k)
    ranks: np.ndarray = field(repr=False, compare=False)
    probe_identities: np.ndarray = field(repr=False, compare=False)


def identification(
    embeddings: np.ndarray,
    identities: np.ndarray,
    score: Literal["max", "mean"],
    ks: Sequence[int],
    max_rank: int,
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
    return Identification(top_k, cmc, int(uniques.size), int(probes.size), int(embeddings.shape[0] - probes.size),
                          ranks, uniques[codes[probes]])  # fmt: skip
