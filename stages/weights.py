"""Stages pretrained@<backbone> (`--locate`: the original file, verified, linked or
downloaded into data/pretrained/<backbone>/) and weights@<backbone> (`--pretrained`:
that folder converted into data/weights/<backbone>.pt)."""

from __future__ import annotations

from faceid.forkserver import delegate_main

delegate_main(__name__, __file__)  # run in a warm process (faceid.forkserver); returns when not

import argparse
import logging

from faceid.config.engine import ParamsError, load_sections
from faceid.config.train import TrainParams
from faceid.config.weights import WeightsParams
from faceid.errors import run_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", required=True, help="params file (sections weights, train)")
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--locate", help="pretrained@<backbone>: data/pretrained/<backbone>, the folder to fill")
    parser.add_argument("--pretrained", help="weights@<backbone>: data/pretrained/<backbone>, the folder to convert")
    parser.add_argument("--out", help="weights@<backbone>: data/weights/<backbone>.pt")
    args = parser.parse_args(argv)
    if (args.locate is None) == (args.pretrained is None) or (args.pretrained is None) != (args.out is None):
        parser.error("give either --locate FOLDER, or --pretrained FOLDER and --out FILE")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    weights, train = load_sections(args.params, WeightsParams, TrainParams)
    if args.backbone not in train.backbone:
        raise ParamsError(
            f"{args.params}: train.backbone.{args.backbone} missing; add a block with its init"
        )
    # imported after the params: a bad value is reported before torch loads (seconds)
    from faceid.backbones.weights import convert_weights, locate_weights

    if args.locate is not None:
        locate_weights(args.backbone, train.backbone[args.backbone].init, weights, args.locate)
    else:
        convert_weights(args.backbone, train.backbone[args.backbone].init, weights, args.pretrained, args.out)
    return 0


if __name__ == "__main__":
    run_cli(main)
