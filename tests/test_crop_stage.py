"""The crop stage on CelebA-format folders: shards + manifest, metrics, the failure bar,
the embedded synthetic dataset."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from faceid.config.pipeline import load_pipeline_params
from faceid.crop.cache import crop_dataset, read_annotation_faces
from faceid.crop.detect import make_detector, torch_threads
from faceid.crop.images import to_rgb
from faceid.crop.metrics import CropError, check_failure_rate
from faceid.crop.shards import shard_path
from faceid.data.celeba import ATTRIBUTE_NAMES, LANDMARK_COLUMNS, STUDY_ATTRIBUTES, read_annotations
from tests._crop_fixtures import (
    ASTRONAUT_BOX,
    aligned_items,
    cpu_params,
    crop_batch,
    jpeg,
    on_canvas,
    run_stage,
    write_celeba,
    write_params,
)
from tests._params import section


def test_stage_end_to_end_on_an_aligned_folder(tmp_path):
    dataset = tmp_path / "celeba"
    write_celeba(dataset, aligned_items(), "aligned")
    manifest, metrics, out = run_stage(tmp_path, dataset, write_params(tmp_path / "params.yaml"))

    assert manifest["image"].tolist() == [f"{i:06d}.jpg" for i in range(1, 11)]
    assert manifest["status"].tolist() == ["detected"] * 7 + ["fallback", "missing", "unreadable"]
    assert manifest["method"].tolist()[7:] == ["mtcnn:landmarks", "", ""]
    assert manifest["shard"].dtype == np.int16 and manifest["row"].dtype == np.int32
    assert manifest["shard"].tolist() == [0] * 6 + [1, 1, -1, -1]
    assert manifest["row"].tolist() == [0, 1, 2, 3, 4, 5, 0, 1, -1, -1]
    expected = [
        "image",
        "identity",
        "partition",
        *ATTRIBUTE_NAMES,
        "shard",
        "row",
        "status",
        "probability",
        "box_x1",
        "box_y1",
        "box_x2",
        "box_y2",
        *LANDMARK_COLUMNS,
        "method",
    ]
    assert list(manifest.columns) == expected
    assert manifest["probability"][:7].gt(0.99).all() and manifest["probability"][7:].isna().all()
    assert manifest["lefteye_x"][7:].isna().all()

    shards = [np.load(shard_path(out, s), mmap_mode="r") for s in (0, 1)]
    assert [s.shape for s in shards] == [(6, 160, 160, 3), (4, 160, 160, 3)]
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.parquet",
        "shard-000.npy",
        "shard-001.npy",
    ]
    assert shards[1][2:].max() == 0 and shards[0][0].std() > 20  # failures stay zero, crops do not
    # the stage's bytes are the one detect-then-crop path's on the same images, chunk by chunk
    # aligned: detected at native size, whatever the canvas (crop_dataset)
    crop = load_pipeline_params(tmp_path / "params.yaml").crop
    params = dataclasses.replace(crop, canvas_width=None, canvas_height=None)
    annotations = read_annotation_faces(read_annotations(dataset, "aligned"), "aligned")[:9]  # 10: unreadable
    images = [to_rgb(Image.open(io.BytesIO(data))) for _, data, _, _ in aligned_items()[:9]]
    with torch_threads(params.threads):
        results = [r for start in range(0, 9, params.chunk_size) for r in crop_batch(
            make_detector(params, torch.device("cpu")), images[start : start + params.chunk_size],
            annotations[start : start + params.chunk_size], params)]  # fmt: skip
    rows = np.concatenate([np.asarray(s) for s in shards])
    for i, result in enumerate(results):
        assert (result.crop if result.crop is not None else np.zeros_like(rows[0])).tobytes() == rows[i].tobytes()
    assert [r.status for r in results] == manifest["status"].tolist()[:9]

    assert (
        metrics["images"],
        metrics["detected"],
        metrics["fallback"],
        metrics["missing"],
        metrics["unreadable"],
    ) == (10, 7, 1, 1, 1)
    assert metrics["detection_rate"] == pytest.approx(0.7)
    assert metrics["unreadable_images"][0]["image"] == "000010.jpg"
    assert "truncated" in metrics["unreadable_images"][0]["reason"].lower()
    eyeglasses = metrics["by_attribute"]["Eyeglasses"]  # even rows: 1,3,5,7 detected, 9 missing
    assert eyeglasses["with"] == {"images": 5, "detection_rate": pytest.approx(0.8), "missing": 1, "unreadable": 0}
    # odd rows: 2, 4, 6 detected, 8 fallback, 10 unreadable
    assert eyeglasses["without"] == {"images": 5, "detection_rate": pytest.approx(0.6), "missing": 0, "unreadable": 1}
    assert metrics["missing_reasons"] == {"no face found": 1, "smaller than crop.min_face_size": 0}
    assert metrics["too_small"] == 0
    assert set(STUDY_ATTRIBUTES) <= set(metrics["by_attribute"])


def test_stage_on_a_wild_folder_with_a_canvas(tmp_path):
    items = []
    for i, (scale, canvas, at) in enumerate(
        [(0.6, (300, 380), (10, 40)), (0.9, (520, 470), (0, 0)), (0.5, (256, 256), (0, 0))]
    ):
        image, landmarks = on_canvas(scale, canvas, at)
        box = np.array(
            [*(ASTRONAUT_BOX[:2] * scale + at), *((ASTRONAUT_BOX[2:] - ASTRONAUT_BOX[:2]) * scale)]
        )
        items.append((f"{i + 1:06d}.jpg", jpeg(image), landmarks, box))
    blank = np.full((300, 250, 3), 60, dtype=np.uint8)
    items.append(("000004.jpg", jpeg(blank), np.zeros((5, 2)), np.array([50, 60, 100, 120])))
    dataset = tmp_path / "celeba"
    write_celeba(dataset, items, "wild")
    params = write_params(
        tmp_path / "params.yaml", "wild", canvas_width=320, canvas_height=400, workers=2
    )
    manifest, metrics, _ = run_stage(tmp_path, dataset, params)
    assert manifest["status"].tolist() == ["detected"] * 3 + ["fallback"]
    assert manifest["method"].tolist()[3] == "mtcnn:bbox"
    for (_, _, landmarks, _), (_, row) in zip(items[:3], manifest.head(3).iterrows(), strict=True):
        np.testing.assert_allclose(
            row[list(LANDMARK_COLUMNS)].to_numpy(float), landmarks.ravel(), atol=6
        )
    assert metrics["fallback_rate"] == pytest.approx(0.25)


def test_too_many_unreadable_images_fail_the_stage_after_writing_metrics(tmp_path):
    dataset = tmp_path / "celeba"
    items = aligned_items()
    items[1] = (items[1][0], b"not a jpeg at all", *items[1][2:])
    write_celeba(dataset, items, "aligned")
    params = write_params(tmp_path / "params.yaml", max_failure_rate=0.1)
    with pytest.raises(
        CropError,
        match=r"2 of 10 images \(20.00%\) are unreadable, more than crop.max_failure_rate \(10.00%\); "
        r"e.g. 000002.jpg \(UnidentifiedImageError",
    ):
        run_stage(tmp_path, dataset, params)
    assert json.loads((tmp_path / "crops_detail.json").read_text())["unreadable"] == 2


def test_check_failure_rate_allows_the_threshold():
    check_failure_rate({"images": 10, "unreadable": 1, "unreadable_images": []}, 0.1)


def test_params_yaml_has_a_valid_crop_section():
    params = load_pipeline_params(Path(__file__).parents[1] / "params.yaml")
    assert params.crop.method in ("mtcnn", "align5") and params.crop.canvas == (320, 400)  # wild photos letterboxed


def test_stage_on_the_embedded_dataset_meets_the_detection_bar(tmp_path):
    """The generator's bar holds through the crop stage: ≥ 90% of photos without glasses,
    hat or blur detected; every image accounted for; per-attribute rates reported."""
    from faceid.config.dataset import SyntheticParams
    from faceid.data.synthetic.generate import generate

    # CelebA's own attribute rates (no attribute_rates), as the detection bar was set on
    synthetic = section(SyntheticParams, n_identities=10, min_images_per_identity=4, max_images_per_identity=5, seed=3,
                        attribute_rates={})  # fmt: skip
    generate(tmp_path / "celeba", synthetic, layout="aligned")
    metrics = crop_dataset(
        tmp_path / "celeba", tmp_path / "crops", cpu_params(min_face_size=40), "aligned", progress=False
    )
    manifest = pd.read_parquet(tmp_path / "crops" / "manifest.parquet")
    assert len(manifest) == metrics["images"] and set(manifest["status"]) <= {"detected", "fallback"}
    plain = ~manifest[["Eyeglasses", "Wearing_Hat", "Blurry"]].any(axis=1)
    assert (manifest.loc[plain, "status"] == "detected").mean() >= 0.9
    assert {"with", "without"} <= set(metrics["by_attribute"]["Eyeglasses"])
    crops = np.load(tmp_path / "crops" / "shard-000.npy", mmap_mode="r")
    assert crops.shape[1:] == (160, 160, 3) and crops[: len(manifest)].std() > 20  # real pixels, not zeros
