"""The crop cache's files and resume state: shard rows, chunk parts, progress.json and
the fingerprint of everything the crops depend on (see `faceid.crop.cache` for the layout).

A chunk is done when its part file exists: it is written after the chunk's shard rows
are flushed. progress.json carries the fingerprint: a run with other inputs discards the
partial state instead of mixing it in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import zipfile
from pathlib import Path

import numpy as np
from numpy.lib.format import open_memmap

from faceid.common.fileio import atomic_write
from faceid.config.crop import CropParams
from faceid.crop.shards import MANIFEST_FILE, SHARD_GLOB, shard_path
from faceid.data.celeba import ATTR_FILE, BBOX_FILE, IDENTITY_FILE, PARTITION_FILE, landmarks_file

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_FILE",
    "PARTS_DIR",
    "PROGRESS_FILE",
    "dataset_fingerprint",
    "part_path",
    "resume_point",
    "save_progress",
    "shard_rows_of",
    "start_afresh",
    "write_rows",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the output of the same inputs changes
PROGRESS_FILE = "progress.json"
PARTS_DIR = "parts"
# params that change neither crops nor manifest, so may differ between a run and its resume
RESUMABLE_ACROSS = ("workers", "processes", "max_failure_rate")


def dataset_fingerprint(
    root: Path, layout: str, images: Path, params: CropParams, device: str
) -> str:
    """A hash of everything the crops depend on: params, device, annotations, images."""
    digest = hashlib.sha256()
    settings = {k: v for k, v in dataclasses.asdict(params).items() if k not in RESUMABLE_ACROSS}
    settings.update(version=FORMAT_VERSION, layout=layout, device=device)
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for name in (ATTR_FILE, IDENTITY_FILE, PARTITION_FILE, landmarks_file(layout), BBOX_FILE):
        digest.update(name.encode())
        digest.update((root / name).read_bytes())
    if images.suffix == ".zip":
        # the central directory's CRCs identify the content without reading it
        with zipfile.ZipFile(images) as archive:
            for info in archive.infolist():
                digest.update(f"{info.filename}\t{info.CRC}\t{info.file_size}\n".encode())
    else:
        for path in sorted(images.iterdir()):
            stat = path.stat()
            digest.update(f"{path.name}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def shard_rows_of(n_images: int, shard_size: int) -> list[int]:
    """Rows of each shard for `n_images` images."""
    return [min(shard_size, n_images - start) for start in range(0, n_images, shard_size)]


def part_path(out_dir: Path, chunk: int) -> Path:
    """The manifest rows of chunk `chunk`, written once its shard rows are flushed."""
    return out_dir / PARTS_DIR / f"chunk-{chunk:05d}.parquet"


def save_progress(out_dir: Path, fingerprint: str, chunks_done: int) -> None:
    """progress.json: the run's fingerprint and how many chunks are done."""
    state = {"fingerprint": fingerprint, "chunks_done": chunks_done}
    atomic_write(out_dir / PROGRESS_FILE, lambda p: p.write_text(json.dumps(state)))


def resume_point(
    out_dir: Path, fingerprint: str, n_chunks: int, shard_rows: list[int]
) -> set[int] | None:
    """Chunks already done by an earlier run with the same inputs (None = start afresh).

    A chunk is done when its part file exists: it is written after the chunk's rows are
    flushed. Chunks finish out of order when several processes crop.
    """
    try:
        state = json.loads((out_dir / PROGRESS_FILE).read_text())
        same = state["fingerprint"] == fingerprint
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not same:
        log.warning(
            "%s: partial crops from other params or another dataset; starting afresh", out_dir
        )
        return None
    done = {k for k in range(n_chunks) if part_path(out_dir, k).exists()}
    for shard, rows in enumerate(shard_rows):
        try:
            shape = np.load(shard_path(out_dir, shard), mmap_mode="r").shape
        except (OSError, ValueError):
            shape = None
        if shape is None or shape[0] != rows:
            log.warning(
                "%s: shard %d is missing or has the wrong shape; starting afresh", out_dir, shard
            )
            return None
    return done


def start_afresh(out_dir: Path, shard_rows: list[int], image_size: int) -> None:
    """Remove earlier output and state; create empty (sparse) shards (the caller then
    saves progress: 0 chunks done)."""
    for stale in out_dir.glob(SHARD_GLOB):
        stale.unlink()
    (out_dir / MANIFEST_FILE).unlink(missing_ok=True)
    shutil.rmtree(out_dir / PARTS_DIR, ignore_errors=True)
    (out_dir / PARTS_DIR).mkdir(parents=True)
    for shard, rows in enumerate(shard_rows):
        # sparse until written; the map is dropped at once so no page stays mapped
        open_memmap(
            shard_path(out_dir, shard),
            mode="w+",
            dtype=np.uint8,
            shape=(rows, image_size, image_size, 3),
        )


def write_rows(out_dir: Path, start: int, crops: np.ndarray, shard_size: int) -> None:
    """Write crops of images start… into their shard rows, then flush."""
    done = 0
    while done < len(crops):
        shard, row = divmod(start + done, shard_size)
        count = min(len(crops) - done, shard_size - row)
        # re-opened per chunk: a long-lived map of a 15 GB file keeps written pages
        # counted in the process's resident memory
        rows = open_memmap(shard_path(out_dir, shard), mode="r+")
        rows[row : row + count] = crops[done : done + count]
        rows.flush()
        del rows
        done += count
