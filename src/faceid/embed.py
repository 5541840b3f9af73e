"""Crops → L2-normalised 512-d embeddings: the one embedding path of training validation,
evaluation, the demo (photos and cached crops), the tests and the benchmarks.

One function so that the demo's similarities (and the threshold the evaluation set on
them) mean what the evaluation measured: same resize to the model's input size, same
normalisation, same flip averaging, same batching code.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from faceid.backbones import EMBEDDING_SIZE
from faceid.data import CropDataset, make_loader, prepare_batch

__all__ = ["CropArray", "embed"]


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
    image_size: int | None = None,
    num_workers: int = 0,
    flip_average: bool = False,
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
    loader = make_loader(dataset, batch_size, shuffle=False, generator=torch.Generator(), num_workers=num_workers, pin_memory=device.type == "cuda")
    chunks = []
    for images, _ in loader:
        x = prepare_batch(images, device, image_size)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = model(x).float()  # (B, 512), L2-normalised by every backbone
            if flip_average:
                out = F.normalize(out + model(x.flip(3)).float(), dim=1)
        chunks.append(out.cpu())
    return torch.cat(chunks).numpy() if chunks else np.zeros((0, EMBEDDING_SIZE), np.float32)
