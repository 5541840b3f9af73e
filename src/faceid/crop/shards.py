"""Where the crop stage's uint8 shards live: one naming rule for the writer and the readers."""

from __future__ import annotations

from pathlib import Path

__all__ = ["SHARD_GLOB", "shard_files", "shard_path"]

SHARD_GLOB = "shard-*.npy"


def shard_path(crops_dir: str | Path, shard: int) -> Path:
    """data/crops/shard-000.npy …: uint8 (N, S, S, 3), memory-mapped by the readers."""
    return Path(crops_dir) / f"shard-{int(shard):03d}.npy"


def shard_files(crops_dir: str | Path) -> list[Path]:
    """Every shard in `crops_dir`, in shard order."""
    return sorted(Path(crops_dir).glob(SHARD_GLOB))
