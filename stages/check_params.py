"""Stage check-params: params.yaml validated (every section a pipeline stage reads) before
any other stage runs. DVC deletes a stage's outputs before running it; a value the schema
rejects, found only inside that stage, would leave its outputs deleted (data/runs, models,
pairs …). Every first stage (dataset, pretrained, runs) depends on this stage's output, so
`dvc repro` stops here, with every existing output in place. The output's content is the
same for any valid file, so a valid change re-runs nothing downstream by itself."""

from __future__ import annotations

from faceid.forkserver import delegate_main

delegate_main(__name__, __file__)  # run in a warm process (faceid.forkserver); returns when not

import argparse
import dataclasses
from pathlib import Path

from faceid.common.fileio import write_json
from faceid.config.pipeline import PipelineParams, load_pipeline_params
from faceid.errors import run_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", required=True, help="params.yaml")
    parser.add_argument("--out", type=Path, required=True, help="data/params-checked.json: the sections checked")
    args = parser.parse_args(argv)
    load_pipeline_params(args.params)
    write_json(args.out, {"checked": [f.name for f in dataclasses.fields(PipelineParams)]})
    return 0


if __name__ == "__main__":
    run_cli(main)
