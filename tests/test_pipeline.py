"""The real flow: `dvc repro` of a tiny version of the default pipeline in a fresh git repo,
then a param change seen by `dvc metrics diff`, a no-op second repro, and `dvc exp run -S`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from tools import stage_deps

from tests._params import write_params

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

TINY = {
    "dataset": {"synthetic": {"n_identities": 24, "min_images_per_identity": 5, "max_images_per_identity": 7,
                              "partition_fractions": [0.5, 0.25, 0.25]}},
    "pairs": {"verification": {"genuine_per_condition": 200, "impostor_per_condition": 200,
                               "orig_genuine": 400, "orig_impostor": 400},
              "identification": {"n_identities": 6, "n_images": 30}},
    "train": {"tasks": ["Eyeglasses"], "backbones": ["resnet50"],
              "common": {"batch_size": 16, "neck_epochs": 4},
              "task": {"orig": {}, "Eyeglasses": {"head_epochs": 2, "neck_epochs": 2}}},
    "evaluate": {"bootstrap": {"n_boot": 20, "n_boot_conclusions": 50}},
}  # fmt: skip


def _run(args: list[str], cwd: Path, **extra_env: str) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_STUDIO_OFFLINE": "true", "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = f"{cwd / 'src'}{os.pathsep}{cwd}"  # the copy's library, not the venv's checkout
    env["FACEID_FORKSERVER"] = "1"  # dvc runs the stages through the warm server, as a user's does
    env.update(extra_env)
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the project's tracked files (no data, no DVC cache) as a new git repo."""
    return _copy_project(tmp_path_factory.mktemp("faceid"), TINY)


def make_tiny_project(dest: Path) -> Path:
    """The TINY profile as a new git repo in `dest` (no data, no DVC cache)."""
    return _copy_project(dest, TINY)


def _copy_project(dest: Path, profile: dict | Callable[[dict], Any]) -> Path:
    """The project's tracked files without results, params merged with `profile` (or
    edited by it, a callable: tests/_params.py's write_params), committed."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in tracked:
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    for generated in ("dvc.lock", "metrics"):
        path = dest / generated
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    write_params(dest / "params.yaml", profile)
    for args in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "profile"]):
        _run(args, dest)
    return dest


def test_dvc_repro_then_metrics_diff_then_noop(project, tmp_path):
    trace = tmp_path / "params-read.jsonl"
    _run(["dvc", "repro"], project, FACEID_PARAMS_TRACE=str(trace))
    # every params key a stage read is one its dvc.yaml entry lists (tools/stage_deps.py)
    reads, strays = stage_deps.traced_reads(trace, project)
    assert not strays and len(reads) >= 12, (strays, sorted(reads))
    listed = stage_deps.listed_params(project)
    unlisted = {stage: stage_deps.unlisted_reads(keys, listed[stage]) for stage, keys in reads.items()}
    assert not any(unlisted.values()), {stage: sorted(keys) for stage, keys in unlisted.items() if keys}
    summary = json.loads((project / "metrics/summary.json").read_text())["resnet50"]
    for key in ("start_auc", "orig_auc", "orig_top1"):
        assert summary[key] is not None and 0.0 <= summary[key] <= 1.0, (key, summary[key])
    assert summary["Eyeglasses"]["verdict"] in ("raised", "lowered", "no detectable change", "equals its start",
                                                "too little data")  # fmt: skip
    assert summary["Eyeglasses"]["delta"] is not None
    for model in ("base-resnet50", "orig-resnet50", "Eyeglasses-resnet50"):
        detail = json.loads((project / f"metrics/detail/{model}.json").read_text())
        assert 0.0 <= detail["tasks"]["Eyeglasses"]["pooled"]["auc"] <= 1.0
    assert (project / "metrics/report/report.md").read_text().count("|") > 20
    assert (project / "metrics/report/roc_Eyeglasses.png").stat().st_size > 1000

    _run(["git", "add", "-A"], project)
    _run(["git", "commit", "-qm", "results"], project)
    out = _run(["dvc", "repro"], project)
    assert "Data and pipelines are up to date" in out

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["evaluate"]["thresholds"] = [0.3, 0.7, 0.8]
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = _run(["dvc", "repro"], project)
    assert "Running stage 'train" not in out and "Running stage 'crop'" not in out  # only evaluation re-ran
    _run(["git", "add", "-A"], project)
    _run(["git", "commit", "-qm", "threshold 0.3"], project)
    # threshold accuracies are detail (level 3): the study's answer does not move
    assert json.loads(_run(["dvc", "metrics", "diff", "HEAD~1", "--json"], project)) == {}
    detail = json.loads((project / "metrics/detail/orig-resnet50.json").read_text())
    assert detail["tasks"]["orig"]["all"]["threshold_accuracy"][0]["threshold"] == 0.3


def _exp_entries(shown: list[dict]) -> list[dict]:
    """Every row of `dvc exp show --json`: the workspace, the baseline and its experiments."""
    rows = []
    for entry in shown:
        rows.append(entry)
        for group in entry.get("experiments") or []:
            rows += group.get("revs", [])
    return rows


def test_dvc_exp_run_with_a_set_param(project):
    out = _run(["dvc", "exp", "run", "-S", "evaluate.global_fmr=0.01"], project)
    name = re.search(r"Ran experiment\(s\): (\S+)", out)
    assert name, out
    shown_json = json.loads(_run(["dvc", "exp", "show", "--json"], project))
    experiment = next(row["data"] for row in _exp_entries(shown_json) if row.get("name") == name.group(1))
    baseline = next(entry["data"] for entry in shown_json if entry["rev"] != "workspace")
    assert experiment["params"]["params.yaml"]["data"]["evaluate"]["global_fmr"] == 0.01
    assert baseline["params"]["params.yaml"]["data"]["evaluate"]["global_fmr"] != 0.01
    # the experiment's row shows the summary its run wrote (exp run leaves it in the workspace),
    # and its evaluation set the operating point from the new global FMR
    written = json.loads((project / "metrics/summary.json").read_text())["resnet50"]
    shown = experiment["metrics"]["metrics/summary.json"]["data"]["resnet50"]
    # (DVC leaves null values out of its metrics: max_group_ratio is null on so few pairs)
    assert "orig_fnmr" in written and shown == {k: v for k, v in written.items() if v is not None}
    detail = json.loads((project / "metrics/detail/orig-resnet50.json").read_text())
    assert detail["global_threshold"]["fmr_requested"] == 0.01
