"""The pairs stage's files inside its output folder (data/pairs), for writer and readers.

    pairs.parquet                    every task's val and test verification pairs
    identification.parquet           the closed-set identification protocol
    attribute_pairs.parquet          evaluation-only test pairs per evaluate.attributes
    train/<task>/subset.parquet      the task's training subset
    train/<task>/val_pairs.parquet   the task's val pairs (model selection during training)

A training run reads only its task's folder and orig's, and dvc.yaml's train stages
depend on exactly those. Pairs and subsets are drawn per task from their own random
streams, so adding a task writes its folder and leaves every other folder's bytes, and
so every other model, as they were. The val pairs under train/ are the rows of
pairs.parquet for that task and split, copied in the same order: evaluation reads
pairs.parquet, training its task's copy.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ATTRIBUTE_PAIRS_FILE", "IDENTIFICATION_FILE", "PAIRS_FILE", "TRAIN_DIR", "task_train_files"]

PAIRS_FILE = "pairs.parquet"
IDENTIFICATION_FILE = "identification.parquet"
ATTRIBUTE_PAIRS_FILE = "attribute_pairs.parquet"  # absent when evaluate.attributes/groups are empty
TRAIN_DIR = "train"


def task_train_files(pairs_dir: str | Path, task: str) -> tuple[Path, Path]:
    """(training subset, val pairs) of `task` under the pairs folder."""
    folder = Path(pairs_dir) / TRAIN_DIR / task
    return folder / "subset.parquet", folder / "val_pairs.parquet"
