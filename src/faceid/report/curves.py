"""Training curves of every model, one file per metric: what `dvc plots show` draws.

Each train stage's dvclive log holds its own curves (metrics/train/<model>/plots/metrics/
epoch/<metric>.tsv: step, value). Declared as plots they made one single-line plot per
model and metric (42 on the default); gathered here into metrics/curves/<metric>.json,
rows {model, epoch, <metric>}, they make one plot per metric with a line
per model (dvc.yaml's top-level `plots`, template curve_by_model). The models are the
ones params.yaml trains (train.tasks plus orig, times train.backbones): logs of models
no longer in params are left out.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faceid.common.fileio import atomic_write
from faceid.config.engine import load_keys
from faceid.config.tasks import all_tasks, read_tasks
from faceid.errors import MissingInputError
from faceid.project.naming import model_stem

__all__ = ["METRICS", "collect_curves", "read_backbones", "write_curves"]

log = logging.getLogger(__name__)

METRICS = ("train_loss", "val_auc_task", "val_auc_orig")  # logged per epoch by faceid.train.run
EPOCH_DIR = Path("plots") / "metrics" / "epoch"  # dvclive's layout under a model's log folder


@dataclass(frozen=True)
class _Backbones:
    backbones: tuple[str, ...]


def read_backbones(path: str | Path) -> tuple[str, ...]:
    """train.backbones of the params file, checked (that key alone: no torch)."""
    return load_keys(path, _Backbones, "train").backbones


def _read_tsv(path: Path, metric: str) -> list[tuple[int, float]]:
    with path.open(newline="") as f:
        return [(int(row["step"]), float(row[metric])) for row in csv.DictReader(f, delimiter="\t")]


def collect_curves(
    live_root: str | Path, tasks: tuple[str, ...], backbones: tuple[str, ...]
) -> dict[str, list[dict[str, Any]]]:
    """metric → rows {model, epoch, metric} of every model's log, in (task, backbone,
    epoch) order; the epoch counts on across the training phases."""
    live_root = Path(live_root)
    curves: dict[str, list[dict[str, Any]]] = {metric: [] for metric in METRICS}
    for task in all_tasks(tasks):
        for backbone in backbones:
            model = model_stem(task, backbone)
            if not (live_root / model).is_dir():
                raise MissingInputError(
                    f"{live_root / model}: no training log of {model}; run `dvc repro` (its train stage writes it)"
                )
            folder = live_root / model / EPOCH_DIR  # absent when a run trained no epoch
            for metric in METRICS:
                path = folder / f"{metric}.tsv"
                points = _read_tsv(path, metric) if path.is_file() else []
                curves[metric] += [
                    {"model": model, "epoch": step, metric: value}
                    for step, value in points
                ]
    return curves


def write_curves(out_dir: str | Path, curves: dict[str, list[dict[str, Any]]]) -> list[Path]:
    """metrics/curves/<metric>.json: {"<metric>": rows}, a row per line (a plot's data,
    small, in git, diffs by row)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for metric, rows in curves.items():
        text = f'{{"{metric}": [\n' + ",\n".join(json.dumps(row) for row in rows) + "\n]}\n"
        written.append(atomic_write(out_dir / f"{metric}.json", lambda tmp, text=text: tmp.write_text(text)))
    for stale in sorted(set(out_dir.glob("*.json")) - set(written)):
        stale.unlink()
    return written


def gather(params: str | Path, live_root: str | Path, out_dir: str | Path) -> list[Path]:
    """The curves stage's job: the models params.yaml trains, their logs, one file per metric."""
    curves = collect_curves(live_root, read_tasks(params), read_backbones(params))
    log.info("%d models' training curves → %s", len({r["model"] for r in curves[METRICS[0]]}), out_dir)
    return write_curves(out_dir, curves)
