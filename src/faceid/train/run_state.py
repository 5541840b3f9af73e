"""The mutable state of one training run (`RunState`: weights, history, dvclive logs, the
selected epoch) and how it is saved after every epoch and restored by a restarted run.

The resume state lives outside the DVC output (faceid.train.resume), fingerprinted by
the run's params and the content of its inputs; only rank 0 writes it, every process
reads what rank 0 accepted.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from dvclive import Live
from torch import nn

from faceid.config.train import TrainRunParams, run_record
from faceid.crop.shards import MANIFEST_FILE, shard_files
from faceid.errors import FaceidError
from faceid.features.trunk import FEATURES_META, FeatureFile, trunk_keys
from faceid.train.arcface import ArcFaceHead
from faceid.train.collectives import DistInfo, barrier, broadcast_object, is_main
from faceid.train.resume import ResumeState, run_fingerprint
from faceid.train.taskdata import task_input_files

__all__ = ["RunState", "load_resume_state", "open_resume_state"]

log = logging.getLogger(__name__)


def _rng_states() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _restore_rng(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _score(run: TrainRunParams, metrics: dict[str, float], index: int) -> float:
    if run.select_epoch == "last":
        return float(index)
    value = metrics["val_auc_task" if run.select_epoch == "best_task_auc" else "val_auc_orig"]
    return -math.inf if math.isnan(value) else value


def _cpu_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


class RunState:
    """The mutable state of one training run: weights, history, logs, the selection.

    Every process holds one; only rank 0's has a dvclive `live` and saves resume state.
    """

    def __init__(
        self,
        run: TrainRunParams,
        model: nn.Module,
        head: ArcFaceHead,
        live: Live | None,
        resume: ResumeState,
        on_save: Callable[[int], None] | None,
        info: DistInfo,
    ):
        self.run, self.model, self.head, self.info = run, model, head, info
        self.live = live  # rank 0's dvclive logger; None in the other processes
        self.resume, self.on_save = resume, on_save
        self.saves = 0
        self.features: dict[str, torch.Tensor] | None = None  # cached while the trunk is frozen
        self.feature_file: FeatureFile | None = None  # the features stage's, for a run on that trunk
        # the trunk as the run built it (initial_model) until BatchNorm re-estimation or the
        # backbone phase changes it: until then resume points leave it out (a restarted run
        # builds the same), a few MB instead of the whole network twice per epoch
        self.trunk = frozenset(trunk_keys(model, run.backbone))
        self.trunk_changed = False
        self.history: list[dict[str, Any]] = []
        self.logs: list[tuple[int, dict[str, float]]] = []  # (dvclive step, values), replayed on resume
        self.selected: dict[str, Any] | None = None
        self.done: dict[str, int] = {}  # phase -> epochs completed

    def log(self, values: dict[str, float]) -> None:
        if self.live is None:
            return
        self.logs.append((self.live.step, values))
        for name, value in values.items():
            self.live.log_metric(name, value)
        self.live.next_step()

    def record(self, phase: str, epoch: int, metrics: dict[str, Any]) -> None:
        """An evaluated epoch: log it and keep its weights if `select_epoch` prefers them."""
        metrics = {"phase": phase, "epoch": epoch, **metrics}
        metrics.setdefault("val_auc_orig", metrics["val_auc_task"])
        log.info("%s epoch %d: %s", phase, epoch, {k: v for k, v in metrics.items() if k not in ("phase", "epoch")})
        self.log({f"epoch/{k}": metrics[k] for k in ("train_loss", "val_auc_task", "val_auc_orig")})
        index = len(self.history)
        self.history.append(metrics)
        best = -math.inf if self.selected is None else self.selected["score"]
        score = _score(self.run, metrics, index)
        if self.selected is None or score > best:
            self.selected = {
                "score": score,
                "index": index,
                "state_dict": _cpu_copy(self.model.state_dict()),
                "metrics": metrics,
            }

    def save(self, extra: dict[str, Any] | None = None) -> None:
        if not self.info.is_main:
            return
        drop = frozenset() if self.trunk_changed else self.trunk
        selected = self.selected and {**self.selected, "state_dict": _without(self.selected["state_dict"], drop)}
        self.resume.save({
            "model": _without(self.model.state_dict(), drop), "head": self.head.state_dict(), "done": dict(self.done),
            "history": self.history, "logs": self.logs, "selected": selected, "rng": _rng_states(),
            "has_features": self.features is not None, "trunk_changed": self.trunk_changed, **(extra or {}),
        })  # fmt: skip
        self.saves += 1
        if self.on_save is not None:
            self.on_save(self.saves)

    def save_features(self) -> None:
        if self.info.is_main and self.features is not None and self.feature_file is None:
            self.resume.save_features(self.features)

    def restore(self, state: dict[str, Any]) -> None:
        # a state saved with the trunk unchanged: the freshly built model holds that trunk
        built = _cpu_copy(self.model.state_dict())
        self.trunk_changed = state["trunk_changed"]
        self.model.load_state_dict({**built, **state["model"]})
        self.head.load_state_dict(state["head"])
        self.done, self.history, self.selected = state["done"], state["history"], state["selected"]
        if self.selected is not None:
            self.selected["state_dict"] = {**built, **self.selected["state_dict"]}
        # saved once beside the state (save_features); recomputed if that file is gone
        self.features = self.resume.load_features() if state.get("has_features") else None
        for step, values in state["logs"]:  # the dvclive files were deleted with the outputs
            if self.live is not None:
                self.live.step = step
            self.log(values)
        _restore_rng(state["rng"])


def _without(state: dict[str, torch.Tensor], keys: frozenset[str]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k not in keys}



def open_resume_state(
    run: TrainRunParams,
    crops_dir: Path,
    pairs_dir: Path,
    folder: Path,
    weights: Path | None,
    init_model: Path | None,
    metadata: dict[str, Any],
    features: Path | None,
) -> ResumeState:
    """The run's resume folder, fingerprinted by its params and the content of its inputs.

    Rank 0 hashes the inputs (weights, pairs: up to hundreds of MB) and sends the
    fingerprint to the others, rather than every process reading them again.
    """
    # crops: the manifest's content, and each shard's name, size and mtime (hashing
    # 15 GB of CelebA shards per run costs more than a rare needless restart after a copy)
    shards = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in shard_files(crops_dir)]
    identity = {**run_record(run), "metadata": metadata, "shards": shards}
    inputs = {
        "manifest": Path(crops_dir) / MANIFEST_FILE, **task_input_files(pairs_dir, run.task),
        "weights": weights, "init_model": init_model, "features": Path(features) / FEATURES_META if features else None,
    }  # fmt: skip
    return ResumeState(folder, broadcast_object(run_fingerprint(identity, inputs) if is_main() else None))


def load_resume_state(resume: ResumeState, info: DistInfo) -> dict[str, Any] | None:
    """Rank 0 decides whether the resume state is this run's; every process then reads it."""
    state = resume.load() if info.is_main else None
    if not broadcast_object(state is not None):
        return None
    if not info.is_main:
        state = resume.load()
        if state is None:
            raise FaceidError(
                f"{resume.folder}: rank 0 resumes from this folder but rank {info.rank} cannot read it; "
                "for multi-node runs put the resume folder (--resume-dir) on a filesystem every node shares"
            )
    barrier()  # nobody reads while rank 0 may already save the next state
    return state


