"""Stage crop: MTCNN face crops of data/celeba cached in shards, plus metrics/crop.json."""

from __future__ import annotations

from faceid.forkserver import delegate_main

delegate_main(__name__, __file__)  # run in a warm process (faceid.forkserver); returns when not

import argparse
import logging
from pathlib import Path

from faceid.config.crop import CropParams
from faceid.config.dataset import DatasetParams
from faceid.config.engine import load_sections
from faceid.errors import run_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", required=True, help="params file (sections crop, dataset)")
    parser.add_argument("--dataset", required=True, help="CelebA-format folder (data/celeba-input)")
    parser.add_argument("--out", required=True, help="output folder (data/crops): shards + manifest")
    parser.add_argument("--metrics", required=True, help="headline counts JSON (metrics/crop.json)")
    parser.add_argument(
        "--review", required=True,
        help="contact sheet of the lowest-probability accepted crops (metrics/crop_review.png)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    crop, dataset = load_sections(args.params, CropParams, DatasetParams)
    # imported after the params: a bad value is reported before torch loads (seconds)
    import pandas as pd

    from faceid.common.gpus import claim_gpu_from_env
    from faceid.common.locks import output_lock
    from faceid.crop.cache import crop_dataset
    from faceid.crop.metrics import check_failure_rate, write_metrics
    from faceid.crop.review import write_review
    from faceid.crop.state import MANIFEST_FILE

    claim_gpu_from_env()  # parallel queued experiments: one GPU each (README "Beyond one GPU")
    # an orphaned earlier run (its dvc killed) would otherwise interleave chunks with this one
    with output_lock(args.out, command="stages/crop.py"):
        metrics = crop_dataset(args.dataset, args.out, crop, dataset.layout)
    write_metrics(args.metrics, metrics)
    columns = ["image", "status", "probability", "shard", "row"]
    manifest = pd.read_parquet(Path(args.out) / MANIFEST_FILE, columns=columns)
    write_review(args.review, manifest, args.out, crop.review_count)
    if metrics["too_small"]:
        logging.getLogger("crop").warning(
            "%d of %d images are smaller than crop.min_face_size (%d px): the detector did not search "
            "them (cropped from annotations where there are some, else missing; see %s). Lower "
            "crop.min_face_size if that is not intended",
            metrics["too_small"], metrics["images"], crop.min_face_size, args.metrics,
        )  # fmt: skip
    check_failure_rate(metrics, crop.max_failure_rate)
    return 0


if __name__ == "__main__":
    run_cli(main)
