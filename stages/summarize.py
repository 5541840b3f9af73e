"""summarize stage: the current models' evaluations (metrics/detail/<model>.json) and
embeddings (data/embeddings/<model>.npz) → paired comparisons of each trained model with
its start, metrics/summary.json, metrics/report/report.md (+ report_appendix.md) with its
figures, and the plot data.

Which models are current comes from params.yaml (train.backbones, train.tasks), the
same lists dvc.yaml's evaluate stages expand: never from what lies in the folder.
Evaluation files left there by an earlier profile are removed (and named): they belong
to no stage, and `dvc metrics show -R metrics/eval` would show them as current.
"""

from __future__ import annotations

from faceid.forkserver import delegate_main

delegate_main(__name__, __file__)  # run in a warm process (faceid.forkserver); returns when not

import argparse
import json
import logging
import os
from pathlib import Path

from faceid.config.engine import load_sections
from faceid.config.evaluate import EvaluateParams
from faceid.config.tasks import ORIG_TASK, all_tasks
from faceid.config.train import TrainParams
from faceid.errors import run_cli
from faceid.project.naming import evaluation_stems
from faceid.report import Context, FigureJob, load_evaluations, stale_evaluations, write_report
from faceid.report.paired import paired_comparisons

log = logging.getLogger("summarize")


def _json(path: Path | None) -> dict:
    return json.loads(path.read_text()) if path and path.is_file() else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", required=True, help="params file (sections train, evaluate)")
    parser.add_argument("--details", required=True, type=Path, help="level-3 evaluations: metrics/detail")
    parser.add_argument("--headlines", required=True, type=Path, help="level-2 files: metrics/eval")
    parser.add_argument("--embeddings", required=True, type=Path, help="data/embeddings: <model>.npz")
    parser.add_argument("--pairs", required=True, type=Path, help="data/pairs: pairs.parquet")
    parser.add_argument("--manifest", required=True, type=Path, help="data/crops/manifest.parquet")
    parser.add_argument("--dataset", required=True, type=Path, help="metrics/dataset.json")
    parser.add_argument("--crop", required=True, type=Path, help="metrics/crop.json")
    parser.add_argument("--summary", required=True, type=Path)
    parser.add_argument("--report", required=True, type=Path)
    parser.add_argument("--plots", required=True, type=Path, help="ROC/CMC data for `dvc plots show`")
    parser.add_argument(
        "--pairs-detail", required=True, type=Path, help="metrics/pairs_detail.json: label-flip shares for the map"
    )
    parser.add_argument(
        "--crop-review", required=True, type=Path, help="the crop stage's contact sheet, linked when it exists"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    train, evaluate = load_sections(args.params, TrainParams, EvaluateParams)
    stems = evaluation_stems(train.backbones, all_tasks(train.tasks))
    for path in stale_evaluations([args.details, args.headlines], stems):
        path.unlink()
        log.info("removed %s: its model is not in params.yaml (an earlier profile's)", path)
    evaluations = load_evaluations(args.details, stems)
    # the figures need only the evaluations: drawn in other processes while the comparisons run
    workers = 0 if evaluate.processes == 1 else evaluate.processes or os.cpu_count() or 1
    figures = FigureJob(evaluations, args.report.parent, ORIG_TASK, workers)
    try:
        comparisons = paired_comparisons(evaluations, args.embeddings, args.pairs, args.manifest, evaluate, ORIG_TASK)
    except BaseException:
        figures.close()
        raise
    review = args.crop_review
    context = Context(dataset=_json(args.dataset), crop=_json(args.crop), comparisons=comparisons,
                      crop_review=None if not (review and review.is_file()) else
                      str(Path("..") / review.relative_to(args.report.parent.parent)))  # fmt: skip
    flips = _json(args.pairs_detail).get("label_flips")
    written = write_report(evaluations, args.summary, args.report, args.plots, ORIG_TASK, flips, context,
                           figures.result())  # fmt: skip
    log.info("%d models → %s", len(evaluations), ", ".join(map(str, written[:2])))
    return 0


if __name__ == "__main__":
    run_cli(main)
