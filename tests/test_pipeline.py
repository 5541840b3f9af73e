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


# --------------------------------------------------------------------------- the metrics surface

STUDY = {
    **TINY,
    "train": {**TINY["train"], "tasks": ["Eyeglasses", "Smiling"], "backbones": ["resnet50", "inception_resnet_v1"],
              "task": {"orig": {}, "Smiling": {"init": "orig", "head_epochs": 2, "neck_epochs": 2, "neck_lr": 0.02}}},
}  # fmt: skip
# (Eyeglasses has no block here: it runs with train.task_defaults)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """A tiny study of two tasks on two backbones, run and committed."""
    dest = _copy_project(tmp_path_factory.mktemp("study"), STUDY)
    _run(["dvc", "repro"], dest)
    _run(["git", "add", "-A"], dest)
    _run(["git", "commit", "-qm", "results"], dest)
    return dest


def _metric_keys(tree) -> list[str]:
    if not isinstance(tree, dict):
        return []
    return [k for key, v in tree.items() for k in ([key] if not isinstance(v, dict) else _metric_keys(v))]


def _set_param(project: Path, keys: list[str], value) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    node = params
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_metrics_surface_of_a_tiny_study(study):
    shown = _run(["dvc", "metrics", "show"], study)
    print(f"dvc metrics show: {len(shown)} chars, {max(map(len, shown.splitlines()))} wide")
    # DVC shows all metrics files as one table over the union of their keys; the
    # evaluation's share of it (the dataset and train stages declare their own):
    ours = _run(["dvc", "metrics", "show", "metrics/summary.json", "metrics/crop.json", "metrics/pairs.json"], study)
    print(f"summary, crop, pairs: {len(ours)} chars, {max(map(len, ours.splitlines()))} wide\n{ours}")
    assert len(ours) < 5_000
    summary = json.loads((study / "metrics/summary.json").read_text())
    # per backbone: 4 headline numbers, delta/verdict per task, mean delta, hurt attributes, largest group ratio
    assert len(_metric_keys(summary)) == 2 * (4 + 2 * 2 + 1 + 2)
    headlines = {p.stem: json.loads(p.read_text()) for p in sorted((study / "metrics/eval").glob("*.json"))}
    assert sorted(headlines) == sorted(f"{m}-{b}" for m in ("base", "orig", "Eyeglasses", "Smiling")
                                       for b in ("resnet50", "inception_resnet_v1"))  # fmt: skip
    assert {len(h) for h in headlines.values()} == {13} and len({tuple(h) for h in headlines.values()}) == 1
    rows = _run(["dvc", "metrics", "show", "-R", "metrics/eval"], study)
    print(f"level 2: {len(rows)} chars, {max(map(len, rows.splitlines()))} wide\n{rows}")
    assert len(rows.splitlines()) == 1 + len(headlines) and max(map(len, rows.splitlines())) <= 200

    experiments = json.loads(_run(["dvc", "exp", "show", "--no-pager", "--json"], study))
    for experiment in experiments:
        files = experiment["data"]["metrics"]
        per_file = {path: len(_metric_keys(content["data"])) for path, content in files.items()}
        print("exp show metric keys per file:", per_file)
        assert per_file["metrics/summary.json"] <= 40 and "metrics/eval/orig-resnet50.json" not in per_file

    plots = json.loads(_run(["dvc", "plots", "show", "--json"], study))
    assert not plots.get("errors"), plots.get("errors")
    ids = set(plots["data"])
    assert {"metrics/plots/roc/orig.json", "metrics/plots/roc/Eyeglasses.json", "metrics/plots/roc/Smiling.json",
            "metrics/plots/cmc.json"} <= ids  # fmt: skip
    written = {str(p.relative_to(study)) for p in (study / "metrics/plots").rglob("*.json")}
    assert written <= ids, written - ids  # no plot file that no plot reads
    models = {row["model"] for row in json.loads((study / "metrics/plots/roc/Eyeglasses.json").read_text())["roc"]}
    assert models == {
        f"{m}-{b}" for m in ("untrained", "orig", "Eyeglasses") for b in ("resnet50", "inception_resnet_v1")
    }


def test_identical_rerun_has_an_empty_metrics_diff(study):
    _run(["dvc", "repro", "-f"], study)
    assert json.loads(_run(["dvc", "metrics", "diff", "--json"], study)) == {}
    assert _run(["git", "status", "--porcelain", "metrics"], study) == ""


def test_one_task_change_moves_only_that_task(study):
    # the README's sweep command; `++` adds the key (Eyeglasses has no block here) or overrides it
    out = _run(["dvc", "exp", "run", "-S", "++train.task.Eyeglasses.neck_lr=0.2"], study)
    assert yaml.safe_load((study / "params.yaml").read_text())["train"]["task"]["Eyeglasses"] == {"neck_lr": 0.2}
    ran = sorted(re.findall(r"Running stage '([^']+)'", out))
    # check-params validates every edit first (its output is constant: nothing follows from it)
    assert ran == ["check-params", "curves",
                   "evaluate@Eyeglasses-inception_resnet_v1", "evaluate@Eyeglasses-resnet50",
                   "runs", "summarize",
                   "train@Eyeglasses-inception_resnet_v1", "train@Eyeglasses-resnet50"], ran  # fmt: skip
    diff = json.loads(_run(["dvc", "metrics", "diff", "--json"], study))
    summary = set(diff.pop("metrics/summary.json"))
    assert summary and all(".Eyeglasses." in key or key.endswith(".mean_delta") for key in summary), summary
    assert all("/Eyeglasses-" in path for path in diff), sorted(diff)  # the dvclive metrics of those models
    level2 = json.loads(_run(["dvc", "metrics", "diff", "--json", "--targets", "metrics/eval", "-R"], study))
    assert level2 and all("/Eyeglasses-" in path for path in level2), sorted(level2)
    _run(["git", "add", "-A"], study)
    _run(["git", "commit", "-qm", "Eyeglasses neck_lr"], study)


def test_profile_switch_reports_only_the_current_models(study):
    _set_param(study, ["train", "tasks"], ["Eyeglasses"])
    _set_param(study, ["train", "backbones"], ["resnet50"])
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env_out = subprocess.run(["dvc", "repro"], cwd=study, capture_output=True, text=True, check=False,
                             env={**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(study / "src"),
                                  "PATH": path})  # fmt: skip
    assert env_out.returncode == 0, env_out.stderr[-3000:]
    # pairs re-ran, but the remaining models' training folders kept their bytes: nothing retrains
    ran = re.findall(r"Running stage '([^']+)'", env_out.stdout)
    assert "pairs" in ran and not [s for s in ran if s.startswith("train")], ran
    # the old profile's evaluation files belong to no stage: summarize removes them and names each
    assert not (study / "metrics/detail/Smiling-resnet50.json").exists()
    assert not (study / "metrics/eval/Smiling-inception_resnet_v1.json").exists()
    assert "removed" in env_out.stderr and "Smiling-resnet50.json" in env_out.stderr
    summary = json.loads((study / "metrics/summary.json").read_text())
    assert list(summary) == ["resnet50"] and "Smiling" not in summary["resnet50"]
    report = (study / "metrics/report/report.md").read_text()
    assert "Smiling-" not in report and "inception_resnet_v1" not in report  # Smiling, the attribute, stays in the map
    assert sorted(p.name for p in (study / "metrics/plots/roc").iterdir()) == ["Eyeglasses.json", "orig.json"]
