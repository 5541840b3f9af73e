"""The demo on held-back photos of the default run: does it name most people?

After `dvc repro`: enrols every test-partition crop of each identity but one (held back,
seeded), identifies the held-back crops with the demo's model, threshold (the evaluation's
at demo.fmr) and score, and prints rank-1, unknown and named rates as JSON.

    python benchmarks/demo_heldout.py [--model orig-inception_resnet_v1] [--min-rank1 0.7]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from faceid.config.whole import load_all_params
from faceid.demo.catalog import DemoPaths, resolve_model
from faceid.demo.faces import load_embedder
from faceid.demo.gallery import enroll_crops
from faceid.demo.heldout import heldout_identification
from faceid.demo.identify import threshold_from_evaluation
from faceid.errors import run_cli


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", help="a folder under data/models (default: demo.model)")
    parser.add_argument("--crops", default="data/crops")
    parser.add_argument("--min-rank1", type=float, help="exit 1 if rank-1 is below this")
    parser.add_argument("--seed", type=int, default=0, help="picks the photo of each person held back")
    args = parser.parse_args(argv)
    params = load_all_params(args.params)
    entry = resolve_model(args.model or params.demo.model, DemoPaths())
    embedder = load_embedder(entry.model_path, params.crop, params.evaluate.flip_average, params.demo.device)
    threshold = threshold_from_evaluation(entry.eval_path, params.demo.fmr)
    gallery = enroll_crops(Path(args.crops), embedder, partition="test", batch_size=params.demo.batch_size)
    held = heldout_identification(gallery, threshold.value, score=params.demo.score, seed=args.seed)
    result = {"model": entry.name, **held}
    print(json.dumps(result, indent=2))
    if args.min_rank1 is not None and result["rank1"] < args.min_rank1:
        print(f"rank-1 {result['rank1']:.3f} < {args.min_rank1}", file=sys.stderr)
        sys.exit(1)
    return result


if __name__ == "__main__":
    run_cli(main)
