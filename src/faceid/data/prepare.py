"""The dataset stage's library side: bring a CelebA-format folder into place and describe it.

Two folders come out. `data/celeba` (the DVC output) holds the rendered, downloaded or
copied files, or, for a local copy read in place, only a note of what is read. The input
folder (`data/celeba-input`, a DVC *dependency* of the crop stage, never an output) holds
one symlink per file the crop stage reads: the annotation files, the zip or every image of
the extracted folder (DVC follows file links when it hashes a dependency, not links to
folders). So a replaced photo or annotation changes the crop stage's dependency hash,
wherever the file lives, and DVC never writes to, links or caches the user's files. A
local copy in copy mode also gets links to its originals (COPIED_FROM): a changed
original re-runs the copy.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pandas as pd

from faceid.config.dataset import DatasetParams
from faceid.data import celeba
from faceid.data.local_source import LOCAL_SOURCE_FILE, find_local_files, import_local_copy

__all__ = ["COPIED_FROM", "describe", "layout_files", "link_inputs", "prepare_dataset"]

# in the input folder, for a local copy in copy mode: links to the originals it was copied from
COPIED_FROM = "copied-from"

log = logging.getLogger(__name__)


def prepare_dataset(out_dir: Path, params: DatasetParams, input_dir: Path) -> pd.DataFrame:
    """Fill `out_dir` from `params.source`, link what the crop stage reads into `input_dir`,
    drop what an earlier source left in `out_dir`; the validated annotation table."""
    out_dir = Path(out_dir)
    if params.source == "local":
        inputs = import_local_copy(out_dir, params)
    else:
        if params.source == "synthetic":
            from faceid.data.synthetic.generate import generate

            generate(out_dir, params.synthetic, params.layout)
        else:
            from faceid.data.download import fetch_celeba

            fetch_celeba(out_dir, params)
        images = celeba.images_location(out_dir, params.layout).name
        inputs = {name: out_dir / name for name in layout_files(params.layout, images)}
    in_place = params.source == "local" and Path(params.local_dir or "").expanduser().resolve() == out_dir.resolve()
    if not in_place:  # never prune the user's own folder
        own = {name for name, path in inputs.items() if path.parent.resolve() == out_dir.resolve()}
        _remove_leftovers(out_dir, own or {LOCAL_SOURCE_FILE})
    link_inputs(input_dir, inputs, out_dir)
    if params.source == "local" and params.local_mode == "copy" and not in_place:
        # the originals too, so that DVC sees a change to them (re-running this copy)
        link_inputs(
            input_dir / COPIED_FROM, find_local_files(Path(params.local_dir).expanduser(), params.layout), out_dir
        )
    return celeba.load_dataset(input_dir, params.layout)


def layout_files(layout: str, images: str) -> tuple[str, ...]:
    """The entries of a CelebA folder of `layout` whose images are `images` (zip or folder)."""
    return (celeba.ATTR_FILE, celeba.IDENTITY_FILE, celeba.PARTITION_FILE,
            celeba.landmarks_file(layout), celeba.BBOX_FILE, images)  # fmt: skip


def link_inputs(input_dir: Path, inputs: dict[str, Path], own_dir: Path) -> None:
    """Rebuild `input_dir`: a symlink per file of `inputs`; for an image folder outside
    `own_dir` (the user's, read in place) a real folder of per-image symlinks, as DVC does
    not hash through a link to a folder (a folder inside `own_dir` is hashed as its output).
    """
    input_dir, own = Path(input_dir), Path(own_dir).resolve()
    staging = input_dir.with_name(f".{input_dir.name}.tmp")
    _remove(staging)
    staging.mkdir(parents=True)
    for name, path in sorted(inputs.items()):
        target = path.resolve()
        if target.is_dir() and own not in target.parents:
            (staging / name).mkdir()
            for image in sorted(target.iterdir()):
                (staging / name / image.name).symlink_to(image.resolve())
        else:
            (staging / name).symlink_to(target, target_is_directory=target.is_dir())
    _remove(input_dir)
    os.replace(staging, input_dir)


def _remove(path: Path) -> None:
    """Delete a file, a link (never what it points to) or a folder of links."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)  # unlinks symlinks inside, never follows them


def _remove_leftovers(out_dir: Path, keep: set[str]) -> None:
    """Remove what an earlier source or layout left in `out_dir` (persisted across runs)."""
    for entry in sorted(out_dir.iterdir()):
        if entry.name in keep:
            continue
        log.info("%s: removed, left by an earlier dataset source or layout", entry)
        _remove(entry)


def describe(table: pd.DataFrame, params: DatasetParams) -> dict:
    """Counts for metrics/dataset.json: images, identities and attribute rates per partition."""
    summary: dict = {"source": params.source, "layout": params.layout, "images": len(table),
                     "identities": int(table["identity"].nunique())}  # fmt: skip
    for code, name in celeba.PARTITIONS.items():
        part = table[table["partition"] == code]
        summary[name] = {"images": len(part), "identities": int(part["identity"].nunique())}
    summary["attribute_rate"] = {
        a: round(float(table[a].mean()), 4) if len(table) else 0.0 for a in celeba.ATTRIBUTE_NAMES
    }
    # identities with photos both with and without the attribute: the A/notA genuine pairs
    summary["identities_with_both"] = {
        a: int((table.groupby("identity")[a].agg(["any", "all"]).pipe(lambda g: g["any"] & ~g["all"])).sum())
        for a in celeba.STUDY_ATTRIBUTES
    }
    return summary
