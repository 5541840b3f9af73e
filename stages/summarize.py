"""summarize stage: the current models' detailed evaluations (metrics/detail/<model>.json)
→ metrics/summary.json, metrics/report/report.md with its figures, and the plot data.

Which models are current comes from params.yaml (train.backbones, train.tasks), the
same lists dvc.yaml's evaluate stages expand: never from what lies in the folder.
Evaluations left there by an earlier profile are named in a warning and not read.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from faceid.config.engine import load_sections
from faceid.config.evaluate import EvaluateParams
from faceid.config.tasks import ORIG_TASK, all_tasks
from faceid.config.train import TrainParams
from faceid.errors import run_cli
from faceid.naming import evaluation_stems
from faceid.report import load_evaluations, stale_evaluations, write_report

log = logging.getLogger("summarize")


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--details", default="metrics/detail", type=Path, help="level-3 evaluations")
    parser.add_argument("--headlines", default="metrics/eval", type=Path, help="level-2 files (checked for stale ones)")
    parser.add_argument("--summary", default="metrics/summary.json", type=Path)
    parser.add_argument("--report", default="metrics/report/report.md", type=Path)
    parser.add_argument("--plots", default="metrics/plots", type=Path, help="ROC/CMC data for `dvc plots show`")
    parser.add_argument("--pairs-detail", type=Path, help="metrics/pairs_detail.json: label-flip shares for the map")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    train, evaluate = load_sections(args.params, TrainParams, EvaluateParams)
    stems = evaluation_stems(train.backbones, all_tasks(train.tasks))
    stale = stale_evaluations([args.details, args.headlines], stems)
    if stale:
        log.warning(
            "ignored %d evaluation files of models not in params.yaml (an earlier profile's): %s; "
            "`git rm` them to tidy up", len(stale), ", ".join(map(str, stale)),
        )  # fmt: skip
    evaluations = load_evaluations(args.details, stems)
    flips = json.loads(args.pairs_detail.read_text()).get("label_flips") if args.pairs_detail else None
    written = write_report(
        evaluations, args.summary, args.report, args.plots, evaluate.global_fmr, ORIG_TASK, flips
    )
    log.info("%d models → %s", len(evaluations), ", ".join(map(str, written[:2])))
    return written


if __name__ == "__main__":
    run_cli(main)
