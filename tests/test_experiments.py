"""`faceid experiments` and params.yaml under `dvc exp run -S`: a real DVC project (the
repository's params.yaml, a stand-in for the pipeline whose one stage writes a
metrics/summary.json of the real one's shape), two experiments, then the table."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from faceid.cli import main
from faceid.project.experiments import (
    build_table,
    headline_keys,
    parse_experiments,
    render_csv,
    render_markdown,
    render_text,
)

ROOT = Path(__file__).resolve().parents[1]

# the stand-in for the pipeline: summary.json keys as summarize writes them (per backbone:
# start / orig AUC, TAR at the global FMR, per task after / delta, mean delta, words)
SUMMARIZE = '''
import json, yaml
p = yaml.safe_load(open("params.yaml"))
lr, fmr = p["train"]["common"]["neck_lr"], p["evaluate"]["global_fmr"]
summary = {}
for i, backbone in enumerate(p["train"]["backbones"]):
    summary[backbone] = {"start_auc": 0.87, "orig_auc": 0.9 + lr / 10 + i / 100, "orig_fnmr": 0.8 - lr,
                         "orig_top1": 0.75, "mean_delta": lr / 100 - 0.001, "worst_attributes": "Black_Hair,Eyeglasses",
                         **{task: {"after": 0.9 + lr / 10, "delta": lr / 100} for task in p["train"]["tasks"]}}
json.dump(summary, open("metrics/summary.json", "w"), indent=2, sort_keys=True)
'''

DVC_YAML = """stages:
  summarize:
    cmd: python summarize.py
    deps:
      - summarize.py
    params:
      - train.common.neck_lr
      - evaluate.global_fmr
    metrics:
      - metrics/summary.json:
          cache: false
"""


def _run(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_STUDIO_OFFLINE": "true", "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A DVC project holding the repository's params.yaml, run once and committed."""
    dest = tmp_path_factory.mktemp("exp")
    shutil.copy(ROOT / "params.yaml", dest / "params.yaml")
    (dest / "summarize.py").write_text(SUMMARIZE)
    (dest / "dvc.yaml").write_text(DVC_YAML)
    (dest / "metrics").mkdir()
    for args in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "repro", "-q"], ["git", "add", "-A"],
                 ["git", "commit", "-qm", "baseline"]):  # fmt: skip
        _run(args, dest)
    return dest


def test_params_yaml_is_laid_out_as_dvcs_writer_writes_it(tmp_path):
    """`dvc exp run -S` loads params.yaml and writes it all back (dvc.utils.hydra): a null
    written `null`, a flow list or a comment after a list's last item comes back changed,
    and every experiment's diff would carry it. Write nulls empty and lists as block lists."""
    from dvc.utils.hydra import apply_overrides

    copy = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", copy)
    value = yaml.safe_load(copy.read_text())["train"]["common"]["neck_lr"]
    apply_overrides(str(copy), [f"train.common.neck_lr={value}"])  # its own value: nothing to change
    before, after = (ROOT / "params.yaml").read_text().splitlines(), copy.read_text().splitlines()
    moved = [f"{i + 1}: {a!r} -> {b!r}" for i, (a, b) in enumerate(zip(before, after, strict=False)) if a != b]
    assert before == after, f"DVC's writer rewrites params.yaml's lines: {moved[:5]}"


def test_exp_run_set_param_changes_one_line_of_params_yaml(project):
    _run(["dvc", "exp", "run", "-S", "train.common.neck_lr=0.05"], project)
    diff = _run(["git", "diff", "--unified=0", "params.yaml"], project)
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert changed == ["-    neck_lr: 0.1", "+    neck_lr: 0.05"], diff
    before = yaml.safe_load((ROOT / "params.yaml").read_text())
    before["train"]["common"]["neck_lr"] = 0.05
    assert yaml.safe_load((project / "params.yaml").read_text()) == before


def test_experiments_table_shows_both_experiments_the_swept_param_and_headlines(project, capsys, monkeypatch):
    if "neck_lr: 0.05" not in (project / "params.yaml").read_text():  # run alone
        _run(["dvc", "exp", "run", "-S", "train.common.neck_lr=0.05"], project)
    out = _run(["dvc", "exp", "run", "-S", "train.common.neck_lr=0.02"], project)
    assert "Ran experiment" in out
    shown = json.loads(_run(["dvc", "exp", "show", "--json"], project))
    names = [rev["name"] for entry in shown for group in entry.get("experiments") or [] for rev in group["revs"]]
    assert len(names) == 2, names

    monkeypatch.chdir(project)
    assert main(["experiments"]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert max(map(len, lines)) <= 120, text
    header = lines[0].split()
    assert header[:2] == ["experiment", "neck_lr"], text
    assert header[2:] == ["irv1.auc", "r50.auc", "irv1.fnmr", "r50.fnmr", "irv1.mean_delta", "r50.mean_delta"]
    rows = {line.split()[0]: line.split() for line in lines[1:5]}
    assert set(names) <= set(rows), text
    assert {rows[name][1] for name in names} == {"0.05", "0.02"}
    assert rows["workspace"][1] == "0.02" and rows["master"][1] == "0.1"
    # the headline numbers are the experiments' own: orig AUC = 0.9 + neck_lr / 10
    resnet = header.index("r50.auc")
    assert {rows[name][resnet] for name in names} == {"0.9150", "0.9120"}
    assert "neck_lr = param train.common.neck_lr" in text


def _entry(rev: str, name: str | None, params: dict, summary: dict, experiments: list | None = None) -> dict:
    data = {"params": {"params.yaml": {"data": params}}, "metrics": {"metrics/summary.json": {"data": summary}}}
    return {"rev": rev, "name": name, "data": data, "experiments": experiments}


def _shown(summary_for) -> list[dict]:
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    exp = json.loads(json.dumps(base))
    exp["train"]["task"]["Eyeglasses"] = {"neck_lr": 0.05}
    revs = [_entry("a" * 40, "tall-ewes", exp, summary_for(1))]
    return [_entry("workspace", None, base, summary_for(0)),
            _entry("b" * 40, "main", base, summary_for(0), [{"revs": revs, "name": "tall-ewes"}])]  # fmt: skip


def _summary(shift: int) -> dict:
    tasks = ("Eyeglasses", "Blurry", "Wearing_Lipstick", "Wearing_Hat", "Heavy_Makeup", "Blond_Hair")
    return {b: {"start_auc": 0.87, "orig_auc": 0.94 + shift / 1000, "orig_fnmr": 0.88, "orig_top1": 0.75,
                "mean_delta": -0.0005 * shift, "max_group_ratio": 1.25, "worst_attributes": "Black_Hair",
                **{t: {"after": 0.9, "delta": 0.0} for t in tasks}}
            for b in ("inception_resnet_v1", "resnet50")}  # fmt: skip


def test_table_of_the_default_summary_fits_120_columns():
    table = build_table(parse_experiments(_shown(_summary)))
    assert table.params == ["train.task.Eyeglasses.neck_lr"]
    assert [k.split(".")[-1] for k in table.metrics] == ["orig_auc"] * 2 + ["orig_fnmr"] * 2 + ["mean_delta"] * 2
    text = render_text(table)
    assert max(len(line) for line in text.splitlines()) <= 120
    assert re.search(r"^  tall-ewes\s+0\.05\s+0\.9410", text, re.M), text
    assert re.search(r"^main\s+-\s+0\.9400", text, re.M), text
    md = render_markdown(table)
    assert md.splitlines()[0].startswith("| experiment | neck_lr | irv1.auc | r50.auc | irv1.fnmr |"), md
    rows = render_csv(table).splitlines()
    assert rows[0].split(",")[3:5] == ["train.task.Eyeglasses.neck_lr", "inception_resnet_v1.orig_auc"]
    assert rows[3].startswith("tall-ewes," + "a" * 40 + ",experiment,0.05,0.941")


def test_headlines_fall_back_when_summary_keys_change():
    renamed = lambda shift: {"resnet50": {"auc_orig_model": 0.9, "top1": 0.8, "label": "x"}}  # noqa: E731
    rows = parse_experiments(_shown(renamed))
    assert headline_keys(rows) == ["resnet50.auc_orig_model", "resnet50.top1"]  # no pattern matches: first numbers
    assert headline_keys(rows, ["*top1"]) == ["resnet50.top1"]


def test_too_many_columns_are_left_out_and_named():
    wide = lambda shift: {f"backbone_{i}": {"orig_auc": 0.9, "mean_delta": 0.0} for i in range(20)}  # noqa: E731
    text = render_text(build_table(parse_experiments(_shown(wide))), width=100)
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "not shown (" in text and "too wide" in text


def test_experiments_outside_a_dvc_repository_is_one_error_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["experiments"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: `dvc exp show --json` failed"), err
