"""A tiny demo project for the demo tests: a model, people, photos, an evaluation.

The model is a randomly initialised InceptionResnetV1 whose BatchNorm statistics are
set from rendered face crops (so that different faces get different embeddings; with
the default statistics every face maps to nearly the same point). Its metric quality is
irrelevant: the tests check plumbing, and recognition only where the enrolled crop and
the query crop are the same rendered face.

Also the helpers that the demo test files share; the enrolled project itself is the
`demo_project` fixture in tests/conftest.py.
"""

from __future__ import annotations

import dataclasses
import io
import json
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

from faceid.backbones.registry import build_backbone
from faceid.cli import main
from faceid.config.crop import CropParams
from faceid.config.train import TrainParams, resolve_train_params
from faceid.crop.detect import detect_and_crop, make_detector
from faceid.crop.reader import prepare_batch
from faceid.data.synthetic.people import Person, base_rates
from faceid.data.synthetic.render import render
from tests._params import section, write_params

MODEL = "orig-inception_resnet_v1"
CROP_SIZE = 80  # the least InceptionResnetV1 takes: fast on CPU
THRESHOLD = 0.95  # the fake evaluation's: the same crop scores ~1, other people far less
FMR = 0.001
PEOPLE = {"alice": 1, "bob": 2, "carol": 3}  # enrolled: name -> rendered identity
STRANGER = 9  # never enrolled
TILE = (200, 240)  # width, height of one face's canvas


def render_face(identity: int, photo: int = 0, scale: float = 60.0) -> np.ndarray:
    """One rendered face, uint8 (240, 200, 3), centred; no glasses, hat or blur."""
    rates = base_rates({"Eyeglasses": 0.0, "Wearing_Hat": 0.0, "Blurry": 0.0})
    who = Person(np.random.default_rng(np.random.SeedSequence([7, identity])), rates)
    rng = np.random.default_rng(np.random.SeedSequence([7, identity, photo]))
    width, height = TILE
    appearance, _ = who.photo(rng, width, height, scale, (width / 2, height / 2))
    return np.clip(render(who.identity, appearance, width, height) + 0.5, 0, 255).astype(np.uint8)


def side_by_side(*faces: np.ndarray) -> np.ndarray:
    """Several faces in one photo, each on its own canvas, left to right."""
    return np.concatenate(faces, axis=1)


def _calibrated_model(crop: CropParams) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_backbone("inception_resnet_v1", "none", dropout=0.4)
    detector = make_detector(crop, torch.device("cpu"))
    images = [render_face(identity, 1) for identity in range(20, 30)]
    crops = [result.crop for [result] in detect_and_crop(detector, images, None, crop) if result.crop is not None]
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration batch
    model.train()
    with torch.no_grad():
        model(prepare_batch(torch.from_numpy(np.stack(crops)), torch.device("cpu"), None))
    return model.eval()


@dataclass(frozen=True)
class DemoProject:
    root: Path
    params: Path
    models_dir: Path
    galleries_dir: Path
    eval_dir: Path
    people: Path  # people/<name>/<photo>.png
    # alice (largest) | bob | stranger in one photo; alice's folder holds it too, so
    # her crop in it is exactly an enrolled one
    group: Path
    stranger: Path  # the stranger alone
    alice: Path  # alice's enrolled photo itself

    def dirs(self) -> list[str]:
        return ["--params", str(self.params), "--models-dir", str(self.models_dir),
                "--galleries-dir", str(self.galleries_dir), "--eval-dir", str(self.eval_dir)]  # fmt: skip


def make_demo_project(root: Path, with_evaluation: bool = True) -> DemoProject:
    root.mkdir(parents=True, exist_ok=True)
    # min_face_size: MTCNN's own 20 px (params.yaml has 40; small_face_params sets that for
    # the small-face tests, to show the difference)
    crop_values = {"image_size": CROP_SIZE, "margin": 8, "min_face_size": 20}
    crop = section(CropParams, **crop_values)
    write_params(root / "params.yaml", {
        "crop": crop_values,
        "evaluate": {"flip_average": True, "global_fmr": FMR},
        "demo": {"model": MODEL, "top_k": 2, "fmr": FMR, "device": "cpu", "max_upload_mb": 1.0},
    })  # fmt: skip
    model_dir = root / "models" / MODEL
    model_dir.mkdir(parents=True)
    run = resolve_train_params(section(TrainParams), "orig", "inception_resnet_v1")
    run = dataclasses.replace(run, task_init="none", weights_init="none", epochs=0, image_size=None, dropout=0.4)
    torch.save(
        {"backbone": "inception_resnet_v1", "init": "none", "state_dict": _calibrated_model(crop).state_dict(),
         "epoch": 0, "params": dataclasses.asdict(run), "metrics": {}},
        model_dir / "model.pt",
    )  # fmt: skip
    people = root / "people"
    for name, identity in PEOPLE.items():
        (people / name).mkdir(parents=True)
        Image.fromarray(render_face(identity)).save(people / name / "photo-0.png")
    (people / "README.txt").write_text("not a folder: ignored")  # files beside folders are not people
    eval_dir = root / "eval"
    if with_evaluation:
        # the evaluate stage's two files: headline numbers, and the detail holding the thresholds
        for level, evaluation in (
            ("eval", {"threshold": THRESHOLD}),
            ("detail", {"global_threshold": {"task": "orig", "fmr": FMR, "threshold": THRESHOLD,
                                             "n_impostor": 3000, "reason": None}}),
        ):  # fmt: skip
            (root / level).mkdir()
            (root / level / f"{MODEL}.json").write_text(json.dumps(evaluation))
    group = root / "group.png"
    Image.fromarray(
        side_by_side(render_face(PEOPLE["alice"], 1, scale=72.0), render_face(PEOPLE["bob"]), render_face(STRANGER))
    ).save(group)
    (people / "alice" / "group.png").write_bytes(group.read_bytes())
    stranger = root / "stranger.png"
    Image.fromarray(render_face(STRANGER)).save(stranger)
    return DemoProject(root, root / "params.yaml", root / "models", root / "galleries", eval_dir,
                       people, group, stranger, people / "alice" / "photo-0.png")  # fmt: skip


def identify_json(project: DemoProject, capsys, *photos, extra=()) -> tuple[int, dict]:
    """`faceid identify --json` of the photos against the project: (exit code, the JSON)."""
    capsys.readouterr()
    rc = main(["identify", *map(str, photos), "--json", *project.dirs(), *extra])
    return rc, json.loads(capsys.readouterr().out)


def upload(client, data: bytes, name: str, url: str = "/"):
    """POST one photo to the demo server's test client, asking for the project's model."""
    return client.post(
        url, data={"photo": (io.BytesIO(data), name), "model": MODEL}, content_type="multipart/form-data"
    )


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def small_face_params(project: DemoProject, tmp_path: Path) -> list[str]:
    """The project's params with the repository params.yaml's crop.min_face_size (40 px)."""
    params = yaml.safe_load(project.params.read_text())
    params["crop"]["min_face_size"] = 40
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return ["--params", str(path), *project.dirs()[2:]]


def small_face(tmp_path: Path) -> Path:
    """Bob's rendered face shrunk to 30x36 px: below params.yaml's crop.min_face_size (40)."""
    path = tmp_path / "small.png"
    Image.fromarray(render_face(PEOPLE["bob"])).resize((30, 36), Image.BILINEAR).save(path)
    return path


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with one row of pixel data (truncated)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * (3 * width + 1)))
