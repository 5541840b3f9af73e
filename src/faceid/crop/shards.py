"""The crop folder's layout (data/crops): one naming rule for the writer and the readers.

The crop stage writes the shards and the manifest (`faceid.crop.cache` says what they
hold); the pairs, train, features, evaluate and summarize stages and the demo read them
by these names.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["MANIFEST_FILE", "SHARD_GLOB", "shard_files", "shard_path"]

SHARD_GLOB = "shard-*.npy"
MANIFEST_FILE = "manifest.parquet"  # one row per image: where its crop is, and how it was made


def shard_path(crops_dir: str | Path, shard: int) -> Path:
    """data/crops/shard-000.npy …: uint8 (N, S, S, 3), memory-mapped by the readers."""
    return Path(crops_dir) / f"shard-{int(shard):03d}.npy"


def shard_files(crops_dir: str | Path) -> list[Path]:
    """Every shard in `crops_dir`, in shard order."""
    return sorted(Path(crops_dir).glob(SHARD_GLOB))
