"""Crop stage vs the naive loop (`mtcnn(img)` one image at a time), same images, same run.

Builds CelebA-format folders from skimage's astronaut (aligned 178x218 windows, and
varied-size canvases for the wild layout), then times, per layout:

- naive: read the JPEG from the archive, PIL-decode it, `MTCNN()(img)` per image;
- stage: `faceid.crop.cache.crop_dataset` (batched detect, decode thread, shards, manifest).

It also measures the stage's peak RSS in a fresh child process on a larger folder.

    PYTHONPATH=src python benchmarks/bench_crop.py --images 96 --rss-images 2000
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import multiprocessing
import resource
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from facenet_pytorch import MTCNN
from PIL import Image
from skimage.data import astronaut

from faceid.config.crop import CropParams
from faceid.config.engine import load_sections
from faceid.crop.cache import crop_dataset
from faceid.crop.detect import torch_threads
from faceid.data.celeba import ATTRIBUTE_NAMES, LANDMARK_COLUMNS, ImageArchive, read_annotations

ROOT = Path(__file__).resolve().parents[1]


def _jpeg(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _image(layout: str, rng: np.random.Generator) -> np.ndarray:
    photo = astronaut()
    if layout == "aligned":
        x0, y0 = rng.integers(110, 160), rng.integers(5, 35)
        image = photo[y0 : y0 + 218, x0 : x0 + 178]
    else:
        width, height = int(rng.integers(240, 421)), int(rng.integers(240, 421))
        size = int(rng.integers(200, 512))
        canvas = Image.new("RGB", (width, height), (90, 90, 90))
        canvas.paste(
            Image.fromarray(photo).resize((size, size), Image.BILINEAR),
            (int(rng.integers(-size // 4, width // 3)), int(rng.integers(-size // 8, height // 3))),
        )
        image = np.asarray(canvas)
    noise = rng.normal(0, 3, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def build_folder(root: Path, layout: str, n: int, seed: int = 0) -> None:
    """A CelebA-format folder of `n` astronaut images (annotations are placeholders: the
    landmarks are zeros, so a missed face is `missing`, never a fallback)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    zip_name, folder = (
        ("img_align_celeba.zip", "img_align_celeba")
        if layout == "aligned"
        else ("img_celeba.zip", "img_celeba")
    )
    with zipfile.ZipFile(root / zip_name, "w") as archive:
        for name in names:
            archive.writestr(f"{folder}/{name}", _jpeg(_image(layout, rng)))
    attrs = [
        f"{name} " + " ".join("1" if i % 3 == 0 else "-1" for i in range(len(ATTRIBUTE_NAMES)))
        for name in names
    ]
    (root / "list_attr_celeba.txt").write_text(
        "\n".join([str(n), " ".join(ATTRIBUTE_NAMES), *attrs]) + "\n"
    )
    (root / "identity_CelebA.txt").write_text(
        "".join(f"{name} {i // 10}\n" for i, name in enumerate(names))
    )
    (root / "list_eval_partition.txt").write_text("".join(f"{name} 0\n" for name in names))
    zeros = " ".join(["0"] * 10)
    landmarks = (
        "list_landmarks_align_celeba.txt" if layout == "aligned" else "list_landmarks_celeba.txt"
    )
    (root / landmarks).write_text(
        "\n".join([str(n), " ".join(LANDMARK_COLUMNS), *(f"{m} {zeros}" for m in names)]) + "\n"
    )
    (root / "list_bbox_celeba.txt").write_text(
        "\n".join([str(n), "image_id x_1 y_1 width height", *(f"{m} 0 0 0 0" for m in names)])
        + "\n"
    )


def naive(root: Path, layout: str, threads: int, device: str = "cpu") -> tuple[float, int]:
    """img/s and faces found of facenet-pytorch's documented per-image use."""
    mtcnn = MTCNN(image_size=160, margin=0, device=torch.device(device))
    names = read_annotations(root, layout)["image"]
    found = 0
    with torch_threads(threads), ImageArchive.open(root, layout) as archive:
        mtcnn(Image.open(io.BytesIO(archive.read(names[0]))).convert("RGB"))  # CUDA/lazy init
        start = time.perf_counter()
        for name in names:
            image = Image.open(io.BytesIO(archive.read(name))).convert("RGB")
            found += mtcnn(image) is not None
        elapsed = time.perf_counter() - start
    return len(names) / elapsed, found


def stage(root: Path, layout: str, params: CropParams, out: Path) -> tuple[float, int]:
    start = time.perf_counter()
    metrics = crop_dataset(root, out, params, layout, progress=False)
    return metrics["images"] / (time.perf_counter() - start), metrics["detected"]


def _stage_for_rss(root: str, layout: str, params: CropParams, out: str, sender) -> None:
    stage(Path(root), layout, params, Path(out))
    sender.send(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # KiB on Linux


def peak_rss_mb(root: Path, layout: str, params: CropParams, out: Path) -> float:
    """Peak resident memory of a fresh process that runs only the stage."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(
        target=_stage_for_rss, args=(str(root), layout, params, str(out), sender)
    )
    process.start()
    sender.close()  # so recv() ends with EOFError if the child dies before sending
    peak = receiver.recv()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"the stage failed in the RSS child (exit code {process.exitcode})")
    return peak


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--images", type=int, default=96, help="images per layout for the timing (0 = skip)"
    )
    parser.add_argument(
        "--rss-images", type=int, default=2000, help="images for the peak-RSS run (0 = skip)"
    )
    parser.add_argument(
        "--min-face-size", type=int, nargs="+", default=[20, 40], help="stage settings to time"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="decode threads")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the stage")
    args = parser.parse_args(argv)
    (repo_crop,) = load_sections(ROOT / "params.yaml", CropParams)  # the rest as params.yaml has it
    print(f"torch threads {torch.get_num_threads()}, CPU cores {multiprocessing.cpu_count()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for layout in ("aligned", "wild") if args.images else ():
            root = tmp / f"celeba-{layout}"
            build_folder(root, layout, args.images)
            canvas = {} if layout == "aligned" else {"canvas_width": 320, "canvas_height": 400}
            baselines = {}
            for threads in (0, 1):
                baselines[threads], found = naive(root, layout, threads)
                print(
                    f"{layout:8s} naive mtcnn(img) per image, torch threads {threads or 'default'}: "
                    f"{baselines[threads]:6.2f} img/s ({found}/{args.images} faces)"
                )
            for min_face in args.min_face_size:
                params = dataclasses.replace(
                    repo_crop,
                    device="cpu",
                    batch_size=args.batch_size,
                    workers=args.workers,
                    threads=args.threads,
                    min_face_size=min_face,
                    **canvas,
                )
                speed, found = stage(root, layout, params, tmp / f"crops-{layout}-{min_face}")
                print(
                    f"{layout:8s} stage threads={args.threads} min_face_size={min_face:3d}: "
                    f"{speed:6.2f} img/s ({found}/{args.images} detected)  ratio "
                    f"{speed / baselines[0]:5.2f}x vs naive default threads, "
                    f"{speed / baselines[1]:5.2f}x vs naive 1 thread"
                )
        for layout in ("aligned", "wild") if args.rss_images else ():
            root = tmp / f"celeba-rss-{layout}"
            build_folder(root, layout, args.rss_images, seed=1)
            canvas = {} if layout == "aligned" else {"canvas_width": 320, "canvas_height": 400}
            params = dataclasses.replace(
                repo_crop,
                device="cpu",
                batch_size=args.batch_size,
                workers=args.workers,
                threads=args.threads,
                min_face_size=40,
                **canvas,
            )
            start = time.perf_counter()
            rss = peak_rss_mb(root, layout, params, tmp / f"crops-rss-{layout}")
            print(
                f"peak RSS of the stage on {args.rss_images} {layout} images: {rss:.0f} MB "
                f"({args.rss_images / (time.perf_counter() - start):.1f} img/s incl. start-up)"
            )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
