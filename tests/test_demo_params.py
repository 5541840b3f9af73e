"""The demo reads its settings from params.yaml, under names of their own: demo.score's
`template` (was `mean`, which evaluation uses for another score), demo.batch_size for
every forward pass, crop.min_face_size in what a "no face" error advises."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from faceid.config.demo import DEMO_SCORES, DemoParams
from faceid.config.engine import ParamsError
from faceid.config.whole import load_all_params
from faceid.crop.detect import NO_FACE, CropResult, Face
from faceid.demo import catalog
from faceid.demo.faces import NoFaceError
from faceid.demo.gallery import build_gallery
from faceid.demo.identify import IDENTITY_SCORES, Identifier, Threshold, rank_identities
from faceid.errors import FaceidError
from tests._params import section, write_params


@pytest.mark.parametrize("old", ["mean"])
def test_an_old_score_name_says_the_new_one(tmp_path, old):
    path = write_params(tmp_path / "params.yaml", {"demo": {"score": old}})
    with pytest.raises(ParamsError, match=r"demo\.score: 'mean' is now called 'template'.*set demo\.score: template"):
        load_all_params(path)


def test_an_unknown_score_lists_the_choices():
    with pytest.raises(ParamsError, match=r"demo\.score: 'median' is not a valid choice; valid: max, template"):
        section(DemoParams, score="median")


def test_the_config_names_every_score_the_demo_computes():
    assert tuple(IDENTITY_SCORES) == DEMO_SCORES
    assert section(DemoParams, score="template").score == "template"


def test_rank_identities_refuses_the_old_name():
    gallery = build_gallery(np.eye(2, dtype=np.float32), ["a", "b"], ["", ""], {})
    with pytest.raises(FaceidError, match="now called 'template'"):
        rank_identities(np.eye(2, dtype=np.float32), gallery, "mean", top_k=1)


class _Embedder:
    """Just what Identifier uses: no network, one face per photo (or none), calls recorded."""

    model_path, model_sha256, crop_description = Path("m.pt"), "abc", {"method": "mtcnn"}

    def __init__(self, min_face_size: int, face: bool):
        self.crop = SimpleNamespace(min_face_size=min_face_size)
        self.face = face
        self.batch_sizes: list[int] = []

    def find_faces(self, image, max_side, min_probability):
        if not self.face:
            return [CropResult(None, "missing", "", None, NO_FACE)]
        face = Face(np.array([0.0, 0.0, 8.0, 8.0]), np.zeros((5, 2)), 0.99)
        return [CropResult(np.zeros((4, 4, 3), np.uint8), "detected", "mtcnn:detected", face)]

    def embed(self, crops, batch_size):
        self.batch_sizes.append(batch_size)
        return np.tile(np.array([[1.0, 0.0]], np.float32), (len(crops), 1))


def _identifier(embedder: _Embedder, batch_size: int) -> Identifier:
    meta = {"model_sha256": "abc", "crop": {"method": "mtcnn"}}
    gallery = build_gallery(np.eye(2, dtype=np.float32), ["a", "b"], ["", ""], meta)
    return Identifier(embedder, gallery, Threshold(0.5, "test"), top_k=1, score="template", max_side=64,
                      min_probability=0.9, max_faces=4, batch_size=batch_size)  # fmt: skip


def test_identify_embeds_demo_batch_size_at_a_time():
    embedder = _Embedder(40, face=True)
    result = _identifier(embedder, batch_size=7).identify(np.zeros((8, 8, 3), np.uint8), "p.jpg")
    assert embedder.batch_sizes == [7] and result.faces[0].name == "a"


def test_no_face_advice_names_crop_min_face_size():
    with pytest.raises(NoFaceError, match=r"at least 23 px wide \(crop\.min_face_size"):
        _identifier(_Embedder(23, face=False), batch_size=1).identify(np.zeros((8, 8, 3), np.uint8), "p.jpg")


def test_open_identifier_passes_demo_settings(tmp_path, monkeypatch):
    params = load_all_params(write_params(tmp_path / "params.yaml", {"demo": {"batch_size": 5, "device": "auto"}}))
    embedder, devices = _Embedder(40, face=True), []

    def load_embedder(model_path, crop, flip_average, device):
        devices.append(device)
        return embedder

    meta = {"model_sha256": "abc", "crop": {"method": "mtcnn"}}
    monkeypatch.setattr(catalog, "load_gallery", lambda path: build_gallery(np.eye(2), ["a", "b"], ["", ""], meta))
    monkeypatch.setattr(catalog, "load_embedder", load_embedder)
    entry = catalog.ModelEntry("m", tmp_path / "m.pt", tmp_path / "m.npz", tmp_path / "m.json")
    identifier = catalog.open_identifier(entry, params, threshold=0.5)
    assert (identifier.batch_size, devices) == (5, ["auto"])
