"""Photos in, faces out: reading untrusted images, detecting and cropping every face by
the crop stage's own path (`faceid.crop.detect.detect_and_crop`), and embedding the crops
by the evaluation's (`faceid.features.embed.embed`).

A model's crops must match the ones it was trained and evaluated on, or its similarities
(and the evaluation's threshold) mean nothing. The crop geometry (method, image_size,
margin) comes from the model file's `crop` entry when it has one, else from params.yaml's
`crop` section (the settings of the crop stage that fed the pipeline); the input size
and the normalisation come from the model's own training params (`prepare_batch`), and
flip averaging follows `evaluate.flip_average`.
"""

from __future__ import annotations

import dataclasses
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import nn

from faceid.backbones.load import load_model
from faceid.common.device import select_device
from faceid.common.fileio import file_digest
from faceid.config.crop import CropParams
from faceid.crop.detect import CropResult, detect_and_crop, make_detector, prepare_image
from faceid.crop.images import to_rgb
from faceid.errors import FaceidError, MissingInputError
from faceid.features.embed import embed

__all__ = [
    "CROP_KEYS",
    "DemoInputError",
    "Embedder",
    "NoFaceError",
    "check_image_header",
    "crop_settings",
    "load_embedder",
    "read_image",
]

log = logging.getLogger(__name__)

CROP_KEYS = ("method", "image_size", "margin")  # what makes two crops comparable


class DemoInputError(FaceidError, ValueError):
    """A photo that cannot be used: not an image, corrupt, too large, no face."""


class NoFaceError(DemoInputError):
    """A readable photo in which the detector finds no face."""


def read_image(source: bytes | str | Path, name: str, max_pixels: int) -> np.ndarray:
    """RGB uint8 (H, W, 3) of an untrusted photo (bytes or a path), EXIF rotation applied.

    Raises DemoInputError naming `name` for anything that is not a readable image, and
    for images of more than `max_pixels` pixels (checked before decoding).
    """
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
    except OSError as exc:
        raise DemoInputError(f"{name}: cannot read the file ({exc.strerror or exc})") from exc
    if not data:
        raise DemoInputError(f"{name}: the file is empty; expected a photo (JPEG, PNG, ...)")
    check_image_header(data, name, max_pixels)
    try:
        with Image.open(io.BytesIO(data)) as image:
            ImageOps.exif_transpose(image, in_place=True)  # in place: no second full-size copy
            return to_rgb(image)
    except (OSError, SyntaxError, ValueError) as exc:  # Pillow's truncated / corrupt data
        raise DemoInputError(f"{name}: a corrupt or truncated image ({exc}); re-export or re-download it") from exc


def check_image_header(data: bytes, name: str, max_pixels: int) -> tuple[int, int]:
    """(width, height) from the image's header alone; DemoInputError naming `name` for a
    file that is not an image, or one of more than `max_pixels` pixels (the pixel limit:
    such a photo is refused before anything is decoded)."""
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            width, height = image.size
    except UnidentifiedImageError as exc:
        raise DemoInputError(
            f"{name}: not an image (or a format Pillow cannot read); expected a photo such as JPEG or PNG"
        ) from exc
    except Image.DecompressionBombError as exc:  # Pillow's own limit, checked in open()
        raise DemoInputError(
            f"{name}: refused by the pixel limit: {exc}; demo.max_image_pixels allows "
            f"{max_pixels:,}; shrink the photo"
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise DemoInputError(f"{name}: a corrupt or truncated image ({exc}); re-export or re-download it") from exc
    if width * height > max_pixels:
        raise DemoInputError(
            f"{name}: refused by the pixel limit: {width}x{height} is {width * height:,} pixels, more "
            f"than the {max_pixels:,} allowed (demo.max_image_pixels); shrink the photo"
        )
    return width, height


def crop_settings(meta: dict[str, Any], crop: CropParams) -> CropParams:
    """`crop` with the model file's own crop geometry, where the file records one."""
    recorded = meta.get("crop") or {}
    return dataclasses.replace(crop, **{k: recorded[k] for k in CROP_KEYS if k in recorded})


@dataclass
class Embedder:
    """A trained model with the crop geometry and preprocessing it was trained with."""

    model: nn.Module
    meta: dict[str, Any]  # model.pt without its weights
    model_path: Path
    model_sha256: str
    crop: CropParams  # the crop geometry (method, image_size, margin) and detector settings
    image_size: int | None  # the network's input size (crops are resized); None = crop size
    flip_average: bool  # average each crop's embedding with its mirror's, as evaluation does
    device: torch.device
    _detector: Any = None

    @property
    def crop_description(self) -> dict[str, Any]:
        return {k: getattr(self.crop, k) for k in CROP_KEYS}

    def embed(self, crops: np.ndarray | Sequence[np.ndarray], batch_size: int) -> np.ndarray:
        """(N, 512) float32 L2-normalised embeddings of uint8 (N, S, S, 3) crops, `batch_size`
        (demo.batch_size) at a time, by the evaluation's own function: resized to the model's
        input size, flip-averaged as `evaluate.flip_average` says."""
        crops = np.asarray(crops, dtype=np.uint8)
        return embed(self.model, crops, batch_size, self.device, image_size=self.image_size, num_workers=0,
                     flip_average=self.flip_average)  # fmt: skip

    def find_faces(self, image: np.ndarray, max_side: int, min_probability: float) -> list[CropResult]:
        """Every face of `image` at least `min_probability` sure, largest first, each
        cropped by the crop stage's path (crop None where its geometry fails); no face:
        one missing result whose reason says why (NO_FACE, or TOO_SMALL).

        The photo is shrunk to `max_side` for detection only; boxes and landmarks come
        back in the original's pixels, crops are cut from the original.
        """
        if self._detector is None:
            self._detector = make_detector(self.crop, self.device)
        height, width = image.shape[:2]
        scale = min(1.0, max_side / max(width, height))
        canvas = None if scale == 1.0 else (max(1, round(width * scale)), max(1, round(height * scale)))
        [results] = detect_and_crop(
            self._detector, [image], None, self.crop, every_face=True,
            inputs=[prepare_image(image, canvas)], min_probability=min_probability,
        )  # fmt: skip
        return results


def load_embedder(model_path: str | Path, crop: CropParams, flip_average: bool, device: str) -> Embedder:
    """The model at `model_path` (a train stage model.pt) ready to embed photos' faces on
    `device` (demo.device)."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise MissingInputError(
            f"{model_path}: no such model; train one with `dvc repro` (models are "
            "data/models/<task>-<backbone>/model.pt) or pass --model"
        )
    torch_device = select_device(device, key="demo.device")
    model, meta = load_model(model_path, torch_device)
    image_size = (meta.get("params") or {}).get("image_size")
    return Embedder(
        model=model,
        meta=meta,
        model_path=model_path,
        model_sha256=file_digest(model_path),
        crop=crop_settings(meta, crop),
        image_size=image_size,
        flip_average=flip_average,
        device=torch_device,
    )
