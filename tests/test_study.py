"""The metrics surface of a tiny study (two tasks on two backbones, run and committed):
`dvc metrics show/diff` across commits, an identical re-run, a one-task change and a
profile switch. Its own file so that `pytest -m slow -n 2 --dist loadfile` runs it beside
test_pipeline.py's flows rather than after them (the study fixture is built once per file)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.test_pipeline import TINY, _copy_project, _run

pytestmark = pytest.mark.slow

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
    # everything from one backbone's trunk features on, forced: its training, evaluation,
    # summary and curves (the same bytes of dataset, crop and pairs: test_isa, three runs)
    out = _run(["dvc", "repro", "-f", "--downstream", "features@resnet50"], study)
    ran = set(re.findall(r"Running stage '([^']+)'", out))
    assert {"features@resnet50", "train-orig@resnet50", "train@Smiling-resnet50", "evaluate@Eyeglasses-resnet50",
            "summarize", "curves"} <= ran and not any("inception" in s for s in ran), sorted(ran)  # fmt: skip
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
                                  "PATH": path, "FACEID_FORKSERVER": "1"})  # fmt: skip
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
