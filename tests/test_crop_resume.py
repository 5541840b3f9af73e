"""The crop stage resumes after an interruption with the same bytes; changed params or
data start afresh (the fingerprint)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import faceid.crop.cache as crop_module
from faceid.config.crop import CropParams
from faceid.crop.cache import crop_dataset
from faceid.crop.shards import shard_path
from faceid.crop.state import dataset_fingerprint
from tests._crop_fixtures import aligned_items, cpu_params, jpeg, shifted, write_celeba
from tests._params import section


def interrupt_after(monkeypatch, chunks: int) -> list[int]:
    """Make crop_dataset stop (as on Ctrl-C) the first time `chunks` chunks are saved;
    the list collects every chunk count saved from now on."""
    save = crop_module.save_progress
    saved: list[int] = []

    def save_and_count(out_dir, fingerprint, chunks_done):
        save(out_dir, fingerprint, chunks_done)
        saved.append(chunks_done)
        if chunks_done == chunks and saved.count(chunks) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(crop_module, "save_progress", save_and_count)
    return saved


def test_resume_after_an_interruption_gives_identical_output(tmp_path, monkeypatch):
    dataset = tmp_path / "celeba"
    items = aligned_items()
    write_celeba(dataset, [items[i] for i in (0, 1, 7, 8, 9, 2, 3)], "aligned")
    # min_face_size 60 (the faces are ~90 px) keeps the pyramid and the test short
    params = cpu_params(chunk_size=2, shard_size=3, max_failure_rate=0.5, min_face_size=60)
    reference = tmp_path / "reference"
    crop_dataset(dataset, reference, params, "aligned", progress=False)

    saved = interrupt_after(monkeypatch, 2)
    out = tmp_path / "crops"
    with pytest.raises(KeyboardInterrupt):
        crop_dataset(dataset, out, params, "aligned", progress=False)
    assert json.loads((out / "progress.json").read_text())["chunks_done"] == 2
    metrics = crop_dataset(dataset, out, params, "aligned", progress=False)
    assert saved == [0, 1, 2, 3, 4]  # the resumed run did not redo chunks 0 and 1
    counts = [metrics[k] for k in ("detected", "fallback", "missing", "unreadable")]
    assert counts == [4, 1, 1, 1]
    for shard in range(3):
        assert shard_path(out, shard).read_bytes() == shard_path(reference, shard).read_bytes()
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "manifest.parquet"), pd.read_parquet(reference / "manifest.parquet")
    )


def test_changed_params_discard_partial_state(tmp_path, monkeypatch):
    dataset = tmp_path / "celeba"
    write_celeba(dataset, aligned_items()[:4], "aligned")
    params = cpu_params(chunk_size=2, shard_size=2, min_face_size=60)
    saved = interrupt_after(monkeypatch, 1)
    out = tmp_path / "crops"
    with pytest.raises(KeyboardInterrupt):
        crop_dataset(dataset, out, params, "aligned", progress=False)
    changed = cpu_params(chunk_size=2, shard_size=4, min_face_size=60, margin=40)
    crop_dataset(dataset, out, changed, "aligned", progress=False)
    assert saved == [0, 1, 0, 1, 2]  # started afresh
    reference = tmp_path / "reference"
    crop_dataset(dataset, reference, changed, "aligned", progress=False)
    assert shard_path(out, 0).read_bytes() == shard_path(reference, 0).read_bytes()
    assert not shard_path(out, 1).exists()  # the stale layout's second shard is gone


def test_fingerprint_follows_params_and_dataset(tmp_path):
    dataset = tmp_path / "celeba"
    items = aligned_items()[:3]
    write_celeba(dataset, items, "aligned")
    archive = dataset / "img_align_celeba.zip"
    crop = section(CropParams)
    base = dataset_fingerprint(dataset, "aligned", archive, crop, "cpu")
    assert dataset_fingerprint(dataset, "aligned", archive, section(CropParams, workers=4), "cpu") == base
    assert dataset_fingerprint(dataset, "aligned", archive, section(CropParams, margin=8), "cpu") != base
    assert dataset_fingerprint(dataset, "aligned", archive, crop, "cuda") != base
    items[1] = (items[1][0], jpeg(shifted(3, 3)[0]), *items[1][2:])
    write_celeba(tmp_path / "other", items, "aligned")
    other = tmp_path / "other"
    assert (
        dataset_fingerprint(other, "aligned", other / "img_align_celeba.zip", crop, "cpu")
        != base
    )
