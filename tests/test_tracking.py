"""Every input of a result is a DVC dependency by content, and the user's files are never
touched: `dvc repro` / `dvc status` in a copy of the project with a local in-the-wild copy
read in place (link mode) and pretrained weights from a folder."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from faceid.config.profile import merge_overrides
from tests.test_local_source import WILD_DIR, write_tiny_celeba
from tests.test_pipeline import TINY, _copy_project, _run

pytestmark = pytest.mark.slow


def _jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (150, 120, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _snapshot(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    """Each file's link count, mode and bytes (what the user owns)."""
    return {
        str(p.relative_to(folder)): (p.stat().st_nlink, p.stat().st_mode, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _changed_stages(project: Path) -> set[str]:
    return set(json.loads(_run(["dvc", "status", "--json"], project) or "{}"))


@pytest.fixture(scope="module")
def wild_project(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny project whose dataset is a local in-the-wild copy read in place; after
    `dvc repro crop`."""
    source = tmp_path_factory.mktemp("mine")
    write_tiny_celeba(source, layout="wild", images="folder")
    for i, image in enumerate(sorted((source / WILD_DIR).iterdir())):
        image.write_bytes(_jpeg(i))
    profile = {**TINY, "dataset": {"source": "local", "layout": "wild", "local_dir": str(source),
                                   "verify_md5": False, "local_mode": "link"}}  # fmt: skip
    project = _copy_project(tmp_path_factory.mktemp("faceid"), profile)
    before = _snapshot(source)
    _run(["dvc", "repro", "crop"], project)
    assert _snapshot(source) == before  # link counts, modes and bytes as they were
    return project, source


def test_link_mode_leaves_the_users_files_alone_and_sees_a_replaced_photo(wild_project):
    project, source = wild_project
    assert not {"dataset", "crop"} & _changed_stages(project)
    assert [p.name for p in (project / "data" / "celeba").iterdir()] == ["local_source.json"]
    photo = source / WILD_DIR / "000002.jpg"
    original = photo.read_bytes()
    photo.write_bytes(_jpeg(99))
    try:
        assert {"dataset", "crop"} <= _changed_stages(project)
    finally:
        photo.write_bytes(original)
    assert not {"dataset", "crop"} & _changed_stages(project)
    before = _snapshot(source)
    _run(["dvc", "repro", "-f", "crop"], project)  # a second run, and DVC's commit of it
    assert _snapshot(source) == before
    assert all(os.access(p, os.W_OK) for p in source.rglob("*"))


def test_a_replaced_weights_file_re_runs_its_conversion_and_stays_the_users(tmp_path):
    local = tmp_path / "weights"
    local.mkdir()
    torch.save({"conv1.weight": torch.ones(2, 2), "fc.weight": torch.zeros(3, 2)}, local / "r50.pth")
    source = {"url": "http://127.0.0.1:9/r50.pth", "file": "r50.pth", "sha256": None}  # unpinned: a new release is fine

    def profile(params: dict) -> None:
        merge_overrides(params, TINY)
        params["weights"].update(local_dir=str(local), offline=True, sources={"imagenet": source})
        params["train"]["backbone"]["resnet50"]["init"] = "imagenet"

    project = _copy_project(tmp_path / "faceid", profile)
    before = _snapshot(local)
    _run(["dvc", "repro", "weights@resnet50"], project)
    assert _snapshot(local) == before
    assert not {"pretrained@resnet50", "weights@resnet50"} & _changed_stages(project)
    torch.save({"conv1.weight": torch.zeros(2, 2)}, local / "r50.pth")  # a new release, same name
    assert "weights@resnet50" in _changed_stages(project)
    out = _run(["dvc", "repro", "weights@resnet50"], project)
    assert "Running stage 'weights@resnet50'" in out
    assert torch.load(project / "data" / "weights" / "resnet50.pt", weights_only=True)["conv1.weight"].sum() == 0


def test_a_rejected_value_stops_dvc_repro_before_any_output_is_deleted(tmp_path):
    """DVC deletes a stage's outputs before running it: a value rejected inside the runs
    stage left data/runs deleted. The check-params stage runs first and stops the repro."""
    project = _copy_project(tmp_path / "faceid", TINY)
    _run(["dvc", "repro", "runs"], project)
    before = {p.name: p.read_bytes() for p in (project / "data" / "runs").iterdir()}
    assert before
    params = project / "params.yaml"
    values = yaml.safe_load(params.read_text())
    values["train"]["common"]["margin"] = 5.0
    params.write_text(yaml.safe_dump(values, sort_keys=False))
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_STUDIO_OFFLINE": "true", "PYTHONPATH": str(project / "src")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    done = subprocess.run(["dvc", "repro", "runs"], cwd=project, env=env, capture_output=True, text=True, check=False)
    assert done.returncode != 0
    assert "train.common.margin: expected an angle in radians" in done.stdout + done.stderr
    assert "Running stage 'runs'" not in done.stdout
    assert {p.name: p.read_bytes() for p in (project / "data" / "runs").iterdir()} == before


def test_copy_mode_copies_and_sees_a_changed_original(tmp_path):
    source = tmp_path / "mine"
    write_tiny_celeba(source, layout="wild", images="folder")
    for i, image in enumerate(sorted((source / WILD_DIR).iterdir())):
        image.write_bytes(_jpeg(i))
    profile = {**TINY, "dataset": {"source": "local", "layout": "wild", "local_dir": str(source),
                                   "verify_md5": False, "local_mode": "copy"}}  # fmt: skip
    project = _copy_project(tmp_path / "faceid", profile)
    before = _snapshot(source)
    _run(["dvc", "repro", "dataset"], project)
    assert _snapshot(source) == before
    copied = project / "data" / "celeba" / WILD_DIR / "000002.jpg"
    assert not copied.is_symlink() and copied.read_bytes() == (source / WILD_DIR / "000002.jpg").read_bytes()
    assert "dataset" not in _changed_stages(project)
    (source / WILD_DIR / "000002.jpg").write_bytes(_jpeg(99))
    assert "dataset" in _changed_stages(project)
    _run(["dvc", "repro", "dataset"], project)
    assert copied.read_bytes() == _jpeg(99)
