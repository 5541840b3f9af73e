"""Stage weights@<backbone>: pretrained weights → data/weights/<backbone>.pt."""

from __future__ import annotations

import argparse
import logging

from faceid.config.engine import ParamsError, load_sections
from faceid.config.train import TrainParams
from faceid.config.weights import WeightsParams
from faceid.errors import run_cli
from faceid.weights import prepare_weights


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="params file (sections weights, train)")
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--out", required=True, help="data/weights/<backbone>.pt")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    weights, train = load_sections(args.params, WeightsParams, TrainParams)
    if args.backbone not in train.backbone:
        raise ParamsError(
            f"{args.params}: train.backbone.{args.backbone} missing; add a block with its init"
        )
    prepare_weights(args.backbone, train.backbone[args.backbone].init, weights, args.out)


if __name__ == "__main__":
    run_cli(main)
