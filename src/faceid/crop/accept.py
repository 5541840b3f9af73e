"""Whether a detection is the annotated person: the crop stage's acceptance rules.

On real photos the face nearest the annotation is not always the person (a 35 px dark
blob beside a large face, a T-shirt print): a detection is accepted only when it agrees
with the dataset's annotation (landmark error, box overlap) and is probable and large
enough (crop.accept_*); otherwise the image is a fallback crop from the annotation, with
the reason. Every number compared is quantised first (QUANTUM), so a last-ulp difference
between CPU instruction sets (AVX-512 vs AVX2 float paths) cannot flip a decision or a
tie-break.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from faceid.config.crop import CropParams

if TYPE_CHECKING:
    from faceid.crop.detect import Annotation, Face

__all__ = [
    "LOW_PROBABILITY",
    "OFF_BOX",
    "OFF_LANDMARKS",
    "QUANTUM",
    "TOO_SMALL_FACE",
    "choose_annotated_face",
    "landmark_error",
    "overlap",
    "quantise",
]

QUANTUM = 1e-3  # scores (probability, IoU, landmark error) are compared at this resolution

LOW_PROBABILITY = "detection below crop.accept_min_probability"
TOO_SMALL_FACE = "detection smaller than crop.accept_min_face_size"
OFF_BOX = "detection off the annotated box (IoU below crop.accept_min_iou)"
OFF_LANDMARKS = "detection's landmarks off the annotated ones (beyond crop.accept_max_landmark_error)"


def quantise(value: float, step: float = QUANTUM) -> float:
    """`value` rounded to a multiple of `step`, so that nearly equal floats compare equal."""
    return round(round(float(value) / step) * step, 9)


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes, quantised."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return quantise(inter / union) if union > 0 else 0.0


def landmark_error(detected: np.ndarray, annotated: np.ndarray) -> float:
    """Mean distance of the five detected landmarks to the annotated ones, in annotated
    inter-ocular distances (the field's normalised mean error), quantised."""
    interocular = max(float(np.linalg.norm(annotated[1] - annotated[0])), 1.0)
    return quantise(float(np.linalg.norm(detected - annotated, axis=1).mean()) / interocular)


def _failed_rule(face: Face, annotation: Annotation, params: CropParams) -> str:
    """The first acceptance rule `face` breaks, or "" when it is the annotated person."""
    if quantise(face.probability) < params.accept_min_probability:
        return LOW_PROBABILITY
    if min(face.box[2] - face.box[0], face.box[3] - face.box[1]) < params.accept_min_face_size:
        return TOO_SMALL_FACE
    if (
        annotation.landmarks is not None
        and landmark_error(face.landmarks, annotation.landmarks) > params.accept_max_landmark_error
    ):
        return OFF_LANDMARKS
    if annotation.box is not None and overlap(face.box, annotation.box) < params.accept_min_iou:
        return OFF_BOX
    return ""


def _distance(face: Face, annotation: Annotation) -> tuple[float, float]:
    """How far `face` is from the annotation (smaller is nearer): landmark error, then 1 - IoU."""
    error = landmark_error(face.landmarks, annotation.landmarks) if annotation.landmarks is not None else 0.0
    miss = 1.0 - overlap(face.box, annotation.box) if annotation.box is not None else 0.0
    return error, miss


def choose_annotated_face(
    faces: Sequence[Face], annotation: Annotation, params: CropParams
) -> tuple[Face | None, str]:
    """(the accepted face nearest the annotation, "") or (None, why none is accepted: the
    rule the nearest face breaks; "" when there is no face). Ties go to the earlier face
    (MTCNN's order)."""
    if not faces:
        return None, ""
    order = sorted(range(len(faces)), key=lambda i: (*_distance(faces[i], annotation), i))
    reasons = {i: _failed_rule(faces[i], annotation, params) for i in order}
    accepted = [i for i in order if not reasons[i]]
    if accepted:
        return faces[accepted[0]], ""
    return None, reasons[order[0]]
