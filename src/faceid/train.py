"""ArcFace training of one (task, backbone) in up to three phases, then `model.pt`.

1. `head`: the ArcFace class centres alone, on cached trunk features (everything else
   frozen). A fine-tune from `orig` starts with a fresh head over the task's identities:
   its random centres would otherwise send random gradients into the embedding.
2. `neck`: the embedding layer (pooled features -> 512-d, BatchNorm) with the head, still
   on cached features: seconds per epoch, and on random or pretrained trunks it is what
   turns pooled features into a face embedding (impostor cosine near 0, not 0.9999).
3. `backbone`: every unfrozen block (train.*.frozen_blocks) on images, as the budget allows.

Before them, `bn_recalibration_images` crops can re-estimate the BatchNorm statistics.
One path for every device: autocast (bf16 on CUDA, disabled on CPU), channels_last and
fused optimizers on CUDA. After each phase (and each backbone epoch) the resume state is
saved outside the DVC output (see faceid.resume); a non-finite loss stops the run with
`TrainingDiverged` and keeps the last good state. Every evaluated epoch's val AUC is
logged; `select_epoch` picks the weights that become `model.pt` = {backbone, init,
state_dict, epoch, phase, params, metrics, ...metadata}. No timings or wall-clock values
go into model.pt (two runs with the same inputs write the same bytes); img/s lives in
the dvclive plots only.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from dvclive import Live
from sklearn.metrics import roc_auc_score
from torch import nn

from faceid.arcface import ArcFaceHead
from faceid.backbones import (
    EMBEDDING_SIZE,
    freeze_batchnorm,
    freeze_stages,
    get_spec,
    neck_parameters,
)
from faceid.config.pairs import ORIG_TASK
from faceid.config.train import TrainRunParams
from faceid.data import CropDataset, CropStore, flip_mask, make_loader, prepare_batch
from faceid.device import select_device
from faceid.embed import embed
from faceid.errors import FaceidError
from faceid.features import cache_features, recalibrate_batchnorm
from faceid.fileio import save_torch_atomic
from faceid.models import initial_model
from faceid.progress import progress
from faceid.resume import ResumeState, run_fingerprint
from faceid.shards import shard_files

__all__ = [
    "Phase",
    "TaskData",
    "TrainDataError",
    "TrainingDiverged",
    "arcface_loss",
    "build_optimizer",
    "build_scheduler",
    "embed",
    "evaluate",
    "load_task_data",
    "select_device",
    "train_arcface",
    "train_cached_epoch",
    "train_one_epoch",
    "training_phases",
]

log = logging.getLogger(__name__)


class TrainingDiverged(FaceidError, RuntimeError):
    """The loss became NaN or infinite."""


class TrainDataError(FaceidError, ValueError):
    """Training subsets or pairs that do not fit the data contract."""


# --------------------------------------------------------------------------- data


@dataclass
class TaskData:
    train: CropDataset
    n_classes: int
    val_pairs: dict[str, pd.DataFrame]  # "task" / "orig" → val pairs with crops for both images
    val_images: dict[str, pd.Index]  # the unique images of each pair set
    val_datasets: dict[str, CropDataset]  # their crops, in that order
    skipped: dict[str, int]  # items without a crop, per source


def _pairs_with_crops(store: CropStore, pairs: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    _, _, found_a = store.locate(pairs["image_a"])
    _, _, found_b = store.locate(pairs["image_b"])
    keep = found_a & found_b
    return pairs[keep].reset_index(drop=True), int((~keep).sum())


def load_task_data(crops_dir: Path, pairs_dir: Path, task: str) -> TaskData:
    """The task's training subset and its own and orig's validation pairs, as crops."""
    store = CropStore(crops_dir)
    subsets_path, pairs_path = Path(pairs_dir) / "train_subsets.parquet", Path(pairs_dir) / "pairs.parquet"
    for path in (subsets_path, pairs_path):
        if not path.exists():
            raise TrainDataError(f"{path}: missing; run `dvc repro pairs` first")
    subsets = pd.read_parquet(subsets_path)
    subset = subsets[subsets["task"] == task]
    if subset.empty:
        tasks = ", ".join(sorted(subsets["task"].unique()))
        raise TrainDataError(f"{subsets_path}: no rows for task {task!r}; tasks there: {tasks}")
    shard, row, found = store.locate(subset["image"])
    labels = subset["label"].to_numpy(np.int64)
    n_classes = int(labels.max()) + 1
    if set(np.unique(labels)) != set(range(n_classes)):
        raise TrainDataError(f"{subsets_path}: labels of task {task!r} are not contiguous 0..{n_classes - 1}")
    skipped = {"train_images": int((~found).sum())}
    train = CropDataset(store.paths, shard[found], row[found], labels[found])
    pairs = pd.read_parquet(pairs_path)
    val_pairs, val_images, val_datasets = {}, {}, {}
    for name in ("task",) if task == ORIG_TASK else ("task", "orig"):  # orig: one pair set
        wanted = task if name == "task" else ORIG_TASK
        chosen = pairs[(pairs["task"] == wanted) & (pairs["split"] == "val")]
        chosen, skipped[f"{name}_val_pairs"] = _pairs_with_crops(store, chosen)
        if chosen.empty:
            raise TrainDataError(f"{pairs_path}: no val pairs with crops for task {wanted!r}")
        val_pairs[name] = chosen
        val_images[name] = pd.Index(pd.unique(pd.concat([chosen["image_a"], chosen["image_b"]])))
        val_datasets[name] = store.dataset(val_images[name])
    for key, count in skipped.items():
        if count:
            log.warning("task %s: %d %s skipped (no crop)", task, count, key)
    return TaskData(train, n_classes, val_pairs, val_images, val_datasets, skipped)


# --------------------------------------------------------------------------- optimisation


@dataclass(frozen=True)
class Phase:
    name: str  # head | neck | backbone
    epochs: int
    lr: float


def training_phases(run: TrainRunParams) -> list[Phase]:
    """The run's phases in order, those with epochs > 0 only."""
    phases = (
        Phase("head", run.head_epochs, run.head_lr if run.head_lr is not None else run.lr),
        Phase("neck", run.neck_epochs, run.neck_lr if run.neck_lr is not None else run.lr),
        Phase("backbone", run.epochs, run.lr),
    )
    return [p for p in phases if p.epochs > 0]


def _phase_parameters(phase: Phase, run: TrainRunParams, model: nn.Module, head: nn.Module) -> list[dict]:
    """Parameter groups: the head always at the phase's lr, plus what the phase trains."""
    groups = [{"params": list(head.parameters()), "lr": phase.lr}]
    if phase.name == "neck":
        groups.append({"params": neck_parameters(model, get_spec(run.backbone)), "lr": phase.lr})
    elif phase.name == "backbone":
        groups.append({"params": [p for p in model.parameters() if p.requires_grad], "lr": phase.lr * run.lr_scale})
    return groups


def build_optimizer(run: TrainRunParams, groups: list[dict], device: torch.device):
    fused = device.type == "cuda"  # one kernel for all parameters; CPU has no fused SGD
    if run.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=groups[0]["lr"], momentum=run.momentum, weight_decay=run.weight_decay, fused=fused or None)
    return torch.optim.AdamW(groups, lr=groups[0]["lr"], betas=(run.momentum, 0.999), weight_decay=run.weight_decay, fused=fused or None)


def build_scheduler(optimizer, run: TrainRunParams, epochs: int, steps_per_epoch: int):
    """Per-step linear warm-up from 0 to each group's lr, then cosine decay to min_lr_ratio."""
    total = max(epochs * steps_per_epoch, 1)
    warmup = min(run.warmup_epochs * steps_per_epoch, total / 2)  # short phases still decay

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min((step - warmup) / max(total - warmup, 1), 1.0)
        return run.min_lr_ratio + (1 - run.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def arcface_loss(head: ArcFaceHead, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(head(embeddings, labels), labels)


def _set_train_mode(model: nn.Module, run: TrainRunParams) -> None:
    model.train()
    freeze_batchnorm(model, get_spec(run.backbone), run.frozen_blocks, all_bn=run.freeze_bn)


def _checked(loss: torch.Tensor, where: str) -> float:
    value = loss.item()  # syncs; needed anyway to stop on NaN before the step
    if not math.isfinite(value):
        raise TrainingDiverged(f"loss is {value} at {where}")
    return value


def _step(optimizer, scheduler, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()


def train_cached_epoch(model, head, features: torch.Tensor, labels: torch.Tensor, optimizer, scheduler, run: TrainRunParams, device, generator: torch.Generator, train_neck: bool) -> float:
    """One pass over cached features (V, N, D); V = 2 holds mirror images. Mean loss."""
    views, n = features.shape[:2]
    order = torch.randperm(n, generator=generator)
    mirrored = torch.rand(n, generator=generator) < 0.5 if views == 2 else torch.zeros(n, dtype=torch.bool)
    model.train(train_neck)  # dropout and the embedding BatchNorm learn only when trained
    head.train()
    batch = min(run.batch_size, n)
    losses = []
    for start in range(0, n - batch + 1, batch):  # drop the last partial batch: BatchNorm1d
        chosen = order[start : start + batch]
        x = features[mirrored[chosen].long(), chosen].to(device, torch.float32)
        with torch.set_grad_enabled(train_neck), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            embeddings = model.embed_features(x)
        loss = arcface_loss(head, embeddings, labels[chosen].to(device))
        losses.append(_checked(loss, f"batch {start // batch}"))
        _step(optimizer, scheduler, loss)
    return float(np.mean(losses))


def train_one_epoch(model, head, loader, optimizer, scheduler, run: TrainRunParams, device, epoch: int, log_step: Callable[[dict], None] | None) -> dict[str, float]:
    """One pass over `loader` (images); logs loss, lr and img/s per step. Mean loss, img/s."""
    _set_train_mode(model, run)
    head.train()
    flips = torch.Generator().manual_seed(run.seed * 1_000_003 + epoch)  # same flips on resume
    steps = len(loader) if run.max_steps_per_epoch is None else min(len(loader), run.max_steps_per_epoch)
    losses, images_seen, started = [], 0, time.perf_counter()
    tick = started
    for step, (images, labels) in enumerate(progress(loader, total=steps, desc=f"epoch {epoch}", leave=False)):
        if step >= steps:
            break
        flip = flip_mask(len(images), flips) if run.flip else None
        x = prepare_batch(images, device, run.image_size, flip)
        labels = labels.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = arcface_loss(head, model(x), labels)
        value = _checked(loss, f"step {step}")
        _step(optimizer, scheduler, loss)
        now = time.perf_counter()
        losses.append(value)
        images_seen += len(images)
        if log_step is not None:
            log_step({"train/loss": value, "train/lr": optimizer.param_groups[-1]["lr"], "timing/img_per_s": len(images) / (now - tick)})
        tick = now
    if not losses:
        raise TrainDataError(f"epoch {epoch}: no training batch (subset smaller than batch_size {run.batch_size}?)")
    return {"loss": float(np.mean(losses)), "img_per_s": images_seen / (time.perf_counter() - started)}


# --------------------------------------------------------------------------- evaluation


def pair_auc(embeddings: np.ndarray, pairs: pd.DataFrame, images: pd.Index) -> float:
    """ROC AUC of cosine similarity over `pairs` (genuine = positive); NaN if one kind only.

    `embeddings` (N, 512), L2-normalised, are those of `images`, in that order.
    """
    a = embeddings[images.get_indexer(pairs["image_a"])]
    b = embeddings[images.get_indexer(pairs["image_b"])]
    similarity = np.sum(a * b, axis=1)  # both L2-normalised: cosine
    is_same = (pairs["kind"] == "genuine").to_numpy()
    if is_same.all() or not is_same.any():
        log.warning("val pairs have only %s pairs: AUC undefined", "genuine" if is_same.any() else "impostor")
        return float("nan")
    return float(roc_auc_score(is_same, similarity))


def evaluate(model: nn.Module, pairs: pd.DataFrame, dataset: CropDataset, images: pd.Index, run: TrainRunParams, device: torch.device) -> float:
    """Val AUC of `pairs` from images: `dataset` holds the crops of `images`, in order."""
    return pair_auc(embed(model, dataset, run.eval_batch_size, device, run.image_size, run.num_workers), pairs, images)


@torch.no_grad()
def _embed_cached(model: nn.Module, features: torch.Tensor, device: torch.device, batch_size: int) -> np.ndarray:
    model.eval()
    out = [model.embed_features(features[0, i : i + batch_size].to(device, torch.float32)).float().cpu() for i in range(0, features.shape[1], batch_size)]
    return torch.cat(out).numpy()


# --------------------------------------------------------------------------- checkpoints


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


# --------------------------------------------------------------------------- the run


class _Run:
    """The mutable state of one training run: weights, history, logs, the selection."""

    def __init__(self, run: TrainRunParams, model: nn.Module, head: ArcFaceHead, live: Live, resume: ResumeState, on_save: Callable[[int], None] | None):
        self.run, self.model, self.head, self.live, self.resume, self.on_save = run, model, head, live, resume, on_save
        self.saves = 0
        self.features: dict[str, torch.Tensor] | None = None  # cached while the trunk is frozen
        self.history: list[dict[str, Any]] = []
        self.logs: list[tuple[int, dict[str, float]]] = []  # (dvclive step, values), replayed on resume
        self.selected: dict[str, Any] | None = None
        self.done: dict[str, int] = {}  # phase -> epochs completed

    def log(self, values: dict[str, float]) -> None:
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
            self.selected = {"score": score, "index": index, "state_dict": _cpu_copy(self.model.state_dict()), "metrics": metrics}

    def save(self, extra: dict[str, Any] | None = None) -> None:
        self.resume.save({
            "model": self.model.state_dict(), "head": self.head.state_dict(), "done": dict(self.done),
            "history": self.history, "logs": self.logs, "selected": self.selected, "rng": _rng_states(),
            "features": self.features, **(extra or {}),
        })  # fmt: skip
        self.saves += 1
        if self.on_save is not None:
            self.on_save(self.saves)

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.head.load_state_dict(state["head"])
        self.done, self.history, self.selected = state["done"], state["history"], state["selected"]
        self.features = state.get("features")
        for step, values in state["logs"]:  # the dvclive files were deleted with the outputs
            self.live.step = step
            self.log(values)
        _restore_rng(state["rng"])


def _strip_timings(live_dir: Path) -> None:
    """Drop img/s from dvclive's metrics.json: timings vary run to run, results must not."""
    path = Path(live_dir) / "metrics.json"
    if path.exists():
        summary = json.loads(path.read_text())
        summary.pop("timing", None)
        path.write_text(json.dumps(summary, indent=4) + "\n")


def train_arcface(
    run: TrainRunParams,
    crops_dir: Path,
    pairs_dir: Path,
    out_dir: Path,
    live_dir: Path,
    weights: Path | None = None,
    init_model: Path | None = None,
    on_epoch_end: Callable[[int], None] | None = None,
    metadata: dict[str, Any] | None = None,
    resume_dir: Path | None = None,
) -> dict[str, Any]:
    """Train through the run's phases, resuming from `resume_dir` when it holds this run; write out_dir/model.pt.

    `resume_dir` defaults to `<out_dir>.resume`; it is removed once model.pt is written.
    `on_epoch_end(n)` is called after the n-th saved resume point (tests interrupt there).
    """
    spec = get_spec(run.backbone)  # a bad name fails before any data is read
    out_dir, device = Path(out_dir), select_device(run.device, key="train.common.device")
    out_dir.mkdir(parents=True, exist_ok=True)
    phases = training_phases(run)
    if not phases:
        raise TrainDataError(f"{run.task}-{run.backbone}: head_epochs, neck_epochs and epochs are all 0: nothing to train")
    data = load_task_data(crops_dir, pairs_dir, run.task)
    if run.image_size is not None and run.image_size < spec.min_image_size:
        raise TrainDataError(f"train image_size {run.image_size} < {spec.min_image_size}, the least {run.backbone} takes")
    params = dataclasses.asdict(run)
    # crops: the manifest's content, and each shard's name, size and mtime (hashing
    # 15 GB of CelebA shards per run costs more than a rare needless restart after a copy)
    shards = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in shard_files(crops_dir)]
    identity = {**params, "metadata": metadata or {}, "shards": shards}
    inputs = {
        "manifest": Path(crops_dir) / "manifest.parquet", "subsets": Path(pairs_dir) / "train_subsets.parquet",
        "pairs": Path(pairs_dir) / "pairs.parquet", "weights": weights, "init_model": init_model,
    }  # fmt: skip
    resume = ResumeState(resume_dir or out_dir.with_name(out_dir.name + ".resume"), run_fingerprint(identity, inputs))
    torch.manual_seed(run.seed)
    model, init = initial_model(run, weights, init_model)
    freeze_stages(model, spec, run.frozen_blocks)
    head = ArcFaceHead(EMBEDDING_SIZE, data.n_classes, run.margin, run.scale)
    model.to(device, memory_format=torch.channels_last)
    head.to(device)
    state = resume.load()
    with Live(dir=str(live_dir), dvcyaml=False, save_dvc_exp=False) as live:
        job = _Run(run, model, head, live, resume, on_epoch_end)
        if state is not None:
            job.restore(state)
            log.info("resuming from %s after %s", resume.folder, job.done)
        elif run.bn_recalibration_images:
            used = recalibrate_batchnorm(model, data.train, run.bn_recalibration_images, run.eval_batch_size, device, run.image_size, run.seed)
            log.info("BatchNorm statistics re-estimated on %d training crops", used)
        for phase in phases:
            first = job.done.get(phase.name, 0)
            if first >= phase.epochs:
                continue
            try:
                if phase.name == "backbone":
                    _backbone_phase(job, phase, data, device, first, state if first else None)
                else:
                    _cached_phase(job, phase, data, device)
            except TrainingDiverged as exc:
                kept = f"the resume state in {resume.folder} is kept" if resume.folder.exists() else "no resume state was written yet"
                raise TrainingDiverged(f"{run.task}-{run.backbone}: {phase.name} phase: {exc}; {kept}; lower its lr or check the crops") from exc
            if phase.name != "backbone":
                job.done[phase.name] = phase.epochs
                job.save()
    _strip_timings(live_dir)
    chosen = job.selected
    result = {**chosen["metrics"], "selected_epoch": chosen["index"], "history": job.history, "skipped": data.skipped}
    info = {"backbone": run.backbone, "init": init, "epoch": chosen["index"], "phase": chosen["metrics"]["phase"], "params": params, "metrics": result, **(metadata or {})}
    # through JSON: pickle writes a shared object once and refers back to it, so the same
    # values built in another order (a resumed run) would give other bytes
    save_torch_atomic({"state_dict": chosen["state_dict"], **json.loads(json.dumps(info))}, out_dir / "model.pt")
    resume.clear()
    return result


def _cached_phase(job: _Run, phase: Phase, data: TaskData, device: torch.device) -> None:
    """The head (or neck + head) trained on cached trunk features; every epoch evaluated."""
    run, model = job.run, job.model
    if job.features is None:
        job.features = {"train": cache_features(model, data.train, run.eval_batch_size, device, run.image_size, run.flip)}
        job.features |= {name: cache_features(model, ds, run.eval_batch_size, device, run.image_size, False) for name, ds in data.val_datasets.items()}
        job.save()  # the features are the slow part of a cached phase: keep them for a resume
    features, val = job.features["train"], job.features
    # set once, by the run that trains the neck from scratch; a fine-tune from orig keeps
    # orig's, since its embedding layer was trained on them
    if phase.name == "neck" and run.standardize_features and not model.has_feature_statistics():
        model.set_feature_statistics(features.flatten(0, 1))
    labels = torch.from_numpy(data.train.labels)
    steps = max(features.shape[1] // min(run.batch_size, features.shape[1]), 1)
    optimizer = build_optimizer(run, _phase_parameters(phase, run, model, job.head), device)
    scheduler = build_scheduler(optimizer, run, phase.epochs, steps)
    order = torch.Generator().manual_seed(run.seed * 1_000_003 + len(phase.name))
    for epoch in range(phase.epochs):
        loss = train_cached_epoch(model, job.head, features, labels, optimizer, scheduler, run, device, order, train_neck=phase.name == "neck")
        metrics = {"train_loss": loss}
        for name, pairs in data.val_pairs.items():
            metrics[f"val_auc_{name}"] = pair_auc(_embed_cached(model, val[name], device, run.eval_batch_size), pairs, data.val_images[name])
        job.record(phase.name, epoch, metrics)


def _backbone_phase(job: _Run, phase: Phase, data: TaskData, device: torch.device, first: int, state: dict | None) -> None:
    """Every unfrozen block on images, an epoch at a time, with a resume point after each."""
    run, model = job.run, job.model
    drop_last = len(data.train) >= run.batch_size  # a batch of 1 breaks BatchNorm1d
    shuffle = torch.Generator()
    loader = make_loader(data.train, run.batch_size, shuffle=True, generator=shuffle, num_workers=run.num_workers, pin_memory=device.type == "cuda", drop_last=drop_last)
    steps = len(loader) if run.max_steps_per_epoch is None else min(len(loader), run.max_steps_per_epoch)
    optimizer = build_optimizer(run, _phase_parameters(phase, run, model, job.head), device)
    scheduler = build_scheduler(optimizer, run, phase.epochs, steps)
    if state is not None and "optimizer" in state:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    for epoch in range(first, phase.epochs):
        shuffle.manual_seed(run.seed * 1_000_003 + epoch)  # each epoch's order, resumable
        stats = train_one_epoch(model, job.head, loader, optimizer, scheduler, run, device, epoch, job.log)
        metrics = {"train_loss": stats["loss"]}
        for name, pairs in data.val_pairs.items():
            metrics[f"val_auc_{name}"] = evaluate(model, pairs, data.val_datasets[name], data.val_images[name], run, device)
        job.record(phase.name, epoch, metrics)
        job.done[phase.name] = epoch + 1
        job.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()})
