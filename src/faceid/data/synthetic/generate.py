"""Write the embedded dataset: rendered people in CelebA's own files and formats.

Same params → identical bytes: every photo is rendered from its own seed
(`SeedSequence([seed, identity, photo])`), so the worker count does not change the
output, and the zip is written with fixed timestamps.
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import os
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from faceid.common.fileio import atomic_write
from faceid.common.progress import progress
from faceid.config.dataset import SyntheticParams
from faceid.data import celeba
from faceid.data.synthetic import exactmath as em
from faceid.data.synthetic.people import Person, base_rates
from faceid.data.synthetic.render import face_box, five_points, render

log = logging.getLogger(__name__)

# In CelebA's aligned images the point between the eyes sits near (89, 111) and the
# eyes are ≈38 px apart: 50 px per canonical unit puts our eyes (u = ±0.38) there.
ALIGNED_CENTER = (89.0, 111.0)
ALIGNED_SCALE = 50.0
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class PhotoJob:
    """Everything needed to render one photo in a worker process."""

    index: int  # 0-based position in the dataset (file 000001.jpg is index 0)
    identity: int  # 1-based identity number
    photo: int  # photo number within the identity
    layout: str
    seed: int
    params: SyntheticParams


@dataclass(frozen=True)
class Photo:
    index: int
    jpeg: bytes
    labels: dict[str, bool]
    landmarks: np.ndarray  # (5, 2) pixels
    bbox: tuple[int, int, int, int]  # x_1, y_1, width, height


def image_name(index: int) -> str:
    return f"{index + 1:06d}.jpg"


def plan_photos(params: SyntheticParams, layout: str) -> tuple[list[PhotoJob], np.ndarray]:
    """The dataset's photos in file order, and each identity's partition (index 0 unused).

    Identities are split train/val/test by `partition_fractions`; like CelebA, files are
    numbered train first, then val, then test, in shuffled order within each.
    """
    rng = np.random.default_rng(params.seed)
    n = params.n_identities
    counts = rng.integers(params.min_images_per_identity, params.max_images_per_identity + 1, size=n)
    fractions = np.asarray(params.partition_fractions, dtype=float)
    bounds = np.round(np.cumsum(fractions / fractions.sum()) * n).astype(int)
    order = rng.permutation(n)
    partition = np.zeros(n + 1, dtype=np.int8)
    for p, (lo, hi) in enumerate(zip([0, *bounds[:-1]], bounds, strict=True)):
        partition[order[lo:hi] + 1] = p
    photos = [(identity, k) for identity in range(1, n + 1) for k in range(counts[identity - 1])]
    photos = [photos[i] for i in rng.permutation(len(photos))]
    photos.sort(key=lambda ik: partition[ik[0]])  # stable: shuffled within a partition
    jobs = [
        PhotoJob(index=i, identity=identity, photo=k, layout=layout, seed=params.seed, params=params)
        for i, (identity, k) in enumerate(photos)
    ]
    return jobs, partition


def person(seed: int, identity: int, params: SyntheticParams) -> Person:
    rng = np.random.default_rng(np.random.SeedSequence([seed, identity]))
    return Person(rng, base_rates(params.attribute_rates))


def render_photo(job: PhotoJob) -> Photo:
    params = job.params
    who = person(job.seed, job.identity, params)
    rng = np.random.default_rng(np.random.SeedSequence([job.seed, job.identity, job.photo, 1]))
    if job.layout == "aligned":
        width, height = celeba.ALIGNED_SIZE
        scale = ALIGNED_SCALE
        center = (ALIGNED_CENTER[0] + rng.normal(0, 1.5), ALIGNED_CENTER[1] + rng.normal(0, 1.5))
    else:
        wild = params.wild
        width, height = (int(x) for x in rng.integers(wild.min_size, wild.max_size + 1, size=2))
        scale = ALIGNED_SCALE * rng.uniform(wild.min_face_scale, wild.max_face_scale)
        # the whole head (≈ ±1.3 units wide, -1.6..+1.6 tall around the eyes) stays inside
        mx, my = min(1.4 * scale, width / 2), min(1.6 * scale, height / 2)
        center = (rng.uniform(mx, width - mx), rng.uniform(my, height - my))
    appearance, labels = who.photo(rng, width, height, scale, center)
    pixels = camera(render(who.identity, appearance, width, height), params, rng)
    if params.noise > 0:
        pixels += rng.normal(0.0, params.noise, size=pixels.shape).astype(np.float32)
    image = Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=params.jpeg_quality)
    x1, y1, x2, y2 = face_box(who.identity, appearance)
    # CelebA's boxes are generous (forehead to chin, ear to ear): pad the tight box
    pad_w, pad_h = 0.15 * (x2 - x1), 0.1 * (y2 - y1)
    x1, y1 = max(0.0, x1 - pad_w), max(0.0, y1 - pad_h)
    x2, y2 = min(float(width), x2 + pad_w), min(float(height), y2 + pad_h)
    bbox = (round(x1), round(y1), round(x2 - x1), round(y2 - y1))
    return Photo(job.index, buffer.getvalue(), labels, five_points(who.identity, appearance), bbox)


def camera(image: np.ndarray, params: SyntheticParams, rng: np.random.Generator) -> np.ndarray:
    """Exposure, white balance and gamma of one photo: float32 (H, W, 3) on the 0-255 scale."""
    gain = rng.uniform(1 - params.exposure, 1 + params.exposure) * rng.normal(1.0, params.white_balance, 3)
    gamma = rng.uniform(1 - params.gamma, 1 + params.gamma)
    pixels = em.power(image.astype(np.float32) / 255.0, gamma) * gain.astype(np.float32)
    return np.clip(pixels, 0.0, 1.0) * 255.0


def _render_all(jobs: Sequence[PhotoJob], workers: int) -> Iterator[Photo]:
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        yield from map(render_photo, jobs)
        return
    # fork keeps start-up cheap; rendering is numpy-only (no threads to break)
    context = multiprocessing.get_context("fork")
    with context.Pool(workers) as pool:
        yield from pool.imap(render_photo, jobs, chunksize=16)


def generate(out_dir: str | Path, params: SyntheticParams, layout: str) -> dict:
    """Render the dataset into `out_dir` in CelebA's layout; returns summary counts."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs, partition = plan_photos(params, layout)
    zip_name, folder = (
        (celeba.ALIGNED_ZIP, celeba.ALIGNED_DIR) if layout == "aligned" else (celeba.WILD_ZIP, celeba.WILD_DIR)
    )
    names = [image_name(job.index) for job in jobs]
    labels = np.zeros((len(jobs), len(celeba.ATTRIBUTE_NAMES)), dtype=np.int8)
    landmarks = np.zeros((len(jobs), 10), dtype=np.int64)
    boxes = np.zeros((len(jobs), 4), dtype=np.int64)

    def write_zip(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
            for photo in progress(_render_all(jobs, params.workers), total=len(jobs), desc="render", unit="img"):
                info = zipfile.ZipInfo(f"{folder}/{names[photo.index]}", date_time=_ZIP_DATE)
                info.external_attr = 0o644 << 16
                archive.writestr(info, photo.jpeg)
                labels[photo.index] = [1 if photo.labels[a] else -1 for a in celeba.ATTRIBUTE_NAMES]
                landmarks[photo.index] = np.round(photo.landmarks).astype(np.int64).ravel()
                boxes[photo.index] = photo.bbox

    atomic_write(out / zip_name, write_zip)
    identities = np.array([job.identity for job in jobs])
    write_annotations(out, names, identities, partition[identities], labels, landmarks, boxes, layout)
    return {
        "images": len(jobs),
        "identities": params.n_identities,
        "images_per_partition": {celeba.PARTITIONS[p]: int((partition[identities] == p).sum()) for p in range(3)},
    }


def write_annotations(out: Path, names, identities, partitions, labels, landmarks, boxes, layout: str) -> None:
    """CelebA's five annotation files, in its exact text formats."""
    n = len(names)
    attr_lines = [f"{n}", " ".join(celeba.ATTRIBUTE_NAMES) + " "]
    attr_lines += [name + " " + " ".join(f"{v:2d}" for v in row) for name, row in zip(names, labels, strict=True)]
    _write(out / celeba.ATTR_FILE, attr_lines)
    _write(out / celeba.IDENTITY_FILE, [f"{a} {b}" for a, b in zip(names, identities, strict=True)])
    _write(out / celeba.PARTITION_FILE, [f"{a} {b}" for a, b in zip(names, partitions, strict=True)])
    header = " ".join(celeba.LANDMARK_COLUMNS)
    rows = [name + "".join(f"{v:5d}" for v in row) for name, row in zip(names, landmarks, strict=True)]
    _write(out / celeba.landmarks_file(layout), [f"{n}", header, *rows])
    rows = [name + "".join(f"{v:6d}" for v in row) for name, row in zip(names, boxes, strict=True)]
    _write(out / celeba.BBOX_FILE, [f"{n}", "image_id " + " ".join(celeba.BBOX_COLUMNS), *rows])


def _write(path: Path, lines: list[str]) -> None:
    text = "\n".join(lines) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))
