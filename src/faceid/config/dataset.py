"""Schema of params.yaml's `dataset` section: where data/celeba comes from."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from faceid.config.engine import ParamsError
from faceid.data.celeba import ATTRIBUTE_NAMES

__all__ = ["DatasetParams", "SyntheticParams", "WildParams"]


@dataclass(frozen=True)
class WildParams:
    """In-the-wild layout: the face placed off-centre on a canvas of varied size."""

    min_size: int  # shorter canvas side, pixels
    max_size: int  # longer canvas side, pixels
    min_face_scale: float  # face size relative to the aligned 178x218 rendering
    max_face_scale: float


@dataclass(frozen=True)
class SyntheticParams:
    """The embedded CelebA-format dataset the project renders itself."""

    n_identities: int
    min_images_per_identity: int
    max_images_per_identity: int
    seed: int
    # identity-disjoint split like CelebA's list_eval_partition (train, val, test)
    partition_fractions: tuple[float, float, float]
    # per-image base rates; attributes not listed use CelebA's own base rate
    attribute_rates: dict[str, float]
    jpeg_quality: int
    # pixel noise std (0-255 scale) added before JPEG encoding
    noise: float
    # camera variation per photo, as in real photo collections: exposure gain in
    # [1 - exposure, 1 + exposure], per-channel white-balance gain std, gamma in
    # [1 - gamma, 1 + gamma]. It keeps colour alone from telling identities apart.
    exposure: float
    white_balance: float
    gamma: float
    wild: WildParams
    # worker processes for rendering (0 = one per CPU core)
    workers: int


@dataclass(frozen=True)
class DatasetParams:
    """Where the CelebA-format dataset in data/celeba comes from (see docs/celeba.md)."""

    SECTION: ClassVar[str] = "dataset"

    # synthetic = rendered here; celeba = downloaded (Drive or mirror); local = a copy on disk
    source: Literal["synthetic", "celeba", "local"]
    # aligned = img_align_celeba.zip (178x218); wild = img_celeba (varied sizes)
    layout: Literal["aligned", "wild"]
    local_dir: str | None  # source: local, an existing CelebA folder
    # source: celeba, an HTTP(S) mirror serving the official file names (<url>/<name>);
    # used instead of Google Drive when set
    mirror_url: str | None
    # check official files against torchvision's MD5 table (downloads and local copies)
    verify_md5: bool
    # how to bring a local copy into data/celeba: symlinks (no extra disk) or copies
    local_mode: Literal["link", "copy"]
    download_retries: int  # network errors retried this many times per file
    download_timeout_s: float  # connect/read timeout of one HTTP request
    # wait before retry k (k = 0, 1, …) is download_backoff_s * 2**k
    download_backoff_s: float
    synthetic: SyntheticParams

    def validate(self, sections: dict[str, Any]) -> None:
        """Value ranges (after construction, so tests may build small odd datasets)."""
        _check_attributes(self)
        _check_dataset_values(self)


def _check_attributes(dataset: DatasetParams) -> None:
    for name in dataset.synthetic.attribute_rates:
        if name not in ATTRIBUTE_NAMES:
            raise ParamsError(
                f"dataset.synthetic.attribute_rates: unknown attribute {name!r}; "
                f"valid: {', '.join(ATTRIBUTE_NAMES)}"
            )


def _check_dataset_values(dataset: DatasetParams) -> None:
    synthetic, wild = dataset.synthetic, dataset.synthetic.wild
    checks = [
        ("dataset.download_retries", dataset.download_retries, dataset.download_retries >= 0, "an integer >= 0"),
        ("dataset.download_timeout_s", dataset.download_timeout_s, dataset.download_timeout_s > 0, "seconds > 0"),
        ("dataset.download_backoff_s", dataset.download_backoff_s, dataset.download_backoff_s >= 0, "seconds >= 0"),
        ("dataset.synthetic.n_identities", synthetic.n_identities, synthetic.n_identities >= 3,
         "an integer >= 3 (one identity per train/val/test partition at least)"),
        ("dataset.synthetic.min_images_per_identity", synthetic.min_images_per_identity,
         synthetic.min_images_per_identity >= 1, "an integer >= 1"),
        ("dataset.synthetic.max_images_per_identity", synthetic.max_images_per_identity,
         synthetic.max_images_per_identity >= synthetic.min_images_per_identity,
         f"an integer >= min_images_per_identity ({synthetic.min_images_per_identity})"),
        ("dataset.synthetic.partition_fractions", synthetic.partition_fractions,
         all(0 <= f <= 1 for f in synthetic.partition_fractions)
         and math.isclose(sum(synthetic.partition_fractions), 1.0, abs_tol=1e-6),
         "three shares in [0, 1] summing to 1"),
        ("dataset.synthetic.jpeg_quality", synthetic.jpeg_quality, 1 <= synthetic.jpeg_quality <= 100,
         "an integer in [1, 100]"),
        ("dataset.synthetic.noise", synthetic.noise, synthetic.noise >= 0, "a pixel std >= 0"),
        ("dataset.synthetic.workers", synthetic.workers, synthetic.workers >= 0, "an integer >= 0 (0 = one per core)"),
        ("dataset.synthetic.wild.min_size", wild.min_size, wild.min_size >= 12, "pixels >= 12"),
        ("dataset.synthetic.wild.max_size", wild.max_size, wild.max_size >= wild.min_size,
         f"pixels >= wild.min_size ({wild.min_size})"),
        ("dataset.synthetic.wild.min_face_scale", wild.min_face_scale, wild.min_face_scale > 0, "a scale > 0"),
        ("dataset.synthetic.wild.max_face_scale", wild.max_face_scale, wild.max_face_scale >= wild.min_face_scale,
         f"a scale >= wild.min_face_scale ({wild.min_face_scale})"),
    ]  # fmt: skip
    for name in ("exposure", "white_balance", "gamma"):
        value = getattr(synthetic, name)
        checks.append((f"dataset.synthetic.{name}", value, 0 <= value < 1, "a number in [0, 1)"))
    for attribute, rate in synthetic.attribute_rates.items():
        checks.append((f"dataset.synthetic.attribute_rates.{attribute}", rate, 0 <= rate <= 1, "a rate in [0, 1]"))
    for key, value, ok, expected in checks:
        if not ok:
            raise ParamsError(f"{key}: expected {expected}, got {value!r}")

