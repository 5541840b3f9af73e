"""Shared helpers of the crop tests (tests/test_crop_*.py, test_crop_accept.py,
test_crop_processes.py): a real face, CelebA-format folders built from it, the stage run.

Real faces come from skimage.data.astronaut() (MTCNN finds it with p≈0.99999); the
CelebA-format folders are built here from crops, shifts and resizes of it. The `detector`
fixture (MTCNN on cpu with `cpu_params()`) is in tests/conftest.py.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from skimage.data import astronaut
from stages.crop import main

from faceid.config.crop import CropParams
from faceid.crop.detect import CropResult, detect_and_crop
from faceid.data.celeba import ATTRIBUTE_NAMES, LANDMARK_COLUMNS
from tests import _params
from tests._params import section

# MTCNN's landmarks on the full 512x512 astronaut (left eye, right eye, nose, mouth corners)
ASTRONAUT_LANDMARKS = np.array(
    [[205.0, 101.7], [246.8, 103.7], [224.7, 129.0], [201.7, 139.2], [245.3, 141.9]]
)
ASTRONAUT_BOX = np.array([181.1, 62.2, 267.7, 172.1])


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
