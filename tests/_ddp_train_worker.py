"""Run under torchrun by tests/test_train_ddp.py: stages/train.py's main() in this process.

Usage: _ddp_train_worker.py OUT STOP_AFTER_SAVE -- <stages/train.py arguments>
Records every file this rank writes (atomic writes, dvclive folders, resume saves) in
OUT/rank-R.json with the run's history. With STOP_AFTER_SAVE > 0, rank 0 dies abruptly
(os._exit, no cleanup) right after its N-th resume point: a crashed job.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from dvclive import Live
from stages import train as train_stage

from faceid.common import fileio
from faceid.train import resume
from faceid.train import run as train_run


def main() -> None:
    out, stop, argv = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[4:]
    rank = int(os.environ["RANK"])
    writes: list[str] = []

    real_atomic, real_live, real_save, real_clear = (
        fileio.atomic_write,
        Live.__init__,
        resume.ResumeState.save,
        resume.ResumeState.clear,
    )

    def atomic_write(path, write, suffix=".tmp"):
        writes.append(f"file:{Path(path).name}")
        return real_atomic(path, write, suffix)

    def live_init(self, *args, **kwargs):
        writes.append("dvclive")
        real_live(self, *args, **kwargs)

    def save(self, state):
        real_save(self, state)
        writes.append("resume-save")
        if stop and writes.count("resume-save") >= stop:
            os._exit(3)

    def clear(self):
        writes.append("resume-clear")
        real_clear(self)

    results = []

    def train_arcface(*args, **kwargs):
        results.append(real_train(*args, **kwargs))
        return results[-1]

    real_train = train_run.train_arcface
    fileio.atomic_write, Live.__init__ = atomic_write, live_init
    resume.ResumeState.save, resume.ResumeState.clear = save, clear
    # the stage imports it when it runs (after the params): its main returns its exit status, the history is its result
    train_run.train_arcface = train_arcface
    assert train_stage.main(argv) == 0
    (out / f"rank-{rank}.json").write_text(json.dumps({"writes": writes, "history": results[0]["history"]}))


if __name__ == "__main__":
    main()
