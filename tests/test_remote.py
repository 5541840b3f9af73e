"""Moving artefacts and running sweeps beyond one process, on the tiny profile of
tests/test_pipeline.py: a local-directory DVC remote with the run cache, a fresh clone that
pulls and finds everything up to date once the dataset stage has linked its inputs, and `dvc queue start -j 2`."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.test_pipeline import _run, make_tiny_project

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory) -> Path:
    """The tiny project after `dvc repro`, results committed, a local remote as default."""
    project = make_tiny_project(tmp_path_factory.mktemp("origin"))
    _run(["dvc", "repro"], project)
    remote = tmp_path_factory.mktemp("remote")
    _run(["dvc", "remote", "add", "-d", "storage", str(remote)], project)
    _run(["git", "add", "-A"], project)
    _run(["git", "commit", "-qm", "results and remote"], project)
    return project


def _set_param(project: Path, section: str, key: str, value) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params[section][key] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_push_with_run_cache_then_a_fresh_clone_pulls_and_is_up_to_date(reproduced, tmp_path):
    origin = reproduced
    # credentials would go to .dvc/config.local (`dvc remote modify --local`), which git ignores
    _run(["git", "check-ignore", "-q", ".dvc/config.local"], origin)
    tracked_config = (origin / ".dvc" / "config").read_text()
    assert "storage" in tracked_config and "password" not in tracked_config
    _run(["dvc", "push", "--run-cache"], origin)
    # a run that is not committed: only the run cache carries it to the other clone
    # (weights: the one stage here whose run can be restored elsewhere, see README)
    _set_param(origin, "weights", "download_retries", 4)
    assert "Running stage 'weights@resnet50'" in _run(["dvc", "repro", "weights@resnet50"], origin)
    _run(["dvc", "push", "--run-cache"], origin)
    _run(["git", "checkout", "--", "."], origin)  # params, dvc.lock, metrics as committed
    _run(["dvc", "checkout"], origin)

    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(origin), str(clone)], tmp_path)
    assert not (clone / "data" / "crops").exists()
    _run(["dvc", "pull", "--run-cache"], clone)
    assert (clone / "data" / "crops" / "manifest.parquet").exists()
    assert (clone / "data" / "models" / "Eyeglasses-resnet50" / "model.pt").exists()
    out = _run(["dvc", "repro"], clone)
    # only the stages that link external inputs run: data/celeba-input (what the crop stage
    # reads) and data/pretrained/<backbone> are not cached, so that DVC never links its cache
    # to a user's files; the same content, so nothing after them runs
    assert set(re.findall(r"Running stage '([^']+)'", out)) == {"dataset", "pretrained@resnet50"}, out[-2000:]
    assert "Data and pipelines are up to date" in _run(["dvc", "repro"], clone)

    # the uncommitted run comes back from the run cache instead of re-running (only
    # pretrained@, whose output is not cached, relinks: the same content)
    _set_param(clone, "weights", "download_retries", 4)
    out = _run(["dvc", "repro", "--pull", "weights@resnet50"], clone)
    assert set(re.findall(r"Running stage '([^']+)'", out)) == {"pretrained@resnet50"}, out[-2000:]
    assert "Stage 'weights@resnet50' is cached - skipping run, checking out outputs" in out


def test_a_run_with_an_uncached_metric_is_not_restored_in_another_clone(reproduced, tmp_path):
    """`dvc push --run-cache` does not push `cache: false` outputs (metrics/pairs.json), so
    pairs' run record arrives but cannot be restored: the stage re-runs (dvc 3.67.1)."""
    origin = reproduced
    _set_param(origin, "pairs", "seed", 7)
    assert "Running stage 'pairs'" in _run(["dvc", "repro", "pairs"], origin)
    _run(["dvc", "push", "--run-cache"], origin)
    _run(["git", "checkout", "--", "."], origin)
    _run(["dvc", "checkout"], origin)
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(origin), str(clone)], tmp_path)
    _run(["dvc", "pull", "--run-cache"], clone)
    _set_param(clone, "pairs", "seed", 7)
    out = _run(["dvc", "repro", "--pull", "pairs"], clone)
    assert "Running stage 'pairs'" in out and "Stage 'pairs' is cached - skipping run" not in out


def test_persist_stages_are_not_in_the_run_cache(reproduced, tmp_path):
    """dvc 3.67.1: a stage with a `persist: true` out (dataset, crop, train) is never saved
    to the run cache, so an uncommitted change to one re-runs it in another clone. (Nor is
    one with a `cache: false` out outside metrics/plots: evaluate, summarize.)"""
    origin = reproduced
    _set_param(origin, "crop", "workers", 2)  # output-neutral, but crop's params change
    out = _run(["dvc", "repro", "crop"], origin)
    assert "Running stage 'crop'" in out
    _run(["dvc", "push", "--run-cache"], origin)
    _run(["git", "checkout", "--", "."], origin)  # params, dvc.lock, metrics as committed
    _run(["dvc", "checkout"], origin)
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(origin), str(clone)], tmp_path)
    _run(["dvc", "pull", "--run-cache"], clone)
    _set_param(clone, "crop", "workers", 2)
    out = _run(["dvc", "repro", "crop"], clone)
    assert "Running stage 'crop'" in out and "Stage 'crop' is cached - skipping run" not in out


def _wait_for_queue(project: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = _run(["dvc", "queue", "status"], project)
        if "Queued" not in status and "Running" not in status:
            return status
        time.sleep(3)
    raise AssertionError(f"the queue did not finish in {timeout} s:\n{status}")


def test_queue_start_two_workers_runs_two_experiments_to_completion(reproduced):
    project = reproduced
    for fmr in (0.01, 0.005):
        _run(["dvc", "exp", "run", "--queue", "-S", f"evaluate.global_fmr={fmr}"], project)
    _run(["dvc", "queue", "start", "-j", "2"], project)
    status = _wait_for_queue(project, timeout=900)
    assert status.count("Success") == 2, status
    shown = json.loads(_run(["dvc", "exp", "show", "--json"], project))
    experiments = [e for commit in shown for e in commit.get("experiments") or []]
    finished = {}
    for experiment in experiments:
        data = experiment["revs"][0]["data"]
        fmr = data["params"]["params.yaml"]["data"]["evaluate"]["global_fmr"]
        summary = data["metrics"]["metrics/summary.json"]["data"]
        finished[fmr] = summary
    assert set(finished) == {0.01, 0.005}
    assert all(any(v is not None for v in s.values()) for s in finished.values())


def test_two_queue_workers_claim_one_gpu_each(tmp_path):
    """`dvc queue start -j 2` with FACEID_GPUS=0,1: two experiments that must run at the
    same time (they meet at a rendezvous) each claim a different GPU."""
    project, meeting = tmp_path / "project", tmp_path / "meeting"
    project.mkdir()
    meeting.mkdir()
    script = (
        "import os, pathlib, sys, time\n"
        "from faceid.common.gpus import claim_gpu_from_env\n"
        "gpu = claim_gpu_from_env()\n"
        "d = pathlib.Path(sys.argv[1])\n"
        "(d / str(os.getpid())).write_text(f'{gpu} {os.environ[\"CUDA_VISIBLE_DEVICES\"]}')\n"
        "end = time.time() + 120\n"
        "while len(list(d.iterdir())) < 2 and time.time() < end: time.sleep(0.5)\n"
        "pathlib.Path('seen.txt').write_text(str(len(list(d.iterdir()))))\n"
    )
    (project / "meet.py").write_text(script)
    (project / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"meet": {
        "cmd": f"{sys.executable} meet.py {meeting}", "deps": ["meet.py"],
        "params": ["value"], "outs": ["seen.txt"]}}}))  # fmt: skip
    (project / "params.yaml").write_text("value: 0\n")
    _run(["git", "init", "-q"], project)
    _run(["dvc", "init", "-q"], project)
    _run(["git", "add", "-A"], project)
    _run(["git", "commit", "-qm", "meet"], project)
    for value in (1, 2):
        _run(["dvc", "exp", "run", "--queue", "-S", f"value={value}"], project)
    _run(["env", "FACEID_GPUS=0,1", f"FACEID_GPU_LOCKS={tmp_path / 'locks'}",
          "dvc", "queue", "start", "-j", "2"], project)  # fmt: skip
    status = _wait_for_queue(project, timeout=300)
    assert status.count("Success") == 2, status
    assert sorted(p.read_text() for p in meeting.iterdir()) == ["0 0", "1 1"]
