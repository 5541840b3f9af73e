"""The runs stage: one resolved run per model, read back by the train stage as written."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from dvc.repo import Repo
from stages.runs import main

from faceid.config.engine import ParamsError
from faceid.config.train import TrainParams, TrainTaskParams, load_run, resolve_train_params
from faceid.config.whole import load_all_params
from faceid.evaluate.run import model_to_evaluate
from faceid.train.runs import run_path, write_runs
from tests._params import section, write_params

ROOT = Path(__file__).resolve().parents[1]


def test_every_model_gets_its_resolved_run_and_reads_back_equal(tmp_path):
    train = section(TrainParams, tasks=("Eyeglasses", "Smiling"), task={"Smiling": TrainTaskParams(neck_lr=0.05)})
    written = write_runs(train, tmp_path)
    assert sorted(p.name for p in written) == sorted(
        f"{t}-{b}.json" for t in ("orig", "Eyeglasses", "Smiling") for b in train.backbones
    )
    for backbone in train.backbones:
        for task in ("orig", "Eyeglasses", "Smiling"):
            assert load_run(run_path(tmp_path, task, backbone)) == resolve_train_params(train, task, backbone)
    smiling, glasses = (load_run(run_path(tmp_path, t, "resnet50")) for t in ("Smiling", "Eyeglasses"))
    assert (smiling.neck_lr, glasses.neck_lr) == (0.05, train.task_defaults.neck_lr)


def test_files_of_runs_no_longer_in_params_are_removed_and_others_rewritten(tmp_path):
    write_runs(section(TrainParams, tasks=("Eyeglasses", "Smiling")), tmp_path)
    before = run_path(tmp_path, "Eyeglasses", "resnet50").read_bytes()
    write_runs(section(TrainParams, tasks=("Eyeglasses",)), tmp_path)
    assert not run_path(tmp_path, "Smiling", "resnet50").exists()
    assert run_path(tmp_path, "Eyeglasses", "resnet50").read_bytes() == before  # same settings, same bytes


def test_one_task_block_changes_only_that_tasks_files(tmp_path):
    """What keeps DVC's granularity: a train stage re-runs when its own file changes."""
    base = tmp_path / "a"
    main(["--params", str(write_params(tmp_path / "a.yaml", lambda d: None)), "--out", str(base)])
    edited = tmp_path / "b"
    params = write_params(tmp_path / "b.yaml", lambda d: d["train"]["task"].update(Blurry={"neck_lr": 0.5}))
    main(["--params", str(params), "--out", str(edited)])
    changed = sorted(p.name for p in base.iterdir() if p.read_bytes() != (edited / p.name).read_bytes())
    assert changed == ["Blurry-inception_resnet_v1.json", "Blurry-resnet50.json"]
    assert sorted(p.name for p in base.iterdir()) == sorted(p.name for p in edited.iterdir())


def test_a_new_task_needs_only_its_name(tmp_path):
    params = write_params(tmp_path / "params.yaml", lambda d: d["train"]["tasks"].append("Smiling"))
    main(["--params", str(params), "--out", str(tmp_path / "runs")])
    new, sibling = (
        json.loads(run_path(tmp_path / "runs", t, "resnet50").read_text()) for t in ("Smiling", "Eyeglasses")
    )
    assert (new.pop("task"), sibling.pop("task")) == ("Smiling", "Eyeglasses") and new == sibling
    assert load_all_params(params).train.task.keys() == {"orig"}


@pytest.mark.parametrize(("edit", "message"), [
    (lambda r: r.pop("lr"), r"lr: missing"),
    (lambda r: r.update(select_epoch="best"), r"select_epoch: 'best' is not a valid choice"),
    (lambda r: r.update(batch_size=0), r"run.batch_size: expected an integer >= 1, got 0"),
    (lambda r: r.update(colour="red"), r"unknown key 'colour'"),
])  # fmt: skip
def test_a_hand_edited_run_file_is_checked(tmp_path, edit, message):
    write_runs(section(TrainParams), tmp_path)
    path = run_path(tmp_path, "orig", "resnet50")
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record))
    with pytest.raises(ParamsError, match=rf"orig-resnet50.json: {message}.*dvc repro"):
        load_run(path)


def test_every_stage_that_runs_a_training_setting_tracks_its_run_file():
    """The train stages and evaluate-base (orig's starting point) pass their run file and
    depend on it, so no param edit can leave them stale."""
    with Repo(str(ROOT)) as repo:
        stages = {stage.addressing: stage for stage in repo.index.stages}
    for name, stage in stages.items():
        kind, _, item = name.partition("@")
        if kind not in ("train-orig", "train", "evaluate-base"):
            continue
        run = f"data/runs/{item if kind == 'train' else f'orig-{item}'}.json"
        assert f"--run {run}" in stage.cmd and run in {dep.def_path for dep in stage.deps}, name
    assert {n.partition("@")[0] for n in stages} >= {"runs", "train-orig", "train", "evaluate-base"}


def test_a_backbones_start_is_built_from_orig_s_run(tmp_path):
    train = section(TrainParams)
    run = dataclasses.replace(resolve_train_params(train, "orig", "resnet50"), image_size=72)
    _, meta = model_to_evaluate(train, None, "resnet50", None, start_run=run)
    assert meta["image_size"] == 72 != resolve_train_params(train, "orig", "resnet50").image_size
    with pytest.raises(
        ParamsError, match=r"the start of resnet50 is orig-resnet50's run, got a run of Eyeglasses-resnet50"
    ):
        model_to_evaluate(
            train, None, "resnet50", None, start_run=resolve_train_params(train, "Eyeglasses", "resnet50")
        )
