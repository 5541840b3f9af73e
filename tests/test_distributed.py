"""faceid.train.collectives and faceid.train.sampler: the single-process fallback
in-process, and the real thing under `torchrun --nproc_per_node=2` with gloo on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from faceid.crop.reader import CropDataset
from faceid.train.collectives import (
    DistributedError,
    all_gather_arrays,
    broadcast_object,
    distributed,
    is_main_process,
    read_env,
)
from faceid.train.sampler import GlobalBatchSampler, epoch_seed, shard_indices
from tests._ddp_worker import GLOBAL_BATCH, N_IMAGES, run_checks

ROOT = Path(__file__).resolve().parents[1]


def test_read_env_falls_back_to_one_process_and_rejects_nonsense():
    assert read_env({}) == (0, 0, 1)
    assert read_env({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"}) == (3, 1, 4)
    with pytest.raises(DistributedError, match=r"RANK=4.*WORLD_SIZE=4"):
        read_env({"RANK": "4", "LOCAL_RANK": "0", "WORLD_SIZE": "4"})
    with pytest.raises(DistributedError, match="WORLD_SIZE: expected an integer, got 'two'"):
        read_env({"WORLD_SIZE": "two"})


def test_the_writing_process_is_known_from_the_environment_before_the_group():
    assert is_main_process({}) and is_main_process({"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2"})
    assert not is_main_process({"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"})
    with pytest.raises(DistributedError, match="RANK=2"):
        is_main_process({"RANK": "2", "WORLD_SIZE": "2"})


def test_single_process_fallback_is_the_identity():
    with distributed("cpu", env={}) as info:
        assert (info.rank, info.world_size, info.backend, info.is_main) == (0, 1, None, True)
        array = np.arange(6).reshape(3, 2)
        assert np.array_equal(all_gather_arrays(array), array)
        assert broadcast_object({"a": 1}) == {"a": 1}


@pytest.mark.parametrize("drop_last", [True, False])
def test_one_rank_sampler_batches_one_seeded_permutation_per_epoch(drop_last):
    n, batch, seed = 37, 8, 5
    sampler = GlobalBatchSampler(n, batch, seed=seed, drop_last=drop_last)
    orders = []
    for epoch in (0, 1, 7):
        sampler.set_epoch(epoch)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(seed, epoch))).tolist()
        kept = n // batch * batch if drop_last else n
        expected = [order[i : i + batch] for i in range(0, kept, batch)]
        assert list(sampler) == expected
        assert list(sampler) == expected  # iterating again redraws the same order (resume)
        assert len(sampler) == len(expected) and sampler.dropped == n - kept
        orders.append(order)
    assert orders[0] != orders[1]


def test_the_sampler_drives_a_dataloader_over_crops():
    n = 10
    dataset = CropDataset({}, np.zeros(n), np.arange(n), np.arange(n) * 10)
    dataset.__getitems__ = lambda indices: (None, torch.as_tensor(dataset.labels[indices]))  # no shards
    sampler = GlobalBatchSampler(n, 4, seed=0, rank=1, world_size=2, drop_last=False)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=lambda b: b,
                                         generator=torch.Generator())
    assert [labels.tolist() for _, labels in loader] == [[i * 10 for i in b] for b in sampler]


@pytest.mark.parametrize(("n", "batch", "world", "drop_last"), [(23, 8, 2, True), (23, 8, 3, False), (10, 4, 4, False)])
def test_rank_slices_are_disjoint_cover_the_global_batches_and_agree_on_steps(n, batch, world, drop_last):
    samplers = [
        GlobalBatchSampler(n, batch, seed=1, rank=r, world_size=world, drop_last=drop_last) for r in range(world)
    ]
    single = GlobalBatchSampler(n, batch, seed=1, drop_last=drop_last)
    per_rank = [list(s) for s in samplers]
    assert len({len(batches) for batches in per_rank}) == 1  # same number of steps (DDP)
    steps = len(per_rank[0])
    # a last global batch smaller than the world is the only step one process has extra
    assert len(single) - steps == (samplers[0].dropped > single.dropped)
    for step, global_batch in enumerate(list(single)[:steps]):
        joined = [i for batches in per_rank for i in batches[step]]
        assert joined == global_batch  # rank slices in order = the single-process batch
        assert all(batches[step] for batches in per_rank)  # nobody idles
    seen = [i for batches in per_rank for b in batches for i in b]
    assert len(seen) == len(set(seen)) == n - samplers[0].dropped
    sizes = samplers[0].global_batch_sizes()
    global_batches = list(single)[:steps]
    assert [b[samplers[1].local_slice(size)] for b, size in zip(global_batches, sizes, strict=True)] == per_rank[1]


def test_shard_indices_split_a_range_in_rank_order():
    pieces = [shard_indices(10, r, 3) for r in range(3)]
    assert np.array_equal(np.concatenate(pieces), np.arange(10))
    assert [len(p) for p in pieces] == [3, 4, 3]
    assert len(shard_indices(1, 1, 2)) in (0, 1)


def test_a_global_batch_smaller_than_the_process_count_is_an_error():
    with pytest.raises(DistributedError, match="global batch size 2 < 4 processes"):
        GlobalBatchSampler(10, 2, seed=0, world_size=4)


@pytest.mark.slow
def test_torchrun_two_gloo_processes_gather_broadcast_sample_and_match_one_process(tmp_path):
    (tmp_path / "ddp").mkdir()
    (tmp_path / "single").mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(ROOT / "tests" / "_ddp_worker.py"), str(tmp_path / "ddp")],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / "ddp" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    single = run_checks(tmp_path / "single", env={})

    assert [(r["rank"], r["world_size"], r["backend"], r["is_main"]) for r in ranks] == [
        (0, 2, "gloo", True), (1, 2, "gloo", False)]  # fmt: skip
    assert (tmp_path / "ddp" / "written-by-main").read_text() == "0"  # only rank 0 wrote
    expected = [[float(i)] * 3 for i in range(2)] + [[10.0 + i] * 3 for i in range(3)]
    assert ranks[0]["gathered"] == ranks[1]["gathered"] == expected  # lengths 2 and 3
    assert ranks[1]["broadcast"] == {"from": 0, "path": "model.pt"}
    for key, single_batches in single["batches"].items():
        ddp = [ranks[0]["batches"][key], ranks[1]["batches"][key]]
        assert len(ddp[0]) == len(ddp[1]) == len(single_batches)
        for step, batch in enumerate(single_batches):
            assert ddp[0][step] + ddp[1][step] == batch, (key, step)  # disjoint, covering, same order
    seen = [i for b in ranks[0]["batches"]["True-0"] + ranks[1]["batches"]["True-0"] for i in b]
    assert len(seen) == len(set(seen)) == N_IMAGES // GLOBAL_BATCH * GLOBAL_BATCH
    # DDP's averaged gradient of equal slices = the global batch's: the same SGD steps
    assert ranks[0]["losses"] == ranks[1]["losses"]
    np.testing.assert_allclose(ranks[0]["losses"], single["losses"], rtol=1e-5)
    assert single["losses"][-1] < single["losses"][0]
