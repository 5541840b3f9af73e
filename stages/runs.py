"""Stage runs: every training run's settings, resolved → data/runs/<task>-<backbone>.json.

    python stages/runs.py --params params.yaml --out data/runs

One file per model (orig and each task of train.tasks, times train.backbones): each
train stage depends on its own file, so a task's block in params.yaml is optional and
editing it re-runs only that task's models.
"""

from __future__ import annotations

from faceid.forkserver import delegate_main

delegate_main(__name__, __file__)  # run in a warm process (faceid.forkserver); returns when not

import argparse
import logging

from faceid.config.engine import load_sections
from faceid.config.train import TrainParams
from faceid.errors import run_cli
from faceid.train.runs import write_runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", required=True, help="params file (section train; crop.image_size)")
    parser.add_argument("--out", required=True, help="output folder (data/runs)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    (train,) = load_sections(args.params, TrainParams)  # crop too: its image_size rules
    written = write_runs(train, args.out)
    logging.getLogger("runs").info("%d runs → %s", len(written), args.out)
    return 0


if __name__ == "__main__":
    run_cli(main)
