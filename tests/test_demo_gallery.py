"""The demo's galleries: `faceid enroll` of a folder or of cached crops, embeddings the same as
the evaluation's, the gallery file and its refusals."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from stages.evaluate import main as evaluate_stage

from faceid.cli import main
from faceid.config.whole import load_all_params
from faceid.demo.catalog import DemoPaths
from faceid.demo.faces import load_embedder
from faceid.demo.gallery import GalleryError, build_gallery, enroll_crops, load_gallery, save_gallery
from faceid.demo.server import create_app
from tests._demo_fixtures import MODEL, render_face, small_face, small_face_params, upload


def test_enroll_folder_writes_a_normalised_gallery_tied_to_the_model(demo_project):
    gallery = load_gallery(demo_project.galleries_dir / f"{MODEL}.npz")
    assert sorted(gallery.names) == ["alice", "alice", "bob", "carol"]
    assert list(gallery.identities) == ["alice", "bob", "carol"]
    assert gallery.embeddings.shape == (4, 512) and gallery.embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(gallery.embeddings, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(gallery.templates, axis=1), 1.0, atol=1e-5)
    alice = gallery.embeddings[gallery.names == "alice"].mean(axis=0)
    np.testing.assert_allclose(gallery.templates[0], alice / np.linalg.norm(alice), atol=1e-5)
    assert gallery.meta["crop"] == {"method": "mtcnn", "image_size": 80, "margin": 8}
    assert gallery.meta["model_path"].endswith(f"{MODEL}/model.pt") and len(gallery.meta["model_sha256"]) == 64
    assert gallery.meta["skipped"] == {"extra_faces": 2}  # the group photo's bob and stranger


def test_enroll_counts_unreadable_and_faceless_photos(demo_project, tmp_path):
    people = tmp_path / "people"
    (people / "dave").mkdir(parents=True)
    (people / "dave" / "notes.jpg").write_text("not a photo")
    Image.new("RGB", (200, 240), (90, 140, 200)).save(people / "dave" / "sky.png")
    Image.fromarray(render_face(4)).save(people / "dave" / "face.png")
    out = tmp_path / "g.npz"
    assert main(["enroll", "--folder", str(people), "--out", str(out), *demo_project.dirs()]) == 0
    gallery = load_gallery(out)
    assert list(gallery.sources) == ["dave/face.png"]
    assert gallery.meta["skipped"] == {"no_face": 1, "unreadable": 1}


def test_enroll_refuses_a_folder_without_identity_folders(demo_project, tmp_path, capsys):
    assert main(["enroll", "--folder", str(tmp_path), "--out", str(tmp_path / "g.npz"), *demo_project.dirs()]) == 2
    assert "no identity sub-folders" in capsys.readouterr().err


def test_enroll_crops_names_test_identities_by_id(demo_project, tmp_path):
    crops = tmp_path / "crops"
    crops.mkdir()
    faces = [render_face(i)[80:160, 60:140] for i in (11, 12, 12)]  # any 80x80 uint8 crops
    np.save(crops / "shard-000.npy", np.stack(faces))
    pd.DataFrame({
        "image": ["000001.jpg", "000002.jpg", "000003.jpg", "000004.jpg", "000005.jpg"],
        "identity": [5, 11, 12, 12, 13], "partition": np.array([0, 2, 2, 2, 2], np.int8),
        "shard": np.array([-1, 0, 0, 0, -1], np.int16), "row": np.array([-1, 0, 1, 2, -1], np.int32),
        "status": ["missing", "detected", "detected", "fallback", "missing"],
        "method": ["", "mtcnn:detected", "mtcnn:detected", "mtcnn:bbox", ""],
    }).to_parquet(crops / "manifest.parquet")  # fmt: skip
    params = load_all_params(demo_project.params)
    embedder = load_embedder(demo_project.models_dir / MODEL / "model.pt", params.crop, True, "cpu")
    gallery = enroll_crops(crops, embedder, partition="test", batch_size=2)
    assert list(gallery.names) == ["11", "12", "12"] and list(gallery.identities) == ["11", "12"]
    assert list(gallery.sources) == ["000002.jpg", "000003.jpg", "000004.jpg"]
    assert gallery.meta["skipped"] == {"no_crop": 1}
    embedder.crop = dataclasses.replace(params.crop, method="align5")
    with pytest.raises(GalleryError, match=r"crops made by \['mtcnn'\], the model expects align5"):
        enroll_crops(crops, embedder, partition="test", batch_size=2)
    embedder.crop = dataclasses.replace(params.crop, image_size=112)
    with pytest.raises(GalleryError, match="crops are 80 px"):
        enroll_crops(crops, embedder, partition="test", batch_size=2)


def test_the_demo_embeds_a_crop_exactly_as_the_evaluation_does(demo_project, tmp_path):
    """The demo's threshold comes from the evaluation: the same crop must get the same
    embedding from the evaluate stage (its .npz) as from the demo, for a photo's face
    (detected and cropped by the demo) and for the cached crops `enroll_crops` reads."""
    info = torch.load(demo_project.models_dir / MODEL / "model.pt", weights_only=False)
    info["params"]["image_size"] = 96  # the network's input differs from the crops: both resize
    torch.save(info, tmp_path / "model.pt")
    params = load_all_params(demo_project.params)
    embedder = load_embedder(tmp_path / "model.pt", params.crop, params.evaluate.flip_average, "cpu")
    photo_crops = [embedder.find_faces(render_face(i), 1024, 0.9)[0].crop for i in (1, 2, 3, 4)]
    crops, pairs = tmp_path / "crops", tmp_path / "pairs"
    crops.mkdir()
    pairs.mkdir()
    np.save(crops / "shard-000.npy", np.stack(photo_crops))
    names = [f"{i:06d}.jpg" for i in range(1, 5)]
    pd.DataFrame({
        "image": names, "identity": [1, 1, 2, 2], "partition": np.full(4, 2, np.int8),
        "shard": np.zeros(4, np.int16), "row": np.arange(4, dtype=np.int32), "status": ["detected"] * 4,
        "method": ["mtcnn:detected"] * 4,
    }).to_parquet(crops / "manifest.parquet")  # fmt: skip
    pd.DataFrame({
        "task": "orig", "split": "test", "kind": ["genuine", "genuine", "impostor", "impostor"], "condition": "all",
        "image_a": [names[0], names[2], names[0], names[1]], "image_b": [names[1], names[3], names[2], names[3]],
        "identity_a": [1, 2, 1, 1], "identity_b": [1, 2, 2, 2], "fallback": np.zeros(4, np.int8),
    }).to_parquet(pairs / "pairs.parquet")  # fmt: skip
    pd.DataFrame({"image": names, "identity": [1, 1, 2, 2]}).to_parquet(pairs / "identification.parquet")
    evaluate_stage([
        "--params", str(demo_project.params), "--model", str(tmp_path / "model.pt"), "--name", "m",
        "--crops", str(crops), "--pairs", str(pairs), "--embeddings", str(tmp_path / "m.npz"),
        "--out", str(tmp_path / "eval.json"), "--detail", str(tmp_path / "detail.json"),
    ])  # fmt: skip
    with np.load(tmp_path / "m.npz") as saved:
        order = pd.Index(saved["images"]).get_indexer(names)
        assert (order >= 0).all()
        evaluated = saved["embeddings"][order]
    for crop, row in zip(photo_crops, evaluated, strict=True):  # one photo's face at a time
        np.testing.assert_allclose(embedder.embed(crop[None], 1)[0], row, rtol=0, atol=1e-6)
    gallery = enroll_crops(crops, embedder, partition="test", batch_size=2)
    np.testing.assert_allclose(gallery.embeddings, evaluated, rtol=0, atol=1e-6)


def test_gallery_round_trip_and_corrupt_file(tmp_path):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(3, 512)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    gallery = build_gallery(emb, ["b", "a", "b"], ["1", "2", "3"], {"model_sha256": "x"})
    loaded = load_gallery(save_gallery(gallery, tmp_path / "g.npz"))
    np.testing.assert_array_equal(loaded.embeddings, emb)
    assert list(loaded.labels) == [1, 0, 1] and loaded.meta == {"model_sha256": "x"}
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(GalleryError, match=r"bad.npz: not a faceid gallery"):
        load_gallery(tmp_path / "bad.npz")
    with pytest.raises(GalleryError, match="faceid enroll"):
        load_gallery(tmp_path / "none.npz")


def test_enroll_keeps_the_other_photos_and_reports_the_small_one(demo_project, tmp_path):
    people = tmp_path / "people"
    shutil.copytree(demo_project.people, people)
    shutil.copy(small_face(tmp_path), people / "bob" / "small.png")
    out = tmp_path / "g.npz"
    assert main(["enroll", "--folder", str(people), "--out", str(out), *small_face_params(demo_project, tmp_path)]) == 0
    gallery = load_gallery(out)
    assert sorted(gallery.names) == ["alice", "alice", "bob", "carol"]
    assert gallery.meta["skipped"] == {"extra_faces": 2, "too_small": 1}  # the group photo's others



def test_a_corrupt_gallery_is_a_clear_error_in_the_cli_and_the_server(demo_project, capsys, tmp_path):
    galleries = tmp_path / "galleries"
    galleries.mkdir()
    good = (demo_project.galleries_dir / f"{MODEL}.npz").read_bytes()
    (galleries / f"{MODEL}.npz").write_bytes(good[: len(good) // 2])  # cut short: BadZipFile
    dirs = ["--params", str(demo_project.params), "--models-dir", str(demo_project.models_dir),
            "--galleries-dir", str(galleries), "--eval-dir", str(demo_project.eval_dir)]  # fmt: skip
    capsys.readouterr()
    assert main(["identify", str(demo_project.alice), *dirs]) == 2
    err = capsys.readouterr().err
    assert f"error: {galleries / (MODEL + '.npz')}: not a faceid gallery (BadZipFile" in err
    paths = DemoPaths(demo_project.models_dir, galleries, demo_project.eval_dir)
    app = create_app(paths, load_all_params(demo_project.params))
    response = upload(app.test_client(), demo_project.alice.read_bytes(), "alice.png", "/api/identify")
    assert response.status_code == 409 and "not a faceid gallery" in response.get_json()["error"]
