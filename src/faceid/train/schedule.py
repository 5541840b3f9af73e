"""A run's phases and, per phase, which parameters train, with which optimizer and lr schedule."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from faceid.backbones.registry import get_spec, neck_parameters
from faceid.config.engine import ParamsError
from faceid.config.train import TrainRunParams

__all__ = ["OPTIMIZERS", "Phase", "build_optimizer", "build_scheduler", "phase_parameters", "training_phases"]


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


def phase_parameters(phase: Phase, run: TrainRunParams, model: nn.Module, head: nn.Module) -> list[dict]:
    """Parameter groups: the head always at the phase's lr, plus what the phase trains."""
    groups = [{"params": list(head.parameters()), "lr": phase.lr}]
    if phase.name == "neck":
        groups.append({"params": neck_parameters(model, get_spec(run.backbone)), "lr": phase.lr})
    elif phase.name == "backbone":
        groups.append({"params": [p for p in model.parameters() if p.requires_grad], "lr": phase.lr * run.lr_scale})
    return groups


def _sgd(groups: list[dict], run: TrainRunParams, fused: bool) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        groups, lr=groups[0]["lr"], momentum=run.momentum, weight_decay=run.weight_decay, fused=fused or None
    )


def _adamw(groups: list[dict], run: TrainRunParams, fused: bool) -> torch.optim.Optimizer:
    return torch.optim.AdamW(  # momentum is AdamW's beta1
        groups, lr=groups[0]["lr"], betas=(run.momentum, 0.999), weight_decay=run.weight_decay, fused=fused or None
    )


# train.common.optimizer -> builder (param groups, run, fused); the params schema's
# faceid.config.train.Optimizer names the same choices (tests/test_hygiene.py keeps them equal)
OPTIMIZERS: dict[str, Callable[[list[dict], TrainRunParams, bool], torch.optim.Optimizer]] = {
    "sgd": _sgd,
    "adamw": _adamw,
}


def build_optimizer(run: TrainRunParams, groups: list[dict], device: torch.device):
    if run.optimizer not in OPTIMIZERS:
        raise ParamsError(
            f"train.common.optimizer: {run.optimizer!r} is not a valid choice; valid: {', '.join(OPTIMIZERS)}"
        )
    fused = device.type == "cuda"  # one kernel for all parameters; CPU has no fused SGD
    return OPTIMIZERS[run.optimizer](groups, run, fused)


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
