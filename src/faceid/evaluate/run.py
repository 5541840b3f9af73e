"""One model's evaluation run, as `stages/evaluate.py` runs it: which network (a trained
model.pt, or a backbone's starting point exactly as training starts from it) with its
metadata → its embeddings of the evaluated images (data/embeddings/<name>.npz) → the
detail (metrics/detail/<name>.json, level 3) and headline (metrics/eval/<name>.json,
level 2) files.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from faceid.backbones.load import load_model, start_model
from faceid.common.device import select_device
from faceid.common.fileio import atomic_write
from faceid.config.engine import ParamsError
from faceid.config.evaluate import EvaluateParams
from faceid.config.tasks import ORIG_TASK
from faceid.config.train import TrainParams, TrainRunParams, resolve_train_params
from faceid.crop.reader import CropStore
from faceid.crop.shards import MANIFEST_FILE
from faceid.evaluate.evaluation import evaluate_embeddings, json_ready
from faceid.evaluate.headline import headline
from faceid.features.embed import embed, embed_cached
from faceid.features.trunk import FeatureFile
from faceid.pairs.files import ATTRIBUTE_PAIRS_FILE, IDENTIFICATION_FILE, PAIRS_FILE
from faceid.project.naming import start_label

__all__ = ["EvaluationFiles", "evaluate_model", "model_to_evaluate"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationFiles:
    """Where one evaluation reads its inputs and writes its outputs."""

    crops: Path  # data/crops: shards + manifest.parquet
    pairs: Path  # data/pairs: pairs, identification (and attribute) parquet files
    embeddings: Path  # data/embeddings/<name>.npz (written)
    headline: Path  # metrics/eval/<name>.json (written)
    detail: Path  # metrics/detail/<name>.json (written)
    features: Path | None = None  # data/features/<backbone>: the starting trunk's features, if any


def model_to_evaluate(
    train: TrainParams, model_path: str | Path | None, base: str | None, weights: str | Path | None = None,
    start_run: TrainRunParams | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """(network in eval mode, metadata) of a trained `model_path`, or else of backbone
    `base`'s starting point (its pretrained `weights` file, or untrained as training
    builds it: same seed, same network). The start is orig's: `start_run` (the runs
    stage's data/runs/orig-<base>.json), or else resolved from `train`."""
    if model_path:
        model, info = load_model(model_path)
        run = info["params"]
        return model, {"backbone": info["backbone"], "task": run["task"], "init": info["init"], "start": None,
                       "epoch": info["epoch"], "image_size": run["image_size"]}  # fmt: skip
    run = start_run or resolve_train_params(train, ORIG_TASK, base)
    if run.task != ORIG_TASK or run.backbone != base:
        raise ParamsError(f"the start of {base} is orig-{base}'s run, got a run of {run.task}-{run.backbone}")
    model, init = start_model(run, Path(weights) if weights else None)
    start = start_label(init)
    return model, {"backbone": base, "task": None, "init": init, "start": start, "epoch": None,
                          "image_size": run.image_size}  # fmt: skip


def _read_pairs(folder: Path, split: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """The split's verification pairs, the identification protocol and the attribute
    pairs (None when evaluate.attributes is empty: the pairs stage writes no file)."""
    pairs = pd.read_parquet(folder / PAIRS_FILE)
    identification = pd.read_parquet(folder / IDENTIFICATION_FILE)
    attribute_file = folder / ATTRIBUTE_PAIRS_FILE
    attribute_pairs = pd.read_parquet(attribute_file) if attribute_file.is_file() else None
    return pairs[pairs["split"] == split], identification, attribute_pairs


def _embed(model: nn.Module, meta: dict[str, Any], store: CropStore, images: pd.Index, settings: EvaluateParams,
           device: torch.device, features: Path | None) -> np.ndarray:
    """The images' embeddings (faceid.features.embed's one definition): from the features stage's
    trunk features when the model's trunk is theirs, else from the crops."""
    dataset = store.dataset(images)
    if features is not None:
        file = FeatureFile(features, store)
        if file.matches(model, meta["backbone"], meta["image_size"]):
            log.info("trunk features from %s", features)
            views = file.read(dataset, 2 if settings.flip_average else 1)
            return embed_cached(model, views, settings.batch_size, device, flip_average=settings.flip_average)
        log.info("the model's trunk is not the one of %s: embedding from the crops", features)
    # channels_last only where convolutions run: converting (and the trunk fingerprint's
    # copy back to contiguous) costs ~0.5 s a stage when only the head runs on features
    model.to(memory_format=torch.channels_last)
    # the crops are memory-mapped: loading them in this process is as fast as in workers
    return embed(model, dataset, settings.batch_size, device, image_size=meta["image_size"], num_workers=0,
                 flip_average=settings.flip_average)  # fmt: skip


def evaluate_model(
    model: nn.Module,
    meta: dict[str, Any],
    name: str,
    train: TrainParams,
    settings: EvaluateParams,
    files: EvaluationFiles,
) -> dict:
    """Embed every image the evaluation needs (those with a crop), write the embeddings,
    evaluate them and write the detail and headline files; the detail dict."""
    device = select_device(settings.device, key="evaluate.device")
    model.to(device)
    pairs, identification, attribute_pairs = _read_pairs(Path(files.pairs), settings.split)
    store = CropStore(files.crops)
    columns = [pairs["image_a"], pairs["image_b"], identification["image"]]
    if attribute_pairs is not None:
        columns += [attribute_pairs["image_a"], attribute_pairs["image_b"]]
    wanted = pd.Index(pd.unique(pd.concat(columns)))
    _, _, found = store.locate(wanted)
    images = wanted[found]
    log.info("%s: embedding %d images (%d without a crop)", name, len(images), int((~found).sum()))
    embeddings = _embed(model, meta, store, images, settings, device, files.features)
    arrays = {"images": np.asarray(images, dtype=str), "embeddings": embeddings}
    atomic_write(files.embeddings, lambda tmp: np.savez(tmp, **arrays), suffix=".partial.npz")

    manifest = pd.read_parquet(Path(files.crops) / MANIFEST_FILE)
    result = evaluate_embeddings(embeddings, list(images), pairs, manifest, identification, settings, attribute_pairs)
    result["model"] = {"name": name, **meta}
    numbers = headline(result, settings)
    for path, content in ((files.detail, json_ready(result)), (files.headline, numbers)):
        text = json.dumps(content, indent=1, allow_nan=False) + "\n"
        atomic_write(path, lambda tmp, text=text: tmp.write_text(text))
    log.info("%s: AUC %s, top-1 %s, threshold %s", name, numbers["auc"], numbers.get("top1"), numbers["threshold"])
    return result
