"""The runs stage's job: every training run's settings, resolved, one file per model.

data/runs/<task>-<backbone>.json holds the merged settings of train@<task>-<backbone>
(faceid.config.train.resolve_train_params) for orig and each task of train.tasks, times
train.backbones. Each train stage depends on its own file instead of on params.yaml
keys, so that a task needs no block of its own in params.yaml, and a change to one
task's block (or to train.task_defaults) re-runs exactly the models whose settings moved.
"""

from __future__ import annotations

import logging
from pathlib import Path

from faceid.common.fileio import write_json
from faceid.config.tasks import all_tasks
from faceid.config.train import TrainParams, resolve_train_params, run_record
from faceid.project.naming import model_stem

__all__ = ["run_path", "write_runs"]

log = logging.getLogger(__name__)


def run_path(folder: str | Path, task: str, backbone: str) -> Path:
    """Where the runs stage writes train@<task>-<backbone>'s settings."""
    return Path(folder) / f"{model_stem(task, backbone)}.json"


def write_runs(train: TrainParams, folder: str | Path) -> list[Path]:
    """Write every run's file into `folder`; files of runs no longer in params are removed."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    runs = {
        run_path(folder, task, backbone): run_record(resolve_train_params(train, task, backbone))
        for backbone in train.backbones
        for task in all_tasks(train.tasks)
    }
    for stale in sorted(set(folder.glob("*.json")) - set(runs)):
        log.info("removed %s: no such run in params.yaml any more", stale)
        stale.unlink()
    for path, record in runs.items():
        write_json(path, record)
    return list(runs)
