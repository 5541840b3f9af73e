"""MTCNN (facenet-pytorch, default settings) detection rate on a CelebA-format dataset,
through the crop stage's own detect-then-crop path (`faceid.crop.detect.detect_and_crop`).

The embedded dataset must be real enough for the real detector: ≥ 90% of its photos
without Eyeglasses, Wearing_Hat or Blurry. Prints the rate overall, on those "plain"
photos, and per study attribute, plus the landmark error against the annotations.

    python benchmarks/detection_rate.py --dataset data/celeba-input [--limit 2000]
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from faceid.common.device import select_device
from faceid.config.crop import CropParams
from faceid.config.engine import load_sections
from faceid.crop.detect import detect_and_crop, make_detector
from faceid.crop.images import to_rgb
from faceid.data.celeba import LANDMARK_COLUMNS, STUDY_ATTRIBUTES, ImageArchive, load_dataset

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="data/celeba-input")
    parser.add_argument("--layout", default="aligned")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    table = load_dataset(args.dataset, args.layout)
    if args.limit:
        table = table.iloc[: args.limit]
    # MTCNN's default detector settings: params.yaml's thresholds and pyramid factor are
    # MTCNN's; its min_face_size (40) is not, so MTCNN's 20 px is set here
    (params,) = load_sections(ROOT / "params.yaml", CropParams)
    params = dataclasses.replace(params, batch_size=args.batch_size, min_face_size=20)
    detector = make_detector(params, select_device(params.device, key="crop.device"))
    found = np.zeros(len(table), dtype=bool)
    error = np.full(len(table), np.nan)
    start = time.perf_counter()
    with ImageArchive.open(args.dataset, args.layout) as archive, torch.no_grad():
        for lo in range(0, len(table), args.batch_size):
            names = table["image"].iloc[lo : lo + args.batch_size]
            images = [to_rgb(Image.open(io.BytesIO(archive.read(n)))) for n in names]
            truth = table[list(LANDMARK_COLUMNS)].iloc[lo : lo + args.batch_size].to_numpy(float).reshape(-1, 5, 2)
            for i, [result] in enumerate(detect_and_crop(detector, images, None, params)):
                if result.status == "detected":
                    found[lo + i] = True
                    error[lo + i] = np.abs(result.face.landmarks - truth[i]).mean()
    seconds = time.perf_counter() - start
    plain = ~table[["Eyeglasses", "Wearing_Hat", "Blurry"]].any(axis=1).to_numpy()
    print(f"images {len(table)}  detected {found.mean():.3f}  in {seconds:.0f} s ({len(table) / seconds:.1f} img/s)")
    print(f"plain (no glasses, hat, blur): {found[plain].mean():.3f} of {plain.sum()}")
    for attribute in STUDY_ATTRIBUTES:
        has = table[attribute].to_numpy()
        print(f"  {attribute:18s} with: {found[has].mean():.3f} ({has.sum():5d})   without: {found[~has].mean():.3f}")
    print(f"median landmark error vs annotations: {np.nanmedian(error):.2f} px")


if __name__ == "__main__":
    main()
