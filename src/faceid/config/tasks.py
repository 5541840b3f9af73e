"""The one task list: `train.tasks`, the CelebA attributes studied; `orig` is implied.

Adding a task is adding its name there. Every consumer reads that one list: the pairs
stage (pairs and a training subset for orig and each task), dvc.yaml's train and
evaluate matrices, the runs stage (one resolved run per model) and summarize. `orig`,
the unconditioned task every attribute is compared with, is never listed: the
train-orig and evaluate-orig stages always exist. A task's train.task block is optional.

`read_tasks` reads just this key, so a stage that needs the list (pairs) neither
validates nor depends on the rest of the train section.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from faceid.config.engine import ParamsError, load_keys
from faceid.data.celeba import ATTRIBUTE_NAMES

__all__ = ["ORIG_TASK", "TASKS_KEY", "all_tasks", "check_tasks", "read_tasks"]

ORIG_TASK = "orig"  # the unconditioned task: all usable images, condition `all`
TASKS_KEY = "train.tasks"


def check_tasks(tasks: tuple[str, ...]) -> None:
    """Each task a CelebA attribute name (case-sensitive), none twice, orig not listed."""
    for i, task in enumerate(tasks):
        if task == ORIG_TASK:
            raise ParamsError(
                f"{TASKS_KEY}[{i}]: {ORIG_TASK!r} is always trained and evaluated; list only attribute tasks"
            )
        if task not in ATTRIBUTE_NAMES:
            close = difflib.get_close_matches(task, ATTRIBUTE_NAMES, n=1)
            if not close:  # a case slip ("eyeglasses") is too far for difflib's ratio
                close = [n for n in ATTRIBUTE_NAMES if n.lower() == str(task).lower()]
            raise ParamsError(
                f"{TASKS_KEY}[{i}]: unknown task {task!r}{f' (did you mean {close[0]!r}?)' if close else ''}; "
                f"valid: {', '.join(ATTRIBUTE_NAMES)} "
                "(attribute names are case-sensitive, as in list_attr_celeba.txt)"
            )
    repeated = sorted({t for t in tasks if tasks.count(t) > 1})
    if repeated:
        raise ParamsError(f"{TASKS_KEY}: {', '.join(repeated)} listed more than once; list each task once")


def all_tasks(tasks: tuple[str, ...]) -> tuple[str, ...]:
    """orig, then the attribute tasks: every task given pairs, a model and an evaluation."""
    return (ORIG_TASK, *tasks)


@dataclass(frozen=True)
class _TaskList:
    """train.tasks alone, typed by the engine like every other key."""

    tasks: tuple[str, ...]


def read_tasks(path: str | Path) -> tuple[str, ...]:
    """train.tasks of the params file at `path`, checked (an error names the key)."""
    tasks = load_keys(path, _TaskList, "train").tasks
    try:
        check_tasks(tasks)
    except ParamsError as exc:
        raise ParamsError(f"{path}: {exc}") from exc
    return tasks
