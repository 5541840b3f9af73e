"""A detection counts as the annotated person only when it agrees with the annotation
(faceid.crop.accept): a planted decoy face is a fallback with a reason, the real face is
picked when it agrees; the reasons are counted; the review sheet; no memory addresses in
reasons; decisions stable under float noise."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage.data import astronaut
from stages.crop import main

from faceid.crop.accept import (
    LOW_PROBABILITY,
    OFF_BOX,
    OFF_LANDMARKS,
    TOO_SMALL_FACE,
    choose_annotated_face,
)
from faceid.crop.cache import _describe_error
from faceid.crop.detect import NO_FACE, Annotation, Face, detect_and_crop
from faceid.crop.metrics import summarize_crops
from faceid.crop.review import review_rows
from faceid.data.celeba import ATTRIBUTE_NAMES
from tests._crop_fixtures import (
    ASTRONAUT_BOX,
    ASTRONAUT_LANDMARKS,
    cpu_params,
    jpeg,
    write_celeba,
    write_params,
)

CANVAS = (760, 560)
DECOY_AT, DECOY_SCALE = (600, 400), 0.3  # a ~30 px face far from the annotated one


def _photo(real: bool = True, decoy: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A grey photo with the astronaut at 0.9 (or a grey patch where its face was) and a
    shrunken copy as a decoy; (image, the real face's landmarks, its box)."""
    out = Image.new("RGB", CANVAS, (90, 90, 90))
    out.paste(Image.fromarray(astronaut()).resize((461, 461), Image.BILINEAR), (0, 0))
    box = ASTRONAUT_BOX * 0.9
    if not real:  # the annotated person's face hidden: only the decoy is left to find
        out.paste((90, 90, 90), tuple(int(v) for v in (box[0] - 25, box[1] - 25, box[2] + 25, box[3] + 25)))
    if decoy:
        side = round(512 * DECOY_SCALE)
        out.paste(Image.fromarray(astronaut()).resize((side, side), Image.BILINEAR), DECOY_AT)
    return np.asarray(out), ASTRONAUT_LANDMARKS * 0.9, box


def _crop(detector, image, annotation):
    [[result]] = detect_and_crop(detector, [image], [annotation], cpu_params())
    return result


@pytest.mark.parametrize("with_box", [False, True])
def test_the_real_face_is_picked_over_a_decoy_when_it_agrees(detector, with_box):
    image, landmarks, box = _photo()
    result = _crop(detector, image, Annotation(landmarks=landmarks, box=box if with_box else None))
    assert result.status == "detected" and result.reason == ""
    np.testing.assert_allclose(result.face.box, box, atol=12)


def test_a_decoy_alone_is_a_fallback_with_a_reason_not_a_detection(detector):
    image, landmarks, box = _photo(real=False)
    # MTCNN does find the decoy: it is the only face, and the nearest to the annotation
    [[decoy]] = detect_and_crop(detector, [image], None, cpu_params(), every_face=True)
    assert decoy.status == "detected" and decoy.face.box[0] > DECOY_AT[0] - 10
    result = _crop(detector, image, Annotation(landmarks=landmarks))
    assert (result.status, result.reason, result.face) == ("fallback", OFF_LANDMARKS, None)
    assert result.method == "mtcnn:landmarks" and result.crop is not None
    result = _crop(detector, image, Annotation(box=box))
    assert (result.status, result.reason) == ("fallback", OFF_BOX)


def _face(x: float, y: float, side: float, probability: float = 0.999) -> Face:
    """A detection of `side` px at (x, y) with landmarks where a face of that size has them."""
    box = np.array([x, y, x + side, y + side])
    landmarks = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]]) * side + [x, y]
    return Face(box=box, landmarks=landmarks, probability=probability)


def test_each_rule_names_itself_and_the_accepted_face_nearest_wins():
    params = cpu_params()
    real = _face(100, 100, 120)
    annotation = Annotation(landmarks=real.landmarks + 3, box=real.box + np.array([-10, -10, 10, 10]))
    far = _face(400, 300, 35)
    assert choose_annotated_face([far, real], annotation, params) == (real, "")
    assert choose_annotated_face([far], annotation, params) == (None, OFF_LANDMARKS)
    assert choose_annotated_face([_face(100, 100, 120, 0.5)], annotation, params) == (None, LOW_PROBABILITY)
    assert choose_annotated_face([_face(150, 150, 15)], annotation, cpu_params(accept_max_landmark_error=50.0)) == (
        None, TOO_SMALL_FACE)  # fmt: skip
    assert choose_annotated_face([], annotation, params) == (None, "")
    # a probable but lower-scored nearer face beats a farther one; a face failing a rule
    # never wins over one that passes, however near
    near_doubtful = _face(101, 101, 120, 0.85)
    assert choose_annotated_face([near_doubtful, real], annotation, params) == (real, "")


def test_decisions_do_not_flip_on_last_ulp_noise():
    params = cpu_params()
    a, b = _face(100, 100, 120), _face(100, 100, 120)
    annotation = Annotation(landmarks=a.landmarks)
    noisy = Face(box=b.box * (1 + 1e-12), landmarks=b.landmarks * (1 + 1e-12), probability=b.probability)
    # equal after quantisation: the tie goes to the first face, whichever carries the noise
    assert choose_annotated_face([a, noisy], annotation, params)[0] is a
    assert choose_annotated_face([noisy, a], annotation, params)[0] is noisy
    at_threshold = _face(100, 100, 120, 0.9 - 1e-9)
    assert choose_annotated_face([at_threshold], annotation, params) == (at_threshold, "")


def test_reasons_are_counted_and_carry_no_memory_address():
    try:
        Image.open(io.BytesIO(b"not an image"))
    except OSError as exc:
        reason = _describe_error(exc)
    assert " at 0x" not in reason and reason.startswith("UnidentifiedImageError: cannot identify image file")
    manifest = pd.DataFrame({"image": list("abcd"), "status": ["detected", "fallback", "fallback", "fallback"],
                             "Eyeglasses": False})  # fmt: skip
    manifest = manifest.reindex(columns=[*manifest.columns, *[c for c in ATTRIBUTE_NAMES if c != "Eyeglasses"]],
                                fill_value=False)  # fmt: skip
    reasons = manifest[["image", "status"]].assign(reason=["", OFF_LANDMARKS, OFF_LANDMARKS, ""])
    assert summarize_crops(manifest, reasons)["fallback_reasons"] == {NO_FACE: 1, OFF_LANDMARKS: 2}


def test_the_review_sheet_shows_the_least_probable_detections(tmp_path):
    manifest = pd.DataFrame({"image": ["a", "b", "c", "d"], "status": ["detected", "fallback", "detected", "detected"],
                             "probability": [0.99, np.nan, 0.91, 0.91]})  # fmt: skip
    assert review_rows(manifest, 2)["image"].tolist() == ["c", "d"]


def test_stage_writes_the_review_sheet_and_fallback_reasons(tmp_path):
    image, landmarks, box = _photo()
    hidden, _, _ = _photo(real=False)
    items = [("000001.jpg", jpeg(image), landmarks, np.r_[box[:2], box[2:] - box[:2]]),
             ("000002.jpg", jpeg(hidden), landmarks, np.r_[box[:2], box[2:] - box[:2]])]  # fmt: skip
    dataset = tmp_path / "celeba"
    write_celeba(dataset, items, "wild")
    params = write_params(tmp_path / "params.yaml", "wild", min_face_size=20, review_count=4)
    review = tmp_path / "metrics" / "crop_review.png"
    args = ["--params", str(params), "--dataset", str(dataset), "--out", str(tmp_path / "crops"),
            "--metrics", str(tmp_path / "metrics" / "crop.json"), "--review", str(review)]  # fmt: skip
    main(args)
    detail = json.loads((tmp_path / "metrics" / "crop_detail.json").read_text())
    assert (detail["detected"], detail["fallback"]) == (1, 1)
    assert detail["fallback_reasons"] == {OFF_LANDMARKS: 1}
    first = review.read_bytes()
    with Image.open(review) as sheet:
        assert sheet.size == (96, 96 + 14)  # one accepted crop
    main(args)  # same inputs, same bytes (a git-tracked output)
    assert review.read_bytes() == first
