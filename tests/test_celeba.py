"""Reading CelebA's annotation files and images: one table, clear errors on broken files."""

from __future__ import annotations

import zipfile

import pytest

from faceid.config.dataset import SyntheticParams
from faceid.data.celeba import (
    ATTRIBUTE_NAMES,
    CelebAFormatError,
    ImageArchive,
    load_dataset,
    read_annotations,
)
from faceid.data.synthetic.generate import generate
from tests._params import section


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("celeba")
    generate(
        root, section(SyntheticParams, n_identities=5, min_images_per_identity=2, max_images_per_identity=3, workers=1)
    , layout="aligned")
    return root


def _copy(dataset, tmp_path):
    for path in dataset.iterdir():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    return tmp_path


def test_table_has_one_row_per_image_with_every_annotation(dataset):
    table = load_dataset(dataset, layout="aligned")
    assert list(table.columns[:3]) == ["image", "identity", "partition"]
    assert set(ATTRIBUTE_NAMES) <= set(table.columns)
    assert table["Male"].dtype == bool
    assert {"lefteye_x", "rightmouth_y", "x_1", "height"} <= set(table.columns)
    assert table["image"].is_monotonic_increasing and table["image"].is_unique
    with ImageArchive.open(dataset, layout="aligned") as archive:
        assert archive.read(table["image"].iloc[0])[:2] == b"\xff\xd8"  # a JPEG, straight from the zip


def test_extracted_folder_works_like_the_zip(dataset, tmp_path):
    with zipfile.ZipFile(dataset / "img_align_celeba.zip") as archive:
        archive.extractall(tmp_path)
    for path in dataset.glob("*.txt"):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    table = load_dataset(tmp_path, layout="aligned")
    assert len(table) == len(load_dataset(dataset, layout="aligned"))


def _edit_line(path, number, new):
    lines = path.read_text().split("\n")
    lines[number - 1] = new
    path.write_text("\n".join(lines))


def test_malformed_line_names_file_and_line(dataset, tmp_path):
    root = _copy(dataset, tmp_path)
    _edit_line(root / "list_attr_celeba.txt", 4, "000002.jpg 1 -1")
    with pytest.raises(
        CelebAFormatError, match=r"list_attr_celeba.txt, line 4: expected an image name and 40 values, got 3"
    ):
        read_annotations(root, layout="aligned")


def test_non_integer_value_names_file_and_line(dataset, tmp_path):
    root = _copy(dataset, tmp_path)
    _edit_line(root / "list_landmarks_align_celeba.txt", 3, "000001.jpg 69 x 106 113 77 142 73 152 108 154")
    with pytest.raises(
        CelebAFormatError, match=r"list_landmarks_align_celeba.txt, line 3: 'x' for 000001.jpg is not an integer"
    ):
        read_annotations(root, layout="aligned")


def test_attribute_value_other_than_plus_minus_one(dataset, tmp_path):
    root = _copy(dataset, tmp_path)
    lines = (root / "list_attr_celeba.txt").read_text().split("\n")
    lines[2] = lines[2].replace(" 1", " 0", 1) if " 1" in lines[2] else lines[2].replace("-1", " 0", 1)
    (root / "list_attr_celeba.txt").write_text("\n".join(lines))
    with pytest.raises(CelebAFormatError, match=r"line 3: .* of 000001.jpg is 0, expected 1 or -1"):
        read_annotations(root, layout="aligned")


def test_count_line_must_match_rows(dataset, tmp_path):
    root = _copy(dataset, tmp_path)
    _edit_line(root / "list_bbox_celeba.txt", 1, "99")
    with pytest.raises(CelebAFormatError, match=r"list_bbox_celeba.txt: count line says 99 images but \d+ rows follow"):
        read_annotations(root, layout="aligned")


def test_files_listing_different_images(dataset, tmp_path):
    root = _copy(dataset, tmp_path)
    lines = (root / "identity_CelebA.txt").read_text().split("\n")
    (root / "identity_CelebA.txt").write_text("\n".join(lines[1:]))
    with pytest.raises(
        CelebAFormatError,
        match=r"identity_CelebA.txt and list_attr_celeba.txt list different images: "
        r"1 only in list_attr_celeba.txt \(e.g. \['000001.jpg'\]\)",
    ):
        read_annotations(root, layout="aligned")


def test_missing_file_says_how_to_make_it(dataset, tmp_path):
    root = _copy(dataset, tmp_path)
    (root / "list_eval_partition.txt").unlink()
    with pytest.raises(CelebAFormatError, match=r"list_eval_partition.txt: file missing; run `dvc repro dataset`"):
        read_annotations(root, layout="aligned")


def test_images_listed_but_absent_from_the_zip(dataset, tmp_path):
    root = _copy(dataset, tmp_path)
    with (
        zipfile.ZipFile(dataset / "img_align_celeba.zip") as src,
        zipfile.ZipFile(root / "img_align_celeba.zip", "w") as dst,
    ):
        for member in src.namelist()[2:]:
            dst.writestr(member, src.read(member))
    with pytest.raises(CelebAFormatError, match=r"2 of \d+ annotated images are missing, e.g. 000001.jpg, 000002.jpg"):
        load_dataset(root, layout="aligned")


def test_corrupt_zip_is_a_clear_error(dataset, tmp_path):
    root = _copy(dataset, tmp_path)
    (root / "img_align_celeba.zip").write_bytes(b"not a zip")
    with pytest.raises(CelebAFormatError, match=r"img_align_celeba.zip: not a readable zip"):
        load_dataset(root, layout="aligned")
