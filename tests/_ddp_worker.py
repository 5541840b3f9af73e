"""Run by tests/test_distributed.py under `torchrun --nproc_per_node=2` (gloo, CPU), and
in-process as the single-process reference: writes what each rank saw to OUT/rank-R.json.
benchmarks/gpu_suite.py runs it on 2 GPUs (nccl): `_ddp_worker.py OUT cuda`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from faceid.train.collectives import (
    all_gather_arrays,
    barrier,
    broadcast_object,
    distributed,
    is_main,
    wrap_model,
)
from faceid.train.sampler import GlobalBatchSampler

N_IMAGES, GLOBAL_BATCH, STEPS, SEED = 23, 8, 5, 3


def _losses(info) -> list[float]:
    """Global-batch mean loss per SGD step of a tiny classifier fed by GlobalBatchSampler."""
    data = torch.Generator().manual_seed(1)
    x, y = torch.randn(N_IMAGES, 6, generator=data), torch.randint(0, 4, (N_IMAGES,), generator=data)
    x, y = x.to(info.device), y.to(info.device)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4)).to(info.device)
    model = wrap_model(model, info)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    sampler = GlobalBatchSampler(N_IMAGES, GLOBAL_BATCH, seed=SEED, rank=info.rank, world_size=info.world_size)
    losses = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        for batch in sampler:
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            # the global batch's mean loss, from each rank's sum
            sums = all_gather_arrays(np.array([loss.item() * len(batch)]))
            losses.append(float(sums.sum() / GLOBAL_BATCH))
    return losses[:STEPS]


def run_checks(out_dir: Path, env: dict[str, str] | None = None, device: str = "cpu") -> dict:
    with distributed(device, env) as info:
        rank = info.rank
        mine = np.arange(rank + 2, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32) + 10 * rank
        result = {
            "rank": rank,
            "world_size": info.world_size,
            "backend": info.backend,
            "is_main": is_main(),
            "gathered": all_gather_arrays(mine).tolist(),
            "broadcast": broadcast_object({"from": rank, "path": "model.pt"} if rank == 0 else None),
            "batches": {},
            "losses": _losses(info),
        }
        for drop_last in (True, False):
            sampler = GlobalBatchSampler(N_IMAGES, GLOBAL_BATCH, seed=SEED, rank=rank,
                                         world_size=info.world_size, drop_last=drop_last)
            for epoch in (0, 1):
                sampler.set_epoch(epoch)
                result["batches"][f"{drop_last}-{epoch}"] = list(sampler)
        if is_main():
            (out_dir / "written-by-main").write_text(str(rank))
        barrier()
        (out_dir / f"rank-{rank}.json").write_text(json.dumps(result))
    return result


if __name__ == "__main__":
    run_checks(Path(sys.argv[1]), device=sys.argv[2] if len(sys.argv) > 2 else "cpu")
