"""The crop cache: every dataset image → a row of uint8 shards plus one manifest row.

Layout of the output folder (docs/ARCHITECTURE.md):

    shard-000.npy …      uint8 (N, S, S, 3); image i of the sorted annotation table sits at
                         shard i // shard_size, row i % shard_size (zeros when it has no crop)
    manifest.parquet     one row per image: identity, partition, attributes, shard/row,
                         status, probability, box, detected landmarks, method

Resumable: images are processed in chunks; after each chunk its shard rows are flushed,
then its manifest rows written atomically to parts/chunk-NNNNN.parquet, so a chunk whose
part exists is done. progress.json carries a fingerprint of the params, the resolved
device and the dataset (annotation files, the archive's listing): a run with other
inputs discards the partial state instead of mixing it in. Only a chunk's crops are in
memory at a time.

Across processes (`crop.processes`): chunks are independent — each covers fixed shard rows
and its own part file — so N spawned processes, each with its own detector (GPU i mod
count on cuda), take pending chunks in turn and write their rows into the shared,
memory-mapped shards. A chunk's batches are planned within the chunk, so the crops and
manifest are the same bytes for any number of processes; each process holds one chunk's
crops, as a single process does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import io
import json
import logging
import multiprocessing
import os
import shutil
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from facenet_pytorch import MTCNN
from numpy.lib.format import open_memmap
from PIL import Image
from tqdm import tqdm

from faceid.celeba import (
    ATTR_FILE,
    ATTRIBUTE_NAMES,
    BBOX_FILE,
    IDENTITY_FILE,
    LANDMARK_COLUMNS,
    PARTITION_FILE,
    ImageArchive,
    landmarks_file,
    read_annotations,
)
from faceid.config.crop import CropParams
from faceid.device import select_device
from faceid.errors import FaceidError
from faceid.facecrop import (
    NO_FACE,
    TOO_SMALL,
    Annotation,
    CropResult,
    below_min_face_size,
    crop_face,
    detect_faces,
    make_detector,
    plan_batches,
    prepare_image,
    to_rgb,
    torch_threads,
)
from faceid.memory import release_heap as _release_heap
from faceid.progress import progress as progress_bar
from faceid.shards import SHARD_GLOB, shard_path

__all__ = [
    "BOX_COLUMNS",
    "MANIFEST_FILE",
    "STATUSES",
    "CropError",
    "check_failure_rate",
    "crop_dataset",
    "dataset_fingerprint",
    "process_devices",
    "read_annotation_faces",
    "summarize_crops",
    "write_metrics",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the output of the same inputs changes
STATUSES = ("detected", "fallback", "missing", "unreadable")
BOX_COLUMNS = ("box_x1", "box_y1", "box_x2", "box_y2")
MANIFEST_FILE = "manifest.parquet"
MAX_EXAMPLES = 20  # image names listed per kind of failure in the metrics
PROGRESS_FILE = "progress.json"
PARTS_DIR = "parts"
# params that change neither crops nor manifest, so may differ between a run and its resume
_RESUMABLE_ACROSS = ("workers", "processes", "max_failure_rate")
# what PIL raises on a corrupt, truncated or non-image file
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


class CropError(FaceidError, RuntimeError):
    """The crop stage could not produce a trustworthy cache."""


# --------------------------------------------------------------------------- inputs


def read_annotation_faces(table: pd.DataFrame, layout: str) -> list[Annotation]:
    """The dataset's own face location per row of `read_annotations`' table.

    Aligned images: the landmarks (CelebA's bbox refers to the in-the-wild images).
    In-the-wild: landmarks and bbox. All-zero landmarks and empty boxes count as absent.
    """
    landmarks = table[list(LANDMARK_COLUMNS)].to_numpy(np.float64).reshape(-1, 5, 2)
    has_landmarks = landmarks.any(axis=(1, 2))
    if layout == "aligned":
        return [
            Annotation(landmarks=lm if ok else None)
            for lm, ok in zip(landmarks, has_landmarks, strict=True)
        ]
    x, y, w, h = (table[c].to_numpy(np.float64) for c in ("x_1", "y_1", "width", "height"))
    boxes = np.stack([x, y, x + w, y + h], axis=1)
    has_box = (w > 0) & (h > 0)
    return [
        Annotation(landmarks=lm if ok_lm else None, box=box if ok_box else None)
        for lm, ok_lm, box, ok_box in zip(landmarks, has_landmarks, boxes, has_box, strict=True)
    ]


def dataset_fingerprint(
    root: Path, layout: str, images: Path, params: CropParams, device: str
) -> str:
    """A hash of everything the crops depend on: params, device, annotations, images."""
    digest = hashlib.sha256()
    settings = {k: v for k, v in dataclasses.asdict(params).items() if k not in _RESUMABLE_ACROSS}
    settings.update(version=FORMAT_VERSION, layout=layout, device=device)
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for name in (ATTR_FILE, IDENTITY_FILE, PARTITION_FILE, landmarks_file(layout), BBOX_FILE):
        digest.update(name.encode())
        digest.update((root / name).read_bytes())
    if images.suffix == ".zip":
        # the central directory's CRCs identify the content without reading it
        with zipfile.ZipFile(images) as archive:
            for info in archive.infolist():
                digest.update(f"{info.filename}\t{info.CRC}\t{info.file_size}\n".encode())
    else:
        for path in sorted(images.iterdir()):
            stat = path.stat()
            digest.update(f"{path.name}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


# --------------------------------------------------------------------------- resume state


def _shard_rows(n_images: int, shard_size: int) -> list[int]:
    return [min(shard_size, n_images - start) for start in range(0, n_images, shard_size)]


def _part_path(out_dir: Path, chunk: int) -> Path:
    return out_dir / PARTS_DIR / f"chunk-{chunk:05d}.parquet"


def _write_atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _save_progress(out_dir: Path, fingerprint: str, chunks_done: int) -> None:
    state = {"fingerprint": fingerprint, "chunks_done": chunks_done}
    _write_atomic(out_dir / PROGRESS_FILE, lambda p: p.write_text(json.dumps(state)))


def _resume_point(
    out_dir: Path, fingerprint: str, n_chunks: int, shard_rows: list[int]
) -> set[int] | None:
    """Chunks already done by an earlier run with the same inputs (None = start afresh).

    A chunk is done when its part file exists: it is written after the chunk's rows are
    flushed. Chunks finish out of order when several processes crop.
    """
    try:
        state = json.loads((out_dir / PROGRESS_FILE).read_text())
        same = state["fingerprint"] == fingerprint
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not same:
        log.warning(
            "%s: partial crops from other params or another dataset; starting afresh", out_dir
        )
        return None
    done = {k for k in range(n_chunks) if _part_path(out_dir, k).exists()}
    for shard, rows in enumerate(shard_rows):
        try:
            shape = np.load(shard_path(out_dir, shard), mmap_mode="r").shape
        except (OSError, ValueError):
            shape = None
        if shape is None or shape[0] != rows:
            log.warning(
                "%s: shard %d is missing or has the wrong shape; starting afresh", out_dir, shard
            )
            return None
    return done


def _start_afresh(out_dir: Path, fingerprint: str, shard_rows: list[int], image_size: int) -> None:
    for stale in out_dir.glob(SHARD_GLOB):
        stale.unlink()
    (out_dir / MANIFEST_FILE).unlink(missing_ok=True)
    shutil.rmtree(out_dir / PARTS_DIR, ignore_errors=True)
    (out_dir / PARTS_DIR).mkdir(parents=True)
    for shard, rows in enumerate(shard_rows):
        # sparse until written; the map is dropped at once so no page stays mapped
        open_memmap(
            shard_path(out_dir, shard),
            mode="w+",
            dtype=np.uint8,
            shape=(rows, image_size, image_size, 3),
        )
    _save_progress(out_dir, fingerprint, 0)


def _write_rows(out_dir: Path, start: int, crops: np.ndarray, shard_size: int) -> None:
    """Write crops of images start… into their shard rows, then flush."""
    done = 0
    while done < len(crops):
        shard, row = divmod(start + done, shard_size)
        count = min(len(crops) - done, shard_size - row)
        # re-opened per chunk: a long-lived map of a 15 GB file keeps written pages
        # counted in the process's resident memory
        rows = open_memmap(shard_path(out_dir, shard), mode="r+")
        rows[row : row + count] = crops[done : done + count]
        rows.flush()
        del rows
        done += count


# --------------------------------------------------------------------------- one chunk


def _load(data: bytes, canvas: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray, float]:
    with Image.open(io.BytesIO(data)) as image:
        rgb = to_rgb(image)
    prepared, scale = prepare_image(rgb, canvas)
    return rgb, prepared, scale


def _crop_chunk(
    names: Sequence[str],
    annotations: Sequence[Annotation],
    archive: ImageArchive,
    detector: MTCNN,
    params: CropParams,
    pool: ThreadPoolExecutor,
    bar: tqdm,
) -> tuple[np.ndarray, list[CropResult | str]]:
    """Crops (len(names), S, S, 3) and per image a CropResult or an unreadable reason."""
    results: list[CropResult | str] = ["" for _ in names]
    raw: list[bytes | None] = [None] * len(names)
    sizes: list[tuple[int, int] | None] = [None] * len(names)
    for i, name in enumerate(names):
        try:
            raw[i] = archive.read(name)
            with Image.open(io.BytesIO(raw[i])) as image:  # reads the header only
                sizes[i] = image.size
        except KeyError:
            results[i] = f"not in {archive.location.name}"
        except _DECODE_ERRORS as exc:
            results[i] = f"{type(exc).__name__}: {exc}"
    # on a canvas every readable image batches with every other; else by size
    keys = [size if params.canvas is None or size is None else "canvas" for size in sizes]
    batches = plan_batches(keys, params.batch_size)

    def submit(batch: list[int]) -> list[tuple[int, Future]]:
        return [(i, pool.submit(_load, raw[i], params.canvas)) for i in batch]

    crops = np.zeros((len(names), params.image_size, params.image_size, 3), dtype=np.uint8)
    queued = submit(batches[0]) if batches else []
    for number in range(len(batches)):
        current = queued
        # decode the next batch while the detector works on this one
        queued = submit(batches[number + 1]) if number + 1 < len(batches) else []
        loaded = []
        for i, future in current:
            try:
                loaded.append((i, *future.result()))
            except _DECODE_ERRORS as exc:
                results[i] = f"{type(exc).__name__}: {exc}"
            raw[i] = None
        faces = detect_faces(detector, [x[2] for x in loaded], [x[3] for x in loaded])
        for (i, image, prepared, _), image_faces in zip(loaded, faces, strict=True):
            result = crop_face(image, image_faces, annotations[i], params)
            if result.crop is not None:
                crops[i] = result.crop
            if below_min_face_size(prepared.shape, params.min_face_size):
                # never searched; a fallback crop from the annotation may still exist
                result = dataclasses.replace(result, reason=TOO_SMALL)
            results[i] = result
        bar.update(len(current))
        _release_heap()
    unreadable = [i for i, r in enumerate(results) if isinstance(r, str)]
    for i in unreadable:
        log.warning("unreadable image %s: %s", names[i], results[i])
    small = [i for i, r in enumerate(results) if not isinstance(r, str) and r.reason == TOO_SMALL]
    if small:
        log.warning(
            "%d images smaller than crop.min_face_size (%d px) were not searched, e.g. %s (%dx%d)",
            len(small), params.min_face_size, names[small[0]], *(sizes[small[0]] or (0, 0)),
        )  # fmt: skip
    bar.update(sum(1 for i in unreadable if sizes[i] is None))
    return crops, results


def _records(
    names: Sequence[str], start: int, results: Sequence[CropResult | str], shard_size: int
) -> pd.DataFrame:
    """Manifest columns (without the annotation columns) plus `reason` for unreadable."""
    n = len(names)
    status = np.empty(n, dtype=object)
    method = np.full(n, "", dtype=object)
    reason = np.full(n, "", dtype=object)
    probability = np.full(n, np.nan, dtype=np.float32)
    boxes = np.full((n, 4), np.nan, dtype=np.float32)
    points = np.full((n, 10), np.nan, dtype=np.float32)
    for i, result in enumerate(results):
        if isinstance(result, str):
            status[i], reason[i] = "unreadable", result
            continue
        status[i], method[i], reason[i] = result.status, result.method, result.reason
        if result.face is not None:
            probability[i] = result.face.probability
            boxes[i] = result.face.box
            points[i] = result.face.landmarks.ravel()
    index = start + np.arange(n)
    has_crop = np.isin(status, ("detected", "fallback"))
    frame = pd.DataFrame(
        {
            "image": list(names),
            "shard": np.where(has_crop, index // shard_size, -1).astype(np.int16),
            "row": np.where(has_crop, index % shard_size, -1).astype(np.int32),
            "status": status.astype(str),
            "probability": probability,
        }
    )
    for j, column in enumerate(BOX_COLUMNS):
        frame[column] = boxes[:, j]
    for j, column in enumerate(LANDMARK_COLUMNS):
        frame[column] = points[:, j]
    frame["method"] = method.astype(str)
    frame["reason"] = reason.astype(str)
    return frame


# --------------------------------------------------------------------------- the stage


def crop_dataset(
    root: str | Path, out_dir: str | Path, params: CropParams, layout: str, *, progress: bool = True
) -> dict[str, Any]:
    """Crop every image of the CelebA-format folder `root` into `out_dir`; the metrics.

    Continues an interrupted run with the same inputs, skipping its completed chunks.
    Unreadable images are logged and counted, not fatal: see `check_failure_rate`.
    With params.processes > 1 the workers are spawned, so a calling script needs the
    `if __name__ == "__main__":` guard (a spawned process imports the main module).
    """
    root, out_dir = Path(root), Path(out_dir)
    table = read_annotations(root, layout)
    n_chunks = -(-len(table) // params.chunk_size)
    shard_rows = _shard_rows(len(table), params.shard_size)
    device = select_device(params.device, key="crop.device")
    out_dir.mkdir(parents=True, exist_ok=True)
    with ImageArchive.open(root, layout) as archive:
        fingerprint = dataset_fingerprint(root, layout, archive.location, params, device.type)
    done = _resume_point(out_dir, fingerprint, n_chunks, shard_rows)
    if done:
        log.info("%s: resuming, %d of %d chunks done", out_dir, len(done), n_chunks)
    else:
        _start_afresh(out_dir, fingerprint, shard_rows, params.image_size)
        done = set()
    pending = [k for k in range(n_chunks) if k not in done]
    devices = process_devices(params.processes, device, len(pending))
    with progress_bar(
        total=len(table),
        initial=sum(min(params.chunk_size, len(table) - k * params.chunk_size) for k in done),
        unit="img",
        desc="crop" if len(devices) == 1 else f"crop ({len(devices)} processes)",
        disable=not progress,
    ) as bar:
        saved = functools.partial(_chunk_saved, out_dir, fingerprint, done, bar)
        if len(devices) == 1 and pending:
            with _Cropper(root, layout, out_dir, params, devices[0], table) as cropper:
                for number in pending:
                    cropper.crop(number, bar)  # updates the bar itself
                    saved(number, 0)
        elif pending:
            _crop_in_processes(root, layout, out_dir, params, devices, pending, saved)
    records = pd.concat(
        [pd.read_parquet(_part_path(out_dir, k)) for k in range(n_chunks)]
        or [_records([], 0, [], params.shard_size)],
        ignore_index=True,
    )
    columns = ["image", "identity", "partition", *ATTRIBUTE_NAMES]
    manifest = table[columns].merge(
        records.drop(columns="reason"), on="image", how="left", validate="one_to_one"
    )
    assert len(manifest) == len(table) and manifest["status"].notna().all()
    _write_atomic(out_dir / MANIFEST_FILE, manifest.to_parquet)
    (out_dir / PROGRESS_FILE).unlink()
    shutil.rmtree(out_dir / PARTS_DIR)
    return summarize_crops(manifest, records[["image", "status", "reason"]])


def process_devices(processes: int, device: torch.device, pending: int) -> list[torch.device]:
    """The device of each crop process: GPU i mod count on cuda; never more than `pending`.

    processes 0 = one per visible GPU on cuda, one per CPU core on cpu.
    """
    if processes == 0:
        processes = torch.cuda.device_count() if device.type == "cuda" else os.cpu_count() or 1
    processes = max(1, min(processes, pending))
    if device.type != "cuda" or processes == 1:
        return [device] * processes
    count = torch.cuda.device_count()
    return [torch.device("cuda", i % count) for i in range(processes)]


def _chunk_saved(
    out_dir: Path, fingerprint: str, done: set[int], bar: tqdm, number: int, images: int
) -> None:
    done.add(number)
    _save_progress(out_dir, fingerprint, len(done))
    if images:  # a worker process's bar is silent: count its images here
        bar.update(images)


class _Cropper:
    """One process's means to crop any chunk: the annotation table, archive, detector,
    decode threads and torch thread count, held until `close`."""

    def __init__(
        self,
        root: Path,
        layout: str,
        out_dir: Path,
        params: CropParams,
        device: torch.device,
        table: pd.DataFrame | None = None,  # read_annotations' table, when already read
    ):
        table = read_annotations(root, layout) if table is None else table
        self.names = table["image"].tolist()
        self.annotations = read_annotation_faces(table, layout)
        self.out_dir, self.params = out_dir, params
        self._stack = contextlib.ExitStack()
        self.archive = self._stack.enter_context(ImageArchive.open(root, layout))
        self._stack.enter_context(torch_threads(params.threads))
        self.pool = self._stack.enter_context(
            ThreadPoolExecutor(params.workers, thread_name_prefix="decode")
        )
        self.detector = make_detector(params, device)

    def __enter__(self) -> _Cropper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()

    def crop(self, number: int, bar: tqdm) -> int:
        """Crop chunk `number` and save it (rows, then part); the images it held."""
        chunk = self.params.chunk_size
        start = number * chunk
        part = slice(start, start + chunk)
        crops, results = _crop_chunk(
            self.names[part], self.annotations[part], self.archive, self.detector,
            self.params, self.pool, bar,
        )  # fmt: skip
        _write_rows(self.out_dir, start, crops, self.params.shard_size)
        records = _records(self.names[part], start, results, self.params.shard_size)
        _write_atomic(_part_path(self.out_dir, number), records.to_parquet)
        _release_heap()
        return len(records)


# the worker process's cropper, made once by `_start_worker` (a process pool's
# initializer has nowhere else to keep it)
_worker_cropper: _Cropper | None = None


def _start_worker(root: str, layout: str, out_dir: str, params: CropParams, slots: Any) -> None:
    global _worker_cropper
    device = torch.device(slots.get())  # each process takes its own device slot
    _worker_cropper = _Cropper(Path(root), layout, Path(out_dir), params, device)


def _crop_in_worker(number: int) -> tuple[int, int]:
    assert _worker_cropper is not None, "the process pool's initializer did not run"
    with tqdm(disable=True) as silent:
        return number, _worker_cropper.crop(number, silent)


def _crop_in_processes(
    root: Path,
    layout: str,
    out_dir: Path,
    params: CropParams,
    devices: list[torch.device],
    pending: list[int],
    saved: Callable[[int, int], None],
) -> None:
    """Crop the pending chunks in len(devices) spawned processes, recording each as it ends."""
    # spawn, not fork: a forked copy of a process that already ran torch can deadlock
    context = multiprocessing.get_context("spawn")
    slots = context.Queue()
    for device in devices:
        slots.put(str(device))
    with ProcessPoolExecutor(
        len(devices),
        mp_context=context,
        initializer=_start_worker,
        initargs=(str(root), layout, str(out_dir), params, slots),
    ) as pool:
        futures = [pool.submit(_crop_in_worker, number) for number in pending]
        try:
            for future in as_completed(futures):
                saved(*future.result())
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


# --------------------------------------------------------------------------- metrics


def _rate(count: int, total: int) -> float | None:
    return count / total if total else None


def summarize_crops(manifest: pd.DataFrame, reasons: pd.DataFrame) -> dict[str, Any]:
    """Counts and rates of each status, why images are missing, and per attribute side
    the detection rate and the missing and unreadable counts.

    `reasons`: image, status, reason of every image that is not detected (others may be
    included). Rates are over all images, unreadable ones included (ISO/IEC 19795
    failure to acquire).
    """
    total = len(manifest)
    counts = {s: int((manifest["status"] == s).sum()) for s in STATUSES}
    status = manifest["status"].to_numpy()
    by_attribute = {}
    for attribute in ATTRIBUTE_NAMES:
        has = manifest[attribute].to_numpy(bool)
        by_attribute[attribute] = {
            side: {
                "images": int(mask.sum()),
                "detection_rate": _rate(int((status[mask] == "detected").sum()), int(mask.sum())),
                "missing": int((status[mask] == "missing").sum()),
                "unreadable": int((status[mask] == "unreadable").sum()),
            }
            for side, mask in (("with", has), ("without", ~has))
        }
    unreadable = reasons[reasons["status"] == "unreadable"]
    missing = reasons[reasons["status"] == "missing"]
    small = reasons.loc[reasons["reason"] == TOO_SMALL, "image"]
    metrics: dict[str, Any] = {"images": total}
    for status in STATUSES:
        metrics[status] = counts[status]
        metrics[f"{status}_rate"] = _rate(counts[status], total)
    metrics["detection_rate"] = metrics.pop("detected_rate")
    metrics["unreadable_images"] = [
        {"image": image, "reason": reason}
        for image, reason in zip(unreadable["image"], unreadable["reason"], strict=True)
    ]
    # a missing image either had no face the detector accepted or was smaller than the
    # smallest face it searches (crop.min_face_size); neither stops the stage
    metrics["missing_reasons"] = {
        reason: int((missing["reason"] == reason).sum()) for reason in (NO_FACE, TOO_SMALL)
    }
    # images the detector could not search at all (cropped from annotations, or missing)
    metrics["too_small"] = len(small)
    metrics["too_small_examples"] = small.head(MAX_EXAMPLES).tolist()
    metrics["by_attribute"] = by_attribute
    return metrics


HEADLINE_KEYS = ("images", "detection_rate", "fallback_rate", "missing_rate", "unreadable_rate")


def write_metrics(path: str | Path, metrics: dict[str, Any]) -> None:
    """The headline rates to `path` (a DVC metric: few columns in `dvc metrics show`) and
    every count, per attribute too, to `<name>_detail.json` beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({k: metrics[k] for k in HEADLINE_KEYS}, indent=2) + "\n")
    path.with_name(f"{path.stem}_detail.json").write_text(json.dumps(metrics, indent=2) + "\n")


def check_failure_rate(metrics: dict[str, Any], max_failure_rate: float) -> None:
    """Fail when more than `max_failure_rate` of the images were unreadable."""
    total, count = metrics["images"], metrics["unreadable"]
    if total and count / total > max_failure_rate:
        examples = "; ".join(
            f"{u['image']} ({u['reason']})" for u in metrics["unreadable_images"][:5]
        )
        raise CropError(
            f"crop: {count} of {total} images ({count / total:.2%}) are unreadable, more than "
            f"crop.max_failure_rate ({max_failure_rate:.2%}); e.g. {examples}. Re-create the "
            "dataset (`dvc repro dataset`) or raise crop.max_failure_rate in params.yaml"
        )
