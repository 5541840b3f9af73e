"""Training subsets: every training image (task orig) or the balanced A/notA subset of an attribute."""

from __future__ import annotations

import numpy as np
import pandas as pd

from faceid.config.pairs import TrainSubsetParams


def make_train_subset(
    table: pd.DataFrame, attribute: str | None, params: TrainSubsetParams, rng: np.random.Generator
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The training subset of one task from `table` (usable training images).

    `attribute=None` (task orig): every image. Otherwise the balanced subset: identities
    with >= min_attribute_images A images and >= min_other_images notA images; of each, all
    A images and at most max(floor(max_ratio * A images), min_other_images) notA images,
    drawn at random. Returns (image, identity, label sorted by image; label = rank of the
    identity among the subset's identities) and its counts.
    """
    if attribute is None:
        subset = table[["image", "identity"]]
        stats: dict[str, int] = {}
    else:
        has = table[attribute].to_numpy()
        per_identity = pd.DataFrame({"identity": table["identity"].to_numpy(), "a": has}).groupby("identity")["a"]
        n_a = per_identity.sum()
        n_other = per_identity.count() - n_a
        eligible = n_a.index[(n_a >= params.min_attribute_images) & (n_other >= params.min_other_images)]
        # +1e-9: 0.7 * 10 must give 7 even where the product rounds to 6.999…
        quota = np.maximum(np.floor(params.max_ratio * n_a + 1e-9), params.min_other_images).astype(np.int64)
        candidates = table.loc[table["identity"].isin(eligible), ["image", "identity", attribute]]
        others = candidates[~candidates[attribute]].assign(key=rng.random(int((~candidates[attribute]).sum())))
        others = others.sort_values(["identity", "key"], kind="stable")
        rank = others.groupby("identity").cumcount().to_numpy()
        kept_others = others[rank < quota.reindex(others["identity"]).to_numpy()]
        subset = pd.concat([candidates[candidates[attribute]], kept_others])[["image", "identity"]]
        stats = {
            "attribute_images": int(candidates[attribute].sum()),
            "other_images": len(kept_others),
            "identities_without_both": int(len(n_a) - len(eligible)),
        }
    subset = subset.sort_values("image", ignore_index=True)
    labels = np.searchsorted(np.unique(subset["identity"].to_numpy()), subset["identity"].to_numpy())
    subset = subset.assign(label=labels.astype(np.int32))
    stats = {"images": len(subset), "identities": int(labels.max() + 1) if len(subset) else 0, **stats}
    return subset, stats
