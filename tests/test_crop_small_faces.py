"""Images and faces below crop.min_face_size: counted missing or fallback with a reason,
never a crash."""

from __future__ import annotations

import numpy as np
from PIL import Image

from faceid.crop.detect import detect_faces
from tests._crop_fixtures import aligned_items, jpeg, run_stage, shifted, write_celeba, write_params


def test_a_tiny_image_is_counted_missing_not_a_crash(tmp_path):
    items = aligned_items()[:3]
    tiny = np.asarray(Image.fromarray(shifted(0, 0)[0]).resize((16, 20)))
    # zero landmarks: nothing to fall back on, so the tiny image stays missing
    items.append(("000004.jpg", jpeg(tiny), np.zeros((5, 2)), np.zeros(4)))
    dataset = tmp_path / "celeba"
    write_celeba(dataset, items, "aligned")
    manifest, metrics, _ = run_stage(tmp_path, dataset, write_params(tmp_path / "params.yaml"))
    assert manifest["status"].tolist() == ["detected"] * 3 + ["missing"]
    assert metrics["missing_reasons"] == {"no face found": 0, "smaller than crop.min_face_size": 1}
    assert metrics["too_small"] == 1 and metrics["too_small_examples"] == ["000004.jpg"]
    # 000004 is row 3: Eyeglasses "without" (write_celeba gives glasses to even rows)
    eyeglasses = metrics["by_attribute"]["Eyeglasses"]
    assert eyeglasses["without"]["missing"] == 1 and eyeglasses["with"]["missing"] == 0


def test_min_face_size_above_every_face_completes_with_fallbacks_and_reasons(tmp_path):
    dataset = tmp_path / "celeba"
    items = aligned_items()[:4]
    items[3] = (items[3][0], items[3][1], np.zeros((5, 2)), np.zeros(4))  # no annotation
    write_celeba(dataset, items, "aligned")
    params = write_params(tmp_path / "params.yaml", min_face_size=300)
    manifest, metrics, _ = run_stage(tmp_path, dataset, params)
    # the detector searches nothing in a 178x218 image for a 300 px face; annotated
    # images fall back to their landmarks, the last one has nothing to fall back on
    assert manifest["status"].tolist() == ["fallback"] * 3 + ["missing"]
    assert (metrics["detected"], metrics["fallback"], metrics["missing"]) == (0, 3, 1)
    assert metrics["missing_reasons"]["smaller than crop.min_face_size"] == 1
    assert metrics["too_small"] == 4  # none was searched, fallbacks included


def test_detect_faces_on_an_input_below_the_pyramid_returns_no_face(detector):
    tiny = np.zeros((20, 16, 3), np.uint8)
    assert detect_faces(detector, [tiny, tiny], [1.0, 1.0]) == [[], []]
