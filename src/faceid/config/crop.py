"""Schema of params.yaml's `crop` section: MTCNN detection and the crop cache."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from faceid.config.engine import ParamsError

__all__ = ["CropParams"]


@dataclass(frozen=True)
class CropParams:
    """MTCNN detection and the crop cache (data/crops)."""

    SECTION: ClassVar[str] = "crop"

    # auto = cuda when torch sees a GPU, else cpu
    device: Literal["auto", "cpu", "cuda"]
    # mtcnn = detector box + margin, resized (facenet-pytorch's convention, the study's);
    # align5 = five-point similarity transform to the ArcFace template scaled to image_size
    method: Literal["mtcnn", "align5"]
    image_size: int  # side of the square crop, pixels
    # pixels of the final crop around the face: widens the mtcnn box (facenet-pytorch's
    # rule) or shrinks the align5 template towards the centre by the same amount
    margin: int
    batch_size: int  # images per MTCNN call
    # smallest face searched, pixels; a larger value drops pyramid levels (faster)
    min_face_size: int
    pnet_threshold: float  # MTCNN stage-1 face score threshold
    rnet_threshold: float  # stage 2
    onet_threshold: float  # stage 3
    pyramid_factor: float  # scale step between pyramid levels
    # several faces and no dataset annotation to match: keep the largest box, the one
    # nearest the image centre, or the most probable
    select: Literal["largest", "central", "probability"]
    # layout wild: images of varied sizes are letterboxed (scaled to fit, padded
    # bottom/right) onto a canvas of this size so they batch together, boxes mapped back
    # to the original; null = detect at native size, batching equal-size images together.
    # Aligned images (all one size) are always detected at their native size
    canvas_width: int | None
    canvas_height: int | None
    # fallback from annotated landmarks with method mtcnn: side of the square box as a
    # multiple of the landmarks' larger extent (MTCNN's box on skimage's astronaut: 1.9x
    # as wide, 2.4x as tall)
    landmark_box_scale: float
    shard_size: int  # crops per shard file
    chunk_size: int  # images per resumable chunk (the unit of progress)
    max_failure_rate: float  # unreadable images, as a share of all images
    workers: int  # JPEG-decoding threads feeding the detector
    # torch intra-op threads while detecting (0 = torch's default, one per core). MTCNN's
    # many tiny per-box ops scale badly: on a loaded 2-core machine 1 thread ran 10x
    # faster than 2, and a decode thread then has the other core
    threads: int
    # crop processes, each with its own detector, taking chunks in turn (one per GPU on
    # cuda: process i uses GPU i mod count). 0 = one per visible GPU on cuda, one per CPU
    # core on cpu. The output is the same bytes for any count
    processes: int
    # a detection is the annotated person only if it agrees with the annotation
    # (faceid.crop.accept); otherwise the image is a fallback crop with the reason
    accept_min_probability: float  # MTCNN probability, at least
    accept_min_face_size: int  # shorter side of the detection box, pixels, at least
    accept_min_iou: float  # overlap with the annotated box (layout wild), at least
    # mean distance of the five landmarks to the annotated ones, in annotated
    # inter-ocular distances, at most
    accept_max_landmark_error: float
    # metrics/crop_review.png: this many accepted crops of lowest probability, for a person
    # to look at (0 = an empty sheet)
    review_count: int

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
        if self.processes < 0:
            raise ParamsError(f"crop.processes: expected 0 (one per GPU / CPU core) or more, got {self.processes}")
        if self.threads < 0:
            raise ParamsError(f"crop.threads: expected 0 (torch's default) or more, got {self.threads}")
        if not 0.0 <= self.max_failure_rate <= 1.0:
            raise ParamsError(f"crop.max_failure_rate: expected a share in [0, 1], got {self.max_failure_rate}")
        self._check_acceptance()
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

    def _check_acceptance(self) -> None:
        checks = [
            ("accept_min_probability", 0.0 <= self.accept_min_probability <= 1.0, "a probability in [0, 1]"),
            ("accept_min_face_size", self.accept_min_face_size >= 0, "pixels >= 0"),
            ("accept_min_iou", 0.0 <= self.accept_min_iou <= 1.0, "an overlap in [0, 1]"),
            ("accept_max_landmark_error", self.accept_max_landmark_error > 0, "inter-ocular distances > 0"),
            ("review_count", 0 <= self.review_count <= 1024, "a count in [0, 1024]"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ParamsError(f"crop.{name}: expected {expected}, got {getattr(self, name)!r}")

    @property
    def canvas(self) -> tuple[int, int] | None:
        """(width, height) of the letterbox canvas, or None for native sizes."""
        if self.canvas_width is None or self.canvas_height is None:
            return None
        return (self.canvas_width, self.canvas_height)

