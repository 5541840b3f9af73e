"""The pairs stage's files (layout: faceid.pairs.files): parquet tables, one training
folder per task, headline counts and every count."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from faceid.common.fileio import atomic_write
from faceid.pairs.build import PairsResult
from faceid.pairs.files import (
    ATTRIBUTE_PAIRS_FILE,
    IDENTIFICATION_FILE,
    PAIRS_FILE,
    TRAIN_DIR,
    task_train_files,
)
from faceid.pairs.manifest import EXCLUDED_STATUSES
from faceid.pairs.verification import EVAL_SPLITS

TRAIN_SPLIT = "val"  # the split training selects its epoch on


def headline_counts(metrics: dict[str, Any]) -> dict[str, int]:
    """The few pair counts worth a column in `dvc metrics show`; the rest stays in the detail."""
    per_split = {split: 0 for split in EVAL_SPLITS}
    for splits in metrics["pairs"].values():
        for split, kinds in splits.items():
            per_split[split] += sum(cell["pairs"] for conditions in kinds.values() for cell in conditions.values())
    excluded = metrics["excluded"]["by_status"]
    return {
        **{f"{split}_pairs": n for split, n in per_split.items()},
        "shortfalls": len(metrics["shortfalls"]),
        "identification_images": metrics["identification"]["images"],
        "excluded_images": sum(excluded[p][s] for p in excluded for s in EXCLUDED_STATUSES),
    }


def detail_path(metrics_path: str | Path, detail: str | Path | None = None) -> Path:
    """Where every count goes: `detail`, or `<metrics name>_detail.json` beside the headline file."""
    metrics_path = Path(metrics_path)
    return Path(detail) if detail else metrics_path.with_name(f"{metrics_path.stem}_detail.json")


def write_outputs(
    result: PairsResult, out_dir: str | Path, metrics_path: str | Path, detail: str | Path | None = None
) -> None:
    """Write the parquet files and each task's training folder into `out_dir`, the
    headline counts (`headline_counts`) to `metrics_path` and every count to
    `detail` (`detail_path`: beside it, `<name>_detail.json`, when not given)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in (
        (PAIRS_FILE, result.pairs),
        (IDENTIFICATION_FILE, result.identification),
        (ATTRIBUTE_PAIRS_FILE, result.attribute_pairs),
    ):
        if frame is not None:
            _write_parquet(out_dir / name, frame)
    write_train_folders(out_dir, result.train_subsets, result.pairs, list(result.metrics["train_subsets"]))
    metrics_path = Path(metrics_path)
    for path, content in (
        (metrics_path, headline_counts(result.metrics)),
        (detail_path(metrics_path, detail), result.metrics),
    ):
        # keys in the order built (no sort_keys, unlike fileio.write_json): the tracked files keep their bytes
        text = json.dumps(content, indent=2) + "\n"
        atomic_write(path, lambda p, t=text: p.write_text(t))


def _write_parquet(path: Path, frame: pd.DataFrame) -> None:
    atomic_write(path, lambda p: frame.to_parquet(p, index=False))


def write_train_folders(out_dir: str | Path, subsets: pd.DataFrame, pairs: pd.DataFrame, tasks: list[str]) -> None:
    """train/<task>/: the task's rows of `subsets` and its val rows of `pairs`, in order
    (faceid.pairs.files). Folders of tasks not in `tasks` are removed."""
    root = Path(out_dir) / TRAIN_DIR
    if root.exists():
        shutil.rmtree(root)
    for task in tasks:
        subset_path, val_path = task_train_files(out_dir, task)
        subset_path.parent.mkdir(parents=True)
        _write_parquet(subset_path, subsets[subsets["task"] == task].reset_index(drop=True))
        chosen = (pairs["task"] == task) & (pairs["split"] == TRAIN_SPLIT)
        _write_parquet(val_path, pairs[chosen].reset_index(drop=True))
