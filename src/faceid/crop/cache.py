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
import io
import logging
import multiprocessing
import os
import re
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from facenet_pytorch import MTCNN
from PIL import Image
from tqdm import tqdm

from faceid.common.device import select_device
from faceid.common.fileio import atomic_write
from faceid.common.memory import release_heap as _release_heap
from faceid.common.progress import progress as progress_bar
from faceid.config.crop import CropParams
from faceid.crop.detect import (
    TOO_SMALL,
    Annotation,
    CropResult,
    detect_and_crop,
    make_detector,
    plan_batches,
    prepare_image,
    torch_threads,
)
from faceid.crop.images import to_rgb
from faceid.crop.metrics import summarize_crops
from faceid.crop.state import (
    MANIFEST_FILE,
    PARTS_DIR,
    PROGRESS_FILE,
    dataset_fingerprint,
    part_path,
    resume_point,
    save_progress,
    shard_rows_of,
    start_afresh,
    write_rows,
)
from faceid.data.celeba import ATTRIBUTE_NAMES, LANDMARK_COLUMNS, ImageArchive, read_annotations

__all__ = ["BOX_COLUMNS", "crop_dataset", "process_devices", "read_annotation_faces"]

log = logging.getLogger(__name__)

BOX_COLUMNS = ("box_x1", "box_y1", "box_x2", "box_y2")
# what PIL raises on a corrupt, truncated or non-image file
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


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


# --------------------------------------------------------------------------- one chunk


def _load(data: bytes, canvas: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray, float]:
    with Image.open(io.BytesIO(data)) as image:
        rgb = to_rgb(image)
    prepared, scale = prepare_image(rgb, canvas)
    return rgb, prepared, scale


def _read_headers(
    names: Sequence[str], archive: ImageArchive
) -> tuple[list[bytes | None], list[tuple[int, int] | None], list[CropResult | str]]:
    """Each image's bytes and (width, height) from its header; a reason where unreadable."""
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
            results[i] = _describe_error(exc)
    return raw, sizes, results


def _describe_error(exc: BaseException) -> str:
    """The error as a reason for git-tracked metrics: without the memory addresses that
    PIL's messages hold ("cannot identify image file <_io.BytesIO object at 0x7f…>")."""
    return f"{type(exc).__name__}: " + re.sub(r"<[^<>]* at 0x[0-9a-fA-F]+>", "the image's bytes", str(exc))


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
    raw, sizes, results = _read_headers(names, archive)
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
                results[i] = _describe_error(exc)
            raw[i] = None
        found = detect_and_crop(
            detector, [x[1] for x in loaded], [annotations[x[0]] for x in loaded], params,
            inputs=[(x[2], x[3]) for x in loaded],
        )  # fmt: skip
        for (i, *_), [result] in zip(loaded, found, strict=True):
            if result.crop is not None:
                crops[i] = result.crop
            results[i] = result
        bar.update(len(current))
        _release_heap()
    _log_failures(names, sizes, results, params)
    bar.update(sum(1 for i, r in enumerate(results) if isinstance(r, str) and sizes[i] is None))
    return crops, results


def _log_failures(
    names: Sequence[str],
    sizes: Sequence[tuple[int, int] | None],
    results: Sequence[CropResult | str],
    params: CropParams,
) -> None:
    for name, result in zip(names, results, strict=True):
        if isinstance(result, str):
            log.warning("unreadable image %s: %s", name, result)
    small = [i for i, r in enumerate(results) if not isinstance(r, str) and r.reason == TOO_SMALL]
    if small:
        log.warning(
            "%d images smaller than crop.min_face_size (%d px) were not searched, e.g. %s (%dx%d)",
            len(small), params.min_face_size, names[small[0]], *(sizes[small[0]] or (0, 0)),
        )  # fmt: skip


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
    if layout == "aligned":  # one size: detected natively, never through a canvas
        params = dataclasses.replace(params, canvas_width=None, canvas_height=None)
    table = read_annotations(root, layout)
    n_chunks = -(-len(table) // params.chunk_size)
    shard_rows = shard_rows_of(len(table), params.shard_size)
    device = select_device(params.device, key="crop.device")
    out_dir.mkdir(parents=True, exist_ok=True)
    with ImageArchive.open(root, layout) as archive:
        fingerprint = dataset_fingerprint(root, layout, archive.location, params, device.type)
    done = resume_point(out_dir, fingerprint, n_chunks, shard_rows)
    if done:
        log.info("%s: resuming, %d of %d chunks done", out_dir, len(done), n_chunks)
    else:
        start_afresh(out_dir, shard_rows, params.image_size)
        save_progress(out_dir, fingerprint, 0)
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
        [pd.read_parquet(part_path(out_dir, k)) for k in range(n_chunks)]
        or [_records([], 0, [], params.shard_size)],
        ignore_index=True,
    )
    columns = ["image", "identity", "partition", *ATTRIBUTE_NAMES]
    manifest = table[columns].merge(
        records.drop(columns="reason"), on="image", how="left", validate="one_to_one"
    )
    assert len(manifest) == len(table) and manifest["status"].notna().all()
    atomic_write(out_dir / MANIFEST_FILE, manifest.to_parquet)
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
    save_progress(out_dir, fingerprint, len(done))
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
        write_rows(self.out_dir, start, crops, self.params.shard_size)
        records = _records(self.names[part], start, results, self.params.shard_size)
        atomic_write(part_path(self.out_dir, number), records.to_parquet)
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


