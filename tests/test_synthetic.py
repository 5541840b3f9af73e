"""The embedded dataset: CelebA's formats, determinism, realism for the real detector."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceid.config.dataset import SyntheticParams, WildParams
from faceid.data.celeba import ATTRIBUTE_NAMES, CELEBA_BASE_RATES, STUDY_ATTRIBUTES
from faceid.data.synthetic.generate import generate, person, plan_photos
from tests._params import section, write_params


def synthetic(**changes) -> SyntheticParams:
    """params.yaml's synthetic block with CelebA's own attribute base rates (params.yaml
    raises three of them for its small test partition): the rates these tests check."""
    return section(SyntheticParams, **{"attribute_rates": {}, **changes})


TINY = synthetic(n_identities=6, min_images_per_identity=3, max_images_per_identity=4, workers=1)


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _parse(path: Path, header: bool) -> tuple[list[str], list[list[str]]]:
    """A minimal CelebA parser, independent of faceid.data.celeba."""
    lines = path.read_text().split("\n")
    assert lines[-1] == "", f"{path.name} must end with a newline"
    lines = lines[:-1]
    if header:
        assert int(lines[0]) == len(lines) - 2, f"{path.name}: count line"
        return lines[1].split(), [line.split() for line in lines[2:]]
    return [], [line.split() for line in lines]


def test_same_params_give_identical_bytes(tmp_path):
    generate(tmp_path / "a", TINY, layout="aligned")
    generate(tmp_path / "b", TINY, layout="aligned")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    generate(tmp_path / "c", dataclasses.replace(TINY, seed=1), layout="aligned")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_worker_count_does_not_change_the_output(tmp_path):
    generate(tmp_path / "one", TINY, layout="aligned")
    generate(tmp_path / "two", dataclasses.replace(TINY, workers=2), layout="aligned")
    assert _digest(tmp_path / "one") == _digest(tmp_path / "two")


def test_files_follow_celeba_formats(tmp_path):
    generate(tmp_path, TINY, layout="aligned")
    names, rows = _parse(tmp_path / "list_attr_celeba.txt", header=True)
    assert tuple(names) == ATTRIBUTE_NAMES and len(names) == 40
    assert names[0] == "5_o_Clock_Shadow" and names[-1] == "Young"
    images = [r[0] for r in rows]
    n = len(images)
    assert images == [f"{i:06d}.jpg" for i in range(1, n + 1)]
    assert all(len(r) == 41 and set(r[1:]) <= {"1", "-1"} for r in rows)
    # CelebA pads every value to two characters: "000001.jpg -1  1  1 -1 …"
    first = (tmp_path / "list_attr_celeba.txt").read_text().split("\n")[2]
    assert first.startswith("000001.jpg ") and ("  1" in first or " -1" in first)

    _, ids = _parse(tmp_path / "identity_CelebA.txt", header=False)
    _, parts = _parse(tmp_path / "list_eval_partition.txt", header=False)
    assert [r[0] for r in ids] == images == [r[0] for r in parts]
    identity = {r[0]: int(r[1]) for r in ids}
    partition = {r[0]: int(r[1]) for r in parts}
    assert set(partition.values()) <= {0, 1, 2}
    # identity-disjoint partitions, numbered train first like CelebA
    by_identity: dict[int, set[int]] = {}
    for image in images:
        by_identity.setdefault(identity[image], set()).add(partition[image])
    assert all(len(p) == 1 for p in by_identity.values())
    assert [partition[i] for i in images] == sorted(partition[i] for i in images)

    header, marks = _parse(tmp_path / "list_landmarks_align_celeba.txt", header=True)
    assert header == ["lefteye_x", "lefteye_y", "righteye_x", "righteye_y", "nose_x", "nose_y",
                      "leftmouth_x", "leftmouth_y", "rightmouth_x", "rightmouth_y"]  # fmt: skip
    header, boxes = _parse(tmp_path / "list_bbox_celeba.txt", header=True)
    assert header == ["image_id", "x_1", "y_1", "width", "height"]

    with zipfile.ZipFile(tmp_path / "img_align_celeba.zip") as archive:
        members = archive.namelist()
        assert members == [f"img_align_celeba/{i}" for i in images]
        for member, mark, box in zip(members, marks, boxes, strict=True):
            image = Image.open(io.BytesIO(archive.read(member)))
            assert image.format == "JPEG" and image.size == (178, 218)
            xy = np.array(mark[1:], dtype=int).reshape(5, 2)
            x1, y1, w, h = (int(v) for v in box[1:])
            # eyes left of right, above the nose, above the mouth; all inside the box
            assert xy[0, 0] < xy[1, 0] and xy[3, 0] < xy[4, 0]
            assert xy[:2, 1].max() < xy[2, 1] < xy[3:, 1].min()
            assert (xy[:, 0] >= x1).all() and (xy[:, 0] <= x1 + w).all()
            assert (xy[:, 1] >= y1).all() and (xy[:, 1] <= y1 + h).all()


def test_wild_layout_varies_size_and_position(tmp_path):
    params = dataclasses.replace(TINY, wild=section(WildParams, min_size=200, max_size=300))
    generate(tmp_path, params, layout="wild")
    assert (tmp_path / "img_celeba.zip").exists() and (tmp_path / "list_landmarks_celeba.txt").exists()
    _, boxes = _parse(tmp_path / "list_bbox_celeba.txt", header=True)
    _, marks = _parse(tmp_path / "list_landmarks_celeba.txt", header=True)
    sizes, centres = set(), []
    with zipfile.ZipFile(tmp_path / "img_celeba.zip") as archive:
        for member, box, mark in zip(archive.namelist(), boxes, marks, strict=True):
            size = Image.open(io.BytesIO(archive.read(member))).size
            sizes.add(size)
            x1, y1, w, h = (int(v) for v in box[1:])
            assert 0 <= x1 and 0 <= y1 and x1 + w <= size[0] and y1 + h <= size[1]
            xy = np.array(mark[1:], dtype=int).reshape(5, 2)
            assert (xy[:, 0] > x1).all() and (xy[:, 0] < x1 + w).all()
            centres.append(((x1 + w / 2) / size[0], (y1 + h / 2) / size[1]))
    assert len(sizes) > 5
    assert np.std(np.array(centres)[:, 0]) > 0.03  # faces are not all centred


def test_attribute_rates_and_within_identity_variation():
    """Labels alone (no rendering): realistic base rates; A and notA within identities."""
    params = synthetic(n_identities=600, seed=3)
    rng = np.random.default_rng(0)
    labels, owners = [], []
    for identity in range(1, params.n_identities + 1):
        who = person(params.seed, identity, params)
        for _ in range(12):
            labels.append(who.photo(rng, 178, 218, 50.0, (89.0, 111.0))[1])
            owners.append(identity)
    owners = np.array(owners)
    for attribute in STUDY_ATTRIBUTES:
        values = np.array([lab[attribute] for lab in labels])
        assert abs(values.mean() - CELEBA_BASE_RATES[attribute]) < 0.6 * CELEBA_BASE_RATES[attribute] + 0.02, attribute
        per_identity = [values[owners == i] for i in range(1, params.n_identities + 1)]
        both = sum(v.any() and not v.all() for v in per_identity)
        assert both >= 10, f"{attribute}: only {both} identities have photos with and without it"
    male = np.array([lab["Male"] for lab in labels])
    lipstick = np.array([lab["Wearing_Lipstick"] for lab in labels])
    assert lipstick[~male].mean() > 5 * lipstick[male].mean()  # gender-linked, as in CelebA


def test_attribute_rates_param_overrides_base_rate():
    params = synthetic(n_identities=300, attribute_rates={"Eyeglasses": 0.4})
    rng = np.random.default_rng(0)
    worn = [person(params.seed, i, params).photo(rng, 178, 218, 50.0, (89, 111))[1]["Eyeglasses"]
            for i in range(1, 301) for _ in range(4)]  # fmt: skip
    assert 0.28 < np.mean(worn) < 0.52


def test_plan_is_identity_disjoint_and_sized_from_params():
    params = synthetic(n_identities=40, min_images_per_identity=5, max_images_per_identity=5)
    jobs, partition = plan_photos(params, "aligned")
    assert len(jobs) == 200
    counts = np.bincount(partition[1:], minlength=3)
    assert counts.tolist() == [28, 6, 6]


def test_real_mtcnn_finds_the_rendered_faces(tmp_path):
    """The bar: ≥ 90% of photos without glasses, hat or blur; landmarks where we wrote them."""
    from facenet_pytorch import MTCNN

    params = synthetic(n_identities=12, min_images_per_identity=4, max_images_per_identity=5, seed=7)
    generate(tmp_path, params, layout="aligned")
    _, rows = _parse(tmp_path / "list_attr_celeba.txt", header=True)
    _, marks = _parse(tmp_path / "list_landmarks_align_celeba.txt", header=True)
    hard = [ATTRIBUTE_NAMES.index(a) + 1 for a in ("Eyeglasses", "Wearing_Hat", "Blurry")]
    with zipfile.ZipFile(tmp_path / "img_align_celeba.zip") as archive:
        images = np.stack([np.asarray(Image.open(io.BytesIO(archive.read(m)))) for m in archive.namelist()])
    plain = np.array([all(r[k] == "-1" for k in hard) for r in rows])
    boxes, _, points = MTCNN(device="cpu").detect(images, landmarks=True)
    found = np.array([b is not None for b in boxes])
    assert plain.sum() >= 30
    assert found[plain].mean() >= 0.9
    truth = np.array([np.array(m[1:], dtype=float).reshape(5, 2) for m in marks])
    errors = [np.abs(points[i][0] - truth[i]).mean() for i in np.flatnonzero(found)]
    assert np.median(errors) < 4.0  # pixels, in 178x218 images


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d["dataset"]["synthetic"].update(n_identitys=5),
            r"unknown key 'dataset.synthetic.n_identitys'; valid keys: n_identities",
        ),
        (
            lambda d: d["dataset"]["synthetic"].update(n_identities="many"),
            r"dataset.synthetic.n_identities: expected an integer, got str 'many'",
        ),
        (
            lambda d: d["dataset"].update(source="imagenet"),
            r"dataset.source: 'imagenet' is not a valid choice; valid: synthetic, celeba, local",
        ),
        (
            lambda d: d["dataset"]["synthetic"].update(attribute_rates={"Glasses": 0.2}),
            r"unknown attribute 'Glasses'; valid: 5_o_Clock_Shadow",
        ),
        (lambda d: d.update(datasett={}), r"unknown key 'datasett'; valid keys: dataset"),
    ],
)
def test_bad_params_are_errors_naming_the_key(tmp_path, edit, message):
    from faceid.config.engine import ParamsError
    from faceid.config.whole import load_all_params

    with pytest.raises(ParamsError, match=message):
        load_all_params(write_params(tmp_path / "params.yaml", edit))
