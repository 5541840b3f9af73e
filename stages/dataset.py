"""dataset stage: data/celeba in CelebA's layout (rendered, downloaded or a local copy), and
data/celeba-input: links to every file the crop stage reads (hashed by DVC through them)."""

from __future__ import annotations

from faceid.forkserver import delegate_main

delegate_main(__name__, __file__)  # run in a warm process (faceid.forkserver); returns when not

import argparse
import logging
from pathlib import Path

from faceid.common.fileio import write_json
from faceid.common.locks import output_lock
from faceid.config.dataset import DatasetParams
from faceid.config.engine import load_sections
from faceid.data.prepare import describe, prepare_dataset
from faceid.errors import run_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", required=True, help="params file (section dataset)")
    parser.add_argument("--out", type=Path, required=True, help="the dataset folder (data/celeba)")
    parser.add_argument("--inputs", type=Path, required=True,
                        help="folder of links to what the crop stage reads (data/celeba-input, cache: false)")
    parser.add_argument("--metrics", type=Path, required=True, help="counts of the dataset (metrics/dataset.json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    (params,) = load_sections(args.params, DatasetParams)
    with output_lock(args.out, command="stages/dataset.py"):  # a resumed download must not race another
        table = prepare_dataset(args.out, params, args.inputs)
    summary = describe(table, params)
    write_json(args.metrics, summary)
    logging.getLogger("dataset").info(
        "%s dataset: %d images of %d identities in %s",
        params.source,
        summary["images"],
        summary["identities"],
        args.out,
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
