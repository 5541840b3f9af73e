"""Pooled trunk features computed once, and BatchNorm statistics that match the data.

The cheap phases of training (the ArcFace head alone, then the embedding layer with it)
run on cached trunk features rather than images: the trunk is frozen there, so its output
for a crop (and for its mirror image, the only augmentation) never changes and one forward
pass per crop serves every epoch. On 2 CPU cores that turns minutes per epoch into
milliseconds. Training keeps them as float16 on the CPU: at CelebA scale (162,770 training
crops, both orientations, 2,048 wide) that is 1.3 GB, against 2.7 GB as float32.

The features stage (`features@<backbone>`, `write_feature_file`) computes a backbone's
*starting* trunk features once for every crop, both orientations, into
data/features/<backbone>/: `features.npy`, float32 (N, 2, D) in the crops' (shard, row)
order, written a batch at a time and memory-mapped a chunk at a time by its readers, and
`features.json` (backbone, input size, the trunk's fingerprint, the crops it was computed
from). Any run or evaluation whose network has that
very trunk (`trunk_fingerprint`: every trunk parameter and BatchNorm statistic, bit for
bit) at that input size reads it (`FeatureFile.matches`) instead of pushing the images
through the trunk again: with the default's frozen trunks that is every model of a
backbone. A network whose trunk was trained or re-calibrated computes its own, as before.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from faceid.backbones.registry import get_spec
from faceid.common.fileio import atomic_write, file_digest, write_json
from faceid.common.progress import progress
from faceid.crop.reader import CropDataset, CropStore, make_loader, prepare_batch
from faceid.crop.shards import MANIFEST_FILE
from faceid.errors import FaceidError

__all__ = [
    "FEATURES_FILE",
    "FEATURES_META",
    "FeatureFile",
    "FeatureFileError",
    "cache_features",
    "recalibrate_batchnorm",
    "trunk_fingerprint",
    "trunk_keys",
    "write_feature_file",
]

FEATURES_FILE = "features.npy"
FEATURES_META = "features.json"
_VIEWS = 2  # the crop and its mirror image


class FeatureFileError(FaceidError, ValueError):
    """A features folder that is missing, unreadable or made from other crops."""


def trunk_keys(model: nn.Module, backbone: str) -> list[str]:
    """The state-dict keys of the backbone's trunk: its named stages, all that `model.features` runs."""
    prefixes = tuple(f"net.{a}." for _, attributes in get_spec(backbone).stages for a in attributes)
    return [name for name in model.state_dict() if name.startswith(prefixes)]


def trunk_fingerprint(model: nn.Module, backbone: str) -> str:
    """sha256 of every parameter and buffer of the backbone's trunk (`trunk_keys`), names
    and bytes: equal fingerprints, equal features."""
    keys = set(trunk_keys(model, backbone))
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        if name in keys:
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _crops_identity(store: CropStore) -> dict:
    """What the features were computed from: the manifest's content and each shard's size."""
    return {
        "manifest_md5": file_digest(store.crops_dir / MANIFEST_FILE, "md5"),
        "shards": {path.name: path.stat().st_size for path in store.paths.values()},
    }


def _shard_rows(store: CropStore) -> list[tuple[int, int]]:
    """(shard, its number of rows) of every shard the manifest uses, in shard order: the
    features file's rows, shard after shard."""
    return [(shard, int(np.load(path, mmap_mode="r").shape[0])) for shard, path in sorted(store.paths.items())]


@torch.no_grad()
def write_feature_file(
    model: nn.Module,
    backbone: str,
    crops_dir: Path,
    out_dir: Path,
    image_size: int | None,
    batch_size: int,
    device: torch.device,
) -> dict:
    """Compute the trunk features of every crop and its mirror image into `out_dir`
    (features.npy float32 (N, 2, D); the crops are read and the rows written a batch at a
    time); returns the metadata written to features.json."""
    store = CropStore(crops_dir)
    lengths = _shard_rows(store)
    total = sum(n for _, n in lengths)
    shard = np.repeat(np.array([s for s, _ in lengths], np.int64), [n for _, n in lengths])
    row = np.concatenate([np.arange(n, dtype=np.int64) for _, n in lengths] or [np.zeros(0, np.int64)])
    dataset = CropDataset(store.paths, shard, row, np.zeros(total, np.int64))
    model.eval().to(device, memory_format=torch.channels_last)
    width = get_spec(backbone).feature_size
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {
        "backbone": backbone, "image_size": image_size, "dtype": "float32", "shape": [total, _VIEWS, width],
        "views": ["crop", "mirror image"], "trunk": trunk_fingerprint(model, backbone), "crops": _crops_identity(store),
    }  # fmt: skip

    def write(tmp: Path) -> None:
        # appended batch by batch after the .npy header (no memory map: resident pages of a
        # 3 GB file would count in the process's memory at CelebA scale)
        loader = make_loader(
            dataset, batch_size, shuffle=False, generator=torch.Generator(), num_workers=0,
            pin_memory=device.type == "cuda",
        )  # fmt: skip
        with open(tmp, "wb") as handle:
            np.lib.format.write_array_header_1_0(
                handle, {"descr": "<f4", "fortran_order": False, "shape": (total, _VIEWS, width)}
            )
            for images, _ in progress(loader, desc=f"features {backbone}", leave=False):
                x = prepare_batch(images, device, image_size)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                    views = [model.features(x), model.features(x.flip(3))]
                handle.write(torch.stack(views, 1).float().cpu().numpy().astype("<f4", copy=False).tobytes())

    (out_dir / FEATURES_META).unlink(missing_ok=True)  # a reader never pairs new rows with old metadata
    atomic_write(out_dir / FEATURES_FILE, write, suffix=".partial.npy")
    write_json(out_dir / FEATURES_META, meta)
    return meta


class FeatureFile:
    """The features stage's output for one backbone, memory-mapped a chunk at a time; rows found by crop."""

    def __init__(self, folder: str | Path, store: CropStore):
        self.folder = Path(folder)
        meta_path, array_path = self.folder / FEATURES_META, self.folder / FEATURES_FILE
        if not meta_path.is_file() or not array_path.is_file():
            raise FeatureFileError(
                f"{self.folder}: no trunk features ({FEATURES_META}, {FEATURES_FILE}); run `dvc repro features`"
            )
        self.meta = json.loads(meta_path.read_text())
        self.path = array_path
        try:
            shape = list(np.load(array_path, mmap_mode="r").shape)
        except (OSError, ValueError) as exc:  # truncated or not an .npy file
            raise FeatureFileError(
                f"{array_path}: unreadable ({exc}); rerun `dvc repro features@{self.meta['backbone']}`"
            ) from exc
        if shape != self.meta["shape"]:
            raise FeatureFileError(
                f"{array_path}: shape {shape} is not {self.meta['shape']} ({meta_path}); "
                f"rerun `dvc repro features@{self.meta['backbone']}`"
            )
        if self.meta["crops"] != _crops_identity(store):
            raise FeatureFileError(
                f"{self.folder}: computed from other crops than {store.crops_dir}; "
                f"rerun `dvc repro features@{self.meta['backbone']}`"
            )
        lengths = _shard_rows(store)
        # a shard's first row in the file, indexed by shard number
        self.first_row = np.zeros(max((s for s, _ in lengths), default=-1) + 1, np.int64)
        self.first_row[[s for s, _ in lengths]] = np.cumsum([0] + [n for _, n in lengths[:-1]]) if lengths else []

    def matches(self, model: nn.Module, backbone: str, image_size: int | None) -> bool:
        """True when `model`'s trunk at `image_size` is the one these features came from."""
        return (self.meta["backbone"] == backbone and self.meta["image_size"] == image_size
                and self.meta["trunk"] == trunk_fingerprint(model, backbone))  # fmt: skip

    def rows(self, dataset: CropDataset) -> np.ndarray:
        return self.first_row[dataset.shard] + dataset.row

    def read(
        self, dataset: CropDataset, views: int = _VIEWS, dtype: torch.dtype = torch.float32, chunk: int = 8192
    ) -> torch.Tensor:
        """(N, views, D) features of the dataset's crops, in its order, as `dtype`; read in
        ascending-row chunks (at most `chunk` float32 rows in memory besides the result)."""
        rows = self.rows(dataset)
        out = torch.empty((len(rows), views, self.meta["shape"][2]), dtype=dtype)
        order = np.argsort(rows, kind="stable")
        for start in range(0, len(order), chunk):
            take = order[start : start + chunk]
            array = np.load(self.path, mmap_mode="r")  # mapped for this chunk only (as the crops)
            out[torch.from_numpy(take)] = torch.from_numpy(np.ascontiguousarray(array[rows[take], :views])).to(dtype)
            del array
        return out


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
    loader = make_loader(
        dataset, batch_size, shuffle=False, generator=torch.Generator(), num_workers=0, pin_memory=device.type == "cuda"
    )
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
