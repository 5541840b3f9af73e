"""Crops for training and evaluation: a Dataset over the memory-mapped crop shards.

Loading stays cheap and RAM-bounded: a batch is gathered as uint8 straight from the
shards (one fancy index per shard per batch), and conversion to float, normalisation,
flips and resizing happen on the training device (`prepare_batch`). Shards are
memory-mapped afresh for every batch and released after it, so a worker never holds
more than the pages of one batch (a long-lived np.memmap keeps every page it ever
touched resident: at CelebA scale, 15.5 GB), and each worker process opens its own maps.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from faceid.crop.shards import MANIFEST_FILE, shard_path
from faceid.errors import FaceidError

__all__ = [
    "CropDataError",
    "CropDataset",
    "CropStore",
    "flip_mask",
    "make_loader",
    "normalize",
    "prepare_batch",
]

MANIFEST_COLUMNS = ("image", "identity", "shard", "row", "status")


class CropDataError(FaceidError, ValueError):
    """Crop shards or manifest that do not fit the data contract."""


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) → float (x - 127.5) / 128, facenet's fixed_image_standardization."""
    return (images.float() - 127.5) / 128.0


class CropStore:
    """The crop manifest: image name → (shard, row), and the shard files."""

    def __init__(self, crops_dir: str | Path):
        self.crops_dir = Path(crops_dir)
        manifest_path = self.crops_dir / MANIFEST_FILE
        if not manifest_path.exists():
            raise CropDataError(f"{manifest_path}: no crop manifest; run `dvc repro crop` first")
        manifest = pd.read_parquet(manifest_path, columns=list(MANIFEST_COLUMNS))
        has_crop = manifest["shard"] >= 0
        self._where = pd.DataFrame(
            {"shard": manifest["shard"].to_numpy(np.int64), "row": manifest["row"].to_numpy(np.int64)},
            index=pd.Index(manifest["image"].to_numpy()),
        )[has_crop.to_numpy()]
        shards = sorted(self._where["shard"].unique())
        self.paths = {int(s): shard_path(self.crops_dir, s) for s in shards}
        for path in self.paths.values():
            if not path.exists():
                raise CropDataError(f"{path}: listed in {manifest_path} but missing; rerun crop")
        first = np.load(next(iter(self.paths.values())), mmap_mode="r") if self.paths else None
        self.image_size = int(first.shape[1]) if first is not None else 0

    def locate(self, images: pd.Series | list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(shard, row, found) arrays for `images`; found is False where there is no crop."""
        images = pd.Index(images)
        position = self._where.index.get_indexer(images)
        found = position >= 0
        take = np.where(found, position, 0)
        shard = np.where(found, self._where["shard"].to_numpy()[take], -1)
        row = np.where(found, self._where["row"].to_numpy()[take], -1)
        return shard, row, found

    def dataset(self, images, labels=None) -> CropDataset:
        """A CropDataset of `images` (all must have crops; filter with `locate` first)."""
        shard, row, found = self.locate(images)
        if not found.all():
            missing = list(pd.Index(images)[~found][:5])
            raise CropDataError(f"{self.crops_dir}: no crop for {(~found).sum()} images, e.g. {missing}")
        labels = np.zeros(len(shard), np.int64) if labels is None else np.asarray(labels, np.int64)
        return CropDataset(self.paths, shard, row, labels)


class CropDataset(Dataset):
    """uint8 crops (S, S, 3) and int64 labels; `__getitems__` gathers a whole batch."""

    def __init__(self, paths: dict[int, Path], shard: np.ndarray, row: np.ndarray, labels: np.ndarray):
        self.paths = {k: str(v) for k, v in paths.items()}  # str: cheap to pickle to workers
        self.shard = np.asarray(shard, np.int64)
        self.row = np.asarray(row, np.int64)
        self.labels = np.asarray(labels, np.int64)

    def __len__(self) -> int:
        return len(self.row)

    def subset(self, indices: np.ndarray) -> CropDataset:
        """The crops at `indices`, in that order (a process's share under torchrun)."""
        indices = np.asarray(indices, np.int64)
        return CropDataset(self.paths, self.shard[indices], self.row[indices], self.labels[indices])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        images, labels = self.__getitems__([index])
        return images[0], int(labels[0])

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S, S, 3) uint8 and (B,) int64 for the batch, in the order of `indices`."""
        indices = np.asarray(indices, np.int64)
        shard, row = self.shard[indices], self.row[indices]
        out = None
        for s in np.unique(shard):
            crops = np.load(self.paths[int(s)], mmap_mode="r")  # mapped for this batch only
            if out is None:
                out = np.empty((len(indices), *crops.shape[1:]), np.uint8)
            sel = np.flatnonzero(shard == s)
            order = np.argsort(row[sel])  # ascending rows read the file sequentially
            out[sel[order]] = crops[row[sel][order]]
            del crops
        return torch.from_numpy(out), torch.from_numpy(self.labels[indices])


def _keep_batch(batch):
    return batch  # __getitems__ already returns the collated batch


def loader_workers(setting: int | str) -> int:
    """DataLoader workers for train.common.num_workers: the count, or for `auto` the CPU
    cores this process may use, less one for the training loop, at most 8."""
    if setting != "auto":
        return int(setting)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(0, min(cores - 1, 8))


def make_loader(
    dataset: CropDataset,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None = None,
    num_workers: int | str,
    pin_memory: bool = False,
    drop_last: bool = False,
    batch_sampler: Sampler[list[int]] | None = None,
) -> DataLoader:
    """A DataLoader yielding (uint8 (B, S, S, 3), int64 (B,)) batches.

    With `batch_sampler` (e.g. faceid.train.sampler.GlobalBatchSampler), it alone decides
    the batches: batch_size, shuffle and drop_last are ignored. `num_workers`: a count or
    auto (`loader_workers`).
    """
    num_workers = loader_workers(num_workers)
    if batch_sampler is not None:
        return DataLoader(dataset, batch_sampler=batch_sampler, num_workers=num_workers, pin_memory=pin_memory,
                          collate_fn=_keep_batch, persistent_workers=num_workers > 0)  # fmt: skip
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=num_workers,
        pin_memory=pin_memory,
        drop_last=drop_last,
        collate_fn=_keep_batch,
        persistent_workers=num_workers > 0,
    )


def flip_mask(batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """(B,) bool: which images to mirror, drawn from `generator` (CPU) for reproducibility."""
    return torch.rand(batch_size, generator=generator) < 0.5


def prepare_batch(
    images: torch.Tensor,
    device: torch.device,
    image_size: int | None,
    flip: torch.Tensor | None = None,
) -> torch.Tensor:
    """uint8 (B, S, S, 3) → normalised float (B, 3, H, W), channels_last, on `device`,
    resized to the run's `image_size` (None: the crop size); `flip` (B,) bool mirrors images."""
    x = images.to(device, non_blocking=True).permute(0, 3, 1, 2)  # NHWC memory = channels_last
    x = normalize(x)
    if flip is not None:
        x = torch.where(flip.to(device, non_blocking=True)[:, None, None, None], x.flip(3), x)
    if image_size is not None and image_size != x.shape[-1]:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True)
    return x.contiguous(memory_format=torch.channels_last)
