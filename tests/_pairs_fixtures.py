"""Shared helpers of the pairs tests (tests/test_pairs_*.py): a small crop manifest and
small pairs params. The fixtures `pairs_manifest` (make_manifest()) and `pairs_result`
(build_pairs of it for TASKS) are in tests/conftest.py."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from faceid.config.pairs import (
    IdentificationParams,
    PairsParams,
    VerificationParams,
)
from faceid.data.celeba import ATTRIBUTE_NAMES
from tests._params import section

TASKS = ("orig", "Eyeglasses", "Wearing_Hat")
SPLIT_CODES = {"val": 1, "test": 2}


def make_manifest(seed: int = 0, n_identities: int = 60) -> pd.DataFrame:
    """Identities of 1-14 images, partitions by identity, identity-linked attributes, all statuses."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 15, n_identities)
    identity = np.repeat(np.arange(100, 100 + n_identities), sizes).astype(np.int32)
    n = len(identity)
    # shuffle image names so identity order and image order differ
    frame = pd.DataFrame({"image": [f"{i:06d}.jpg" for i in rng.permutation(n) + 1], "identity": identity})
    share = np.searchsorted(np.arange(100, 100 + n_identities), identity) / n_identities
    frame["partition"] = np.select([share < 0.5, share < 0.75], [0, 1], 2).astype(np.int8)
    propensity = rng.random((n_identities, len(ATTRIBUTE_NAMES)))[identity - 100]
    for j, name in enumerate(ATTRIBUTE_NAMES):
        frame[name] = rng.random(n) < propensity[:, j] * 0.8
    frame["status"] = rng.choice(["detected", "fallback", "missing", "unreadable"], n, p=[0.75, 0.15, 0.06, 0.04])
    return frame.sort_values("image", ignore_index=True)


def small_params(**changes) -> PairsParams:
    base = section(
        PairsParams,
        seed=7,
        verification=section(
            VerificationParams, genuine_per_condition=30, impostor_per_condition=40, orig_genuine=50, orig_impostor=60
        ),
        identification=section(IdentificationParams, n_identities=8, n_images=30),
    )
    return dataclasses.replace(base, **changes)
