"""A stage run as N processes of one torchrun job on this machine (`--processes N`)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import torch

from faceid.train.collectives import DistributedError

__all__ = ["relaunch_under_torchrun"]

log = logging.getLogger(__name__)


def relaunch_under_torchrun(
    script: Path, processes: int, argv: list[str] | None, device: str
) -> dict[str, int] | None:
    """Run `script argv` as `processes` processes of `torchrun --standalone` and wait.

    None (run in this process) when already under torchrun or for one process; 0 means
    one process per visible GPU (1 without CUDA or with device cpu). A failed rank fails
    the whole job (torchrun stops the others) with a DistributedError.
    """
    if processes < 0:
        raise DistributedError(f"processes: expected 0 (one per GPU) or more, got {processes}")
    if "RANK" in os.environ or "LOCAL_RANK" in os.environ:
        return None
    if processes == 0:
        processes = torch.cuda.device_count() if device != "cpu" and torch.cuda.is_available() else 1
    if processes <= 1:
        return None
    args = sys.argv[1:] if argv is None else list(argv)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        str(script),
        *args,
    ]
    log.info("starting %d processes: %s", processes, " ".join(command))
    code = subprocess.call(command)
    if code:
        raise DistributedError(
            f"{script.name} under torchrun with {processes} processes failed (exit {code}); "
            "the log above names the failing rank"
        )
    return {"processes": processes}
