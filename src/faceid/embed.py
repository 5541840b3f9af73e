"""Crops → L2-normalised 512-d embeddings, for validation during training and for evaluation."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from faceid.backbones import EMBEDDING_SIZE
from faceid.data import CropDataset, make_loader, prepare_batch


@torch.no_grad()
def embed(
    model: nn.Module,
    dataset: CropDataset,
    batch_size: int,
    device: torch.device,
    image_size: int | None = None,
    num_workers: int = 0,
    flip_average: bool = False,
) -> np.ndarray:
    """(N, 512) float32 L2-normalised embeddings of the dataset's crops, in order.

    With `flip_average`, each embedding is the normalised sum of the crop's and its
    mirror image's embeddings (a common test-time augmentation, +1 forward pass).
    """
    model.eval()
    # own generator: leave the global RNG (dropout masks of a training run) untouched
    loader = make_loader(dataset, batch_size, shuffle=False, generator=torch.Generator(), num_workers=num_workers, pin_memory=device.type == "cuda")
    chunks = []
    for images, _ in loader:
        x = prepare_batch(images, device, image_size)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = model(x).float()
            if flip_average:
                out = F.normalize(out + model(x.flip(3)).float(), dim=1)
        chunks.append(out.cpu())
    return torch.cat(chunks).numpy() if chunks else np.zeros((0, EMBEDDING_SIZE), np.float32)
