"""`faceid identify`: ranking by hand, the threshold from the evaluation, every face of a
photo named or unknown, bad files named while the rest are identified."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from faceid.cli import main
from faceid.config.demo import DemoParams
from faceid.config.engine import ParamsError
from faceid.config.whole import load_all_params
from faceid.demo.gallery import build_gallery, load_gallery, save_gallery
from faceid.demo.identify import NoEvaluationError, rank_identities, threshold_from_evaluation
from tests._demo_fixtures import (
    MODEL,
    PEOPLE,
    THRESHOLD,
    TILE,
    identify_json,
    render_face,
    side_by_side,
    small_face,
    small_face_params,
)
from tests._params import section, write_params


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



def test_identify_every_face_of_a_group_photo(demo_project, capsys):
    rc, out = identify_json(demo_project, capsys, demo_project.group)
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


def test_identify_top1_of_enrolled_faces_pasted_together(demo_project, capsys, tmp_path):
    photo = tmp_path / "three.png"
    Image.fromarray(side_by_side(*(render_face(i) for i in PEOPLE.values()))).save(photo)
    rc, out = identify_json(demo_project, capsys, photo, extra=["--top-k", "3"])
    assert rc == 0
    assert [f["candidates"][0]["name"] for f in out["photos"][0]["faces"]] == list(PEOPLE)


def test_identify_text_output_and_threshold_override(demo_project, capsys):
    capsys.readouterr()
    assert main(["identify", str(demo_project.stranger), "--threshold", "-1", *demo_project.dirs()]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"{demo_project.stranger}: 1 face(s); threshold -1.0000 (--threshold)")
    assert "UNKNOWN" not in text  # everything is above -1
    _, out = identify_json(demo_project, capsys, demo_project.stranger)
    assert out["photos"][0]["faces"][0]["name"] == "unknown"


def test_identify_bad_files_are_named_and_the_rest_still_identified(demo_project, capsys, tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(demo_project.stranger.read_bytes()[:3000])
    empty_scene = tmp_path / "wall.png"
    Image.new("RGB", (300, 200), (180, 170, 160)).save(empty_scene)
    capsys.readouterr()
    rc = main(
        [
            "identify",
            str(text),
            str(corrupt),
            str(empty_scene),
            str(demo_project.alice),
            str(tmp_path / "gone.jpg"),
            "--json",
            *demo_project.dirs(),
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


def test_identify_without_evaluation_says_what_to_do(tmp_path, capsys, demo_project):
    args = ["identify", str(demo_project.alice), "--params", str(demo_project.params),
            "--models-dir", str(demo_project.models_dir), "--galleries-dir", str(demo_project.galleries_dir),
            "--eval-dir", str(tmp_path)]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / (MODEL + '.json')}: no evaluation of this model yet" in err and "--threshold" in err
    assert main([*args, "--threshold", "0.5"]) == 0


def test_identify_refuses_a_gallery_of_another_model(demo_project, tmp_path, capsys):
    gallery = load_gallery(demo_project.galleries_dir / f"{MODEL}.npz")
    other = save_gallery(
        build_gallery(gallery.embeddings, gallery.names, gallery.sources, {**gallery.meta, "model_sha256": "0" * 64}),
        tmp_path / "o.npz",
    )
    assert main(["identify", str(demo_project.alice), "--gallery", str(other), *demo_project.dirs()]) == 2
    assert "its embeddings are not comparable: re-enrol" in capsys.readouterr().err
    assert main(["identify", str(demo_project.alice), "--model", "nope", *demo_project.dirs()]) == 2
    assert f"models in {demo_project.models_dir}: {MODEL}" in capsys.readouterr().err



def test_a_30x36_face_is_a_per_file_error_in_the_json(demo_project, capsys, tmp_path):
    small = small_face(tmp_path)
    capsys.readouterr()
    rc = main(["identify", str(small), str(demo_project.alice), "--json", *small_face_params(demo_project, tmp_path)])
    captured = capsys.readouterr()
    assert rc == 1
    photos = json.loads(captured.out)["photos"]
    assert "30x36 px, smaller than the smallest face the detector searches (40 px" in photos[0]["error"]
    assert photos[0]["faces"] == [] and set(photos[0]) == set(photos[1])
    assert photos[1]["error"] is None and len(photos[1]["faces"]) == 1
