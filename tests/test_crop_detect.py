"""MTCNN detection and crop geometry: boxes, five-point alignment, fallbacks, several faces,
the same bytes on each run, cuda against cpu."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.data import astronaut

from faceid.config.crop import CropParams
from faceid.config.engine import ParamsError, from_mapping
from faceid.crop.detect import (
    ARCFACE_TEMPLATE_112,
    CROP_FAILED,
    NO_FACE,
    TOO_SMALL,
    Annotation,
    Face,
    _crop_every_face,
    align_five_points,
    crop_face,
    detect_and_crop,
    detect_faces,
    make_detector,
    template_landmarks,
)
from tests._crop_fixtures import ASTRONAUT_BOX, ASTRONAUT_LANDMARKS, cpu_params, crop_batch, on_canvas, shifted
from tests._params import repo_params


def test_mtcnn_crop_holds_the_face(detector):
    result = crop_batch(detector, [astronaut()], [None], cpu_params(margin=32))[0]
    assert result.status == "detected" and result.method == "mtcnn:detected"
    assert result.face.probability > 0.99
    np.testing.assert_allclose(result.face.box, ASTRONAUT_BOX, atol=4)
    assert result.crop.shape == (160, 160, 3) and result.crop.dtype == np.uint8
    # the crop itself shows one face, filling its middle (margin 32 of 160 → 16 px borders)
    [face] = detect_faces(detector, [result.crop], [1.0])[0]
    assert face.probability > 0.99
    np.testing.assert_allclose(face.box, [16, 16, 144, 144], atol=16)


def test_align5_puts_the_eyes_on_the_template(detector):
    params = cpu_params(method="align5", margin=32)
    result = crop_batch(detector, [astronaut()], [None], params)[0]
    assert result.status == "detected" and result.method == "align5:detected"
    template = template_landmarks(160, 32)
    [face] = detect_faces(detector, [result.crop], [1.0])[0]
    np.testing.assert_allclose(face.landmarks[:2], template[:2], atol=5)


def test_align5_maps_the_landmark_pixels_exactly():
    # white dots at five points of a black image must land on the template's pixels
    image = np.zeros((300, 300, 3), dtype=np.uint8)
    # the template turned by 10°, scaled by 1.3 and moved: an exact similarity, so the
    # least-squares fit puts every point on the template (up to rounding to pixels)
    angle = np.deg2rad(10)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = np.round(ARCFACE_TEMPLATE_112 @ rotation.T * 1.3 + [80, 60])
    for x, y in points.astype(int):
        image[y - 1 : y + 2, x - 1 : x + 2] = 255
    aligned = align_five_points(image, points, 160, 0).astype(float).sum(axis=2)
    template = template_landmarks(160, 0)
    for x, y in template:
        window = aligned[int(y) - 6 : int(y) + 7, int(x) - 6 : int(x) + 7]
        ys, xs = np.mgrid[int(y) - 6 : int(y) + 7, int(x) - 6 : int(x) + 7]
        centroid = np.array([(xs * window).sum(), (ys * window).sum()]) / window.sum()
        np.testing.assert_allclose(centroid, [x, y], atol=1.0)


def test_a_batch_mixing_faces_and_no_face_works(detector):
    face_a, _ = shifted(0, 0)
    face_b, landmarks_b = shifted(12, -8)
    blank = np.full_like(face_a, 128)
    annotation = Annotation(landmarks=landmarks_b)
    results = crop_batch(
        detector, [face_a, blank, face_b, blank], [None, None, annotation, annotation], cpu_params()
    )
    assert [r.status for r in results] == ["detected", "missing", "detected", "fallback"]
    assert results[3].method == "mtcnn:landmarks" and results[3].face is None
    assert results[1].crop is None
    # the detection follows the face's shift
    np.testing.assert_allclose(results[2].face.box - results[0].face.box, [12, -8, 12, -8], atol=3)


def test_fallback_with_align5_uses_the_annotated_landmarks(detector):
    blank = np.full((218, 178, 3), 128, dtype=np.uint8)
    _, landmarks = shifted(0, 0)
    [result] = crop_batch(
        detector, [blank], [Annotation(landmarks=landmarks)], cpu_params(method="align5")
    )
    assert (result.status, result.method) == ("fallback", "align5:landmarks")
    [missing] = crop_batch(
        detector, [blank], [Annotation(landmarks=np.zeros((5, 2)))], cpu_params(method="align5")
    )
    assert (missing.status, missing.method, missing.crop) == ("missing", "", None)


@pytest.mark.parametrize("canvas", [None, (320, 400)])
def test_varied_sizes_map_boxes_back_to_the_original(detector, canvas):
    images = [
        on_canvas(0.6, (300, 380), (10, 40)),
        on_canvas(0.9, (520, 470), (0, 0)),
        shifted(0, 0),
    ]
    params = cpu_params(canvas_width=canvas and canvas[0], canvas_height=canvas and canvas[1])
    results = crop_batch(detector, [im for im, _ in images], [None] * 3, params)
    for (_, landmarks), result in zip(images, results, strict=True):
        assert result.status == "detected"
        np.testing.assert_allclose(result.face.landmarks, landmarks, atol=6)


def test_several_faces_pick_the_annotated_one(detector):
    canvas = Image.new("RGB", (520, 260), (90, 90, 90))
    photo = Image.fromarray(astronaut()).resize((256, 256), Image.BILINEAR)
    canvas.paste(photo, (0, 0))
    canvas.paste(photo.resize((230, 230), Image.BILINEAR), (270, 20))
    image = np.asarray(canvas)
    right = ASTRONAUT_LANDMARKS * (230 / 512) + [270, 20]
    [annotated] = crop_batch(detector, [image], [Annotation(landmarks=right)], cpu_params())
    np.testing.assert_allclose(annotated.face.landmarks, right, atol=5)
    [largest] = crop_batch(detector, [image], [None], cpu_params(select="largest"))
    assert largest.face.box[0] < 260  # the bigger copy is on the left


def test_every_face_crops_each_detection_largest_first(detector):
    canvas = Image.new("RGB", (520, 260), (90, 90, 90))
    photo = Image.fromarray(astronaut()).resize((256, 256), Image.BILINEAR)
    canvas.paste(photo.resize((200, 200), Image.BILINEAR), (0, 30))
    canvas.paste(photo, (260, 0))
    image = np.asarray(canvas)
    blank = np.full((218, 178, 3), 128, dtype=np.uint8)
    tiny = np.zeros((20, 16, 3), np.uint8)
    params = cpu_params()  # no canvas: the tiny image stays below the pyramid
    faces, [no_face], [small] = detect_and_crop(detector, [image, blank, tiny], None, params, every_face=True)
    assert len(faces) == 2 and faces[0].face.box[0] > 260  # the larger copy is on the right
    for result in faces:  # each crop is the selected path's crop of that one face
        assert result.crop.tobytes() == crop_face(image, [result.face], None, params).crop.tobytes()
        assert (result.status, result.method, result.reason) == ("detected", "mtcnn:detected", "")
    assert (no_face.crop, no_face.face, no_face.reason) == (None, None, NO_FACE)
    assert (small.status, small.reason) == ("missing", TOO_SMALL)
    [[sure]] = detect_and_crop(detector, [image], None, params, every_face=True, min_probability=1.1)
    assert sure.face is None and sure.reason == NO_FACE
    # a face whose crop fails (degenerate landmarks for align5) keeps its detection
    degenerate = Face(faces[0].face.box, np.zeros((5, 2)), 1.0)
    [failed] = _crop_every_face(image, [degenerate], cpu_params(method="align5"))
    assert failed.crop is None and failed.face is degenerate and failed.reason == CROP_FAILED


def test_same_input_gives_the_same_bytes_on_cpu(detector):
    images = [shifted(0, 0)[0], shifted(5, 5)[0]]
    first = crop_batch(detector, images, [None, None], cpu_params())
    second = crop_batch(
        make_detector(cpu_params(), torch.device("cpu")), images, [None, None], cpu_params()
    )
    for a, b in zip(first, second, strict=True):
        assert a.crop.tobytes() == b.crop.tobytes()


def test_canvas_needs_both_sides():
    with pytest.raises(ParamsError, match=r"crop.canvas_width/crop.canvas_height: set both"):
        from_mapping(CropParams, {**repo_params()["crop"], "canvas_width": None}, "crop")
    with pytest.raises(
        ParamsError, match=r"crop.margin: expected 0 <= margin < image_size \(160\), got 160"
    ):
        from_mapping(CropParams, {**repo_params()["crop"], "margin": 160}, "crop")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_detections_match_cpu():
    images = [shifted(0, 0)[0], np.full((218, 178, 3), 128, dtype=np.uint8), shifted(6, 4)[0]]
    results = {}
    for device in ("cpu", "cuda"):
        params = cpu_params(device=device)
        detector = make_detector(params, torch.device(device))
        results[device] = crop_batch(detector, images, [None] * 3, params)
    assert [r.status for r in results["cuda"]] == ["detected", "missing", "detected"]
    for cpu, cuda in zip(results["cpu"][::2], results["cuda"][::2], strict=True):
        np.testing.assert_allclose(cuda.face.box, cpu.face.box, atol=1)
