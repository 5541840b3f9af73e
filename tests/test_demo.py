"""The demo application: gallery files, thresholds, `faceid enroll | identify`, the server."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from stages.evaluate import main as evaluate_stage

from faceid.cli import main
from faceid.config.demo import DemoParams
from faceid.config.engine import ParamsError
from faceid.config.whole import load_all_params
from faceid.demo.catalog import DemoPaths
from faceid.demo.faces import DemoInputError, load_embedder, read_image
from faceid.demo.gallery import (
    GalleryError,
    build_gallery,
    enroll_crops,
    load_gallery,
    save_gallery,
)
from faceid.demo.identify import NoEvaluationError, rank_identities, threshold_from_evaluation
from faceid.demo.server import Capacity, DemoError, create_app
from tests._demo_fixtures import (
    MODEL,
    PEOPLE,
    THRESHOLD,
    TILE,
    make_demo_project,
    render_face,
    side_by_side,
)
from tests._params import section, write_params


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    demo = make_demo_project(tmp_path_factory.mktemp("demo"))
    assert main(["enroll", "--folder", str(demo.people), *demo.dirs()]) == 0
    return demo


def identify_json(project, capsys, *photos, extra=()) -> tuple[int, dict]:
    capsys.readouterr()
    rc = main(["identify", *map(str, photos), "--json", *project.dirs(), *extra])
    return rc, json.loads(capsys.readouterr().out)


# --------------------------------------------------------------------------- gallery


def test_enroll_folder_writes_a_normalised_gallery_tied_to_the_model(project):
    gallery = load_gallery(project.galleries_dir / f"{MODEL}.npz")
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


def test_enroll_counts_unreadable_and_faceless_photos(project, tmp_path):
    people = tmp_path / "people"
    (people / "dave").mkdir(parents=True)
    (people / "dave" / "notes.jpg").write_text("not a photo")
    Image.new("RGB", (200, 240), (90, 140, 200)).save(people / "dave" / "sky.png")
    Image.fromarray(render_face(4)).save(people / "dave" / "face.png")
    out = tmp_path / "g.npz"
    assert main(["enroll", "--folder", str(people), "--out", str(out), *project.dirs()]) == 0
    gallery = load_gallery(out)
    assert list(gallery.sources) == ["dave/face.png"]
    assert gallery.meta["skipped"] == {"no_face": 1, "unreadable": 1}


def test_enroll_refuses_a_folder_without_identity_folders(project, tmp_path, capsys):
    assert main(["enroll", "--folder", str(tmp_path), "--out", str(tmp_path / "g.npz"), *project.dirs()]) == 2
    assert "no identity sub-folders" in capsys.readouterr().err


def test_enroll_crops_names_test_identities_by_id(project, tmp_path):
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
    params = load_all_params(project.params)
    embedder = load_embedder(project.models_dir / MODEL / "model.pt", params.crop, True, "cpu")
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


def test_the_demo_embeds_a_crop_exactly_as_the_evaluation_does(project, tmp_path):
    """The demo's threshold comes from the evaluation: the same crop must get the same
    embedding from the evaluate stage (its .npz) as from the demo, for a photo's face
    (detected and cropped by the demo) and for the cached crops `enroll_crops` reads."""
    info = torch.load(project.models_dir / MODEL / "model.pt", weights_only=False)
    info["params"]["image_size"] = 96  # the network's input differs from the crops: both resize
    torch.save(info, tmp_path / "model.pt")
    params = load_all_params(project.params)
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
        "--params", str(project.params), "--model", str(tmp_path / "model.pt"), "--name", "m",
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


# --------------------------------------------------------------------------- scoring


def test_rank_identities_max_and_template_by_hand():
    # b: one image close to the query, one far; a: one image in between
    embeddings = np.array([[1, 0, 0], [0.6, 0.8, 0], [0, 0, 1]], np.float32)
    gallery = build_gallery(embeddings, ["a", "b", "b"], ["", "", ""], {})
    query = np.array([[0.8, 0.6, 0.0]], np.float32)
    order, sims = rank_identities(query, gallery, "max", top_k=5)
    assert list(gallery.identities[order[0]]) == ["b", "a"]  # b's best image: 0.48 + 0.48
    np.testing.assert_allclose(sims[0], [0.96, 0.8], atol=1e-6)
    order, sims = rank_identities(query, gallery, "template", top_k=2)
    # b's template (0.6, 0.8, 1) / sqrt(2): similarity (0.48 + 0.48) / sqrt(2)
    assert list(gallery.identities[order[0]]) == ["a", "b"]
    np.testing.assert_allclose(sims[0], [0.8, 0.96 / np.sqrt(2)], atol=1e-6)


def test_threshold_from_evaluation_global_and_tar_at_far_rates(tmp_path):
    path = tmp_path / "eval" / "m.json"  # the headline file the demo is pointed at
    detail = tmp_path / "detail" / "m.json"  # where the thresholds are
    detail.parent.mkdir()
    detail.write_text(json.dumps({
        "global_threshold": {"task": "orig", "fmr": 0.001, "threshold": 0.41, "reason": None},
        "tasks": {"orig": {"all": {"tar_at_far": [
            {"far": 0.01, "threshold": 0.3, "reason": None},
            {"far": 0.0001, "threshold": None, "reason": "too few impostors"}]}}},
    }))  # fmt: skip
    assert threshold_from_evaluation(path, 0.001).value == 0.41
    assert threshold_from_evaluation(path, 0.01).value == 0.3
    assert threshold_from_evaluation(detail, 0.01).value == 0.3
    with pytest.raises(NoEvaluationError, match=r"no threshold at FMR 0.05 \(it has 0.0001, 0.001, 0.01\)"):
        threshold_from_evaluation(path, 0.05)
    with pytest.raises(NoEvaluationError, match="could not be measured \\(too few impostors\\)"):
        threshold_from_evaluation(path, 1e-4)
    with pytest.raises(NoEvaluationError, match=r"dvc repro evaluate@none.*--threshold"):
        threshold_from_evaluation(tmp_path / "eval" / "none.json", 0.001)


def test_demo_params_are_validated(tmp_path):
    path = tmp_path / "params.yaml"
    assert load_all_params(write_params(path, {"demo": {"top_k": 5}})).demo.top_k == 5
    with pytest.raises(ParamsError, match=r"demo.fmr: expected a rate in \(0, 1\)"):
        section(DemoParams, fmr=0.0)
    with pytest.raises(ParamsError, match=r"unknown key 'demo\.topk'"):
        load_all_params(write_params(path, lambda d: d["demo"].update(topk=5)))


def test_read_image_refuses_bad_input_by_name(tmp_path):
    with pytest.raises(DemoInputError, match=r"x\.jpg: not an image"):
        read_image(b"hello", "x.jpg", 10**6)
    buffer = io.BytesIO()
    Image.fromarray(render_face(1)).save(buffer, format="PNG")
    with pytest.raises(DemoInputError, match=r"y\.png: a corrupt or truncated image"):
        read_image(buffer.getvalue()[:2000], "y.png", 10**6)
    with pytest.raises(
        DemoInputError, match=r"z.png: refused by the pixel limit: 200x240 is 48,000 pixels, more than the 1,000"
    ):
        read_image(buffer.getvalue(), "z.png", 1000)
    with pytest.raises(DemoInputError, match="empty"):
        read_image(b"", "e.png", 1000)
    grey = io.BytesIO()
    Image.new("L", (30, 20), 7).save(grey, format="PNG")
    assert read_image(grey.getvalue(), "g.png", 1000).shape == (20, 30, 3)


# --------------------------------------------------------------------------- identify CLI


def test_identify_every_face_of_a_group_photo(project, capsys):
    rc, out = identify_json(project, capsys, project.group)
    assert rc == 0
    (photo,) = out["photos"]
    assert photo["threshold"]["value"] == THRESHOLD and "global threshold at FMR 0.001" in photo["threshold"]["source"]
    faces = photo["faces"]
    assert len(faces) == 3 and (photo["width"], photo["height"]) == (3 * TILE[0], TILE[1])
    for tile, face in enumerate(faces):  # one box per canvas, left to right
        x1, y1, x2, y2 = face["box"]
        assert tile * TILE[0] < (x1 + x2) / 2 < (tile + 1) * TILE[0] and 0 <= y1 < y2 <= TILE[1]
        assert len(face["candidates"]) == 2  # demo.top_k
        assert face["candidates"][0]["similarity"] >= face["candidates"][1]["similarity"]
        assert face["known"] == (face["similarity"] > THRESHOLD)
    alice, bob, stranger = faces
    assert (alice["name"], alice["known"]) == ("alice", True) and alice["similarity"] > 0.99
    assert bob["candidates"][0]["name"] == "bob"  # the same rendered face as bob's enrolled photo
    assert (stranger["name"], stranger["known"]) == ("unknown", False)


def test_identify_top1_of_enrolled_faces_pasted_together(project, capsys, tmp_path):
    photo = tmp_path / "three.png"
    Image.fromarray(side_by_side(*(render_face(i) for i in PEOPLE.values()))).save(photo)
    rc, out = identify_json(project, capsys, photo, extra=["--top-k", "3"])
    assert rc == 0
    assert [f["candidates"][0]["name"] for f in out["photos"][0]["faces"]] == list(PEOPLE)


def test_identify_text_output_and_threshold_override(project, capsys):
    capsys.readouterr()
    assert main(["identify", str(project.stranger), "--threshold", "-1", *project.dirs()]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"{project.stranger}: 1 face(s); threshold -1.0000 (--threshold)")
    assert "UNKNOWN" not in text  # everything is above -1
    _, out = identify_json(project, capsys, project.stranger)
    assert out["photos"][0]["faces"][0]["name"] == "unknown"


def test_identify_bad_files_are_named_and_the_rest_still_identified(project, capsys, tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(project.stranger.read_bytes()[:3000])
    empty_scene = tmp_path / "wall.png"
    Image.new("RGB", (300, 200), (180, 170, 160)).save(empty_scene)
    capsys.readouterr()
    rc = main(
        [
            "identify",
            str(text),
            str(corrupt),
            str(empty_scene),
            str(project.alice),
            str(tmp_path / "gone.jpg"),
            "--json",
            *project.dirs(),
        ]
    )
    captured = capsys.readouterr()
    assert rc == 1
    assert f"{text}: not an image" in captured.err
    assert f"{corrupt}: a corrupt or truncated image" in captured.err
    assert f"{empty_scene}: no face found" in captured.err
    assert f"{tmp_path / 'gone.jpg'}: cannot read the file" in captured.err
    photos = json.loads(captured.out)["photos"]
    assert [p["error"] is not None for p in photos] == [True, True, True, False, True]
    assert all(set(p) == set(photos[3]) for p in photos)  # every entry has the same keys
    assert photos[3]["faces"][0]["name"] == "alice"


def test_identify_without_evaluation_says_what_to_do(tmp_path, capsys, project):
    args = ["identify", str(project.alice), "--params", str(project.params), "--models-dir", str(project.models_dir),
            "--galleries-dir", str(project.galleries_dir), "--eval-dir", str(tmp_path)]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / (MODEL + '.json')}: no evaluation of this model yet" in err and "--threshold" in err
    assert main([*args, "--threshold", "0.5"]) == 0


def test_identify_refuses_a_gallery_of_another_model(project, tmp_path, capsys):
    gallery = load_gallery(project.galleries_dir / f"{MODEL}.npz")
    other = save_gallery(
        build_gallery(gallery.embeddings, gallery.names, gallery.sources, {**gallery.meta, "model_sha256": "0" * 64}),
        tmp_path / "o.npz",
    )
    assert main(["identify", str(project.alice), "--gallery", str(other), *project.dirs()]) == 2
    assert "its embeddings are not comparable: re-enrol" in capsys.readouterr().err
    assert main(["identify", str(project.alice), "--model", "nope", *project.dirs()]) == 2
    assert f"models in {project.models_dir}: {MODEL}" in capsys.readouterr().err


# --------------------------------------------------------------------------- server


@pytest.fixture(scope="module")
def client(project):
    paths = DemoPaths(project.models_dir, project.galleries_dir, project.eval_dir)
    return create_app(paths, load_all_params(project.params)).test_client()


def upload(client, data: bytes, name: str, url: str = "/"):
    return client.post(
        url, data={"photo": (io.BytesIO(data), name), "model": MODEL}, content_type="multipart/form-data"
    )


def test_server_page_boxes_names_and_unknowns(client, project):
    page = client.get("/")
    assert page.status_code == 200 and f'value="{MODEL}"' in page.text
    response = upload(client, project.group.read_bytes(), "group.png")
    assert response.status_code == 200
    assert response.text.count('<g class="face known" data-name="alice"') == 1
    assert response.text.count('class="face unknown"') >= 1 and "data:image/jpeg;base64," in response.text
    api = upload(client, project.group.read_bytes(), "group.png", "/api/identify").get_json()
    assert len(api["faces"]) == 3 and api["faces"][0]["name"] == "alice"


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


BAD_UPLOADS = {
    "text": (lambda: b"%PDF-1.4 not an image", 400, "doc.pdf: not an image"),
    "truncated": (lambda: _png(render_face(1))[:3000], 400, "doc.pdf: a corrupt or truncated image"),
    "oversized": (lambda: b"x" * (1024 * 1024 + 1), 413, "larger than 1 MB (demo.max_upload_mb)"),
    "no face": (lambda: _png(np.full((90, 120, 3), 60, np.uint8)), 422, "doc.pdf: no face found"),
    "pixel limit": (lambda: _png_header_only(12000, 12000), 400, "doc.pdf: refused by the pixel limit"),
}


@pytest.mark.parametrize("kind", list(BAD_UPLOADS))
def test_server_refuses_bad_uploads_and_keeps_serving(client, kind):
    make, status, message = BAD_UPLOADS[kind]
    response = upload(client, make(), "doc.pdf")
    assert response.status_code == status
    assert message in response.text and 'role="alert"' in response.text
    api = upload(client, make(), "doc.pdf", "/api/identify")
    assert api.status_code == status and message in api.get_json()["error"]
    assert client.get("/").status_code == 200


def test_server_lists_models_and_refuses_one_not_ready(client, project):
    (project.models_dir / "blurry-resnet50").mkdir(exist_ok=True)
    (project.models_dir / "blurry-resnet50" / "model.pt").write_bytes(b"")
    models = client.get("/api/models").get_json()
    assert models["default"] == MODEL
    assert {m["name"]: m["ready"] for m in models["models"]} == {"blurry-resnet50": False, MODEL: True}
    response = client.post("/", data={"photo": (io.BytesIO(b"x"), "a.png"), "model": "blurry-resnet50"})
    assert response.status_code == 409
    assert "model blurry-resnet50 is not ready: no gallery: run `faceid enroll" in response.text
    (project.models_dir / "blurry-resnet50" / "model.pt").unlink()
    (project.models_dir / "blurry-resnet50").rmdir()


def test_serve_starts_the_app_on_the_configured_address(project, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr("flask.Flask.run", lambda app, **kwargs: calls.append((app, kwargs)))
    assert main(["serve", "--port", "5123", *project.dirs()]) == 0
    ((app, kwargs),) = calls
    assert kwargs == {"host": "127.0.0.1", "port": 5123, "threaded": True}
    assert app.config["MAX_CONTENT_LENGTH"] == 1024 * 1024  # demo.max_upload_mb: 1
    assert "http://127.0.0.1:5123/" in capsys.readouterr().out


# --------------------------------------------------------------------------- small and odd photos


def _small_face_params(project, tmp_path):
    """The project's params with the repository params.yaml's crop.min_face_size (40 px)."""
    params = yaml.safe_load(project.params.read_text())
    params["crop"]["min_face_size"] = 40
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return ["--params", str(path), *project.dirs()[2:]]


def _small_face(tmp_path) -> Path:
    path = tmp_path / "small.png"
    Image.fromarray(render_face(PEOPLE["bob"])).resize((30, 36), Image.BILINEAR).save(path)
    return path


def test_a_30x36_face_is_a_per_file_error_in_the_json(project, capsys, tmp_path):
    small = _small_face(tmp_path)
    capsys.readouterr()
    rc = main(["identify", str(small), str(project.alice), "--json", *_small_face_params(project, tmp_path)])
    captured = capsys.readouterr()
    assert rc == 1
    photos = json.loads(captured.out)["photos"]
    assert "30x36 px, smaller than the smallest face the detector searches (40 px" in photos[0]["error"]
    assert photos[0]["faces"] == [] and set(photos[0]) == set(photos[1])
    assert photos[1]["error"] is None and len(photos[1]["faces"]) == 1


def test_enroll_keeps_the_other_photos_and_reports_the_small_one(project, tmp_path):
    people = tmp_path / "people"
    shutil.copytree(project.people, people)
    shutil.copy(_small_face(tmp_path), people / "bob" / "small.png")
    out = tmp_path / "g.npz"
    assert main(["enroll", "--folder", str(people), "--out", str(out), *_small_face_params(project, tmp_path)]) == 0
    gallery = load_gallery(out)
    assert sorted(gallery.names) == ["alice", "alice", "bob", "carol"]
    assert gallery.meta["skipped"] == {"extra_faces": 2, "too_small": 1}  # the group photo's others


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with one row of pixel data (truncated)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * (3 * width + 1)))


@pytest.mark.parametrize("side", [12000, 30000])  # below and above Pillow's own bomb limit
def test_a_pixel_limit_refusal_says_pixel_limit(side):
    with pytest.raises(DemoInputError, match=r"big.png: refused by the pixel limit") as caught:
        read_image(_png_header_only(side, side), "big.png", 50_000_000)
    assert "corrupt" not in str(caught.value)


def test_16_bit_greyscale_and_palette_pngs_are_converted(project, capsys, tmp_path):
    face = render_face(PEOPLE["alice"])
    grey = np.asarray(Image.fromarray(face).convert("L"), dtype=np.uint16) * 257  # full 16-bit range
    deep = tmp_path / "deep.png"
    Image.fromarray(grey).save(deep)  # uint16: mode I;16
    assert Image.open(deep).mode.startswith("I")
    palette = tmp_path / "palette.png"
    Image.fromarray(face).convert("P", palette=Image.ADAPTIVE, colors=256).save(palette)
    decoded = read_image(deep, "deep.png", 10**6)
    np.testing.assert_array_equal(decoded[..., 0], np.asarray(Image.fromarray(face).convert("L")))
    assert np.abs(read_image(palette, "palette.png", 10**6).astype(int) - face).mean() < 6
    rc, out = identify_json(project, capsys, deep, palette)
    assert rc == 0 and [len(p["faces"]) for p in out["photos"]] == [1, 1]


def test_transparent_pixels_are_laid_on_white():
    rgba = np.zeros((20, 30, 4), np.uint8)  # fully transparent black
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, format="PNG")
    assert read_image(buffer.getvalue(), "t.png", 10**6).min() == 255


def test_a_corrupt_gallery_is_a_clear_error_in_the_cli_and_the_server(project, capsys, tmp_path):
    galleries = tmp_path / "galleries"
    galleries.mkdir()
    good = (project.galleries_dir / f"{MODEL}.npz").read_bytes()
    (galleries / f"{MODEL}.npz").write_bytes(good[: len(good) // 2])  # cut short: BadZipFile
    dirs = ["--params", str(project.params), "--models-dir", str(project.models_dir),
            "--galleries-dir", str(galleries), "--eval-dir", str(project.eval_dir)]  # fmt: skip
    capsys.readouterr()
    assert main(["identify", str(project.alice), *dirs]) == 2
    err = capsys.readouterr().err
    assert f"error: {galleries / (MODEL + '.npz')}: not a faceid gallery (BadZipFile" in err
    app = create_app(DemoPaths(project.models_dir, galleries, project.eval_dir), load_all_params(project.params))
    response = upload(app.test_client(), project.alice.read_bytes(), "alice.png", "/api/identify")
    assert response.status_code == 409 and "not a faceid gallery" in response.get_json()["error"]


def test_the_server_answers_a_small_face_with_422(project, tmp_path):
    params = load_all_params(_small_face_params(project, tmp_path)[1])
    app = create_app(DemoPaths(project.models_dir, project.galleries_dir, project.eval_dir), params)
    response = upload(app.test_client(), _small_face(tmp_path).read_bytes(), "small.png", "/api/identify")
    assert response.status_code == 422 and "smaller than the smallest face" in response.get_json()["error"]


# --------------------------------------------------------------------------- load


def test_capacity_queues_then_refuses_with_503():
    capacity = Capacity(slots=1, waiting=1)
    inside, release, results = threading.Event(), threading.Event(), []

    def hold():
        with capacity.slot():
            inside.set()
            release.wait(10)
        results.append("held")

    def wait_for_slot():
        with capacity.slot():
            results.append("waited")

    holder, waiter = threading.Thread(target=hold), threading.Thread(target=wait_for_slot)
    holder.start()
    inside.wait(10)
    waiter.start()
    for _ in range(1000):  # until the waiter is admitted (it then blocks on the slot)
        if capacity._admitted._value == 0:
            break
        threading.Event().wait(0.01)
    with pytest.raises(DemoError) as caught, capacity.slot():
        pass
    assert caught.value.status == 503 and caught.value.headers == {"Retry-After": "5"}
    release.set()
    holder.join(10)
    waiter.join(10)
    assert results == ["held", "waited"]
    with capacity.slot():  # free again
        pass


def test_a_saturated_server_answers_503_with_retry_after(project, monkeypatch):
    params = load_all_params(project.params)
    params = dataclasses.replace(params, demo=dataclasses.replace(params.demo, max_concurrent=1, max_waiting=0))
    app = create_app(DemoPaths(project.models_dir, project.galleries_dir, project.eval_dir), params)
    models = app.extensions["faceid_models"]
    busy, release = threading.Event(), threading.Event()
    identify = models.identify

    def slow_identify(*args):
        busy.set()
        release.wait(30)
        return identify(*args)

    monkeypatch.setattr(models, "identify", slow_identify)
    first = []
    thread = threading.Thread(
        target=lambda: first.append(upload(app.test_client(), project.alice.read_bytes(), "a.png", "/api/identify"))
    )
    thread.start()
    assert busy.wait(30)
    refused = upload(app.test_client(), project.alice.read_bytes(), "b.png", "/api/identify")
    release.set()
    thread.join(30)
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
    assert "busy" in refused.get_json()["error"]
    assert first[0].status_code == 200
