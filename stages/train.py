"""Stage train@<task>-<backbone>: ArcFace fine-tuning → data/models/<task>-<backbone>/model.pt.

The run's settings come from `--run data/runs/<task>-<backbone>.json` (what the runs stage
resolved, and what DVC tracks), or from params.yaml with `--task` and `--backbone`.

`--processes N` (dvc.yaml passes train.processes) starts N processes on this machine
through torchrun (one per GPU on CUDA, gloo on CPU); run under torchrun yourself for
several nodes (`torchrun --nnodes … stages/train.py …`): it then runs as that process.
"""

from __future__ import annotations

from faceid.forkserver import delegate_main

delegate_main(__name__, __file__)  # run in a warm process (faceid.forkserver); returns when not

import argparse
import contextlib
import json
import logging
from pathlib import Path

from faceid.config.crop import CropParams
from faceid.config.engine import load_sections
from faceid.config.train import TrainParams, TrainRunParams, load_run, resolve_train_params
from faceid.errors import run_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", required=True, help="params file (crop; train without --run)")
    parser.add_argument("--run", help="the resolved run, data/runs/<task>-<backbone>.json (stage runs)")
    parser.add_argument("--task", help="without --run: the task (orig or one of train.tasks)")
    parser.add_argument("--backbone", help="without --run: the backbone")
    parser.add_argument("--crops", required=True, help="data/crops")
    parser.add_argument("--pairs", required=True, help="data/pairs")
    parser.add_argument("--weights", help="data/weights/<backbone>.pt (init: pretrained)")
    parser.add_argument("--init-model", help="data/models/orig-<backbone>/model.pt (init: orig)")
    parser.add_argument(
        "--features",
        help="data/features/<backbone>: the starting trunk's features (stage features), "
        "read when the run's trunk is that one",
    )
    parser.add_argument("--out", required=True, help="data/models/<task>-<backbone>")
    parser.add_argument("--live-dir", required=True, help="dvclive folder (metrics, plots)")
    parser.add_argument(
        "--resume-dir", help="resume state of an interrupted run (not a DVC output); default <out>.resume"
    )
    parser.add_argument(
        "--processes", type=int, default=1, help="training processes on this machine (torchrun); 0: one per GPU"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.run:
        if args.task or args.backbone:
            parser.error("--run names the task and backbone: drop --task and --backbone")
        (crop_params,), run = load_sections(args.params, CropParams), load_run(args.run)
    else:
        if not (args.task and args.backbone):
            parser.error("give --run, or both --task and --backbone")
        train, crop_params = load_sections(args.params, TrainParams, CropParams)
        run = resolve_train_params(train, args.task, args.backbone)
    _train(args, argv, run, crop_params)
    return 0


def _train(args: argparse.Namespace, argv: list[str] | None, run: TrainRunParams, crop_params: CropParams) -> None:
    """Train `run` (torchrun's processes where args.processes asks for them)."""
    # imported after the params: a bad value is reported before torch loads (seconds)
    from faceid.common.gpus import claim_gpu_from_env
    from faceid.common.locks import output_lock
    from faceid.train.collectives import is_main_process
    from faceid.train.run import train_arcface
    from faceid.train.torchrun import relaunch_under_torchrun

    launched = relaunch_under_torchrun(Path(__file__), args.processes, argv, device=run.device)
    if launched is not None:
        return  # the processes have trained and written the model
    claim_gpu_from_env()  # FACEID_GPUS: parallel `dvc queue` workers each take a free GPU
    # how the crops were made travels with the model: the demo crops new photos the same way
    crop = {"method": crop_params.method, "image_size": crop_params.image_size, "margin": crop_params.margin}
    command = f"stages/train.py --task {run.task} --backbone {run.backbone}"
    # under torchrun rank 0 alone writes, so it alone locks the output
    with output_lock(Path(args.out), command=command) if is_main_process() else contextlib.nullcontext():
        result = train_arcface(
            run,
            Path(args.crops),
            Path(args.pairs),
            Path(args.out),
            Path(args.live_dir),
            weights=Path(args.weights) if args.weights else None,
            init_model=Path(args.init_model) if args.init_model else None,
            metadata={"crop": crop},
            resume_dir=Path(args.resume_dir) if args.resume_dir else None,
            features=Path(args.features) if args.features else None,
        )
    summary = {k: v for k, v in result.items() if k != "history"}
    logging.getLogger(__name__).info("result: %s", json.dumps(summary))


if __name__ == "__main__":
    run_cli(main)
