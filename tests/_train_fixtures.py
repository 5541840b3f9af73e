"""Tiny crop shards, manifest, training subsets and pairs in the project's data contracts."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from faceid.data.celeba import ATTRIBUTE_NAMES
from faceid.pairs import write_train_folders


def write_tiny_train_data(
    root: Path,
    *,
    n_identities: int = 4,
    per_identity: int = 6,
    size: int = 64,
    shard_size: int = 10,
    tasks: tuple[str, ...] = ("orig", "eyeglasses"),
    seed: int = 0,
) -> tuple[Path, Path]:
    """Write root/crops (shards + manifest) and root/pairs; return (crops_dir, pairs_dir).

    Each identity is a smooth random pattern plus per-image noise, so embeddings can tell
    identities apart. The last image has status `missing` (no crop), as the crop stage
    writes for failed detections.
    """
    rng = np.random.default_rng(seed)
    crops_dir, pairs_dir = root / "crops", root / "pairs"
    crops_dir.mkdir(parents=True)
    pairs_dir.mkdir(parents=True)
    n = n_identities * per_identity
    identities = np.repeat(np.arange(1, n_identities + 1), per_identity)
    patterns = rng.uniform(0, 255, (n_identities, 8, 8, 3))
    base = patterns.repeat(size // 8, axis=1).repeat(size // 8, axis=2)
    crops = base[identities - 1] + rng.normal(0, 20, (n, size, size, 3))
    crops = crops.clip(0, 255).astype(np.uint8)
    images = [f"{i + 1:06d}.jpg" for i in range(n)]
    rows = []
    for index in range(n):
        shard, row = divmod(index, shard_size)
        rows.append(
            {
                "image": images[index],
                "identity": int(identities[index]),
                "partition": 0,
                "shard": shard,
                "row": row,
                "status": "detected",
            }
        )
    rows[-1].update(shard=-1, row=-1, status="missing")
    for shard in range(int(np.ceil((n - 1) / shard_size))):
        part = crops[shard * shard_size : min((shard + 1) * shard_size, n - 1)]
        out = np.lib.format.open_memmap(crops_dir / f"shard-{shard:03d}.npy", "w+", np.uint8, part.shape)
        out[:] = part
        out.flush()
        del out
    manifest = pd.DataFrame(rows)
    for name in ATTRIBUTE_NAMES:
        manifest[name] = rng.random(n) < 0.3
    manifest["shard"] = manifest["shard"].astype(np.int16)
    manifest["row"] = manifest["row"].astype(np.int32)
    manifest.to_parquet(crops_dir / "manifest.parquet")

    subsets = []
    for task in tasks:
        labels = {identity: k for k, identity in enumerate(sorted(set(identities)))}
        subsets += [
            {"task": task, "image": im, "identity": int(i), "label": labels[i]}
            for im, i in zip(images, identities, strict=True)
        ]

    pairs = []
    for task, split in itertools.product(tasks, ("val", "test")):
        for a, b in itertools.combinations(range(n), 2):
            kind = "genuine" if identities[a] == identities[b] else "impostor"
            pairs.append(
                {
                    "task": task,
                    "split": split,
                    "kind": kind,
                    "condition": "all",
                    "image_a": images[a],
                    "image_b": images[b],
                    "identity_a": int(identities[a]),
                    "identity_b": int(identities[b]),
                }
            )
    pd.DataFrame(pairs).to_parquet(pairs_dir / "pairs.parquet")
    write_train_folders(pairs_dir, pd.DataFrame(subsets), pd.DataFrame(pairs), list(tasks))  # the pairs stage's layout
    return crops_dir, pairs_dir
