"""The closed-set identification protocol drawn from the test partition."""

from __future__ import annotations

import numpy as np
import pandas as pd

from faceid.config.pairs import IdentificationParams


def make_identification(
    table: pd.DataFrame, params: IdentificationParams, rng: np.random.Generator
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The identification protocol from `table` (usable test images).

    Draws n_identities identities among those with >= min_images_per_identity images, gives
    each min_images_per_identity random images, then fills up to n_images with images of
    the drawn identities drawn at random. Takes what exists when fewer are available.
    Returns (image, identity sorted by image) and its counts.
    """
    sizes = table.groupby("identity").size()
    eligible = sizes.index[sizes >= params.min_images_per_identity].to_numpy()
    n_identities = min(params.n_identities, len(eligible))
    chosen = np.sort(rng.choice(eligible, size=n_identities, replace=False))
    pool = table.loc[table["identity"].isin(chosen), ["image", "identity"]]
    pool = pool.assign(key=rng.random(len(pool))).sort_values(["identity", "key"], kind="stable")
    first = pool.groupby("identity").cumcount().to_numpy() < params.min_images_per_identity
    rest = np.flatnonzero(~first)
    n_rest = max(0, params.n_images - int(first.sum()))
    if len(rest) > n_rest:
        rest = rng.choice(rest, size=n_rest, replace=False)
    keep = first.copy()
    keep[rest] = True
    protocol = pool[keep][["image", "identity"]].sort_values("image", ignore_index=True)
    stats = {
        "eligible_identities": len(eligible),
        "identities": n_identities,
        "images": len(protocol),
        "requested_identities": params.n_identities,
        "requested_images": params.n_images,
        "shortfall_identities": params.n_identities - n_identities,
        "shortfall_images": params.n_images - len(protocol),
    }
    return protocol, stats
