"""One epoch of ArcFace training, on cached trunk features or on images (its validation:
faceid.train.validation).

Every function here works unchanged in one process or in each process of a torchrun job
(faceid.train.collectives): on images each process runs its slice of every global batch
and DistributedDataParallel averages the gradients; losses are reduced over the processes
before they are checked or logged, so every process stops on the same NaN and the logged
curve is the global batch's.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from faceid.backbones.registry import freeze_batchnorm, get_spec
from faceid.common.progress import progress
from faceid.config.train import TrainRunParams
from faceid.crop.reader import flip_mask, prepare_batch
from faceid.errors import FaceidError
from faceid.train.arcface import ArcFaceHead
from faceid.train.collectives import global_mean
from faceid.train.sampler import GlobalBatchSampler
from faceid.train.taskdata import TrainDataError

__all__ = ["ArcFaceNet", "TrainingDiverged", "arcface_loss", "train_cached_epoch", "train_one_epoch"]

log = logging.getLogger(__name__)


class TrainingDiverged(FaceidError, RuntimeError):
    """The loss became NaN or infinite."""


class ArcFaceNet(nn.Module):
    """The embedding network and its ArcFace head as one module: what DDP wraps."""

    def __init__(self, model: nn.Module, head: ArcFaceHead):
        super().__init__()
        self.model, self.head = model, head

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.head(self.model(x), labels)


def arcface_loss(head: ArcFaceHead, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(head(embeddings, labels), labels)


def _checked(loss: float, where: str) -> float:
    if not math.isfinite(loss):
        raise TrainingDiverged(f"loss is {loss} at {where}")
    return loss


def _step(optimizer, scheduler, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()


def train_cached_epoch(
    model,
    head,
    features: torch.Tensor,
    labels: torch.Tensor,
    optimizer,
    scheduler,
    run: TrainRunParams,
    device,
    generator: torch.Generator,
    train_neck: bool,
) -> float:
    """One pass over cached features (V, N, D); V = 2 holds mirror images. Mean loss.

    Under torchrun every process runs this same pass on the same (gathered) features.
    """
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
        with (
            torch.set_grad_enabled(train_neck),
            torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"),
        ):
            embeddings = model.embed_features(x)
        loss = arcface_loss(head, embeddings, labels[chosen].to(device))
        losses.append(_checked(loss.item(), f"batch {start // batch}"))  # syncs: stop before the step
        _step(optimizer, scheduler, loss)
    return float(np.mean(losses))


def train_one_epoch(
    net: nn.Module,
    loader,
    sampler: GlobalBatchSampler,
    optimizer,
    scheduler,
    run: TrainRunParams,
    device,
    epoch: int,
    log_step: Callable[[dict], None] | None,
) -> dict[str, float]:
    """One pass over `loader` (this process's slices of the sampler's global batches).

    `net` is an ArcFaceNet, wrapped in DDP when distributed. Logs the global batch's loss,
    the lr and img/s (all processes) per step. Returns the mean loss and img/s.
    """
    inner = net.module if isinstance(net, nn.parallel.DistributedDataParallel) else net
    net.train()
    freeze_batchnorm(inner.model, get_spec(run.backbone), run.frozen_blocks, all_bn=run.freeze_bn)
    flips = torch.Generator().manual_seed(run.seed * 1_000_003 + epoch)  # same flips on resume
    sizes = sampler.global_batch_sizes()
    steps = len(sizes) if run.max_steps_per_epoch is None else min(len(sizes), run.max_steps_per_epoch)
    losses, images_seen, started = [], 0, time.perf_counter()
    tick = started
    for step, (images, labels) in enumerate(progress(loader, total=steps, desc=f"epoch {epoch}", leave=False)):
        if step >= steps:
            break
        # drawn for the whole global batch, this process keeps its slice: the same flips as one process
        flip = flip_mask(sizes[step], flips)[sampler.local_slice(sizes[step])] if run.flip else None
        x = prepare_batch(images, device, run.image_size, flip)
        labels = labels.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = F.cross_entropy(net(x, labels), labels)
        mean, count = global_mean(loss.item(), len(images))  # syncs: stop before the step
        value = _checked(mean, f"step {step}")  # the same value in every process
        _step(optimizer, scheduler, loss)
        now = time.perf_counter()
        losses.append(value)
        images_seen += int(count)
        if log_step is not None:
            log_step(
                {
                    "train/loss": value,
                    "train/lr": optimizer.param_groups[-1]["lr"],
                    "timing/img_per_s": count / (now - tick),
                }
            )
        tick = now
    if not losses:
        raise TrainDataError(f"epoch {epoch}: no training batch (subset smaller than batch_size {run.batch_size}?)")
    return {"loss": float(np.mean(losses)), "img_per_s": images_seen / (time.perf_counter() - started)}
