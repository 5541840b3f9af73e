"""Does the demo name people? Enrol all but one photo of each person, identify the rest.

The held-back protocol of the demo: from a gallery of a dataset partition's crops
(`enroll_crops`), one photo of every identity with at least two is held back (seeded),
the others form the gallery, and each held-back photo is identified as the demo does it
(`rank_identities`, named when its best similarity exceeds the threshold). Reported:
rank-1 (the right person ranked first, whatever the threshold), the unknown rate (best
similarity at or below the threshold) and the named rate (right person first *and*
above the threshold: what a user sees as a correct name).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from faceid.demo.gallery import Gallery, GalleryError, build_gallery
from faceid.demo.identify import rank_identities

__all__ = ["heldout_identification"]


def heldout_identification(gallery: Gallery, threshold: float, *, score: str, seed: int) -> dict[str, Any]:
    """Rank-1, top-5, unknown and named rates of one held-back photo per identity, scored
    as demo.score says; `seed` picks the held-back photos."""
    rng = np.random.default_rng(seed)
    held = []
    for label in range(len(gallery.identities)):
        rows = np.flatnonzero(gallery.labels == label)
        if len(rows) >= 2:
            held.append(int(rng.choice(rows)))
    if not held:
        raise GalleryError("no identity has two enrolled photos: nothing to hold back")
    held = np.asarray(held)
    keep = np.ones(len(gallery.names), dtype=bool)
    keep[held] = False
    enrolled = build_gallery(gallery.embeddings[keep], gallery.names[keep], gallery.sources[keep], gallery.meta)
    order, similarity = rank_identities(gallery.embeddings[held], enrolled, score, top_k=5)
    truth = gallery.names[held]
    ranked = enrolled.identities[order]  # (H, k) names, best first
    first = ranked[:, 0] == truth
    known = similarity[:, 0] > threshold  # the demo's rule: a match needs similarity > threshold
    return {
        "identities": len(enrolled.identities),
        "enrolled": int(keep.sum()),
        "held_back": len(held),
        "threshold": float(threshold),
        "rank1": float(first.mean()),
        "top5": float((ranked == truth[:, None]).any(axis=1).mean()),
        "unknown_rate": float((~known).mean()),
        "named_rate": float((first & known).mean()),
    }
