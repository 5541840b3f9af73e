"""Schema of params.yaml's `demo` section (faceid enroll / identify / serve).

No pipeline stage imports this module, so editing it leaves every stage up to date.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from faceid.config.engine import ParamsError, check_at_least

__all__ = ["DEMO_SCORES", "DemoParams", "score_choice_error"]

# an identity's score (faceid.demo.identify.IDENTITY_SCORES computes each): its best-matching
# enrolled image (max, as a verification pair: the threshold's own meaning), or the cosine
# to its template, the L2-normalised mean of its embeddings
DEMO_SCORES = ("max", "template")
# old names: `mean` read as evaluate.identification.score's mean, which averages the cosines
RENAMED_SCORES = {"mean": "template"}


def score_choice_error(score: str) -> str:
    """The message for a demo.score that is not one of DEMO_SCORES."""
    if score in RENAMED_SCORES:
        return (
            f"demo.score: {score!r} is now called {RENAMED_SCORES[score]!r} (the cosine to an identity's mean "
            f"template; evaluate.identification.score's {score!r} averages the cosines instead); "
            f"set demo.score: {RENAMED_SCORES[score]}"
        )
    return f"demo.score: {score!r} is not a valid choice; valid: {', '.join(DEMO_SCORES)}"


@dataclass(frozen=True)
class DemoParams:
    """The demo application: `faceid enroll`, `faceid identify`, `faceid serve`."""

    SECTION: ClassVar[str] = "demo"

    # model used when none is named: a folder under data/models (<task>-<backbone>)
    model: str
    top_k: int  # candidate identities listed per face
    # "unknown" below the threshold the evaluation set at this false-match rate: the
    # evaluation's global FMR (evaluate.global_fmr) or one of its TAR@FAR rates
    # (evaluate.fars) on the pooled cell of evaluate.global_task
    fmr: float
    score: str  # an identity's score: one of DEMO_SCORES (above)
    # faces the detector is less sure of than this are not reported
    min_face_probability: float
    # photos are shrunk to this longer side for detection (crops come from the full
    # photo): detection time grows with the pixel count
    detect_max_side: int
    max_faces: int  # the largest faces of a crowded photo are kept, the rest counted
    max_upload_mb: float  # larger uploads are refused with HTTP 413
    # larger images are refused before decoding (PIL's decompression-bomb guard)
    max_image_pixels: int
    batch_size: int  # crops per forward pass when enrolling
    device: Literal["auto", "cpu", "cuda"]
    host: str  # `faceid serve` listens here; 0.0.0.0 exposes it to the network
    port: int
    # `faceid serve` decodes and identifies at most this many photos at once (each decoded
    # photo holds up to 3 bytes x max_image_pixels, several times over while converting)
    max_concurrent: int
    # uploads waiting for a slot beyond these are answered 503 with Retry-After; a waiting
    # upload holds only its compressed bytes (<= max_upload_mb)
    max_waiting: int

    def __post_init__(self) -> None:
        if self.score not in DEMO_SCORES:
            raise ParamsError(score_choice_error(self.score))
        if self.max_waiting < 0:
            raise ParamsError(f"demo.max_waiting: expected an integer >= 0, got {self.max_waiting}")
        for name in ("top_k", "detect_max_side", "max_faces", "max_image_pixels", "batch_size", "max_concurrent"):
            check_at_least(f"demo.{name}", getattr(self, name), 1)
        if not 0.0 < self.fmr < 1.0:
            raise ParamsError(f"demo.fmr: expected a rate in (0, 1), got {self.fmr}")
        if not 0.0 <= self.min_face_probability <= 1.0:
            raise ParamsError(
                f"demo.min_face_probability: expected a number in [0, 1], got {self.min_face_probability}"
            )
        if not self.max_upload_mb > 0:
            raise ParamsError(f"demo.max_upload_mb: expected a number > 0, got {self.max_upload_mb}")
        if not 0 <= self.port <= 65535:
            raise ParamsError(f"demo.port: expected 0..65535, got {self.port}")

