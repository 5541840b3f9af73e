"""Schema of params.yaml's `pairs` section: verification pairs, training subsets and
the identification protocol."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from faceid.config.engine import ParamsError, check_at_least

__all__ = ["IdentificationParams", "PairsParams", "TrainSubsetParams", "VerificationParams"]


@dataclass(frozen=True)
class VerificationParams:
    """How many verification pairs to draw per task x split (val and test alike)."""

    genuine_per_condition: int  # same-identity pairs per A/A, A/notA, notA/notA
    impostor_per_condition: int  # different-identity pairs per condition
    orig_genuine: int  # same-identity pairs of task `orig` (condition `all`)
    orig_impostor: int  # different-identity pairs of task `orig`

    def __post_init__(self) -> None:
        for name in ("genuine_per_condition", "impostor_per_condition", "orig_genuine", "orig_impostor"):
            check_at_least(f"pairs.verification.{name}", getattr(self, name), 1)


@dataclass(frozen=True)
class TrainSubsetParams:
    """The attribute-filtered, balanced training subset of an attribute task."""

    # an identity enters with at least this many A images and this many notA images
    min_attribute_images: int
    min_other_images: int
    # per identity, at most floor(max_ratio * its A images) notA images (at least
    # min_other_images), drawn at random; all its A images are kept
    max_ratio: float
    # fallback crops (no detection agreed with the annotation: possibly not the person,
    # or the whole photo squashed) in the training subsets too; false = detected only
    include_fallbacks: bool

    def __post_init__(self) -> None:
        check_at_least("pairs.train.min_attribute_images", self.min_attribute_images, 1)
        check_at_least("pairs.train.min_other_images", self.min_other_images, 1)
        if not self.max_ratio > 0:
            raise ParamsError(f"pairs.train.max_ratio: expected a number > 0, got {self.max_ratio!r}")


@dataclass(frozen=True)
class IdentificationParams:
    """Closed-set identification protocol drawn from the test partition."""

    n_identities: int  # identities drawn at random among the eligible ones
    n_images: int  # images in all; every drawn identity gets min_images_per_identity
    # eligible identities have at least this many usable test images (>= 2: one probe
    # needs another image of its identity in the gallery)
    min_images_per_identity: int

    def __post_init__(self) -> None:
        check_at_least("pairs.identification.n_identities", self.n_identities, 1)
        check_at_least("pairs.identification.min_images_per_identity", self.min_images_per_identity, 2)
        least = self.n_identities * self.min_images_per_identity
        if self.n_images < least:
            raise ParamsError(
                f"pairs.identification.n_images: {self.n_images} cannot give each of "
                f"n_identities={self.n_identities} identities min_images_per_identity="
                f"{self.min_images_per_identity} images; set it to at least {least}"
            )


@dataclass(frozen=True)
class PairsParams:
    """Verification pairs, training subsets and the identification protocol (stage pairs),
    for orig and each task of train.tasks (faceid.config.tasks)."""

    SECTION: ClassVar[str] = "pairs"

    seed: int
    verification: VerificationParams
    train: TrainSubsetParams
    identification: IdentificationParams

    def __post_init__(self) -> None:
        # numpy's SeedSequence takes integers >= 0 only (a negative one dies in the stage)
        check_at_least("pairs.seed", self.seed, 0)

