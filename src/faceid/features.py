"""Pooled trunk features computed once, and BatchNorm statistics that match the data.

The cheap phases of training (the ArcFace head alone, then the embedding layer with it)
run on cached trunk features rather than images: the trunk is frozen there, so its output
for a crop (and for its mirror image, the only augmentation) never changes and one forward
pass per crop serves every epoch. On 2 CPU cores that turns minutes per epoch into
milliseconds. Features are kept as float16 on the CPU: at CelebA scale (162,770 training
crops, both orientations, 2,048 wide) that is 1.3 GB, against 2.7 GB as float32.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from faceid.data import CropDataset, make_loader, prepare_batch

__all__ = ["cache_features", "recalibrate_batchnorm"]


@torch.no_grad()
def cache_features(
    model: nn.Module,
    dataset: CropDataset,
    batch_size: int,
    device: torch.device,
    image_size: int | None,
    flips: bool,
) -> torch.Tensor:
    """(V, N, D) float16 trunk features of the dataset's crops, in order, on the CPU.

    V is 2 with `flips` (index 0 the crop, 1 its mirror image), else 1. The model is put
    in eval mode: BatchNorm uses its running statistics, as when the trunk is frozen.
    """
    model.eval()
    views = (False, True) if flips else (False,)
    # its own generator: iterating a DataLoader draws a seed from the global RNG otherwise,
    # and a resumed run (which caches again) would then see other dropout masks
    loader = make_loader(dataset, batch_size, shuffle=False, generator=torch.Generator(), pin_memory=device.type == "cuda")
    chunks: list[list[torch.Tensor]] = [[] for _ in views]
    for images, _ in loader:
        x = prepare_batch(images, device, image_size)
        for view, mirrored in enumerate(views):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                out = model.features(x.flip(3) if mirrored else x)
            chunks[view].append(out.to("cpu", torch.float16))
    if not len(dataset):
        return torch.zeros((len(views), 0, 0), dtype=torch.float16)
    return torch.stack([torch.cat(c) for c in chunks])


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module,
    dataset: CropDataset,
    n_images: int,
    batch_size: int,
    device: torch.device,
    image_size: int | None,
    seed: int,
) -> int:
    """Re-estimate every BatchNorm layer's running statistics on up to `n_images` crops.

    A randomly initialised network's BatchNorm layers hold their init statistics (mean 0,
    variance 1), which match no real activations: in eval mode every embedding then lies
    within cosine 0.9995 of every other. One pass in train mode with cumulative averaging
    (momentum None) sets them to the data's. Weights are untouched. Returns the number of
    crops used.
    """
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative average over every batch of the pass
    order = np.random.default_rng(seed).permutation(len(dataset))[:n_images]
    model.train()
    try:
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            if len(chosen) < 2:  # one sample has no batch variance
                break
            images, _ = dataset.__getitems__(chosen.tolist())
            model(prepare_batch(images, device, image_size))
    finally:
        for layer, momentum in zip(layers, saved, strict=True):
            layer.momentum = momentum
        model.eval()
    return len(order)
