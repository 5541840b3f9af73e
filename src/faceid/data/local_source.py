"""A CelebA copy already on disk (`dataset.source: local`), validated and brought into data/celeba.

`dataset.local_dir` may be a flat folder or the official Drive folder's layout
(`Img/`, `Anno/`, `Eval/`). The images may be the zip or the extracted folder
(`img_align_celeba.zip` | `img_align_celeba/`, or `img_celeba.zip` | `img_celeba/`
for the wild layout). The copy is checked with `faceid.data.celeba`'s own readers (count lines
vs rows, the same images in every annotation file, every image present), optionally
against the official MD5s, then read in place (link, the default: no extra disk) or copied.
Either way the crop stage reads it through data/celeba-input (faceid.data.prepare), whose links
DVC follows to hash the content: the user's files are read, never written.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

from faceid.common.fileio import atomic_write, file_digest
from faceid.config.dataset import DatasetParams
from faceid.data.celeba import (
    ALIGNED_DIR,
    ALIGNED_ZIP,
    ATTR_FILE,
    BBOX_FILE,
    IDENTITY_FILE,
    PARTITION_FILE,
    WILD_DIR,
    WILD_ZIP,
    CelebAFormatError,
    ImageArchive,
    check_images_present,
    images_location,
    landmarks_file,
    read_annotations,
)
from faceid.data.download import CELEBA_FILES
from faceid.errors import FaceidError

__all__ = ["LOCAL_SOURCE_FILE", "LocalSourceError", "find_local_files", "import_local_copy"]

log = logging.getLogger(__name__)

# data/celeba's only file in link mode: the layout and the entries read from dataset.local_dir
LOCAL_SOURCE_FILE = "local_source.json"

# Where the official Google Drive folder keeps each kind of file.
_SUBFOLDERS = ("", "Img", "Anno", "Eval")


class LocalSourceError(FaceidError, ValueError):
    """A local CelebA copy that is missing files or does not hold together."""


def import_local_copy(dest: Path, params: DatasetParams) -> dict[str, Path]:
    """Validate the copy in `params.local_dir`; copy it into `dest` (data/celeba) in copy mode.

    Returns name → file of every entry the crop stage reads (faceid.data.prepare links them into
    the crop stage's input folder, a DVC dependency by content). Link mode writes no link
    into `dest`: a DVC output holding links to the user's files would let DVC hash them
    (or not, through a folder link) and, with `cache.type: hardlink`, hard-link them into
    its cache read-only. `dest` then holds only LOCAL_SOURCE_FILE, naming what was linked.
    """
    dest = Path(dest)
    source = _source_dir(params.local_dir)
    located = find_local_files(source, params.layout)
    if params.verify_md5:
        _check_md5(located)
    _check_consistent(located, params.layout)
    if dest.exists() and dest.resolve() == source.resolve():
        log.info("%s: dataset.local_dir is the dataset folder itself; validated in place", dest)
        return located
    dest.mkdir(parents=True, exist_ok=True)
    if params.local_mode == "link":
        described = {"layout": params.layout, "entries": sorted(located)}
        atomic_write(dest / LOCAL_SOURCE_FILE, lambda tmp: tmp.write_text(json.dumps(described, indent=1) + "\n"))
        log.info("%s: %d entries of %s read in place (not linked into the DVC output)", dest, len(located), source)
        return located
    for name, path in located.items():
        _copy(path, dest / name)
    log.info("%s: copied %d entries from %s", dest, len(located), source)
    return {name: dest / name for name in located}


def find_local_files(source: Path, layout: str) -> dict[str, Path]:
    """Name in data/celeba → path in `source`, for every entry `layout` needs.

    Missing entries are one error naming all of them and the folders searched.
    """
    source = Path(source)
    zip_name, dir_name = (ALIGNED_ZIP, ALIGNED_DIR) if layout == "aligned" else (WILD_ZIP, WILD_DIR)
    located: dict[str, Path] = {}
    missing: list[str] = []
    for name in (ATTR_FILE, IDENTITY_FILE, PARTITION_FILE, landmarks_file(layout), BBOX_FILE):
        path = _find(source, name, want_dir=False)
        if path is None:
            missing.append(name)
        else:
            located[name] = path
    # the zip first, as faceid.data.celeba.images_location prefers it
    for name, want_dir in ((zip_name, False), (dir_name, True)):
        path = _find(source, name, want_dir=want_dir)
        if path is not None:
            located[name] = path
            break
    else:
        missing.append(f"{zip_name} or {dir_name}/")
    if missing:
        searched = ", ".join(str(source / sub) for sub in _SUBFOLDERS)
        raise LocalSourceError(
            f"dataset.local_dir {source}: not a complete CelebA copy for the {layout!r} layout; "
            f"missing {', '.join(missing)} (searched {searched}). Add the missing files from "
            f"CelebA's official distribution, or check dataset.layout (see docs/celeba.md)"
        )
    return located


# --------------------------------------------------------------------------- checks


def _source_dir(local_dir: str | None) -> Path:
    if local_dir is None:
        raise LocalSourceError(
            "dataset.local_dir: required when dataset.source is 'local'; set it to the "
            "folder holding your CelebA copy (see docs/celeba.md)"
        )
    source = Path(local_dir).expanduser()
    if not source.is_dir():
        raise LocalSourceError(
            f"dataset.local_dir: {source} is not a folder; set it to the folder holding "
            f"your CelebA copy"
        )
    return source


def _find(source: Path, name: str, want_dir: bool) -> Path | None:
    for sub in _SUBFOLDERS:
        path = source / sub / name
        if path.is_dir() if want_dir else path.is_file():
            return path
    return None


def _check_md5(located: dict[str, Path]) -> None:
    for name, path in located.items():
        official = CELEBA_FILES.get(name)
        if official is None or path.is_dir():
            continue
        found = file_digest(path, "md5")
        if found != official.md5:
            raise LocalSourceError(
                f"{path}: MD5 mismatch, expected {official.md5} (official {name}), found "
                f"{found}; replace it with the official file, or set dataset.verify_md5: "
                f"false to accept a modified copy"
            )


def _check_consistent(located: dict[str, Path], layout: str) -> None:
    """Run faceid.data.celeba's readers over the copy, through a folder of links to it.

    The links let the readers see one flat folder whatever the copy's layout; their
    paths are swapped back for the real ones in error messages.
    """
    with tempfile.TemporaryDirectory(prefix="celeba-check-") as staging:
        root = Path(staging)
        for name, path in located.items():
            (root / name).symlink_to(path.resolve(), target_is_directory=path.is_dir())
        try:
            table = read_annotations(root, layout)
            with ImageArchive(images_location(root, layout)) as archive:
                check_images_present(table, archive)
        except CelebAFormatError as exc:
            message = str(exc)
            for name, path in located.items():
                message = message.replace(str(root / name), str(path))
            # the readers' own advice (re-run the dataset stage) does not fit a local copy
            message = re.sub(r"; [^;]*`dvc repro dataset`\)?$", "", message)
            raise LocalSourceError(
                f"dataset.local_dir: the CelebA copy does not hold together: {message}. "
                f"Replace the file named above with CelebA's original"
            ) from exc
    log.info("local CelebA copy: %d images, annotation files consistent", len(table))


# --------------------------------------------------------------------------- placing


def _copy(source: Path, target: Path) -> None:
    _remove(target)
    # copy under a temporary name so an interrupted copy never looks complete
    part = target.with_name(target.name + ".part")
    _remove(part)
    if source.is_file():
        atomic_write(target, lambda tmp: shutil.copy2(source, tmp), suffix=".part")
        return
    # a folder: atomic_write cleans up a failed temporary file only, not a tree
    shutil.copytree(source, part)
    os.replace(part, target)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
