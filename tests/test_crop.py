"""The crop stage: MTCNN detection, crop geometry, shards + manifest, resume, failures.

Real faces come from skimage.data.astronaut() (MTCNN finds it with p≈0.99999); the
CelebA-format folders are built here from crops, shifts and resizes of it.
"""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from skimage.data import astronaut
from stages.crop import main

import faceid.crop.cache as crop_module
from faceid.config.crop import CropParams
from faceid.config.engine import ParamsError, from_mapping
from faceid.config.pipeline import load_pipeline_params
from faceid.crop.cache import crop_dataset, read_annotation_faces
from faceid.crop.detect import (
    ARCFACE_TEMPLATE_112,
    CROP_FAILED,
    NO_FACE,
    TOO_SMALL,
    Annotation,
    CropResult,
    Face,
    _crop_every_face,
    align_five_points,
    crop_face,
    detect_and_crop,
    detect_faces,
    make_detector,
    template_landmarks,
    torch_threads,
)
from faceid.crop.images import to_rgb
from faceid.crop.metrics import CropError, check_failure_rate
from faceid.crop.shards import shard_path
from faceid.crop.state import dataset_fingerprint
from faceid.data.celeba import (
    ATTRIBUTE_NAMES,
    LANDMARK_COLUMNS,
    STUDY_ATTRIBUTES,
    read_annotations,
)
from tests import _params
from tests._params import repo_params, section

# MTCNN's landmarks on the full 512x512 astronaut (left eye, right eye, nose, mouth corners)
ASTRONAUT_LANDMARKS = np.array(
    [[205.0, 101.7], [246.8, 103.7], [224.7, 129.0], [201.7, 139.2], [245.3, 141.9]]
)
ASTRONAUT_BOX = np.array([181.1, 62.2, 267.7, 172.1])


@pytest.fixture(scope="module")
def detector():
    return make_detector(cpu_params(), torch.device("cpu"))


def cpu_params(**changes) -> CropParams:
    """params.yaml's crop section on cpu, with MTCNN's own min_face_size (20 px; params.yaml
    has 40) and native sizes (params.yaml letterboxes wild photos): the boxes these tests
    expect were measured so. One process (params.yaml: one per core), so that what a test
    patches in this process sees every chunk (tests/test_crop_processes.py: several)."""
    return section(CropParams, **{"device": "cpu", "min_face_size": 20, "canvas_width": None, "canvas_height": None,
                                  "processes": 1, **changes})


def crop_batch(detector, images, annotations, params) -> list[CropResult]:
    """The one detect-then-crop path with its default selection: one result per image."""
    return [result for [result] in detect_and_crop(detector, images, annotations, params)]


def shifted(dx: int, dy: int, size=(178, 218)) -> tuple[np.ndarray, np.ndarray]:
    """An aligned-size window of the astronaut whose face centre moves by (dx, dy)."""
    x0, y0 = 135 - dx, 20 - dy
    image = astronaut()[y0 : y0 + size[1], x0 : x0 + size[0]].copy()
    return image, ASTRONAUT_LANDMARKS - [x0, y0]


def on_canvas(
    scale: float, canvas: tuple[int, int], at: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The astronaut resized by `scale` and pasted at `at` on a grey canvas (w, h)."""
    photo = Image.fromarray(astronaut())
    size = round(512 * scale)
    out = Image.new("RGB", canvas, (90, 90, 90))
    out.paste(photo.resize((size, size), Image.BILINEAR), at)
    return np.asarray(out), ASTRONAUT_LANDMARKS * scale + at


# --------------------------------------------------------------------------- geometry


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


# --------------------------------------------------------------------------- CelebA folder


def jpeg(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def write_celeba(
    root: Path, items: list[tuple[str, bytes, np.ndarray, np.ndarray]], layout: str
) -> None:
    """A CelebA-format folder: items are (name, file bytes, landmarks (5, 2), bbox x1 y1 w h)."""
    root.mkdir(parents=True, exist_ok=True)
    n = len(items)
    rng = np.random.default_rng(0)
    attributes = rng.random((n, len(ATTRIBUTE_NAMES))) < 0.5
    attributes[:, ATTRIBUTE_NAMES.index("Eyeglasses")] = [i % 2 == 0 for i in range(n)]
    lines = [str(n), " ".join(ATTRIBUTE_NAMES)]
    lines += [
        f"{name} " + " ".join("1" if a else "-1" for a in row)
        for (name, *_), row in zip(items, attributes, strict=True)
    ]
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (root / "identity_CelebA.txt").write_text(
        "".join(f"{name} {i // 2 + 1}\n" for i, (name, *_) in enumerate(items))
    )
    (root / "list_eval_partition.txt").write_text(
        "".join(f"{name} {i % 3}\n" for i, (name, *_) in enumerate(items))
    )
    landmarks_name = (
        "list_landmarks_align_celeba.txt" if layout == "aligned" else "list_landmarks_celeba.txt"
    )
    rows = [f"{name} " + " ".join(str(round(v)) for v in lm.ravel()) for name, _, lm, _ in items]
    (root / landmarks_name).write_text(
        "\n".join([str(n), " ".join(LANDMARK_COLUMNS), *rows]) + "\n"
    )
    rows = [f"{name} " + " ".join(str(round(v)) for v in box) for name, _, _, box in items]
    (root / "list_bbox_celeba.txt").write_text(
        "\n".join([str(n), "image_id x_1 y_1 width height", *rows]) + "\n"
    )
    if layout == "aligned":
        with zipfile.ZipFile(root / "img_align_celeba.zip", "w") as archive:
            for name, data, _, _ in items:
                archive.writestr(f"img_align_celeba/{name}", data)
    else:
        (root / "img_celeba").mkdir()
        for name, data, _, _ in items:
            (root / "img_celeba" / name).write_bytes(data)


def aligned_items() -> list[tuple[str, bytes, np.ndarray, np.ndarray]]:
    """Seven astronaut windows, a blank image (annotated), a blank one with zero
    landmarks (nothing to fall back on) and a corrupt JPEG."""
    items = []
    for i, (dx, dy) in enumerate([(0, 0), (10, 5), (-8, 6), (4, -10), (-12, -4), (6, 12), (0, 8)]):
        image, landmarks = shifted(dx, dy)
        items.append((f"{i + 1:06d}.jpg", jpeg(image), landmarks, np.array([40, 60, 100, 120])))
    blank = np.full((218, 178, 3), 128, dtype=np.uint8)
    _, landmarks = shifted(0, 0)
    items.append(("000008.jpg", jpeg(blank), landmarks, np.array([40, 60, 100, 120])))
    items.append(("000009.jpg", jpeg(blank), np.zeros((5, 2)), np.zeros(4)))
    items.append(
        ("000010.jpg", jpeg(shifted(0, 0)[0])[:600], landmarks, np.array([40, 60, 100, 120]))
    )
    return items


def write_params(path: Path, layout: str = "aligned", **crop) -> Path:
    settings = {
        "device": "cpu",
        "chunk_size": 4,
        "shard_size": 6,
        "max_failure_rate": 0.2,
        "min_face_size": 40,
        "processes": 1,  # params.yaml: one per core; tests/test_crop_processes.py asks for 2
        **crop,
    }
    return _params.write_params(path, {"dataset": {"layout": layout}, "crop": settings})


def run_stage(
    tmp_path: Path, dataset: Path, params: Path, name: str = "crops"
) -> tuple[pd.DataFrame, dict, Path]:
    out, metrics = tmp_path / name, tmp_path / f"{name}.json"
    main(
        [
            "--params",
            str(params),
            "--dataset",
            str(dataset),
            "--out",
            str(out),
            "--metrics",
            str(metrics),
            "--review",
            str(tmp_path / f"{name}_review.png"),
        ]
    )
    detail = json.loads(metrics.with_name(f"{metrics.stem}_detail.json").read_text())
    assert json.loads(metrics.read_text()) == {k: detail[k] for k in ("images", "detection_rate", "fallback_rate",
                                                                      "missing_rate", "unreadable_rate")}  # fmt: skip
    return pd.read_parquet(out / "manifest.parquet"), detail, out


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
    params = dataclasses.replace(
        load_pipeline_params(tmp_path / "params.yaml").crop, canvas_width=None, canvas_height=None
    )
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
        match=r"2 of 10 images \(20.00%\) are unreadable, more than crop.max_failure_rate \(10.00%\); e.g. 000002.jpg \(UnidentifiedImageError",
    ):
        run_stage(tmp_path, dataset, params)
    assert json.loads((tmp_path / "crops_detail.json").read_text())["unreadable"] == 2


def test_check_failure_rate_allows_the_threshold():
    check_failure_rate({"images": 10, "unreadable": 1, "unreadable_images": []}, 0.1)


def interrupt_after(monkeypatch, chunks: int) -> list[int]:
    """Make crop_dataset stop (as on Ctrl-C) the first time `chunks` chunks are saved;
    the list collects every chunk count saved from now on."""
    save = crop_module.save_progress
    saved: list[int] = []

    def save_and_count(out_dir, fingerprint, chunks_done):
        save(out_dir, fingerprint, chunks_done)
        saved.append(chunks_done)
        if chunks_done == chunks and saved.count(chunks) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(crop_module, "save_progress", save_and_count)
    return saved


def test_resume_after_an_interruption_gives_identical_output(tmp_path, monkeypatch):
    dataset = tmp_path / "celeba"
    items = aligned_items()
    write_celeba(dataset, [items[i] for i in (0, 1, 7, 8, 9, 2, 3)], "aligned")
    # min_face_size 60 (the faces are ~90 px) keeps the pyramid and the test short
    params = cpu_params(chunk_size=2, shard_size=3, max_failure_rate=0.5, min_face_size=60)
    reference = tmp_path / "reference"
    crop_dataset(dataset, reference, params, "aligned", progress=False)

    saved = interrupt_after(monkeypatch, 2)
    out = tmp_path / "crops"
    with pytest.raises(KeyboardInterrupt):
        crop_dataset(dataset, out, params, "aligned", progress=False)
    assert json.loads((out / "progress.json").read_text())["chunks_done"] == 2
    metrics = crop_dataset(dataset, out, params, "aligned", progress=False)
    assert saved == [0, 1, 2, 3, 4]  # the resumed run did not redo chunks 0 and 1
    counts = [metrics[k] for k in ("detected", "fallback", "missing", "unreadable")]
    assert counts == [4, 1, 1, 1]
    for shard in range(3):
        assert shard_path(out, shard).read_bytes() == shard_path(reference, shard).read_bytes()
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "manifest.parquet"), pd.read_parquet(reference / "manifest.parquet")
    )


def test_changed_params_discard_partial_state(tmp_path, monkeypatch):
    dataset = tmp_path / "celeba"
    write_celeba(dataset, aligned_items()[:4], "aligned")
    params = cpu_params(chunk_size=2, shard_size=2, min_face_size=60)
    saved = interrupt_after(monkeypatch, 1)
    out = tmp_path / "crops"
    with pytest.raises(KeyboardInterrupt):
        crop_dataset(dataset, out, params, "aligned", progress=False)
    changed = cpu_params(chunk_size=2, shard_size=4, min_face_size=60, margin=40)
    crop_dataset(dataset, out, changed, "aligned", progress=False)
    assert saved == [0, 1, 0, 1, 2]  # started afresh
    reference = tmp_path / "reference"
    crop_dataset(dataset, reference, changed, "aligned", progress=False)
    assert shard_path(out, 0).read_bytes() == shard_path(reference, 0).read_bytes()
    assert not shard_path(out, 1).exists()  # the stale layout's second shard is gone


def test_fingerprint_follows_params_and_dataset(tmp_path):
    dataset = tmp_path / "celeba"
    items = aligned_items()[:3]
    write_celeba(dataset, items, "aligned")
    archive = dataset / "img_align_celeba.zip"
    crop = section(CropParams)
    base = dataset_fingerprint(dataset, "aligned", archive, crop, "cpu")
    assert dataset_fingerprint(dataset, "aligned", archive, section(CropParams, workers=4), "cpu") == base
    assert dataset_fingerprint(dataset, "aligned", archive, section(CropParams, margin=8), "cpu") != base
    assert dataset_fingerprint(dataset, "aligned", archive, crop, "cuda") != base
    items[1] = (items[1][0], jpeg(shifted(3, 3)[0]), *items[1][2:])
    write_celeba(tmp_path / "other", items, "aligned")
    other = tmp_path / "other"
    assert (
        dataset_fingerprint(other, "aligned", other / "img_align_celeba.zip", crop, "cpu")
        != base
    )


def test_params_yaml_has_a_valid_crop_section():
    params = load_pipeline_params(Path(__file__).parents[1] / "params.yaml")
    assert params.crop.method in ("mtcnn", "align5") and params.crop.canvas == (320, 400)  # wild photos letterboxed


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


# --------------------------------------------------------------------------- small images


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
