"""One GPU per process for parallel sweeps on one multi-GPU machine (`dvc queue start -j N`).

Queue workers cannot be given an environment each, so a stage that may use a GPU (crop,
train, evaluate) calls `claim_gpu_from_env()` first: with FACEID_GPUS=0,1,2,3 set, it
takes the first of those GPUs that no other running stage holds (an exclusive lock file
per GPU, released when the process ends) and narrows CUDA_VISIBLE_DEVICES to it before
CUDA starts. Unset, it does nothing.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from faceid.errors import FaceidError

__all__ = ["GpuClaimError", "claim_gpu", "claim_gpu_from_env"]

log = logging.getLogger(__name__)


class GpuClaimError(FaceidError, RuntimeError):
    """No GPU of FACEID_GPUS could be claimed."""


# the lock files of claimed GPUs: open for the life of the process, since closing one
# releases its lock
_claims: list[IO[bytes]] = []


def claim_gpu(
    gpus: Sequence[str], lock_dir: str | Path, *, wait_s: float = 3600.0, poll_s: float = 2.0
) -> str:
    """Lock the first of `gpus` no other process holds and make it this process's only
    visible GPU (CUDA_VISIBLE_DEVICES); wait up to `wait_s` while all are taken.

    Must run before anything initialises CUDA: the variable is read once, at CUDA start.
    """
    if not gpus:
        raise GpuClaimError("claim_gpu: no GPUs to choose from")
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    while True:
        for gpu in gpus:
            handle = open(lock_dir / f"gpu-{gpu}.lock", "wb")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            _claims.append(handle)
            os.environ["CUDA_VISIBLE_DEVICES"] = gpu
            log.info("claimed GPU %s (lock in %s)", gpu, lock_dir)
            return gpu
        if time.monotonic() >= deadline:
            raise GpuClaimError(
                f"claim_gpu: all of GPUs {','.join(gpus)} stayed taken for {wait_s:.0f} s "
                f"(locks in {lock_dir}); run fewer queue workers than GPUs"
            )
        time.sleep(poll_s)


def claim_gpu_from_env(env: dict[str, str] | None = None) -> str | None:
    """`claim_gpu` over FACEID_GPUS (e.g. "0,1,2,3"), locks in FACEID_GPU_LOCKS (default:
    the temp folder); None, changing nothing, when FACEID_GPUS is unset or empty, or in a
    torchrun process (torchrun's LOCAL_RANK picks the GPU there)."""
    env = os.environ if env is None else env
    gpus = [g.strip() for g in env.get("FACEID_GPUS", "").split(",") if g.strip()]
    if not gpus or "LOCAL_RANK" in env:
        return None
    lock_dir = env.get("FACEID_GPU_LOCKS") or Path(tempfile.gettempdir()) / "faceid-gpu-locks"
    return claim_gpu(gpus, lock_dir)
