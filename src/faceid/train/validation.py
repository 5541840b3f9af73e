"""Training's own inference passes: the trunk features the cached phases train on, and the
validation AUC that picks which epoch becomes model.pt.

Validation measures what the evaluation measures: embeddings by faceid.features.embed's
one definition (`embed` from the crops, `embed_cached` from trunk features already
computed; both `embed_views`), the cosine and the AUC by faceid.evaluate.metrics
(`pair_similarity`, `roc_auc`), as the evaluate stage scores its pairs. Two settings
differ from the evaluation's, as in every run so far: no flip averaging (`flip_average`
is False here; the evaluation's is evaluate.flip_average), and in the cached phases the
trunk features are float16 (what they train on), the evaluation's float32.

Every function here works unchanged in one process or in each process of a torchrun
job: each process embeds a contiguous share of the images, in whole batches, and the
shares are gathered in order, so every process computes the same numbers.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch
from torch import nn

from faceid.backbones.registry import get_spec
from faceid.config.train import TrainRunParams
from faceid.crop.reader import CropDataset
from faceid.evaluate.metrics import pair_similarity, roc_auc
from faceid.features.embed import embed, embed_cached
from faceid.features.trunk import cache_features
from faceid.train.collectives import DistInfo, all_gather_arrays
from faceid.train.sampler import shard_indices
from faceid.train.taskdata import TaskData

__all__ = ["embed_val_images", "pair_auc", "process_share", "shared_features", "validation_aucs"]

log = logging.getLogger(__name__)


def process_share(dataset: CropDataset, batch_size: int, info: DistInfo) -> CropDataset:
    """This process's contiguous piece of `dataset`, in whole batches of `batch_size`.

    Whole batches: each batch a process embeds is one the single process embeds too, so
    the numbers are the same bit for bit (a batch's composition changes float rounding).
    """
    if not info.is_distributed:
        return dataset
    batches = shard_indices(-(-len(dataset) // batch_size), info.rank, info.world_size)
    if not len(batches):
        return dataset.subset(np.arange(0))
    return dataset.subset(np.arange(batches[0] * batch_size, min((batches[-1] + 1) * batch_size, len(dataset))))


def shared_features(
    model: nn.Module, dataset: CropDataset, run: TrainRunParams, device: torch.device, flips: bool, info: DistInfo
) -> torch.Tensor:
    """cache_features of the whole dataset, each process computing its share: (V, N, D)."""
    mine = cache_features(
        model, process_share(dataset, run.eval_batch_size, info), run.eval_batch_size, device, run.image_size, flips
    )
    if not info.is_distributed:
        return mine
    if not mine.shape[1]:  # fewer batches than processes: this one had none
        mine = torch.zeros((mine.shape[0], 0, get_spec(run.backbone).feature_size), dtype=torch.float16)
    # gathered along N in rank order; float32 on the wire (exact for float16 values)
    rows = all_gather_arrays(mine.transpose(0, 1).float().numpy())
    return torch.from_numpy(rows).transpose(0, 1).to(torch.float16).contiguous()


def embed_val_images(
    model: nn.Module,
    dataset: CropDataset,
    run: TrainRunParams,
    info: DistInfo,
    features: torch.Tensor | None = None,
    *,
    flip_average: bool,
) -> np.ndarray:
    """(N, 512) L2-normalised embeddings of `dataset`'s crops, in order, in every process.

    `features`: their trunk features (V, N, D) while the trunk is the one that computed
    them (every process holds them all); None: from the crops, each process its share.
    """
    if features is not None:
        views = features.transpose(0, 1)
        return embed_cached(model, views, run.eval_batch_size, info.device, flip_average=flip_average)
    share = process_share(dataset, run.eval_batch_size, info)
    mine = embed(
        model, share, run.eval_batch_size, info.device,
        image_size=run.image_size, num_workers=run.num_workers, flip_average=flip_average,
    )  # fmt: skip
    return all_gather_arrays(mine)


def pair_auc(embeddings: np.ndarray, pairs: pd.DataFrame, images: pd.Index) -> float:
    """ROC AUC of the cosine similarity of `pairs`, with the evaluation's functions
    (faceid.evaluate.metrics: pair_similarity, roc_auc); NaN, with a warning, when they
    hold one kind only.

    `embeddings` (N, 512), L2-normalised, are those of `images`, in that order.
    """
    similarity = pair_similarity(
        embeddings, images.get_indexer(pairs["image_a"]), images.get_indexer(pairs["image_b"])
    )
    is_same = (pairs["kind"] == "genuine").to_numpy()
    if is_same.all() or not is_same.any():
        log.warning("val pairs have only %s pairs: AUC undefined", "genuine" if is_same.any() else "impostor")
        return float("nan")
    return roc_auc(similarity[is_same], similarity[~is_same])


def validation_aucs(
    model: nn.Module, data: TaskData, run: TrainRunParams, info: DistInfo, features: dict[str, torch.Tensor] | None
) -> dict[str, float]:
    """`val_auc_<name>` of each of the task's val pair sets (`task`, and `orig` for an
    attribute task), in data.val_pairs' order.

    `features`: the cached phases' trunk features, `features[name]` (1, N, D) those of
    data.val_images[name]; None (the backbone phase, the trunk training): from the crops.
    """
    aucs = {}
    for name, pairs in data.val_pairs.items():
        cached = None if features is None else features[name]
        # one view: training has never averaged flips in validation (the evaluation does)
        embeddings = embed_val_images(model, data.val_datasets[name], run, info, cached, flip_average=False)
        aucs[f"val_auc_{name}"] = pair_auc(embeddings, pairs, data.val_images[name])
    return aucs
