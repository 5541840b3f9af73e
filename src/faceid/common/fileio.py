"""Small file helpers every stage shares: atomic writes and content hashes.

A crash (or a kill by `dvc exp` / a scheduler) never leaves a truncated output: each
writer writes to a temporary sibling, then renames it over the target (atomic on POSIX).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from faceid.common.progress import progress

__all__ = ["atomic_write", "file_digest", "save_torch_atomic", "write_json"]


def atomic_write(path: str | Path, write: Callable[[Path], Any], suffix: str = ".tmp") -> Path:
    """Call `write(tmp)` on a temporary sibling of `path`, then rename it to `path`.

    `suffix` is appended to the file name; pass one ending in the real extension when the
    writer insists on it (numpy's savez appends `.npz` to any other name).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + suffix)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(path: str | Path, data: Any) -> Path:
    """JSON with sorted keys and a final newline, written atomically (stable diffs in git)."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def save_torch_atomic(obj: Any, path: str | Path) -> Path:
    """torch.save, atomically (the import stays local: not every caller needs torch)."""
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp), suffix=".partial")


def file_digest(path: str | Path, algorithm: str = "sha256", chunk: int = 1 << 22) -> str:
    """Hex digest (a hashlib algorithm: sha256, md5, …) of a file's content, read in 4 MiB
    blocks (constant memory), with a progress bar for files of 256 MiB and more."""
    digest = hashlib.new(algorithm)
    size = Path(path).stat().st_size
    bar = progress(total=size, unit="B", unit_scale=True, unit_divisor=1024, leave=False,
                   desc=f"{algorithm} {Path(path).name}", disable=size < 64 * chunk)  # fmt: skip
    with open(path, "rb") as handle, bar:
        while block := handle.read(chunk):
            digest.update(block)
            bar.update(len(block))
    return digest.hexdigest()
