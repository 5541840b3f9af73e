"""metrics/crop_review.png: the accepted crops a person should look at first.

The detections of lowest probability are where a wrong face (a print, a poster, a blob)
is most likely to have passed the acceptance rules (faceid.crop.accept); a contact sheet
of them, captioned with image and probability, makes a look at them a minute's work.
The sheet is a small git-tracked output: same manifest and crops → same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from faceid.common.fileio import atomic_write
from faceid.crop.shards import shard_path

__all__ = ["review_rows", "write_review"]

TILE = 96  # pixels per crop on the sheet
CAPTION = 14  # pixels of caption under each crop
COLUMNS = 8


def review_rows(manifest: pd.DataFrame, count: int) -> pd.DataFrame:
    """The `count` detected images of lowest probability (ties by image name)."""
    detected = manifest[manifest["status"] == "detected"]
    return detected.sort_values(["probability", "image"], kind="stable").head(count)


def write_review(path: str | Path, manifest: pd.DataFrame, crops_dir: str | Path, count: int) -> int:
    """Write the contact sheet of `review_rows` to `path` (PNG); the number of crops on it."""
    rows = review_rows(manifest, count)
    n = len(rows)
    columns = max(1, min(COLUMNS, n))
    sheet = Image.new("RGB", (columns * TILE, max(1, -(-n // columns)) * (TILE + CAPTION)), "white")
    draw = ImageDraw.Draw(sheet)
    shards: dict[int, np.ndarray] = {}
    for k, (image, shard, row, probability) in enumerate(
        rows[["image", "shard", "row", "probability"]].itertuples(index=False)
    ):
        if shard not in shards:
            shards[shard] = np.load(shard_path(crops_dir, int(shard)), mmap_mode="r")
        tile = Image.fromarray(np.asarray(shards[shard][int(row)])).resize((TILE, TILE), Image.BILINEAR)
        x, y = (k % columns) * TILE, (k // columns) * (TILE + CAPTION)
        sheet.paste(tile, (x, y))
        draw.text((x + 2, y + TILE + 1), f"{Path(image).stem} {probability:.3f}", fill="black")
    atomic_write(Path(path), lambda tmp: sheet.save(tmp, format="PNG"))
    return n
