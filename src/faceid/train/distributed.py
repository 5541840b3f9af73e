"""What a training run needs to work unchanged as one process or under torchrun (DDP).

torchrun (and SLURM / Kubernetes / TorchX, which drive it) starts one process per GPU and
tells each who it is through RANK, LOCAL_RANK and WORLD_SIZE (plus MASTER_ADDR/PORT for
the rendezvous). Without them everything here falls back to a single process: no process
group, `all_gather_arrays` returns its input, `barrier` does nothing, rank 0 is the main.

How a training loop uses it (faceid.train.run, faceid.train.steps):

    with distributed(run.device) as dist_info:           # init; teardown even on error
        device = dist_info.device                         # cuda:LOCAL_RANK, or cpu
        model = wrap_model(model.to(device), dist_info)   # DDP when world_size > 1
        sampler = GlobalBatchSampler(len(train), run.batch_size, seed=run.seed,
                                     rank=dist_info.rank, world_size=dist_info.world_size,
                                     drop_last=drop_last)
        loader = DataLoader(train, batch_sampler=sampler, generator=g, collate_fn=...)
        for epoch in range(start, epochs):
            sampler.set_epoch(epoch)                      # each epoch's order, resumable
            sizes = sampler.global_batch_sizes()
            for step, (images, labels) in enumerate(loader):  # this rank's share of a step
                # draw for the global batch, keep this rank's part: same flips as 1 process
                flips = flip_mask(sizes[step], flip_generator)[sampler.local_slice(sizes[step])]
                ...
            embeddings = all_gather_arrays(embed(model, val_shard))  # rows in rank order
            if dist_info.is_main: write checkpoint, dvclive, model.pt
            barrier()                                     # others wait for the files
        # resume: every rank loads the same checkpoint (map_location=device)

Equivalence with the single-process run: `GlobalBatchSampler` draws one permutation per
epoch, `torch.randperm(n)` from a generator seeded `epoch_seed(seed, epoch)`, cuts it into
global batches of `batch_size`, and gives each rank a contiguous slice of every global
batch; with world_size 1 it is an ordinary shuffled batch sampler. Use it for the single
process too (one training path): today's `DataLoader(shuffle=True, generator=g)` draws
its worker base seed from `g` before the permutation, so its order is another one. DDP
averages the gradients of the ranks' mean losses, which with equal slices (a batch_size
divisible by the process count) is the gradient of the global batch's mean loss: the
same step as one process with the same batch (tests/test_distributed.py checks the
losses match within 1e-5). BatchNorm is the exception: each rank normalises with its own slice's
statistics unless the model is converted with `torch.nn.SyncBatchNorm`; the difference is
small but not zero.

Validation: `shard_indices(n, rank, world_size)` splits an index range into contiguous
pieces in rank order, so `all_gather_arrays` of per-rank embeddings is the single-process
array, row for row.

Parallel sweeps on one multi-GPU machine (`dvc queue start -j N`): queue workers cannot be
given an environment each, so a stage calls `claim_gpu_from_env()` first: with
FACEID_GPUS=0,1,2,3 set, it takes the first of those GPUs that no other running stage
holds (an exclusive lock file per GPU, released when the process ends) and narrows
CUDA_VISIBLE_DEVICES to it before CUDA starts. Unset, it does nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

from faceid.common.device import select_device
from faceid.errors import FaceidError

__all__ = [
    "DistInfo",
    "DistributedError",
    "GlobalBatchSampler",
    "all_gather_arrays",
    "barrier",
    "broadcast_module",
    "broadcast_object",
    "claim_gpu",
    "claim_gpu_from_env",
    "distributed",
    "epoch_seed",
    "global_mean",
    "init",
    "is_main",
    "read_env",
    "relaunch_under_torchrun",
    "shard_indices",
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


def init(device: str = "auto", env: dict[str, str] | None = None) -> DistInfo:
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
def distributed(device: str = "auto", env: dict[str, str] | None = None) -> Iterator[DistInfo]:
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


# --------------------------------------------------------------------------- sampling


def epoch_seed(seed: int, epoch: int) -> int:
    """The shuffle seed of one epoch: a resumed run redraws the same order."""
    return seed * 1_000_003 + epoch


def shard_indices(n: int, rank: int, world_size: int) -> np.ndarray:
    """Rank's contiguous piece of range(n); pieces in rank order concatenate to range(n)."""
    bounds = np.linspace(0, n, world_size + 1).round().astype(np.int64)
    return np.arange(bounds[rank], bounds[rank + 1])


class GlobalBatchSampler(Sampler[list[int]]):
    """This rank's slices of the global batches of one shuffled permutation per epoch.

    With world_size 1 it yields `torch.randperm(n, generator=torch.Generator().manual_seed(
    epoch_seed(seed, epoch)))` in batches of `batch_size` (the last one kept unless
    drop_last). With world_size W each global batch is cut into W contiguous
    slices (as equal as possible) and rank r gets slice r, so every rank runs the same
    number of steps (DDP hangs otherwise) and the ranks' slices of a step are the
    single-process batch. Without drop_last a last global batch smaller than W is
    dropped (`dropped` counts its images), since some rank would get nothing.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
        shuffle: bool = True,
    ):
        if batch_size < world_size:
            raise DistributedError(
                f"global batch size {batch_size} < {world_size} processes: each process needs "
                "at least one image per step; raise train batch_size or use fewer processes"
            )
        if not 0 <= rank < world_size:
            raise DistributedError(f"rank {rank} outside 0..{world_size - 1}")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.drop_last, self.shuffle = drop_last, shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _global_batches(self) -> list[np.ndarray]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
            order = torch.randperm(self.n, generator=generator).numpy()
        else:
            order = np.arange(self.n)
        full = self.n // self.batch_size * self.batch_size
        batches = [order[i : i + self.batch_size] for i in range(0, full, self.batch_size)]
        rest = order[full:]
        if not self.drop_last and len(rest) >= self.world_size:
            batches.append(rest)
        return batches

    @property
    def dropped(self) -> int:
        """Images of an epoch that no rank sees (the incomplete last batch)."""
        return self.n - sum(len(b) for b in self._global_batches())

    def global_batch_sizes(self) -> list[int]:
        """Size of each step's global batch this epoch (all batch_size with drop_last)."""
        return [len(b) for b in self._global_batches()]

    def local_slice(self, global_size: int) -> slice:
        """Where this rank's images sit in a global batch of `global_size`: e.g. to take
        this rank's part of per-image randomness drawn for the whole global batch."""
        piece = shard_indices(global_size, self.rank, self.world_size)
        return slice(int(piece[0]), int(piece[-1]) + 1)

    def __len__(self) -> int:
        return len(self._global_batches())

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self._global_batches():
            yield batch[self.local_slice(len(batch))].tolist()


# --------------------------------------------------------------------------- GPU claims

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
        raise DistributedError("claim_gpu: no GPUs to choose from")
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
            raise DistributedError(
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


def relaunch_under_torchrun(
    script: Path, processes: int, argv: list[str] | None, device: str = "auto"
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
            f"{script.name} under torchrun with {processes} processes failed (exit {code}); the log above names the failing rank"
        )
    return {"processes": processes}
