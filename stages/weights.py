"""Stage weights@<backbone>: pretrained weights → data/weights/<backbone>.pt."""

from __future__ import annotations

import argparse
import logging

from faceid.config import ParamsError, load_params
from faceid.errors import run_cli
from faceid.weights import prepare_weights


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--out", required=True, help="data/weights/<backbone>.pt")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = load_params(args.params)
    if args.backbone not in params.train.backbone:
        raise ParamsError(
            f"{args.params}: train.backbone.{args.backbone} missing; add a block with its init"
        )
    init = params.train.backbone[args.backbone].init
    prepare_weights(args.backbone, init, params.weights, args.out)


if __name__ == "__main__":
    run_cli(main)
