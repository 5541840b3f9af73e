"""Galleries: the enrolled faces one model identifies people against.

A gallery file (`.npz`, no pickles) holds

- `embeddings` (N, 512) float32, L2-normalised, one row per enrolled face;
- `names` (N,) the identity of each row, `sources` (N,) the photo (or dataset image) it
  came from;
- `identities` (M,) the distinct names, sorted, and `templates` (M, 512) each identity's
  mean embedding, L2-normalised;
- `meta`: a JSON string with the model path and sha256, the crop geometry (method,
  image_size, margin), flip averaging, where the faces came from and what was skipped.

A gallery is only valid for the model (by hash) and crop geometry it was built with.
"""

from __future__ import annotations

import json
import logging
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from faceid.backbones.registry import EMBEDDING_SIZE
from faceid.common.fileio import atomic_write
from faceid.common.progress import progress
from faceid.crop.detect import TOO_SMALL
from faceid.crop.reader import CropStore
from faceid.crop.shards import MANIFEST_FILE
from faceid.data.celeba import PARTITIONS
from faceid.demo.faces import DemoInputError, Embedder, read_image
from faceid.errors import FaceidError

__all__ = [
    "Gallery",
    "GalleryError",
    "build_gallery",
    "enroll_crops",
    "enroll_folder",
    "load_gallery",
    "save_gallery",
]

log = logging.getLogger(__name__)


class GalleryError(FaceidError, ValueError):
    """A gallery that is missing, malformed, empty or built for another model."""


@dataclass(frozen=True)
class Gallery:
    embeddings: np.ndarray  # (N, 512) float32, L2-normalised
    names: np.ndarray  # (N,) str: identity of each row
    sources: np.ndarray  # (N,) str: photo or dataset image of each row
    identities: np.ndarray  # (M,) str: distinct names, sorted
    templates: np.ndarray  # (M, 512) float32: L2-normalised mean embedding per identity
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def labels(self) -> np.ndarray:
        """(N,) index of each row's identity in `identities`."""
        return np.searchsorted(self.identities, self.names)

    def check_compatible(self, embedder: Embedder, where: str) -> None:
        """GalleryError unless the gallery was built by this model with its crop geometry."""
        if self.meta.get("model_sha256") != embedder.model_sha256:
            raise GalleryError(
                f"{where}: built with model {self.meta.get('model_path')} (sha256 "
                f"{str(self.meta.get('model_sha256'))[:12]}…), not {embedder.model_path} "
                f"({embedder.model_sha256[:12]}…); its embeddings are not comparable: "
                f"re-enrol with `faceid enroll --model {embedder.model_path}`"
            )
        if self.meta.get("crop") != embedder.crop_description:
            raise GalleryError(
                f"{where}: crops {self.meta.get('crop')}, but the model now crops "
                f"{embedder.crop_description}; re-enrol with `faceid enroll`"
            )


def build_gallery(embeddings: np.ndarray, names, sources, meta: dict[str, Any]) -> Gallery:
    """A Gallery from per-face rows: computes `identities` and their mean `templates`."""
    embeddings = np.asarray(embeddings, np.float32)
    names = np.asarray([str(n) for n in names])
    if len(embeddings) == 0:
        raise GalleryError("no face was enrolled: the gallery would be empty (see the skipped counts above)")
    identities, labels = np.unique(names, return_inverse=True)
    sums = np.zeros((len(identities), embeddings.shape[1]), np.float64)
    np.add.at(sums, labels, embeddings)
    templates = (sums / np.linalg.norm(sums, axis=1, keepdims=True)).astype(np.float32)
    return Gallery(embeddings, names, np.asarray([str(s) for s in sources]), identities, templates, meta)


def save_gallery(gallery: Gallery, path: str | Path) -> Path:
    """Write `gallery` to `path` atomically: never a half-written gallery."""
    arrays = {
        "embeddings": gallery.embeddings,
        "names": gallery.names,
        "sources": gallery.sources,
        "identities": gallery.identities,
        "templates": gallery.templates,
        "meta": np.array(json.dumps(gallery.meta, sort_keys=True)),
    }
    # the suffix ends in .npz: savez appends .npz to any other name
    return atomic_write(path, lambda tmp: np.savez(tmp, **arrays), suffix=".partial.npz")


def load_gallery(path: str | Path) -> Gallery:
    path = Path(path)
    if not path.is_file():
        raise GalleryError(f"{path}: no gallery; build one with `faceid enroll` (see docs/demo.md)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in ("embeddings", "names", "sources", "identities", "templates", "meta")}
        meta = json.loads(str(arrays.pop("meta")))
        gallery = Gallery(**arrays, meta=meta)
        _check_shapes(gallery)
    # a truncated or overwritten .npz is a broken zip (BadZipFile), or a zip member that
    # is not an array (ValueError, EOFError), or misses one (KeyError)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise GalleryError(
            f"{path}: not a faceid gallery ({type(exc).__name__}: {exc}); rebuild it with `faceid enroll`"
        ) from exc
    return gallery


def _check_shapes(gallery: Gallery) -> None:
    n, m = len(gallery.embeddings), len(gallery.identities)
    if gallery.embeddings.ndim != 2 or n == 0 or len(gallery.names) != n or len(gallery.sources) != n:
        raise ValueError(f"{n} embeddings of shape {gallery.embeddings.shape}, {len(gallery.names)} names")
    if gallery.templates.shape != (m, gallery.embeddings.shape[1]) or not isinstance(gallery.meta, dict):
        raise ValueError(f"templates of shape {gallery.templates.shape} for {m} identities")


def _meta(embedder: Embedder, source: str, skipped: dict[str, int]) -> dict[str, Any]:
    return {
        "model_path": str(embedder.model_path),
        "model_sha256": embedder.model_sha256,
        "backbone": embedder.meta.get("backbone"),
        "crop": embedder.crop_description,
        "input_size": embedder.image_size,
        "flip_average": embedder.flip_average,
        "source": source,
        "skipped": skipped,
    }


def enroll_folder(
    folder: str | Path, embedder: Embedder, *, max_side: int, min_probability: float,
    max_pixels: int, batch_size: int,
) -> Gallery:
    """A gallery from `folder/<identity name>/<photos>`: the largest face of each photo.

    Files that are not readable images and photos without a face are skipped, counted
    and logged by name; photos with several faces keep the largest (also counted).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise GalleryError(f"{folder}: not a folder; expected one sub-folder of photos per identity")
    people = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not people:
        raise GalleryError(
            f"{folder}: no identity sub-folders; expected {folder}/<name>/<photo>.jpg (the folder name is the identity)"
        )
    crops, names, sources, skipped = [], [], [], Counter()
    photos = [(p.name, f) for p in people for f in sorted(p.iterdir()) if f.is_file() and not f.name.startswith(".")]
    for name, photo in progress(photos, desc="enroll", unit="photo"):
        try:
            image = read_image(photo, str(photo), max_pixels)
        except DemoInputError as exc:
            log.warning("skipped: %s", exc)
            skipped["unreadable"] += 1
            continue
        found = embedder.find_faces(image, max_side, min_probability)
        faces = [result for result in found if result.face is not None]
        if not faces and found[0].reason == TOO_SMALL:
            log.warning(
                "skipped: %s: %dx%d px, smaller than the smallest face the detector searches "
                "(crop.min_face_size %d px)", photo, image.shape[1], image.shape[0], embedder.crop.min_face_size,
            )  # fmt: skip
            skipped["too_small"] += 1
            continue
        if not faces:
            log.warning("skipped: %s: no face found", photo)
            skipped["no_face"] += 1
            continue
        if len(faces) > 1:
            log.info("%s: %d faces, the largest enrolled", photo, len(faces))
            skipped["extra_faces"] += len(faces) - 1
        crop = faces[0].crop
        if crop is None:
            skipped["crop_failed"] += 1
            continue
        crops.append(crop)
        names.append(name)
        sources.append(str(photo.relative_to(folder)))
    skipped = dict(sorted(skipped.items()))
    if skipped:
        log.warning("%s: skipped %s", folder, skipped)
    embeddings = embedder.embed(np.stack(crops) if crops else np.zeros((0, 1, 1, 3), np.uint8), batch_size)
    return build_gallery(embeddings, names, sources, _meta(embedder, f"folder {folder}", skipped))


def enroll_crops(crops_dir: str | Path, embedder: Embedder, *, partition: str, batch_size: int) -> Gallery:
    """A gallery of one dataset partition's cached crops (data/crops), named by identity id.

    The cached crops must have the embedder's crop geometry (their size and method are
    checked against the manifest); images without a crop are counted as skipped.
    """
    codes = {v: k for k, v in PARTITIONS.items()}
    if partition not in codes:
        raise GalleryError(f"partition {partition!r}: expected one of {', '.join(codes)}")
    store = CropStore(crops_dir)
    manifest_path = Path(crops_dir) / MANIFEST_FILE
    manifest = pd.read_parquet(
        manifest_path, columns=["image", "identity", "partition", "shard", "status", "method"]
    )
    chosen = manifest[manifest["partition"] == codes[partition]]
    if chosen.empty:
        raise GalleryError(f"{manifest_path}: no {partition} images; is this the dataset you meant?")
    has_crop = (chosen["shard"] >= 0).to_numpy()
    if store.image_size != embedder.crop.image_size:
        raise GalleryError(
            f"{crops_dir}: crops are {store.image_size} px, the model's crop geometry is "
            f"{embedder.crop_description}; re-run `dvc repro crop` with these settings or enrol a folder"
        )
    # detected crops name their geometry (fallbacks from the dataset's bbox are box crops)
    detected = chosen["status"] == "detected"
    methods = sorted({str(m).split(":")[0] for m in chosen["method"][detected]})
    if methods and methods != [embedder.crop.method]:
        raise GalleryError(
            f"{manifest_path}: crops made by {methods}, the model expects {embedder.crop.method}; "
            "re-run `dvc repro crop` or enrol a folder"
        )
    kept = chosen[has_crop]
    skipped = {"no_crop": int((~has_crop).sum())} if (~has_crop).any() else {}
    if skipped:
        log.warning(
            "%s: %d %s images have no crop and are not enrolled", manifest_path, skipped["no_crop"], partition
        )
    dataset = store.dataset(kept["image"])
    chunks = []
    for start in progress(range(0, len(dataset), batch_size), desc="enroll", unit="batch"):
        images, _ = dataset.__getitems__(list(range(start, min(start + batch_size, len(dataset)))))
        chunks.append(embedder.embed(images.numpy(), batch_size))
    embeddings = np.concatenate(chunks) if chunks else np.zeros((0, EMBEDDING_SIZE), np.float32)
    return build_gallery(
        embeddings, kept["identity"], kept["image"], _meta(embedder, f"crops {crops_dir} ({partition})", skipped)
    )
