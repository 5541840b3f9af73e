"""Loading a trained model.pt: what evaluation, the demo and fine-tuning (init: orig) read.

Kept apart from `faceid.train.run` so that evaluating or serving a model does not import the
training loop (dvclive, optimisers) and an edit to training leaves evaluation up to date.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from faceid.backbones.registry import build_backbone
from faceid.config.tasks import ORIG_TASK
from faceid.config.train import TrainRunParams
from faceid.errors import FaceidError, MissingInputError

__all__ = ["ModelInputError", "initial_model", "load_model", "read_model_file", "start_model"]


class ModelInputError(FaceidError, ValueError):
    """A model file that does not fit the run asking for it."""


def read_model_file(path: str | Path) -> dict[str, Any]:
    """The dict a train stage saved (backbone name, params, state_dict, selection …)."""
    if not Path(path).exists():
        raise MissingInputError(
            f"{path}: no such model; train it first (`dvc repro train-orig@<backbone>` or "
            "`dvc repro train@<task>-<backbone>`; `dvc stage list` names them)"
        )
    return torch.load(path, map_location="cpu", weights_only=False)


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The embedding network of a model.pt (eval mode) and the file's dict without weights."""
    info = read_model_file(path)
    model = build_backbone(info["backbone"], "none", dropout=info["params"]["dropout"])
    model.load_state_dict(info["state_dict"])
    return model.to(device).eval(), {k: v for k, v in info.items() if k != "state_dict"}


def initial_model(run: TrainRunParams, weights: Path | None, init_model: Path | None) -> tuple[nn.Module, str]:
    """The network a run starts from, and its init label; call after torch.manual_seed(run.seed).

    The evaluate stage builds the same network to report each backbone's starting point.
    """
    if run.task_init == "none":
        return build_backbone(run.backbone, "none", dropout=run.dropout), "none"
    if run.task_init == "pretrained":
        return build_backbone(run.backbone, run.weights_init, weights, dropout=run.dropout), run.weights_init
    if init_model is None or not Path(init_model).exists():
        raise ModelInputError(
            f"train.task.{run.task}.init is orig, but the orig model {init_model} is missing; "
            f"run `dvc repro train-orig@{run.backbone}` first"
        )
    source = read_model_file(init_model)
    if source["backbone"] != run.backbone:
        raise ModelInputError(f"{init_model}: a {source['backbone']} model, expected {run.backbone}")
    model = build_backbone(run.backbone, "none", dropout=run.dropout)
    model.load_state_dict(source["state_dict"])
    return model, ORIG_TASK


def start_model(run: TrainRunParams, weights: Path | None) -> tuple[nn.Module, str]:
    """The starting point orig's `run` trains from (its pretrained `weights`, or untrained:
    the same seed builds the same network), in eval mode, and its init label: what the
    features stage computes trunk features with and evaluate-base evaluates."""
    if run.task_init == ORIG_TASK:
        raise ModelInputError(f"{run.task}-{run.backbone}: starts from orig, not from a backbone's starting point")
    torch.manual_seed(run.seed)
    model, init = initial_model(run, weights, None)
    return model.eval(), init
