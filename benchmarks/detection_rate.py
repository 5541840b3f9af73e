"""MTCNN (facenet-pytorch, default settings) detection rate on a CelebA-format dataset.

The embedded dataset must be real enough for the real detector: ≥ 90% of its photos
without Eyeglasses, Wearing_Hat or Blurry. Prints the rate overall, on those "plain"
photos, and per study attribute, plus the landmark error against the annotations.

    python benchmarks/detection_rate.py --dataset data/celeba [--limit 2000]
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
import torch
from facenet_pytorch import MTCNN
from PIL import Image

from faceid.celeba import LANDMARK_COLUMNS, STUDY_ATTRIBUTES, ImageArchive, load_dataset


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="data/celeba")
    parser.add_argument("--layout", default="aligned")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    torch.backends.cudnn.benchmark = False
    table = load_dataset(args.dataset, args.layout)
    if args.limit:
        table = table.iloc[: args.limit]
    detector = MTCNN(device="cuda" if torch.cuda.is_available() else "cpu")
    found = np.zeros(len(table), dtype=bool)
    error = np.full(len(table), np.nan)
    start = time.perf_counter()
    with ImageArchive.open(args.dataset, args.layout) as archive:
        for lo in range(0, len(table), args.batch_size):
            names = table["image"].iloc[lo : lo + args.batch_size]
            images = [np.asarray(Image.open(io.BytesIO(archive.read(n))).convert("RGB")) for n in names]
            if args.layout == "aligned":
                boxes, _, points = detector.detect(np.stack(images), landmarks=True)
            else:
                results = [detector.detect(img, landmarks=True) for img in images]
                boxes, points = [r[0] for r in results], [r[2] for r in results]
            truth = table[list(LANDMARK_COLUMNS)].iloc[lo : lo + args.batch_size].to_numpy(float).reshape(-1, 5, 2)
            for i, (box, pts) in enumerate(zip(boxes, points, strict=True)):
                if box is not None:
                    found[lo + i] = True
                    error[lo + i] = np.abs(pts[0] - truth[i]).mean()
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
