"""Face detection (facenet-pytorch's MTCNN, batched) and crop geometry; `detect_and_crop`
is the one detect-then-crop path of the crop stage, the demo, tests and benchmarks.

Images are always uint8 numpy arrays (H, W, 3) RGB: facenet-pytorch resizes each input
type differently, so one fixed type keeps crops reproducible. `mtcnn(batch)` in 2.5.3
crashes when a batch mixes images with and without a face, so only `detect(...,
landmarks=True)` is used and the crops are cut here:

- `mtcnn`: the detector box widened by `margin` pixels of the final crop (facenet-pytorch's
  `extract_face` rule), clipped to the image and resized (PIL bilinear);
- `align5`: a similarity transform of the five landmarks onto the ArcFace template scaled
  to the crop size, as the field's recognisers expect.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from facenet_pytorch import MTCNN
from PIL import Image
from skimage.transform import SimilarityTransform

from faceid.config.crop import CropParams
from faceid.crop.accept import choose_annotated_face, quantise

__all__ = [
    "ARCFACE_TEMPLATE_112",
    "CROP_FAILED",
    "NO_FACE",
    "TOO_SMALL",
    "Annotation",
    "CropResult",
    "Face",
    "align_five_points",
    "below_min_face_size",
    "crop_box",
    "crop_face",
    "detect_and_crop",
    "detect_faces",
    "landmark_box",
    "make_detector",
    "pick_face",
    "plan_batches",
    "prepare_image",
    "template_landmarks",
    "torch_threads",
]

log = logging.getLogger(__name__)

# insightface's five-point ArcFace template for 112x112 crops (x, y): left eye, right
# eye, nose, left mouth corner, right mouth corner (image left = subject's right).
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


@dataclass(frozen=True)
class Face:
    """One MTCNN detection, in the original image's pixel coordinates."""

    box: np.ndarray  # (4,) x1, y1, x2, y2
    landmarks: np.ndarray  # (5, 2) x, y in LANDMARK_NAMES order
    probability: float


@dataclass(frozen=True)
class Annotation:
    """The dataset's own face location for an image, where it has one."""

    landmarks: np.ndarray | None = None  # (5, 2)
    box: np.ndarray | None = None  # (4,) x1, y1, x2, y2


@dataclass(frozen=True)
class CropResult:
    """The crop of one image and how it was made."""

    crop: np.ndarray | None  # (S, S, 3) uint8, None when missing
    status: str  # detected | fallback | missing
    method: str  # "<geometry>:<source>", e.g. mtcnn:detected, align5:landmarks; "" if missing
    face: Face | None  # the detection used (None unless detected)
    # why not detected: NO_FACE (missing, or a fallback: no face at all), a rule of
    # faceid.crop.accept (fallback: no detection agreed with the annotation), TOO_SMALL
    # (never searched: missing, or a fallback from the annotation) or CROP_FAILED; "" otherwise
    reason: str = ""


NO_FACE = "no face found"
POINT_QUANTUM = 16  # detections' boxes and landmarks are kept on a 1/16 px grid
PROBABILITY_QUANTUM = 1e-5  # and their probabilities to 5 decimals
TOO_SMALL = "smaller than crop.min_face_size"
CROP_FAILED = "the face's crop holds no pixel of the image"


# --------------------------------------------------------------------------- detector


def make_detector(params: CropParams, device: torch.device) -> MTCNN:
    """An MTCNN used only for `detect`; selection and extraction happen here."""
    detector = MTCNN(
        image_size=params.image_size,
        margin=params.margin,
        min_face_size=params.min_face_size,
        thresholds=[params.pnet_threshold, params.rnet_threshold, params.onet_threshold],
        factor=params.pyramid_factor,
        select_largest=False,
        keep_all=True,
        device=device,
    )
    return detector.eval()


@contextlib.contextmanager
def _cudnn_autotune_off() -> Iterator[None]:
    # Every pyramid level is a new input shape; with autotuning on cuDNN re-benchmarks
    # each one (per-image MTCNN ran at 0.8 img/s instead of 11 on an H200).
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with `threads` torch intra-op threads (0 = leave as is)."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def prepare_image(image: np.ndarray, canvas: tuple[int, int] | None) -> tuple[np.ndarray, float]:
    """The detector's input for `image` and the scale from original to input pixels.

    With a canvas (width, height) the image is scaled to fit it (PIL bilinear) and padded
    with black at the bottom/right, so boxes map back by dividing by the scale alone.
    """
    if canvas is None:
        return image, 1.0
    height, width = image.shape[:2]
    scale = min(canvas[0] / width, canvas[1] / height)
    if (width, height) == canvas:
        return image, 1.0
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
    out = np.zeros((canvas[1], canvas[0], 3), dtype=np.uint8)
    out[: size[1], : size[0]] = resized
    return out, scale


def below_min_face_size(shape: Sequence[int], min_face_size: float) -> bool:
    """True when an (H, W, …) input is too small for any level of MTCNN's image pyramid.

    MTCNN's first level scales the image by 12 / min_face_size and needs a side of at
    least 12 pixels there (its 12 px window); below that it has nothing to search (and
    facenet-pytorch 2.5.3 crashes with `torch.cat(): expected a non-empty list`).
    """
    return min(shape[0], shape[1]) * (12.0 / min_face_size) < 12


def detect_faces(
    detector: MTCNN, inputs: Sequence[np.ndarray], scales: Sequence[float]
) -> list[list[Face]]:
    """All faces in each of `inputs` (equal-size uint8 (H, W, 3)), in original pixels.

    Inputs smaller than the detector's smallest face (`below_min_face_size`) have none.
    """
    if not inputs:
        return []
    if below_min_face_size(inputs[0].shape, detector.min_face_size):
        return [[] for _ in inputs]
    shapes = {x.shape for x in inputs}
    if len(shapes) != 1:
        raise ValueError(
            f"detect_faces: a batch must hold equal-size images, got shapes {sorted(shapes)}; "
            "letterbox them (prepare_image with a canvas) or group them by size"
        )
    with _cudnn_autotune_off():
        boxes, probs, points = detector.detect(np.stack(inputs), landmarks=True)
    faces: list[list[Face]] = []
    for image_boxes, image_probs, image_points, scale in zip(
        boxes, probs, points, scales, strict=True
    ):
        if image_boxes is None:
            faces.append([])
            continue
        faces.append(
            [
                Face(
                    box=_quantise_points(np.asarray(box, dtype=np.float64) / scale),
                    landmarks=_quantise_points(np.asarray(pts, dtype=np.float64) / scale),
                    probability=quantise(prob, PROBABILITY_QUANTUM),
                )
                for box, prob, pts in zip(image_boxes, image_probs, image_points, strict=True)
            ]
        )
    return faces


def _quantise_points(points: np.ndarray) -> np.ndarray:
    """Coordinates on a 1/POINT_QUANTUM px grid: the float noise of another CPU's
    instruction set (last ulps of MTCNN's convolutions) lands on the same grid point, so
    crops, decisions and the manifest keep their bytes (except within a hair of a half-step)."""
    return np.round(points * POINT_QUANTUM) / POINT_QUANTUM


# --------------------------------------------------------------------------- selection


def pick_face(
    faces: Sequence[Face], annotation: Annotation | None, params: CropParams, image_shape: tuple[int, ...]
) -> tuple[Face | None, str]:
    """(face, "") or (None, why). With an annotation: the accepted face nearest it
    (faceid.crop.accept), else none and the reason; without: by `params.select`."""
    if annotation is not None and (annotation.landmarks is not None or annotation.box is not None):
        face, reason = choose_annotated_face(faces, annotation, params)
        return face, reason or ("" if face is not None else NO_FACE)
    if not faces:
        return None, NO_FACE
    # quantised sizes and distances, ties to the earlier face: no last-ulp flips
    if params.select == "largest":
        return max(faces, key=lambda f: quantise((f.box[2] - f.box[0]) * (f.box[3] - f.box[1]), 1.0)), ""
    if params.select == "probability":
        return max(faces, key=lambda f: quantise(f.probability)), ""
    if params.select == "central":
        centre = np.array([image_shape[1], image_shape[0]]) / 2
        return min(faces, key=lambda f: quantise(float(np.linalg.norm((f.box[:2] + f.box[2:]) / 2 - centre)))), ""
    raise ValueError(
        f"crop.select: {params.select!r} is not a valid choice; valid: largest, central, probability"
    )


# --------------------------------------------------------------------------- geometry


def crop_box(image: np.ndarray, box: np.ndarray, image_size: int, margin: int) -> np.ndarray | None:
    """facenet-pytorch's crop: box + margin (pixels of the output), clipped, resized.

    None when the clipped box holds no pixel (an annotation outside the image).
    """
    height, width = image.shape[:2]
    margin_x = margin * (box[2] - box[0]) / (image_size - margin)
    margin_y = margin * (box[3] - box[1]) / (image_size - margin)
    x1 = int(max(box[0] - margin_x / 2, 0))
    y1 = int(max(box[1] - margin_y / 2, 0))
    x2 = int(min(box[2] + margin_x / 2, width))
    y2 = int(min(box[3] + margin_y / 2, height))
    if x2 <= x1 or y2 <= y1:
        return None
    out = Image.fromarray(image).resize(
        (image_size, image_size), Image.BILINEAR, box=(x1, y1, x2, y2)
    )
    return np.asarray(out)


def template_landmarks(image_size: int, margin: int) -> np.ndarray:
    """ArcFace's template scaled to `image_size - margin`, centred in the crop. (5, 2)."""
    inner = image_size - margin
    return ARCFACE_TEMPLATE_112 * (inner / 112.0) + margin / 2.0


def align_five_points(
    image: np.ndarray, landmarks: np.ndarray, image_size: int, margin: int
) -> np.ndarray | None:
    """Warp `image` so its five landmarks land on the template; None if degenerate."""
    target = template_landmarks(image_size, margin)
    if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26
        transform = SimilarityTransform.from_estimate(landmarks, target)
        if not transform:
            return None
    else:
        transform = SimilarityTransform()
        if not transform.estimate(landmarks, target):
            return None
    matrix = transform.params
    if not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix[:2, :2])) < 1e-12:
        return None
    # Landmarks put pixel centres at integers; PIL puts them at +0.5. PIL wants the
    # output → input map.
    shift = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    unshift = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])
    inverse = shift @ np.linalg.inv(matrix) @ unshift
    out = Image.fromarray(image).transform(
        (image_size, image_size),
        Image.AFFINE,
        data=tuple(inverse[:2].ravel()),
        resample=Image.BILINEAR,
    )
    return np.asarray(out)


def landmark_box(landmarks: np.ndarray, scale: float) -> np.ndarray:
    """A square box centred on the landmarks, `scale` times their larger extent."""
    low, high = landmarks.min(axis=0), landmarks.max(axis=0)
    centre = (low + high) / 2
    half = scale * float(max(high - low)) / 2
    return np.array([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half])


def _crop_detection(image: np.ndarray, face: Face, params: CropParams) -> np.ndarray | None:
    """The crop of one detection by `params.method`; None where the geometry fails."""
    if params.method == "align5":
        return align_five_points(image, face.landmarks, params.image_size, params.margin)
    return crop_box(image, face.box, params.image_size, params.margin)


def crop_face(
    image: np.ndarray, faces: Sequence[Face], annotation: Annotation | None, params: CropParams
) -> CropResult:
    """The crop of `image`: the accepted detection, else the annotation (a fallback saying
    why no detection was accepted), else missing."""
    face, reason = pick_face(faces, annotation, params, image.shape)
    if face is not None:
        crop = _crop_detection(image, face, params)
        if crop is not None:
            return CropResult(crop, "detected", f"{params.method}:detected", face)
        reason = CROP_FAILED
    if annotation is not None:
        crop, method = _crop_annotation(image, annotation, params)
        if crop is not None:
            return CropResult(crop, "fallback", method, None, reason)
    return CropResult(None, "missing", "", None, NO_FACE)


def _crop_every_face(image: np.ndarray, faces: Sequence[Face], params: CropParams) -> list[CropResult]:
    """One result per face, largest first; a face whose crop fails keeps its detection."""
    results = []
    for face in sorted(faces, key=lambda f: -quantise((f.box[2] - f.box[0]) * (f.box[3] - f.box[1]), 1.0)):
        crop = _crop_detection(image, face, params)
        if crop is None:
            results.append(CropResult(None, "missing", "", face, CROP_FAILED))
        else:
            results.append(CropResult(crop, "detected", f"{params.method}:detected", face))
    return results


def _crop_annotation(
    image: np.ndarray, annotation: Annotation, params: CropParams
) -> tuple[np.ndarray | None, str]:
    """Crop from the dataset's annotation: landmarks for align5, else bbox, else a box
    around the landmarks. (crop or None, method)."""
    size, margin, landmarks = params.image_size, params.margin, annotation.landmarks
    if params.method == "align5" and landmarks is not None:
        crop = align_five_points(image, landmarks, size, margin)
        if crop is not None:
            return crop, "align5:landmarks"
    if annotation.box is not None:
        crop = crop_box(image, annotation.box, size, margin)
        if crop is not None:
            return crop, "mtcnn:bbox"
    if landmarks is not None:
        crop = crop_box(image, landmark_box(landmarks, params.landmark_box_scale), size, margin)
        if crop is not None:
            return crop, "mtcnn:landmarks"
    return None, ""


def plan_batches(keys: Sequence[Hashable | None], batch_size: int) -> list[list[int]]:
    """Indices grouped by key (equal keys batch together, groups in order of first
    appearance; None = leave out), each group split into batches of `batch_size`."""
    groups: dict[Hashable, list[int]] = {}
    for index, key in enumerate(keys):
        if key is not None:
            groups.setdefault(key, []).append(index)
    return [
        indices[start : start + batch_size]
        for indices in groups.values()
        for start in range(0, len(indices), batch_size)
    ]


def detect_and_crop(
    detector: MTCNN,
    images: Sequence[np.ndarray],
    annotations: Sequence[Annotation | None] | None,
    params: CropParams,
    *,
    every_face: bool = False,
    inputs: Sequence[tuple[np.ndarray, float]] | None = None,
    min_probability: float = 0.0,
) -> list[list[CropResult]]:
    """Detect and crop uint8 (H, W, 3) images of any sizes: the one path of the crop stage,
    the demo, the tests and the benchmarks. Per image, a list of CropResult:

    - selected (default): exactly one, the detection matching the image's annotation
      (else chosen by `params.select`), else the annotation's fallback crop, else missing;
    - `every_face`: one per detection, largest first (a face whose crop fails has crop
      None and reason CROP_FAILED); an image without any gets one missing result.

    A missing result says why (NO_FACE, or TOO_SMALL when the detector input was below
    its smallest face: never searched); a selected fallback from such an image carries
    TOO_SMALL too. `inputs`: the detector's input and scale per image (`prepare_image`);
    default: `prepare_image(image, params.canvas)`. Equal-shape inputs are detected
    together, `params.batch_size` at a time. Faces below `min_probability` are dropped.
    Torch's thread count is the caller's (`torch_threads`): it is process-wide.
    """
    if inputs is None:
        inputs = [prepare_image(image, params.canvas) for image in images]
    if annotations is None:
        annotations = [None] * len(images)
    faces: list[list[Face]] = [[] for _ in images]
    for batch in plan_batches([x.shape for x, _ in inputs], params.batch_size):
        found = detect_faces(detector, [inputs[i][0] for i in batch], [inputs[i][1] for i in batch])
        for i, image_faces in zip(batch, found, strict=True):
            faces[i] = [face for face in image_faces if face.probability >= min_probability]
    results = []
    for image, image_faces, annotation, (x, _) in zip(images, faces, annotations, inputs, strict=True):
        too_small = below_min_face_size(x.shape, params.min_face_size)
        if every_face:
            found = _crop_every_face(image, image_faces, params)
            results.append(found or [CropResult(None, "missing", "", None, TOO_SMALL if too_small else NO_FACE)])
            continue
        result = crop_face(image, image_faces, annotation, params)
        if too_small:  # never searched; a fallback crop from the annotation may still exist
            result = dataclasses.replace(result, reason=TOO_SMALL)
        results.append([result])
    return results
