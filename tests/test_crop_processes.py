"""The crop stage across processes: same bytes as one process, resumable across counts."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch

import faceid.crop.cache as crop_module
from faceid.config.crop import CropParams
from faceid.config.engine import ParamsError
from faceid.crop.cache import crop_dataset, process_devices
from faceid.crop.shards import shard_path
from tests._crop_fixtures import aligned_items, run_stage, write_celeba, write_params
from tests._params import section


def _same_output(first, second, shards: int) -> None:
    for shard in range(shards):
        assert shard_path(first, shard).read_bytes() == shard_path(second, shard).read_bytes()
    assert (first / "manifest.parquet").read_bytes() == (second / "manifest.parquet").read_bytes()


def test_two_processes_write_the_same_manifest_shards_and_metrics_as_one(tmp_path, capsys):
    dataset = tmp_path / "celeba"
    write_celeba(dataset, aligned_items(), "aligned")  # 10 images: 3 chunks of 4, 2 shards of 6
    one = run_stage(tmp_path, dataset, write_params(tmp_path / "one.yaml"), "one")
    two = run_stage(tmp_path, dataset, write_params(tmp_path / "two.yaml", processes=2), "two")
    assert "crop (2 processes)" in capsys.readouterr().err  # really ran in two
    assert one[0]["status"].tolist() == ["detected"] * 7 + ["fallback", "missing", "unreadable"]
    pd.testing.assert_frame_equal(one[0], two[0])
    assert one[1] == two[1]
    _same_output(one[2], two[2], shards=2)
    assert sorted(p.name for p in two[2].iterdir()) == ["manifest.parquet", "shard-000.npy", "shard-001.npy"]


@pytest.mark.slow
def test_a_run_interrupted_in_one_process_resumes_in_two(tmp_path, monkeypatch):
    dataset = tmp_path / "celeba"
    items = aligned_items()
    write_celeba(dataset, [items[i] for i in (0, 1, 7, 8, 9, 2, 3)], "aligned")
    params = section(
        CropParams, device="cpu", chunk_size=2, shard_size=3, max_failure_rate=0.5, min_face_size=60, processes=1
    )
    reference = tmp_path / "reference"
    crop_dataset(dataset, reference, params, "aligned", progress=False)

    save, saved = crop_module.save_progress, []

    def save_and_stop(out_dir, fingerprint, chunks_done):
        save(out_dir, fingerprint, chunks_done)
        saved.append(chunks_done)
        if saved == [0, 1]:
            raise KeyboardInterrupt

    monkeypatch.setattr(crop_module, "save_progress", save_and_stop)
    out = tmp_path / "crops"
    with pytest.raises(KeyboardInterrupt):
        crop_dataset(dataset, out, params, "aligned", progress=False)
    assert sorted(p.name for p in (out / "parts").iterdir()) == ["chunk-00000.parquet"]
    crop_dataset(dataset, out, dataclasses.replace(params, processes=2), "aligned", progress=False)
    assert saved == [0, 1, 2, 3, 4]  # chunk 0 was not redone; the others, in any order
    _same_output(out, reference, shards=3)


def test_process_devices(monkeypatch):
    cpu = torch.device("cpu")
    assert process_devices(3, cpu, pending=10) == [cpu] * 3
    assert process_devices(3, cpu, pending=2) == [cpu] * 2  # no idle processes
    assert process_devices(4, cpu, pending=0) == [cpu]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    cuda = torch.device("cuda")
    assert process_devices(0, cuda, pending=10) == [torch.device("cuda", 0), torch.device("cuda", 1)]
    assert process_devices(3, cuda, pending=10) == [torch.device("cuda", i) for i in (0, 1, 0)]
    assert process_devices(1, cuda, pending=10) == [cuda]  # one process: as without processes
    monkeypatch.setattr(crop_module.os, "cpu_count", lambda: 5)
    assert process_devices(0, cpu, pending=10) == [cpu] * 5


def test_processes_is_validated_and_does_not_change_the_fingerprint(tmp_path):
    with pytest.raises(ParamsError, match=r"crop.processes: expected 0 \(one per GPU / CPU core\) or more, got -1"):
        section(CropParams, processes=-1)
    dataset = tmp_path / "celeba"
    write_celeba(dataset, aligned_items()[:2], "aligned")
    prints = {
        crop_module.dataset_fingerprint(
            dataset, "aligned", dataset / "img_align_celeba.zip", section(CropParams, processes=n), "cpu"
        )
        for n in (1, 4)
    }
    assert len(prints) == 1
