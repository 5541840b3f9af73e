"""evaluate stage: one model's embeddings of the evaluation split → its headline numbers
(metrics/eval/<name>.json, level 2) and every number (metrics/detail/<name>.json, level 3).

Either a trained model (`--model data/models/<task>-<backbone>/model.pt`) or a
backbone's starting point (`--base <backbone>`: the pretrained network, or in the
embedded default the untrained one, exactly as training starts from it).
"""

from __future__ import annotations

from faceid.forkserver import delegate_main

delegate_main(__name__, __file__)  # run in a warm process (faceid.forkserver); returns when not

import argparse
import logging
from pathlib import Path

from faceid.config.engine import load_sections
from faceid.config.evaluate import EvaluateParams
from faceid.config.train import TrainParams, load_run
from faceid.errors import run_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", required=True, help="params file (sections train, evaluate)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="data/models/<task>-<backbone>/model.pt")
    which.add_argument("--base", metavar="BACKBONE", help="evaluate this backbone's starting point")
    parser.add_argument("--weights", help="with --base: data/weights/<backbone>.pt")
    parser.add_argument(
        "--run", help="with --base: data/runs/orig-<backbone>.json, the run it starts (default: from --params)"
    )
    parser.add_argument("--name", required=True, help="model name in reports, e.g. Eyeglasses-resnet50")
    parser.add_argument("--crops", required=True, help="data/crops")
    parser.add_argument("--pairs", required=True, help="data/pairs")
    parser.add_argument(
        "--features", help="data/features/<backbone> (stage features): read when the model's trunk is the one it holds"
    )
    parser.add_argument("--embeddings", required=True, help="cache: data/embeddings/<name>.npz")
    parser.add_argument("--out", required=True, help="headline numbers: metrics/eval/<name>.json")
    parser.add_argument("--detail", required=True, help="every number: metrics/detail/<name>.json")
    args = parser.parse_args(argv)
    if args.model and (args.run or args.weights):
        parser.error("--run and --weights go with --base; a trained model (--model) carries its own run and weights")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    train, settings = load_sections(args.params, TrainParams, EvaluateParams)
    start_run = load_run(args.run) if args.run else None
    # imported after the params: a bad value is reported before torch loads (seconds)
    from faceid.common.gpus import claim_gpu_from_env
    from faceid.evaluate.run import EvaluationFiles, evaluate_model, model_to_evaluate

    claim_gpu_from_env()  # FACEID_GPUS: parallel `dvc queue` workers each take a free GPU
    model, meta = model_to_evaluate(train, args.model, args.base, args.weights, start_run)
    files = EvaluationFiles(crops=Path(args.crops), pairs=Path(args.pairs), embeddings=Path(args.embeddings),
                            headline=Path(args.out), detail=Path(args.detail),
                            features=Path(args.features) if args.features else None)  # fmt: skip
    evaluate_model(model, meta, args.name, train, settings, files)
    return 0


if __name__ == "__main__":
    run_cli(main)
