"""params.yaml → typed, frozen dataclasses.

Every section of params.yaml has a frozen dataclass here. `load_params` validates the
whole file: an unknown key, a missing required key or a value of the wrong type is a
`ParamsError` naming the dotted key, what was expected and (for unknown keys and
choices) the valid options. Stages call `load_params(path).<section>` and nothing else
reads params.yaml.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from faceid.celeba import ATTRIBUTE_NAMES

__all__ = [
    "CropParams",
    "DatasetParams",
    "Params",
    "ParamsError",
    "SyntheticParams",
    "WildParams",
    "from_mapping",
    "load_params",
]


class ParamsError(ValueError):
    """A params.yaml value that does not fit its schema."""


# --------------------------------------------------------------------------- dataset


@dataclass(frozen=True)
class WildParams:
    """In-the-wild layout: the face placed off-centre on a canvas of varied size."""

    min_size: int = 240  # shorter canvas side, pixels
    max_size: int = 420  # longer canvas side, pixels
    min_face_scale: float = 0.8  # face size relative to the aligned 178x218 rendering
    max_face_scale: float = 1.6


@dataclass(frozen=True)
class SyntheticParams:
    """The embedded CelebA-format dataset the project renders itself."""

    n_identities: int = 200
    min_images_per_identity: int = 8
    max_images_per_identity: int = 16
    seed: int = 0
    # identity-disjoint split like CelebA's list_eval_partition (train, val, test)
    partition_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    # per-image base rates; attributes not listed use CelebA's own base rate
    attribute_rates: dict[str, float] = field(default_factory=dict)
    jpeg_quality: int = 90
    # pixel noise std (0-255 scale) added before JPEG encoding
    noise: float = 4.0
    wild: WildParams = field(default_factory=WildParams)
    # worker processes for rendering (0 = one per CPU core)
    workers: int = 0


@dataclass(frozen=True)
class DatasetParams:
    """Where the CelebA-format dataset in data/celeba comes from."""

    source: Literal["synthetic", "celeba", "local"] = "synthetic"
    # aligned = img_align_celeba.zip (178x218); wild = img_celeba (varied sizes)
    layout: Literal["aligned", "wild"] = "aligned"
    local_dir: str | None = None  # source: local, an existing CelebA folder
    mirror_url: str | None = None  # source: celeba, an HTTP(S) mirror of the files
    verify_md5: bool = True
    # how to bring a local copy into data/celeba
    local_mode: Literal["link", "copy"] = "link"
    download_retries: int = 5
    download_timeout_s: float = 60.0
    synthetic: SyntheticParams = field(default_factory=SyntheticParams)


# --------------------------------------------------------------------------- crop


@dataclass(frozen=True)
class CropParams:
    """MTCNN detection and the crop cache (data/crops)."""

    # auto = cuda when torch sees a GPU, else cpu
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # mtcnn = detector box + margin, resized (facenet-pytorch's convention, the study's);
    # align5 = five-point similarity transform to the ArcFace template scaled to image_size
    method: Literal["mtcnn", "align5"] = "mtcnn"
    image_size: int = 160  # side of the square crop, pixels
    # pixels of the final crop around the face: widens the mtcnn box (facenet-pytorch's
    # rule) or shrinks the align5 template towards the centre by the same amount
    margin: int = 0
    batch_size: int = 32  # images per MTCNN call
    # smallest face searched, pixels; a larger value drops pyramid levels (faster)
    min_face_size: int = 20
    pnet_threshold: float = 0.6  # MTCNN stage-1 face score threshold
    rnet_threshold: float = 0.7  # stage 2
    onet_threshold: float = 0.7  # stage 3
    pyramid_factor: float = 0.709  # scale step between pyramid levels
    # several faces and no dataset annotation to match: keep the largest box, the one
    # nearest the image centre, or the most probable
    select: Literal["largest", "central", "probability"] = "largest"
    # images of varied sizes are letterboxed (scaled to fit, padded bottom/right) onto a
    # canvas of this size so they batch together, boxes mapped back to the original;
    # null = detect at native size, batching equal-size images together
    canvas_width: int | None = None
    canvas_height: int | None = None
    # fallback from annotated landmarks with method mtcnn: side of the square box as a
    # multiple of the landmarks' larger extent (MTCNN's box on skimage's astronaut: 1.9x
    # as wide, 2.4x as tall)
    landmark_box_scale: float = 2.2
    shard_size: int = 8192  # crops per shard file
    chunk_size: int = 512  # images per resumable chunk (the unit of progress)
    max_failure_rate: float = 0.01  # unreadable images, as a share of all images
    workers: int = 1  # JPEG-decoding threads feeding the detector
    # torch intra-op threads while detecting (0 = torch's default, one per core). MTCNN's
    # many tiny per-box ops scale badly: on a loaded 2-core machine 1 thread ran 10x
    # faster than 2, and a decode thread then has the other core
    threads: int = 1

    def __post_init__(self) -> None:
        positive = ("image_size", "batch_size", "min_face_size", "shard_size", "chunk_size", "workers")
        for name in positive:
            if getattr(self, name) < 1:
                raise ParamsError(f"crop.{name}: expected an integer >= 1, got {getattr(self, name)}")
        if not 0 <= self.margin < self.image_size:
            raise ParamsError(
                f"crop.margin: expected 0 <= margin < image_size ({self.image_size}), got {self.margin}"
            )
        for name in ("pnet_threshold", "rnet_threshold", "onet_threshold", "pyramid_factor"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ParamsError(f"crop.{name}: expected a number in (0, 1), got {getattr(self, name)}")
        if self.threads < 0:
            raise ParamsError(f"crop.threads: expected 0 (torch's default) or more, got {self.threads}")
        if not 0.0 <= self.max_failure_rate <= 1.0:
            raise ParamsError(f"crop.max_failure_rate: expected a share in [0, 1], got {self.max_failure_rate}")
        if self.landmark_box_scale <= 0:
            raise ParamsError(f"crop.landmark_box_scale: expected > 0, got {self.landmark_box_scale}")
        if (self.canvas_width is None) != (self.canvas_height is None):
            raise ParamsError(
                "crop.canvas_width/crop.canvas_height: set both (letterbox onto a canvas) or "
                f"neither (native sizes), got {self.canvas_width} and {self.canvas_height}"
            )
        if self.canvas_width is not None and min(self.canvas_width, self.canvas_height) < 12:
            raise ParamsError(
                f"crop.canvas_width/height: expected >= 12 pixels (MTCNN's smallest input), "
                f"got {self.canvas_width}x{self.canvas_height}"
            )

    @property
    def canvas(self) -> tuple[int, int] | None:
        """(width, height) of the letterbox canvas, or None for native sizes."""
        if self.canvas_width is None or self.canvas_height is None:
            return None
        return (self.canvas_width, self.canvas_height)


# --------------------------------------------------------------------------- all


@dataclass(frozen=True)
class Params:
    dataset: DatasetParams = field(default_factory=DatasetParams)
    crop: CropParams = field(default_factory=CropParams)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: no such params file; run from the project root")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ParamsError(f"{path}: expected a mapping of sections at top level")
    try:
        params = from_mapping(Params, data, "")
    except ParamsError as exc:
        raise ParamsError(f"{path}: {exc}") from exc
    _check_attributes(params)
    return params


def _check_attributes(params: Params) -> None:
    for name in params.dataset.synthetic.attribute_rates:
        if name not in ATTRIBUTE_NAMES:
            raise ParamsError(
                f"dataset.synthetic.attribute_rates: unknown attribute {name!r}; "
                f"valid: {', '.join(ATTRIBUTE_NAMES)}"
            )


# --------------------------------------------------------------------------- engine


def from_mapping(cls: type, data: Any, where: str) -> Any:
    """Build dataclass `cls` from `data`, strictly. `where` is the dotted key prefix."""
    if not isinstance(data, Mapping):
        raise ParamsError(f"{where or 'params'}: expected a mapping, got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            raise ParamsError(
                f"unknown key {_join(where, str(key))!r}; valid keys: {', '.join(fields)}"
            )
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], _join(where, name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ParamsError(f"missing required key {_join(where, name)!r}")
    return cls(**kwargs)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _convert(tp: Any, value: Any, where: str) -> Any:  # noqa: PLR0911, PLR0912
    origin = get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return from_mapping(tp, value, where)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except ParamsError as exc:
                errors.append(str(exc))
        raise ParamsError(errors[0] if len(errors) == 1 else f"{where}: {_describe(value)} fits none of {tp}")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ParamsError(
                f"{where}: {value!r} is not a valid choice; valid: {', '.join(map(str, choices))}"
            )
        return value
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(value, list | tuple):
            raise ParamsError(f"{where}: expected a list, got {_describe(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ParamsError(f"{where}: expected a list of {len(args)} values, got {len(value)}")
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin is dict:
        key_tp, val_tp = get_args(tp)
        if not isinstance(value, Mapping):
            raise ParamsError(f"{where}: expected a mapping, got {_describe(value)}")
        return {
            _convert(key_tp, k, where): _convert(val_tp, v, _join(where, str(k)))
            for k, v in value.items()
        }
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{where}: expected true/false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{where}: expected an integer, got {_describe(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParamsError(f"{where}: expected a number, got {_describe(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ParamsError(f"{where}: expected a string, got {_describe(value)}")
        return value
    raise TypeError(f"config engine cannot handle {tp} at {where}")  # programming error
