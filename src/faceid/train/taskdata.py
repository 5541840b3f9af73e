"""The data one training run reads: its task's training subset and validation pairs, as crops."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from faceid.config.tasks import ORIG_TASK
from faceid.crop.reader import CropDataset, CropStore
from faceid.errors import FaceidError
from faceid.pairs.files import task_train_files

__all__ = ["TaskData", "TrainDataError", "load_task_data", "task_input_files"]

log = logging.getLogger(__name__)


class TrainDataError(FaceidError, ValueError):
    """Training subsets or pairs that do not fit the data contract."""


@dataclass
class TaskData:
    train: CropDataset
    n_classes: int
    val_pairs: dict[str, pd.DataFrame]  # "task" / "orig" → val pairs with crops for both images
    val_images: dict[str, pd.Index]  # the unique images of each pair set
    val_datasets: dict[str, CropDataset]  # their crops, in that order
    skipped: dict[str, int]  # items without a crop, per source
    store: CropStore  # where the crops are (the features stage's file is found by crop)


def _pairs_with_crops(store: CropStore, pairs: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    _, _, found_a = store.locate(pairs["image_a"])
    _, _, found_b = store.locate(pairs["image_b"])
    keep = found_a & found_b
    return pairs[keep].reset_index(drop=True), int((~keep).sum())


def task_input_files(pairs_dir: Path, task: str) -> dict[str, Path]:
    """The pairs files a run of `task` reads: its subset and val pairs, and orig's val pairs."""
    subset, val = task_train_files(pairs_dir, task)
    files = {"subset": subset, "task": val}
    if task != ORIG_TASK:  # orig: one pair set
        files["orig"] = task_train_files(pairs_dir, ORIG_TASK)[1]
    return files


def load_task_data(crops_dir: Path, pairs_dir: Path, task: str) -> TaskData:
    """The task's training subset and its own and orig's validation pairs, as crops."""
    store = CropStore(crops_dir)
    files = task_input_files(pairs_dir, task)
    for path in files.values():
        if not path.exists():
            raise TrainDataError(f"{path}: missing; run `dvc repro pairs` first (is {task!r} in train.tasks?)")
    subsets_path = files["subset"]
    subset = pd.read_parquet(subsets_path)
    if subset.empty:
        raise TrainDataError(
            f"{subsets_path}: no training images for task {task!r} (metrics/pairs_detail.json: train_subsets); "
            "lower pairs.train.min_attribute_images / min_other_images, or drop the task"
        )
    shard, row, found = store.locate(subset["image"])
    labels = subset["label"].to_numpy(np.int64)
    n_classes = int(labels.max()) + 1
    if set(np.unique(labels)) != set(range(n_classes)):
        raise TrainDataError(f"{subsets_path}: labels of task {task!r} are not contiguous 0..{n_classes - 1}")
    skipped = {"train_images": int((~found).sum())}
    train = CropDataset(store.paths, shard[found], row[found], labels[found])
    val_pairs, val_images, val_datasets = {}, {}, {}
    for name, path in files.items():
        if name == "subset":
            continue
        chosen, skipped[f"{name}_val_pairs"] = _pairs_with_crops(store, pd.read_parquet(path))
        if chosen.empty:
            raise TrainDataError(f"{path}: no val pairs with crops")
        val_pairs[name] = chosen
        val_images[name] = pd.Index(pd.unique(pd.concat([chosen["image_a"], chosen["image_b"]])))
        val_datasets[name] = store.dataset(val_images[name])
    for key, count in skipped.items():
        if count:
            log.warning("task %s: %d %s skipped (no crop)", task, count, key)
    return TaskData(train, n_classes, val_pairs, val_images, val_datasets, skipped, store)
