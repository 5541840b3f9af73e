"""ArcFace fine-tuning of one (task, backbone): the training loop, evaluation, checkpoints.

One path for every device: autocast (bf16 on CUDA, disabled on CPU), channels_last and
fused optimizers on CUDA. Each epoch ends with an atomic checkpoint in the output folder
(`checkpoint.pt`, plus `selected.pt` holding the weights chosen so far), so an
interrupted run resumes where it stopped; a non-finite loss stops the run with
`TrainingDiverged` and leaves the last good checkpoint in place. The result is
`model.pt` = {backbone, init, state_dict, epoch, params, metrics}.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
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
from tqdm import tqdm

from faceid.arcface import ArcFaceHead
from faceid.backbones import (
    EMBEDDING_SIZE,
    build_backbone,
    freeze_batchnorm,
    freeze_stages,
    get_spec,
)
from faceid.config import ORIG_TASK, TrainRunParams
from faceid.data import CropDataset, CropStore, flip_mask, make_loader, prepare_batch
from faceid.embed import embed
from faceid.errors import FaceidError

__all__ = [
    "TaskData",
    "TrainDataError",
    "TrainingDiverged",
    "arcface_loss",
    "build_optimizer",
    "build_scheduler",
    "embed",
    "evaluate",
    "load_model",
    "load_task_data",
    "select_device",
    "train_arcface",
    "train_one_epoch",
]

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class TrainDataError(FaceidError, ValueError):
    """Training subsets or pairs that do not fit the data contract."""


def select_device(choice: str) -> torch.device:
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.common.device: cuda asked for, but no CUDA device; use auto or cpu")
    return torch.device(choice)


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


def build_optimizer(run: TrainRunParams, model: nn.Module, head: nn.Module, device: torch.device):
    groups = [
        {"params": [p for p in model.parameters() if p.requires_grad], "lr": run.lr * run.lr_scale},
        {"params": list(head.parameters()), "lr": run.lr},
    ]
    fused = device.type == "cuda"  # one kernel for all parameters; CPU has no fused SGD
    if run.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=run.lr, momentum=run.momentum, weight_decay=run.weight_decay, fused=fused or None)
    return torch.optim.AdamW(groups, lr=run.lr, betas=(run.momentum, 0.999), weight_decay=run.weight_decay, fused=fused or None)


def build_scheduler(optimizer, run: TrainRunParams, steps_per_epoch: int):
    """Per-step linear warm-up from 0 to each group's lr, then cosine decay to min_lr_ratio."""
    warmup = run.warmup_epochs * steps_per_epoch
    total = max(run.epochs * steps_per_epoch, 1)

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


def train_one_epoch(model, head, loader, optimizer, scheduler, run: TrainRunParams, device, epoch: int, live: Live | None) -> dict[str, float]:
    """One pass over `loader`; logs loss, lr and img/s per step. Returns mean loss, img/s."""
    _set_train_mode(model, run)
    head.train()
    flips = torch.Generator().manual_seed(run.seed * 1_000_003 + epoch)  # same flips on resume
    steps = len(loader) if run.max_steps_per_epoch is None else min(len(loader), run.max_steps_per_epoch)
    losses, images_seen, started = [], 0, time.perf_counter()
    tick = started
    for step, (images, labels) in enumerate(tqdm(loader, total=steps, desc=f"epoch {epoch}", leave=False)):
        if step >= steps:
            break
        flip = flip_mask(len(images), flips) if run.flip else None
        x = prepare_batch(images, device, run.image_size, flip)
        labels = labels.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = arcface_loss(head, model(x), labels)
        value = loss.item()  # syncs; needed anyway to stop on NaN before the step
        if not math.isfinite(value):
            raise TrainingDiverged(f"loss is {value} at epoch {epoch}, step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        now = time.perf_counter()
        losses.append(value)
        images_seen += len(images)
        if live is not None:
            live.log_metric("train/loss", value)
            live.log_metric("train/lr", optimizer.param_groups[-1]["lr"])
            live.log_metric("train/img_per_s", len(images) / (now - tick))
            live.next_step()
        tick = now
    if not losses:
        raise TrainDataError(f"epoch {epoch}: no training batch (subset smaller than batch_size {run.batch_size}?)")
    return {"loss": float(np.mean(losses)), "img_per_s": images_seen / (time.perf_counter() - started)}


# --------------------------------------------------------------------------- evaluation


def evaluate(model: nn.Module, pairs: pd.DataFrame, dataset: CropDataset, images: pd.Index, run: TrainRunParams, device: torch.device) -> float:
    """ROC AUC of cosine similarity over `pairs` (genuine = positive); NaN if one kind only.

    `dataset` holds the crops of `images` (the unique pair images), in that order.
    """
    embeddings = embed(model, dataset, run.eval_batch_size, device, run.image_size, run.num_workers)
    a = embeddings[images.get_indexer(pairs["image_a"])]
    b = embeddings[images.get_indexer(pairs["image_b"])]
    similarity = np.sum(a * b, axis=1)  # both L2-normalised: cosine
    is_same = (pairs["kind"] == "genuine").to_numpy()
    if is_same.all() or not is_same.any():
        log.warning("val pairs have only %s pairs: AUC undefined", "genuine" if is_same.any() else "impostor")
        return float("nan")
    return float(roc_auc_score(is_same, similarity))


# --------------------------------------------------------------------------- checkpoints


def _save_atomic(obj: Any, path: Path) -> None:
    partial = path.with_name(path.name + ".partial")
    torch.save(obj, partial)
    os.replace(partial, path)  # a crash mid-write never leaves a truncated checkpoint


def _rng_states() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _restore_rng(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The embedding network of a model.pt (eval mode) and the file's dict without weights."""
    if not Path(path).exists():
        raise FileNotFoundError(
            f"{path}: no such model; train it first (`dvc repro train-orig@<backbone>` or "
            "`dvc repro train@<task>-<backbone>`; `dvc stage list` names them)"
        )
    info = torch.load(path, map_location="cpu", weights_only=False)
    model = build_backbone(info["backbone"], "none", dropout=info["params"]["dropout"])
    model.load_state_dict(info["state_dict"])
    return model.to(device).eval(), {k: v for k, v in info.items() if k != "state_dict"}


def _score(run: TrainRunParams, metrics: dict[str, float]) -> float:
    if run.select_epoch == "last":
        return float(metrics["epoch"])
    value = metrics["val_auc_task" if run.select_epoch == "best_task_auc" else "val_auc_orig"]
    return -math.inf if math.isnan(value) else value


def _resume(ckpt_path: Path, selected_path: Path, params: dict, n_classes: int, model, head, optimizer, scheduler) -> tuple[int, list[dict], int]:
    """Load a matching checkpoint into the objects; (first epoch to run, history, live step)."""
    if not ckpt_path.exists():
        return 0, [], 0
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    # a checkpoint from other params or data must not leak into this run
    if ckpt["params"] != params or ckpt["n_classes"] != n_classes or not selected_path.exists():
        log.warning("%s: from other params or data; starting afresh", ckpt_path)
        selected_path.unlink(missing_ok=True)
        return 0, [], 0
    model.load_state_dict(ckpt["model"])
    head.load_state_dict(ckpt["head"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    _restore_rng(ckpt["rng"])
    log.info("resuming %s after epoch %d", ckpt_path, ckpt["epoch"])
    return ckpt["epoch"] + 1, ckpt["history"], ckpt["live_step"]


# --------------------------------------------------------------------------- the run


def initial_model(run: TrainRunParams, weights: Path | None, init_model: Path | None) -> tuple[nn.Module, str]:
    """The network a run starts from, and its init label; call after torch.manual_seed(run.seed).

    The evaluate stage builds the same network to report each backbone's starting point.
    """
    if run.task_init == "none":
        return build_backbone(run.backbone, "none", dropout=run.dropout), "none"
    if run.task_init == "pretrained":
        return build_backbone(run.backbone, run.weights_init, weights, dropout=run.dropout), run.weights_init
    if init_model is None or not Path(init_model).exists():
        raise TrainDataError(
            f"train.task.{run.task}.init is orig, but the orig model {init_model} is missing; "
            f"run `dvc repro train@{ORIG_TASK}-{run.backbone}` first"
        )
    source = torch.load(init_model, map_location="cpu", weights_only=False)
    if source["backbone"] != run.backbone:
        raise TrainDataError(f"{init_model}: a {source['backbone']} model, expected {run.backbone}")
    model = build_backbone(run.backbone, "none", dropout=run.dropout)
    model.load_state_dict(source["state_dict"])
    return model, ORIG_TASK


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
) -> dict[str, Any]:
    """Train, resuming from out_dir/checkpoint.pt when it matches; write out_dir/model.pt."""
    spec = get_spec(run.backbone)  # a bad name fails before any data is read
    out_dir, device = Path(out_dir), select_device(run.device)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = load_task_data(crops_dir, pairs_dir, run.task)
    if run.image_size is not None and run.image_size < spec.min_image_size:
        raise TrainDataError(f"train image_size {run.image_size} < {spec.min_image_size}, the least {run.backbone} takes")
    torch.manual_seed(run.seed)
    model, init = initial_model(run, weights, init_model)
    freeze_stages(model, spec, run.frozen_blocks)
    head = ArcFaceHead(EMBEDDING_SIZE, data.n_classes, run.margin, run.scale)
    model.to(device, memory_format=torch.channels_last)
    head.to(device)
    drop_last = len(data.train) >= run.batch_size  # a batch of 1 breaks BatchNorm1d
    shuffle = torch.Generator()
    loader = make_loader(data.train, run.batch_size, shuffle=True, generator=shuffle, num_workers=run.num_workers, pin_memory=device.type == "cuda", drop_last=drop_last)
    steps = len(loader) if run.max_steps_per_epoch is None else min(len(loader), run.max_steps_per_epoch)
    optimizer = build_optimizer(run, model, head, device)
    scheduler = build_scheduler(optimizer, run, steps)
    params = dataclasses.asdict(run)
    ckpt_path, selected_path = out_dir / "checkpoint.pt", out_dir / "selected.pt"
    start, history, live_step = _resume(ckpt_path, selected_path, params, data.n_classes, model, head, optimizer, scheduler)
    with Live(dir=str(live_dir), dvcyaml=False, save_dvc_exp=False, resume=start > 0) as live:
        live.step = live_step
        for epoch in range(start, run.epochs):
            shuffle.manual_seed(run.seed * 1_000_003 + epoch)  # each epoch's order, resumable
            try:
                stats = train_one_epoch(model, head, loader, optimizer, scheduler, run, device, epoch, live)
            except TrainingDiverged as exc:
                kept = f"the checkpoint {ckpt_path} of epoch {history[-1]['epoch']} is kept" if history else "no checkpoint was written yet"
                raise TrainingDiverged(f"{run.task}-{run.backbone}: {exc}; {kept}; lower train lr or check the crops") from exc
            metrics = {"epoch": epoch, "train_loss": stats["loss"], "img_per_s": stats["img_per_s"]}
            for name, pairs in data.val_pairs.items():
                metrics[f"val_auc_{name}"] = evaluate(model, pairs, data.val_datasets[name], data.val_images[name], run, device)
            metrics.setdefault("val_auc_orig", metrics["val_auc_task"])
            for key in ("train_loss", "val_auc_task", "val_auc_orig"):
                live.log_metric(f"epoch/{key}", metrics[key])
            live.next_step()
            log.info("epoch %d: %s", epoch, metrics)
            best = max((_score(run, h) for h in history), default=-math.inf)
            history.append(metrics)
            if _score(run, metrics) > best or len(history) == 1:
                _save_atomic({"epoch": epoch, "state_dict": model.state_dict(), "metrics": metrics}, selected_path)
            checkpoint = {
                "model": model.state_dict(), "head": head.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "epoch": epoch, "params": params, "backbone": run.backbone, "rng": _rng_states(),
                "history": history, "live_step": live.step, "n_classes": data.n_classes,
            }  # fmt: skip
            _save_atomic(checkpoint, ckpt_path)
            if on_epoch_end is not None:
                on_epoch_end(epoch)
    selected = torch.load(selected_path, map_location="cpu", weights_only=False)
    result = {**selected["metrics"], "selected_epoch": selected["epoch"], "history": history, "skipped": data.skipped}
    _save_atomic(
        {"backbone": run.backbone, "init": init, "state_dict": selected["state_dict"], "epoch": selected["epoch"], "params": params, "metrics": result, **(metadata or {})},
        out_dir / "model.pt",
    )
    return result
