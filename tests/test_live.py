"""The train stage's dvclive logger inside `dvc exp run`: no git-add pass of its own."""

from __future__ import annotations

import subprocess
from pathlib import Path

import dvclive.live
import pytest
from dvc.repo import Repo
from dvclive import Live

from faceid.train.run import open_live


def _logged(make, folder: Path) -> None:
    with make(folder) as live:
        live.log_metric("val_auc_task", 0.9)
        live.next_step()


def test_inside_dvc_exp_run_the_logger_skips_dvclives_git_add(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "README").write_text("x\n")
    subprocess.run([*git, "-C", str(tmp_path), "add", "README"], check=True)
    subprocess.run([*git, "-C", str(tmp_path), "commit", "-qm", "x"], check=True)
    Repo.init(str(tmp_path)).close()
    rev = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    monkeypatch.chdir(tmp_path)
    # what `dvc exp run` sets for a stage's command
    for key, value in {"DVC_ROOT": str(tmp_path), "DVC_EXP_BASELINE_REV": rev.strip(), "DVC_EXP_NAME": "e"}.items():
        monkeypatch.setenv(key, value)
    calls = []
    monkeypatch.setattr(dvclive.live, "ensure_dir_is_tracked", lambda folder, repo: calls.append(folder))
    _logged(open_live, tmp_path / "metrics" / "train" / "m")
    assert calls == []
    assert (tmp_path / "metrics" / "train" / "m" / "metrics.json").is_file()
    # dvclive's default does it (the check above can fail)
    _logged(lambda d: Live(dir=str(d), dvcyaml=False, save_dvc_exp=False), tmp_path / "metrics" / "train" / "n")
    assert calls == [str(tmp_path / "metrics" / "train" / "n")]
