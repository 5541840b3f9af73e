"""`faceid status`: the models a params edit retrains, though `dvc status` names only `runs`."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import faceid.project.plan
from faceid.cli import main
from faceid.project.plan import Plan, changed_runs, expected_runs, make_plan, render_plan
from tests._params import write_params

ROOT = Path(__file__).resolve().parents[1]
TASKS = ["Eyeglasses", "Blurry", "Wearing_Lipstick", "Wearing_Hat", "Heavy_Makeup", "Blond_Hair"]


def _md5(record: dict) -> str:
    return hashlib.md5((json.dumps(record, indent=2, sort_keys=True) + "\n").encode()).hexdigest()


def _lock_from(params: Path) -> dict:
    """dvc.lock as `dvc repro` of `params` records each train stage's run file (the part read here)."""
    stages = {}
    for path, record in expected_runs(params).items():
        model = Path(path).stem
        task, backbone = model.split("-", 1)
        name = f"train-orig@{backbone}" if task == "orig" else f"train@{model}"
        stages[name] = {
            "cmd": "python stages/train.py",
            "deps": [{"path": path, "hash": "md5", "md5": _md5(record), "size": 1}],
        }
        if task == "orig":
            stages[f"evaluate-base@{backbone}"] = {
                "cmd": "python stages/evaluate.py",
                "deps": [dict(stages[name]["deps"][0])],
            }
    return {"schema": "2.0", "stages": stages}


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """The pipeline's dvc.yaml and params.yaml with a dvc.lock of the default's run files."""
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q", "--no-scm"], cwd=tmp_path, check=True)
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(_lock_from(tmp_path / "params.yaml")))
    # without data/ DVC would call every stage changed; its own status is tested by DVC
    monkeypatch.setattr(faceid.project.plan, "_dvc_status", lambda repo: {})
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_no_edit_plans_nothing(project):
    assert changed_runs(project, project / "params.yaml") == {}
    assert make_plan(project).stages == []
    assert render_plan(make_plan(project)) == "up to date: `dvc repro` would run nothing\n"


def test_a_backbone_edit_retrains_and_reevaluates_that_backbones_models(project, capsys):
    write_params(project / "params.yaml", {"train": {"backbone": {"resnet50": {"image_size": 96}}}})
    plan = make_plan(project)
    retrain = {"train-orig@resnet50", *(f"train@{t}-resnet50" for t in TASKS)}
    evaluate = {"evaluate-base@resnet50", "evaluate-orig@resnet50", *(f"evaluate@{t}-resnet50" for t in TASKS)}
    assert set(plan.stages) == retrain | evaluate | {"summarize", "curves"}  # 17 (and runs); inception_resnet_v1's stay
    assert (
        plan.stages.index("train-orig@resnet50")
        < plan.stages.index("train@Eyeglasses-resnet50")
        < plan.stages.index("summarize")
    )
    assert set(plan.why) == retrain | {"evaluate-base@resnet50"}
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("`dvc repro` would run 17 stages:\n  retrain (7): orig-resnet50, "), out
    assert (
        "re-evaluate (8): " in out and "base-resnet50" in out and "inception_resnet_v1" not in out.split("because:")[0]
    )
    assert "data/runs/orig-resnet50.json changes" in out


def test_a_task_block_edit_retrains_only_that_task(project):
    write_params(project / "params.yaml", {"train": {"task_defaults": {"neck_lr": 0.02}}})
    assert len(make_plan(project).group(("train",))) == 12  # every attribute task: task_defaults
    write_params(project / "params.yaml", {"train": {"task": {"Eyeglasses": {"neck_lr": 0.05}}}})
    plan = make_plan(project)
    assert set(plan.group(("train", "train-orig"))) == {
        "train@Eyeglasses-inception_resnet_v1",
        "train@Eyeglasses-resnet50",
    }
    assert len(plan.stages) == 6  # and their two evaluations, summarize and curves


def test_run_file_changes_name_the_settings_when_the_old_file_is_there(project):
    old = expected_runs(project / "params.yaml")["data/runs/Eyeglasses-resnet50.json"]
    (project / "data/runs").mkdir(parents=True)
    (project / "data/runs/Eyeglasses-resnet50.json").write_text(json.dumps(old))
    write_params(project / "params.yaml", {"train": {"task": {"Eyeglasses": {"neck_lr": 0.05}}}})
    why = changed_runs(project, project / "params.yaml")
    assert why["train@Eyeglasses-resnet50"] == "data/runs/Eyeglasses-resnet50.json changes: neck_lr 0.01 → 0.05"


def test_render_plan_groups_models():
    plan = Plan(
        why={"runs": "params: train"},
        stages=["runs", "train-orig@r", "train@A-r", "evaluate-base@r", "evaluate@A-r", "summarize"],
    )
    assert render_plan(plan).splitlines()[:4] == [
        "`dvc repro` would run 6 stages:", "  retrain (2): orig-r, A-r", "  re-evaluate (2): base-r, A-r",
        "  other (2): runs, summarize",
    ]  # fmt: skip
