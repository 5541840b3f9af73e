"""CelebA's file formats: constants, the annotation table, and images read from the archive.

Real CelebA and the embedded synthetic dataset share this layout under one folder
(data/celeba):

    img_align_celeba.zip              178x218 aligned JPEGs, 000001.jpg ...   (aligned layout)
    img_celeba.zip | img_celeba/      in-the-wild JPEGs of varied sizes        (wild layout)
    list_attr_celeba.txt              count, 40 names, `image ±1 x40`
    identity_CelebA.txt               `image identity`
    list_eval_partition.txt           `image 0|1|2` (train/val/test, identity-disjoint)
    list_landmarks_align_celeba.txt   count, header, `image x y x5` in aligned images
    list_landmarks_celeba.txt         the same in in-the-wild images (wild layout)
    list_bbox_celeba.txt              count, header, `image x_1 y_1 width height`

Images are read straight from the zip (or an extracted folder): 200k loose files would
make DVC status crawl and waste inodes.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from faceid.errors import FaceidError

ATTRIBUTE_NAMES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald",
    "Bangs", "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair",
    "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair",
    "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache",
    "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose",
    "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair",
    "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick",
    "Wearing_Necklace", "Wearing_Necktie", "Young",
)  # fmt: skip

# Share of positive labels in real CelebA (all 202,599 images).
CELEBA_BASE_RATES: dict[str, float] = {
    "5_o_Clock_Shadow": 0.111, "Arched_Eyebrows": 0.267, "Attractive": 0.513,
    "Bags_Under_Eyes": 0.205, "Bald": 0.022, "Bangs": 0.152, "Big_Lips": 0.241,
    "Big_Nose": 0.234, "Black_Hair": 0.239, "Blond_Hair": 0.148, "Blurry": 0.051,
    "Brown_Hair": 0.205, "Bushy_Eyebrows": 0.142, "Chubby": 0.058, "Double_Chin": 0.047,
    "Eyeglasses": 0.065, "Goatee": 0.063, "Gray_Hair": 0.042, "Heavy_Makeup": 0.387,
    "High_Cheekbones": 0.455, "Male": 0.417, "Mouth_Slightly_Open": 0.483,
    "Mustache": 0.042, "Narrow_Eyes": 0.115, "No_Beard": 0.835, "Oval_Face": 0.284,
    "Pale_Skin": 0.043, "Pointy_Nose": 0.277, "Receding_Hairline": 0.080,
    "Rosy_Cheeks": 0.066, "Sideburns": 0.057, "Smiling": 0.482, "Straight_Hair": 0.208,
    "Wavy_Hair": 0.320, "Wearing_Earrings": 0.189, "Wearing_Hat": 0.048,
    "Wearing_Lipstick": 0.472, "Wearing_Necklace": 0.123, "Wearing_Necktie": 0.073,
    "Young": 0.774,
}  # fmt: skip

# The six attributes the study reports on.
STUDY_ATTRIBUTES: tuple[str, ...] = (
    "Eyeglasses", "Blurry", "Wearing_Lipstick", "Wearing_Hat", "Heavy_Makeup", "Blond_Hair",
)  # fmt: skip

LANDMARK_NAMES: tuple[str, ...] = ("lefteye", "righteye", "nose", "leftmouth", "rightmouth")
LANDMARK_COLUMNS: tuple[str, ...] = tuple(f"{n}_{a}" for n in LANDMARK_NAMES for a in "xy")
BBOX_COLUMNS: tuple[str, ...] = ("x_1", "y_1", "width", "height")

ALIGNED_SIZE = (178, 218)  # (width, height) of img_align_celeba images

ATTR_FILE = "list_attr_celeba.txt"
IDENTITY_FILE = "identity_CelebA.txt"
PARTITION_FILE = "list_eval_partition.txt"
LANDMARKS_ALIGN_FILE = "list_landmarks_align_celeba.txt"
LANDMARKS_WILD_FILE = "list_landmarks_celeba.txt"
BBOX_FILE = "list_bbox_celeba.txt"
ALIGNED_ZIP = "img_align_celeba.zip"
ALIGNED_DIR = "img_align_celeba"
WILD_ZIP = "img_celeba.zip"
WILD_DIR = "img_celeba"

PARTITIONS = {0: "train", 1: "val", 2: "test"}


class CelebAFormatError(FaceidError, ValueError):
    """An annotation file or image archive that does not follow CelebA's format."""


def landmarks_file(layout: str) -> str:
    return LANDMARKS_ALIGN_FILE if layout == "aligned" else LANDMARKS_WILD_FILE


def images_location(root: Path, layout: str) -> Path:
    """The zip, or else the extracted folder, holding the layout's images."""
    zip_name, dir_name = (ALIGNED_ZIP, ALIGNED_DIR) if layout == "aligned" else (WILD_ZIP, WILD_DIR)
    for candidate in (root / zip_name, root / dir_name):
        if candidate.exists():
            return candidate
    raise CelebAFormatError(
        f"{root}: neither {zip_name} nor {dir_name}/ found for the {layout!r} layout; "
        "run `dvc repro dataset` (or check dataset.layout in params.yaml)"
    )


# --------------------------------------------------------------------------- parsing


def _read_rows(path: Path, n_values: int, header: bool) -> tuple[list[str], list[list[str]], list[str]]:
    """Split a CelebA annotation file into (image names, value rows, header names).

    Files with `header=True` start with a count line and a line of column names; the
    count must match the rows. Every row must hold an image name and `n_values` values.
    """
    if not path.exists():
        raise CelebAFormatError(f"{path}: file missing; run `dvc repro dataset`")
    lines = path.read_text().splitlines()
    names: list[str] = []
    start = 0
    expected_count = None
    if header:
        if len(lines) < 2:
            raise CelebAFormatError(f"{path}: expected a count line and a header line")
        try:
            expected_count = int(lines[0].strip())
        except ValueError:
            raise CelebAFormatError(f"{path}, line 1: expected the image count, got {lines[0]!r}") from None
        names = lines[1].split()
        start = 2
    images: list[str] = []
    rows: list[list[str]] = []
    for number, line in enumerate(lines[start:], start=start + 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != n_values + 1:
            raise CelebAFormatError(
                f"{path}, line {number}: expected an image name and {n_values} values, "
                f"got {len(parts)} fields: {line[:80]!r}"
            )
        images.append(parts[0])
        rows.append(parts[1:])
    if expected_count is not None and expected_count != len(images):
        raise CelebAFormatError(
            f"{path}: count line says {expected_count} images but {len(images)} rows follow"
        )
    return images, rows, names


def _to_int(path: Path, images: list[str], rows: list[list[str]], start_line: int) -> np.ndarray:
    try:
        return np.asarray(rows, dtype=np.int64).reshape(len(rows), -1)
    except ValueError:
        for i, row in enumerate(rows):
            for value in row:
                try:
                    int(value)
                except ValueError:
                    raise CelebAFormatError(
                        f"{path}, line {i + start_line}: {value!r} for {images[i]} is not an integer"
                    ) from None
        raise


def read_attributes(path: Path) -> pd.DataFrame:
    images, rows, names = _read_rows(path, len(ATTRIBUTE_NAMES), header=True)
    if tuple(names) != ATTRIBUTE_NAMES:
        raise CelebAFormatError(
            f"{path}, line 2: expected CelebA's 40 attribute names in official order, got {names[:5]}…"
        )
    values = _to_int(path, images, rows, 3)
    bad = np.argwhere((values != 1) & (values != -1))
    if len(bad):
        i, j = bad[0]
        raise CelebAFormatError(
            f"{path}, line {i + 3}: {ATTRIBUTE_NAMES[j]} of {images[i]} is {values[i, j]}, expected 1 or -1"
        )
    frame = pd.DataFrame(values == 1, columns=list(ATTRIBUTE_NAMES))
    frame.insert(0, "image", images)
    return frame


def _read_table(path: Path, columns: tuple[str, ...], header: bool) -> pd.DataFrame:
    images, rows, _ = _read_rows(path, len(columns), header=header)
    values = _to_int(path, images, rows, 3 if header else 1)
    frame = pd.DataFrame(values, columns=list(columns))
    frame.insert(0, "image", images)
    return frame


def read_annotations(root: str | Path, layout: str) -> pd.DataFrame:
    """All annotation files of a CelebA-format folder as one table, one row per image.

    Columns: image, identity, partition (0 train, 1 val, 2 test), the 40 attributes as
    bool, the five landmarks of the layout's images (lefteye_x … rightmouth_y) and the
    bbox (x_1, y_1, width, height; in CelebA it refers to the in-the-wild images).
    Sorted by image name. Files that disagree on the set of images are an error.
    """
    root = Path(root)
    attrs = read_attributes(root / ATTR_FILE)
    tables = {
        IDENTITY_FILE: _read_table(root / IDENTITY_FILE, ("identity",), header=False),
        PARTITION_FILE: _read_table(root / PARTITION_FILE, ("partition",), header=False),
        landmarks_file(layout): _read_table(root / landmarks_file(layout), LANDMARK_COLUMNS, header=True),
        BBOX_FILE: _read_table(root / BBOX_FILE, BBOX_COLUMNS, header=True),
    }
    frame = attrs
    reference = pd.Index(attrs["image"])
    if reference.has_duplicates:
        raise CelebAFormatError(f"{root / ATTR_FILE}: duplicate image {reference[reference.duplicated()][0]}")
    for name, table in tables.items():
        other = pd.Index(table["image"])
        if other.has_duplicates:
            raise CelebAFormatError(f"{root / name}: duplicate image {other[other.duplicated()][0]}")
        missing = reference.difference(other)
        extra = other.difference(reference)
        if len(missing) or len(extra):
            raise CelebAFormatError(
                f"{root / name} and {ATTR_FILE} list different images: "
                f"{len(missing)} only in {ATTR_FILE} (e.g. {list(missing[:3])}), "
                f"{len(extra)} only in {name} (e.g. {list(extra[:3])})"
            )
        frame = frame.merge(table, on="image", how="left", validate="one_to_one")
    bad = ~frame["partition"].isin(list(PARTITIONS))
    if bad.any():
        raise CelebAFormatError(
            f"{root / PARTITION_FILE}: partition of {frame['image'][bad].iloc[0]} is "
            f"{frame['partition'][bad].iloc[0]}, expected 0, 1 or 2"
        )
    frame["partition"] = frame["partition"].astype(np.int8)
    frame["identity"] = frame["identity"].astype(np.int32)
    columns = ["image", "identity", "partition", *ATTRIBUTE_NAMES, *LANDMARK_COLUMNS, *BBOX_COLUMNS]
    return frame[columns].sort_values("image", ignore_index=True)


# --------------------------------------------------------------------------- images


@dataclass
class ImageArchive:
    """Read-only access to the images of a layout, from the zip or an extracted folder.

    Not thread-safe across threads for zips: open one per worker.
    """

    location: Path

    def __post_init__(self) -> None:
        self.location = Path(self.location)
        self._zip: zipfile.ZipFile | None = None
        self._members: dict[str, str] = {}
        if self.location.suffix == ".zip":
            try:
                self._zip = zipfile.ZipFile(self.location)
            except zipfile.BadZipFile as exc:
                raise CelebAFormatError(
                    f"{self.location}: not a readable zip ({exc}); re-run `dvc repro dataset`"
                ) from exc
            for member in self._zip.namelist():
                if not member.endswith("/"):
                    self._members[member.rsplit("/", 1)[-1]] = member

    @classmethod
    def open(cls, root: str | Path, layout: str) -> ImageArchive:
        return cls(images_location(Path(root), layout))

    def names(self) -> set[str]:
        if self._zip is not None:
            return set(self._members)
        return {p.name for p in self.location.iterdir() if p.is_file()}

    def read(self, name: str) -> bytes:
        if self._zip is not None:
            member = self._members.get(name)
            if member is None:
                raise KeyError(f"{name} not in {self.location}")
            return self._zip.read(member)
        return (self.location / name).read_bytes()

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> ImageArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_images_present(table: pd.DataFrame, archive: ImageArchive, show: int = 5) -> None:
    """Every image the annotations list must be in the archive."""
    absent = sorted(set(table["image"]) - archive.names())
    if absent:
        raise CelebAFormatError(
            f"{archive.location}: {len(absent)} of {len(table)} annotated images are missing, "
            f"e.g. {', '.join(absent[:show])}; re-create the dataset (`dvc repro dataset`)"
        )


def load_dataset(root: str | Path, layout: str) -> pd.DataFrame:
    """The annotation table, after checking that every listed image is in the archive."""
    table = read_annotations(root, layout)
    with ImageArchive.open(root, layout) as archive:
        check_images_present(table, archive)
    return table
