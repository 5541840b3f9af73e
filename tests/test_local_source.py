"""faceid.data.local_source: a CelebA copy on disk, validated and linked or copied into place."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pytest

from faceid.config.dataset import DatasetParams
from faceid.data.celeba import (
    ALIGNED_DIR,
    ALIGNED_ZIP,
    ATTR_FILE,
    ATTRIBUTE_NAMES,
    BBOX_FILE,
    IDENTITY_FILE,
    LANDMARK_COLUMNS,
    LANDMARKS_WILD_FILE,
    PARTITION_FILE,
    WILD_DIR,
    landmarks_file,
    load_dataset,
)
from faceid.data.download import CELEBA_FILES
from faceid.data.local_source import LOCAL_SOURCE_FILE, LocalSourceError, import_local_copy
from faceid.data.prepare import COPIED_FROM, layout_files, prepare_dataset
from tests._params import section

N_IMAGES = 6


def write_tiny_celeba(
    root: Path, layout: str = "aligned", images: str = "zip", drive_folders: bool = False
) -> None:
    """A CelebA-format copy of N_IMAGES images: flat, or in Drive's Img/Anno/Eval folders."""
    names = [f"{i:06d}.jpg" for i in range(1, N_IMAGES + 1)]
    img, anno, evl = (
        (root / "Img", root / "Anno", root / "Eval") if drive_folders else (root, root, root)
    )
    for folder in (img, anno, evl):
        folder.mkdir(parents=True, exist_ok=True)
    signs = " ".join("1" if j % 3 == 0 else "-1" for j in range(len(ATTRIBUTE_NAMES)))
    attr_rows = [f"{n} {signs}" for n in names]
    (anno / ATTR_FILE).write_text(
        f"{N_IMAGES}\n{' '.join(ATTRIBUTE_NAMES)}\n" + "\n".join(attr_rows) + "\n"
    )
    (anno / IDENTITY_FILE).write_text("".join(f"{n} {1 + i // 2}\n" for i, n in enumerate(names)))
    (evl / PARTITION_FILE).write_text("".join(f"{n} {i % 3}\n" for i, n in enumerate(names)))
    landmarks = " ".join(str(v) for v in range(10, 20))
    (anno / landmarks_file(layout)).write_text(
        f"{N_IMAGES}\n{' '.join(LANDMARK_COLUMNS)}\n" + "".join(f"{n} {landmarks}\n" for n in names)
    )
    (anno / BBOX_FILE).write_text(
        f"{N_IMAGES}\nimage_id x_1 y_1 width height\n"
        + "".join(f"{n} 10 20 100 120\n" for n in names)
    )
    folder_name = ALIGNED_DIR if layout == "aligned" else WILD_DIR
    if images == "zip":
        with zipfile.ZipFile(img / f"{folder_name}.zip", "w") as archive:
            for n in names:
                archive.writestr(f"{folder_name}/{n}", f"jpeg bytes of {n}")
    else:
        (img / folder_name).mkdir()
        for n in names:
            (img / folder_name / n).write_text(f"jpeg bytes of {n}")


def _params(local_dir: Path | None, **overrides: object) -> DatasetParams:
    values = {
        "source": "local",
        "local_dir": None if local_dir is None else str(local_dir),
        "verify_md5": False,
    }
    values.update(overrides)
    return section(DatasetParams, **values)


def _rewrite(path: Path, edit) -> None:
    path.write_text(edit(path.read_text()))


# --------------------------------------------------------------------------- accepted


def _prepare(source: Path, tmp_path: Path, **overrides: object) -> tuple[Path, Path]:
    """The dataset stage's library call: (data/celeba, data/celeba-input)."""
    dest, inputs = tmp_path / "data" / "celeba", tmp_path / "data" / "celeba-input"
    prepare_dataset(dest, _params(source, **overrides), inputs)
    return dest, inputs


def test_zip_copy_is_read_in_place_through_links_outside_the_output(tmp_path):
    source = tmp_path / "mine"
    write_tiny_celeba(source)
    dest, inputs = _prepare(source, tmp_path)
    # the DVC output holds no link to the user's files, only what was read
    assert [p.name for p in dest.iterdir()] == [LOCAL_SOURCE_FILE]
    assert json.loads((dest / LOCAL_SOURCE_FILE).read_text())["layout"] == "aligned"
    entries = sorted(inputs.iterdir())
    assert [p.name for p in entries] == sorted(layout_files("aligned", ALIGNED_ZIP))
    for entry in entries:
        assert entry.is_symlink() and entry.resolve() == (source / entry.name).resolve()
    table = load_dataset(inputs, layout="aligned")
    assert list(table["image"]) == [f"{i:06d}.jpg" for i in range(1, N_IMAGES + 1)]
    assert list(table["identity"]) == [1, 1, 2, 2, 3, 3]


def test_extracted_folder_is_copied(tmp_path):
    source = tmp_path / "mine"
    write_tiny_celeba(source, images="folder")
    dest, inputs = _prepare(source, tmp_path, local_mode="copy")
    assert not any(p.is_symlink() for p in dest.iterdir())
    assert (dest / ALIGNED_DIR).is_dir()
    assert (dest / ALIGNED_DIR / "000003.jpg").read_text() == "jpeg bytes of 000003.jpg"
    assert not list(dest.glob("*.part"))
    assert len(load_dataset(dest, layout="aligned")) == N_IMAGES
    (source / ATTR_FILE).unlink()  # a copy, not a link
    assert (dest / ATTR_FILE).is_file()
    assert (inputs / ATTR_FILE).resolve() == (dest / ATTR_FILE).resolve()
    # the originals are linked too, so that DVC sees a change to them
    assert (inputs / COPIED_FROM / ALIGNED_DIR / "000003.jpg").resolve() == (
        source / ALIGNED_DIR / "000003.jpg"
    ).resolve()


def test_drive_folder_layout_is_found(tmp_path):
    source = tmp_path / "CelebA"
    write_tiny_celeba(source, drive_folders=True)
    _, inputs = _prepare(source, tmp_path)
    assert (inputs / ALIGNED_ZIP).resolve() == (source / "Img" / ALIGNED_ZIP).resolve()
    assert (inputs / PARTITION_FILE).resolve() == (source / "Eval" / PARTITION_FILE).resolve()
    assert len(load_dataset(inputs, layout="aligned")) == N_IMAGES


def test_wild_layout_from_extracted_folder_links_every_image(tmp_path):
    source = tmp_path / "mine"
    write_tiny_celeba(source, layout="wild", images="folder")
    _, inputs = _prepare(source, tmp_path, layout="wild")
    # a real folder of per-image links: DVC hashes through file links, not folder links
    assert (inputs / WILD_DIR).is_dir() and not (inputs / WILD_DIR).is_symlink()
    assert all(p.is_symlink() for p in (inputs / WILD_DIR).iterdir())
    assert (inputs / LANDMARKS_WILD_FILE).is_symlink()
    assert len(load_dataset(inputs, "wild")) == N_IMAGES


def test_rerun_with_another_source_drops_what_the_earlier_one_left(tmp_path):
    zipped, extracted = tmp_path / "zipped", tmp_path / "extracted"
    write_tiny_celeba(zipped)
    write_tiny_celeba(extracted, images="folder")
    dest = tmp_path / "data" / "celeba"
    write_tiny_celeba(dest)  # an earlier synthetic run's files
    dest, inputs = _prepare(zipped, tmp_path, local_mode="copy")
    assert sorted(p.name for p in dest.iterdir()) == sorted(layout_files("aligned", ALIGNED_ZIP))
    dest, inputs = _prepare(extracted, tmp_path)
    assert [p.name for p in dest.iterdir()] == [LOCAL_SOURCE_FILE]
    assert not (inputs / ALIGNED_ZIP).exists()
    assert (inputs / ALIGNED_DIR / "000001.jpg").resolve() == (extracted / ALIGNED_DIR / "000001.jpg").resolve()
    assert zipped.joinpath(ALIGNED_ZIP).is_file()


def test_dataset_folder_itself_is_validated_in_place(tmp_path):
    dest = tmp_path / "celeba"
    write_tiny_celeba(dest, drive_folders=True)
    (dest / "notes.txt").write_text("mine")
    before = {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    prepare_dataset(dest, _params(dest), tmp_path / "celeba-input")
    assert {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()} == before


def test_official_md5_checked_when_asked(tmp_path):
    source, dest = tmp_path / "mine", tmp_path / "celeba"
    write_tiny_celeba(source)
    with pytest.raises(
        LocalSourceError,
        match=rf"{ATTR_FILE}: MD5 mismatch, expected {CELEBA_FILES[ATTR_FILE].md5} \(official",
    ):
        import_local_copy(dest, _params(source, verify_md5=True))
    assert not dest.exists()


# --------------------------------------------------------------------------- rejected


def _drop_files(*names: str):
    def drop(source: Path) -> None:
        for name in names:
            (source / name).unlink()

    return drop


def _miscount_attributes(source: Path) -> None:
    _rewrite(source / ATTR_FILE, lambda text: text.replace(f"{N_IMAGES}\n", f"{N_IMAGES + 1}\n", 1))


def _drop_last_partition_row(source: Path) -> None:
    _rewrite(source / PARTITION_FILE, lambda text: "".join(text.splitlines(keepends=True)[:-1]))


def _zip_with_one_image(source: Path) -> None:
    with zipfile.ZipFile(source / ALIGNED_ZIP, "w") as archive:
        archive.writestr(f"{ALIGNED_DIR}/000001.jpg", "only one")


REJECTED = {
    "missing annotation files": (
        "zip",
        "aligned",
        _drop_files(IDENTITY_FILE, BBOX_FILE),
        rf"not a complete CelebA copy.*missing {IDENTITY_FILE}, {BBOX_FILE} \(searched",
    ),
    "missing images": (
        "zip",
        "aligned",
        _drop_files(ALIGNED_ZIP),
        rf"missing {ALIGNED_ZIP} or {ALIGNED_DIR}/ \(searched",
    ),
    "wild layout without its files": (
        "folder",
        "wild",
        lambda source: None,
        rf"'wild' layout; missing {LANDMARKS_WILD_FILE}, img_celeba.zip or img_celeba/",
    ),
    "count line disagrees with rows": (
        "zip",
        "aligned",
        _miscount_attributes,
        rf"{{source}}/{ATTR_FILE}: count line says 7 images but 6 rows follow\. Replace",
    ),
    "annotation files list different images": (
        "zip",
        "aligned",
        _drop_last_partition_row,
        rf"{{source}}/{PARTITION_FILE} and {ATTR_FILE} list different images: "
        rf"1 only in {ATTR_FILE} \(e.g. \['000006.jpg'\]\)",
    ),
    "images missing from the zip": (
        "zip",
        "aligned",
        _zip_with_one_image,
        rf"{{source}}/{ALIGNED_ZIP}: 5 of 6 annotated images are missing, e.g. 000002.jpg, .*\. Replace",
    ),
}


@pytest.mark.parametrize(("images", "layout", "damage", "message"), REJECTED.values(), ids=REJECTED)
def test_broken_copy_is_rejected_naming_the_problem(tmp_path, images, layout, damage, message):
    source, dest = tmp_path / "mine", tmp_path / "celeba"
    write_tiny_celeba(source, images=images)
    damage(source)
    with pytest.raises(LocalSourceError, match=message.format(source=re.escape(str(source)))) as info:
        import_local_copy(dest, _params(source, layout=layout))
    assert "dvc repro" not in str(info.value)  # the readers' advice does not fit a local copy
    assert not dest.exists()


def test_local_dir_must_be_set(tmp_path):
    with pytest.raises(
        LocalSourceError, match=r"dataset.local_dir: required when dataset.source is 'local'"
    ):
        import_local_copy(tmp_path / "celeba", _params(None))


def test_local_dir_must_exist(tmp_path):
    with pytest.raises(
        LocalSourceError, match=rf"dataset.local_dir: {tmp_path / 'nowhere'} is not a folder"
    ):
        import_local_copy(tmp_path / "celeba", _params(tmp_path / "nowhere"))
