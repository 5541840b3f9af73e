"""Crops → L2-normalised 512-d embeddings: the one definition of "the embedding of a crop"
for training validation, evaluation, the demo (photos and cached crops), the tests and the
benchmarks.

The embedding of a crop is `embed_views`: the network's embedding layer (`embed_features`)
on its pooled trunk features, and with flip averaging the normalised sum of that and its
mirror image's. `embed` computes the trunk features from the crops' pixels (same resize to
the model's input size, same normalisation, same batching for every caller);
`embed_cached` takes them from the features stage's file (faceid.features.trunk) when the
model's trunk is the one that file was computed with. So the demo's similarities (and the
threshold the evaluation set on them) mean what the evaluation measured.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from faceid.backbones.registry import EMBEDDING_SIZE
from faceid.crop.reader import CropDataset, make_loader, prepare_batch

__all__ = ["CropArray", "embed", "embed_cached", "embed_views"]


class CropArray(torch.utils.data.Dataset):
    """In-memory uint8 crops (N, S, S, 3) shaped like a CropDataset (labels all 0), so a
    demo's photo crops go through the same loader and batches as the cached ones."""

    def __init__(self, crops: np.ndarray):
        self.crops = np.ascontiguousarray(crops, dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.crops)

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(self.crops[indices]), torch.zeros(len(indices), dtype=torch.int64)


@torch.no_grad()
def embed(
    model: nn.Module,
    dataset: CropDataset | CropArray | np.ndarray,
    batch_size: int,
    device: torch.device,
    *,
    image_size: int | None,
    num_workers: int | str,
    flip_average: bool,
) -> np.ndarray:
    """(N, 512) float32 L2-normalised embeddings of the crops, in order.

    `dataset`: a CropDataset (cached crops), or uint8 (N, S, S, 3) crops in memory.
    Crops are resized to `image_size` (None = as they are). With `flip_average`, each
    embedding is the normalised sum of the crop's and its mirror image's embeddings (a
    common test-time augmentation, +1 forward pass).
    """
    if isinstance(dataset, np.ndarray):
        dataset = CropArray(dataset)
    model.eval()
    # own generator: leave the global RNG (dropout masks of a training run) untouched
    loader = make_loader(
        dataset,
        batch_size,
        shuffle=False,
        generator=torch.Generator(),
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    chunks = []
    for images, _ in loader:
        x = prepare_batch(images, device, image_size)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            views = [model.features(x)] + ([model.features(x.flip(3))] if flip_average else [])
            chunks.append(embed_views(model, views).cpu())
    return torch.cat(chunks).numpy() if chunks else np.zeros((0, EMBEDDING_SIZE), np.float32)


def embed_views(model: nn.Module, views: list[torch.Tensor]) -> torch.Tensor:
    """(B, 512) float32 L2-normalised embeddings from the pooled trunk features of a batch of
    crops (`views[0]`) and, for flip averaging, of their mirror images (`views[1]`): the
    normalised sum of the views' embeddings. Call under no_grad, model in eval mode."""
    out = model.embed_features(views[0]).float()
    for view in views[1:]:
        out = F.normalize(out + model.embed_features(view).float(), dim=1)
    return out


@torch.no_grad()
def embed_cached(
    model: nn.Module,
    features: torch.Tensor | np.ndarray,
    batch_size: int,
    device: torch.device,
    *,
    flip_average: bool,
) -> np.ndarray:
    """`embed` of crops whose trunk features are already computed: `features` (N, V, D),
    V = 2 holding the mirror images' (any float dtype; computed in float32). Equal to `embed`
    of the crops when the features are those of this model's trunk at its input size
    (tests/test_features.py: within float rounding)."""
    model.eval()
    features = torch.as_tensor(features)
    views = range(2 if flip_average else 1)
    if flip_average and features.shape[1] < 2:
        raise ValueError("flip averaging needs the mirror images' features (V = 2)")
    chunks = []
    for start in range(0, features.shape[0], batch_size):
        block = features[start : start + batch_size].to(device, torch.float32)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            chunks.append(embed_views(model, [block[:, v] for v in views]).cpu())
    return torch.cat(chunks).numpy() if chunks else np.zeros((0, EMBEDDING_SIZE), np.float32)
