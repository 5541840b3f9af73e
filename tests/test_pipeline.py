"""The real flow: `dvc repro` of a tiny version of the default pipeline in a fresh git repo,
then a param change seen by `dvc metrics diff`, a no-op second repro, and `dvc exp run -S`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

TINY = {
    "dataset": {"synthetic": {"n_identities": 24, "min_images_per_identity": 5, "max_images_per_identity": 7,
                              "partition_fractions": [0.5, 0.25, 0.25]}},
    "pairs": {"tasks": ["orig", "Eyeglasses"],
              "verification": {"genuine_per_condition": 200, "impostor_per_condition": 200,
                               "orig_genuine": 400, "orig_impostor": 400},
              "identification": {"n_identities": 6, "n_images": 30}},
    "train": {"tasks": ["Eyeglasses"], "backbones": ["resnet50"],
              "common": {"batch_size": 16, "max_steps_per_epoch": 2},
              "task": {"orig": {"epochs": 1}}},
    "evaluate": {"bootstrap": {"n_boot": 20}},
}  # fmt: skip


def _merge(base: dict, update: dict) -> dict:
    for key, value in update.items():
        base[key] = _merge(base.get(key, {}), value) if isinstance(value, dict) and base.get(key) else value
    return base


def _run(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_STUDIO_OFFLINE": "true", "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return make_tiny_project(tmp_path_factory.mktemp("faceid"))


def make_tiny_project(dest: Path) -> Path:
    """A copy of the project's tracked files (no data, no DVC cache) with the TINY
    params, committed as a new git repo in `dest`."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in tracked:
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    for generated in ("dvc.lock", "metrics"):
        path = dest / generated
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    (dest / "params.yaml").write_text(yaml.safe_dump(_merge(params, TINY), sort_keys=False))
    _run(["git", "init", "-q"], dest)
    _run(["git", "add", "-A"], dest)
    _run(["git", "commit", "-qm", "tiny"], dest)
    return dest


def test_dvc_repro_then_metrics_diff_then_noop(project):
    _run(["dvc", "repro"], project)
    summary = json.loads((project / "metrics/summary.json").read_text())
    for model in ("untrained-resnet50", "orig-resnet50", "Eyeglasses-resnet50"):
        for cell in ("orig.all.auc", "Eyeglasses.pooled.auc"):
            value = summary[f"{model}.{cell}"]
            assert value is not None and 0.0 <= value <= 1.0, (model, cell, value)
    assert (project / "metrics/report/report.md").read_text().count("|") > 20
    assert (project / "metrics/report/roc_Eyeglasses.png").stat().st_size > 1000

    _run(["git", "add", "-A"], project)
    _run(["git", "commit", "-qm", "results"], project)
    started = time.perf_counter()
    out = _run(["dvc", "repro"], project)
    assert "Data and pipelines are up to date" in out
    assert time.perf_counter() - started < 15

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["evaluate"]["thresholds"] = [0.3, 0.7, 0.8]
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = _run(["dvc", "repro"], project)
    assert "Running stage 'train" not in out and "Running stage 'crop'" not in out  # only evaluation re-ran
    _run(["git", "add", "-A"], project)
    _run(["git", "commit", "-qm", "threshold 0.3"], project)
    diff = _run(["dvc", "metrics", "diff", "HEAD~1", "--json"], project)
    changed = {key for changes in json.loads(diff).values() for key in changes}
    assert any("accuracy@0.3" in key for key in changed), sorted(changed)[:10]


def test_dvc_exp_run_with_a_set_param(project):
    out = _run(["dvc", "exp", "run", "-S", "evaluate.global_fmr=0.01"], project)
    assert "Ran experiment" in out or "Experiment" in out
    shown = json.loads(_run(["dvc", "exp", "show", "--json"], project))
    assert "0.01" in json.dumps(shown)
