"""Who this process is and what the processes of a torchrun job exchange.

torchrun (and SLURM / Kubernetes / TorchX, which drive it) starts one process per GPU and
tells each who it is through RANK, LOCAL_RANK and WORLD_SIZE (plus MASTER_ADDR/PORT for
the rendezvous). Without them everything here falls back to a single process: no process
group, `all_gather_arrays` returns its input, `barrier` does nothing, rank 0 is the main.

How a training loop uses it (faceid.train.run, faceid.train.steps; the batches come from
faceid.train.sampler):

    with distributed(run.device) as dist_info:           # init; teardown even on error
        device = dist_info.device                         # cuda:LOCAL_RANK, or cpu
        model = wrap_model(model.to(device), dist_info)   # DDP when world_size > 1
        ...
        embeddings = all_gather_arrays(embed(model, val_share))  # rows in rank order
        if dist_info.is_main: write checkpoint, dvclive, model.pt
        barrier()                                         # others wait for the files

DDP averages the gradients of the ranks' mean losses, which with equal slices (a
batch_size divisible by the process count) is the gradient of the global batch's mean
loss: the same step as one process with the same batch (tests/test_distributed.py checks
the losses match within 1e-5). BatchNorm is the exception: each rank normalises with its
own slice's statistics unless the model is converted with `torch.nn.SyncBatchNorm`; the
difference is small but not zero.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from faceid.common.device import select_device
from faceid.errors import FaceidError

__all__ = [
    "DistInfo",
    "DistributedError",
    "all_gather_arrays",
    "barrier",
    "broadcast_module",
    "broadcast_object",
    "distributed",
    "global_mean",
    "init",
    "is_main",
    "is_main_process",
    "read_env",
    "teardown",
    "unwrap_model",
    "wrap_model",
]

log = logging.getLogger(__name__)


class DistributedError(FaceidError, RuntimeError):
    """The torchrun environment or the process group is not usable."""


@dataclasses.dataclass(frozen=True)
class DistInfo:
    """Who this process is. rank 0 of world_size 1 when not launched by torchrun."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    backend: str | None = None  # nccl / gloo; None = no process group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def _env_int(env: dict[str, str], name: str) -> int | None:
    value = env.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise DistributedError(
            f"environment variable {name}: expected an integer, got {value!r}; "
            "launch with torchrun or unset it"
        ) from None


def read_env(env: dict[str, str] | None = None) -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's variables; (0, 0, 1) when absent."""
    env = dict(os.environ) if env is None else env
    world = _env_int(env, "WORLD_SIZE")
    if world is None:
        return 0, 0, 1
    rank, local = _env_int(env, "RANK"), _env_int(env, "LOCAL_RANK")
    rank = 0 if rank is None else rank
    local = rank if local is None else local
    if world < 1 or not 0 <= rank < world or local < 0:
        raise DistributedError(
            f"torchrun environment: RANK={rank}, LOCAL_RANK={local}, WORLD_SIZE={world}; "
            "expected 0 <= RANK < WORLD_SIZE and LOCAL_RANK >= 0"
        )
    return rank, local, world


def is_main_process(env: dict[str, str] | None = None) -> bool:
    """True in the process that writes the run's files (rank 0 of a torchrun job, or a lone
    process), known from the environment before the process group exists: a stage takes
    its output lock only there."""
    return read_env(env)[0] == 0


def init(device: str, env: dict[str, str] | None = None) -> DistInfo:
    """Join torchrun's process group (nccl on CUDA, gloo on CPU); single process without."""
    rank, local, world = read_env(env)
    target = select_device(device, key="train.common.device", local_rank=local)
    if target.type == "cuda":
        torch.cuda.set_device(target)  # before the group: nccl binds to the current device
    if world == 1:
        return DistInfo(0, 0, 1, target)
    backend = "nccl" if target.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=world)
    log.info("rank %d/%d (local %d) on %s, backend %s", rank, world, local, target, backend)
    return DistInfo(rank, local, world, target, backend)


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def distributed(device: str, env: dict[str, str] | None = None) -> Iterator[DistInfo]:
    """`init` on entry, `teardown` on exit, also when the body raises."""
    info = init(device, env)
    try:
        yield info
    finally:
        teardown()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_main() -> bool:
    """True on rank 0, and in a single process: the one that writes files."""
    return not _active() or dist.get_rank() == 0


def barrier() -> None:
    if _active():
        dist.barrier()


def _collective_device() -> torch.device:
    # nccl collectives need tensors on this process's GPU, gloo on the CPU
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather_arrays(array: np.ndarray) -> np.ndarray:
    """Every rank's array concatenated along axis 0 in rank order (lengths may differ).

    Trailing shapes and dtypes must agree across ranks. Every rank gets the result.
    """
    array = np.ascontiguousarray(array)
    if not _active():
        return array
    device = _collective_device()
    world = dist.get_world_size()
    length = torch.tensor([array.shape[0]], dtype=torch.int64, device=device)
    lengths = [torch.zeros_like(length) for _ in range(world)]
    dist.all_gather(lengths, length)
    counts = [int(n.item()) for n in lengths]
    # all_gather needs equal shapes: pad to the longest, trim after
    padded = np.zeros((max(counts), *array.shape[1:]), dtype=array.dtype)
    padded[: array.shape[0]] = array
    local = torch.from_numpy(padded).to(device)
    gathered = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(gathered, local)
    return np.concatenate(
        [g[:n].cpu().numpy() for g, n in zip(gathered, counts, strict=True)], axis=0
    )


def global_mean(value: float, count: int) -> tuple[float, int]:
    """The mean over all processes of per-process means `value` of `count` items, and the total count.

    One process: `(value, count)` unchanged (no rounding through a sum).
    """
    if not _active():
        return value, count
    sums = torch.tensor([value * count, float(count)], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(sums)
    return float(sums[0] / sums[1]), int(sums[1])


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """`obj` of rank `src` on every rank (small picklable objects: a path, a dict of metrics)."""
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, device=_collective_device())
    return box[0]


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Overwrite every parameter and buffer with rank `src`'s, in place (no-op in one process)."""
    if not _active():
        return
    for tensor in module.state_dict().values():
        dist.broadcast(tensor, src=src)


def wrap_model(model: nn.Module, info: DistInfo) -> nn.Module:
    """DistributedDataParallel around `model` (already on info.device) when distributed."""
    if not info.is_distributed:
        return model
    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside DDP (its state_dict has no `module.` prefix), else `model`."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model

