"""Stage curves: every model's training curves gathered into one file per metric.

    python stages/curves.py --params params.yaml --live metrics/train --out metrics/curves

`dvc plots show` then draws one plot per metric (loss, val AUC on the task's pairs, val
AUC on orig's) with a line per model, instead of one single-line plot per model and metric.
"""

from __future__ import annotations

from faceid.forkserver import delegate_main

delegate_main(__name__, __file__)  # run in a warm process (faceid.forkserver); returns when not

import argparse
import logging

from faceid.errors import run_cli
from faceid.report.curves import gather


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", required=True, help="params file (train.tasks, train.backbones)")
    parser.add_argument("--live", required=True, help="the train stages' dvclive folders (metrics/train)")
    parser.add_argument("--out", required=True, help="output folder (metrics/curves)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    gather(args.params, args.live, args.out)
    return 0


if __name__ == "__main__":
    run_cli(main)
