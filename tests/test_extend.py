"""The two recipes of docs/ARCHITECTURE.md, end to end in a copy of the project: a new
attribute task (its name in train.tasks, nothing else) and a new backbone (a BACKBONES
entry, its name in train.backbones and a block) give their DVC stages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from dvc.repo import Repo

from faceid.config.profile import merge_overrides
from tests.test_pipeline import _copy_project, _run

ROOT = Path(__file__).resolve().parents[1]

# the whole edit of params.yaml for both recipes: lists replace, mappings merge, and the
# new backbone's block is added (a key params.yaml does not have, so not an override)
EXTENDED = {
    "train": {"tasks": ["Eyeglasses", "Blurry", "Wearing_Lipstick", "Wearing_Hat", "Heavy_Makeup", "Blond_Hair",
                        "Smiling"],
              "backbones": ["inception_resnet_v1", "resnet50", "tiny"]},
}  # fmt: skip
TINY_BLOCK = {
    "init": "none",
    "lr_scale": 1.0,
    "image_size": 64,
    "batch_size": None,
    "freeze_bn": None,
    "frozen_blocks": None,
}


def _extend(params: dict) -> None:
    merge_overrides(params, EXTENDED)
    params["train"]["backbone"]["tiny"] = TINY_BLOCK

# the registry entry, appended to the copy's faceid/backbones/registry.py (resnet50's pieces, another name)
REGISTRY_ENTRY = (
    '\nBACKBONES["tiny"] = BackboneSpec(**{**BACKBONES["resnet50"].__dict__, "name": "tiny", "weights": {}})\n'
)


def _create_missing_deps(project: Path) -> None:
    """Empty stand-ins for the data a stage reads, so that `dvc repro --dry` walks every stage."""
    with Repo(str(project)) as repo:
        for stage in repo.index.stages:
            for dep in stage.deps:
                path = project / dep.def_path
                if path.exists() or dep.def_path.startswith(("src/", "stages/")):
                    continue
                if path.suffix:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.touch()
                else:
                    path.mkdir(parents=True)


def test_a_new_task_and_a_new_backbone_get_their_stages(tmp_path):
    project = _copy_project(tmp_path, _extend)
    with open(project / "src/faceid/backbones/registry.py", "a") as f:
        f.write(REGISTRY_ENTRY)
    env = {**os.environ, "PYTHONPATH": str(project / "src")}
    check = subprocess.run([sys.executable, "-m", "faceid.cli", "check-params"], cwd=project, env=env,
                           capture_output=True, text=True, check=False)  # fmt: skip
    assert check.returncode == 0, check.stderr
    runs = subprocess.run([sys.executable, "stages/runs.py", "--params", "params.yaml", "--out", "data/runs"],
                          cwd=project, env=env, capture_output=True, text=True, check=False)  # fmt: skip
    assert runs.returncode == 0, runs.stderr
    new, sibling = (json.loads((project / f"data/runs/{m}-tiny.json").read_text()) for m in ("Smiling", "Eyeglasses"))
    assert (new.pop("task"), sibling.pop("task")) == ("Smiling", "Eyeglasses") and new == sibling  # task_defaults
    _create_missing_deps(project)
    out = _run(["dvc", "repro", "--dry"], project)
    for stage in ("pretrained@tiny", "weights@tiny", "train-orig@tiny", "evaluate-base@tiny",
                  "train@Smiling-resnet50", "train@Smiling-tiny", "train@Eyeglasses-tiny", "evaluate@Smiling-tiny",
                  "evaluate-orig@tiny"):  # fmt: skip
        assert f"Running stage '{stage}'" in out, stage
    assert "--run data/runs/Smiling-tiny.json" in out
