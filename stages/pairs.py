"""Stage pairs: verification pairs, training subsets and the identification protocol.

    python stages/pairs.py --params params.yaml --manifest data/crops/manifest.parquet \
        --out data/pairs --metrics metrics/pairs.json --detail metrics/pairs_detail.json
"""

from __future__ import annotations

from faceid.forkserver import delegate_main

delegate_main(__name__, __file__)  # run in a warm process (faceid.forkserver); returns when not

import argparse
import logging

from faceid.config.engine import load_sections
from faceid.config.evaluate import EvaluateParams
from faceid.config.pairs import PairsParams
from faceid.config.tasks import all_tasks, read_tasks
from faceid.errors import run_cli
from faceid.pairs import build_pairs, detail_path, read_manifest, write_outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", required=True,
                        help="params file (section pairs; train.tasks; evaluate.attributes and evaluate.groups)")
    parser.add_argument("--manifest", required=True, help="crop manifest parquet")
    parser.add_argument("--out", required=True, help="output folder for the three parquet files")
    parser.add_argument("--metrics", required=True, help="headline counts JSON (a DVC metric)")
    parser.add_argument("--detail", required=True, help="every count per task, split, kind and condition")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    params, evaluate = load_sections(args.params, PairsParams, EvaluateParams)
    tasks, attributes = all_tasks(read_tasks(args.params)), evaluate.attribute_names
    manifest = read_manifest(args.manifest, tuple(dict.fromkeys((*tasks, *attributes))))
    result = build_pairs(manifest, params, tasks, attributes)
    write_outputs(result, args.out, args.metrics, args.detail)
    log = logging.getLogger("pairs")
    log.info("%d pairs, %d training rows, %d identification images → %s",
             len(result.pairs), len(result.train_subsets), len(result.identification), args.out)
    if shortfalls := result.metrics["shortfalls"]:  # one line: the study profile has hundreds
        log.warning(
            "%d cells have fewer items than asked (all that exist are taken), e.g. %s; every one "
            "is under `shortfalls` in %s",
            len(shortfalls),
            shortfalls[0],
            detail_path(args.metrics, args.detail),
        )
    return 0


if __name__ == "__main__":
    run_cli(main)
