"""Stage features@<backbone>: the backbone's starting trunk features of every crop and its
mirror image, computed once → data/features/<backbone>/ (features.npy float32 (N, 2, D),
features.json).

    python stages/features.py --run data/runs/orig-<backbone>.json --weights data/weights/<backbone>.pt \\
        --crops data/crops --out data/features/<backbone>

The starting point is orig's (its run file: seed, init, input size, device, and
eval_batch_size for the batches), exactly as training and evaluate-base build it. Every
train and evaluate stage of the backbone whose network has this trunk reads these
features instead of pushing the crops through the trunk again (faceid.features.trunk).
"""

from __future__ import annotations

from faceid.forkserver import delegate_main

delegate_main(__name__, __file__)  # run in a warm process (faceid.forkserver); returns when not

import argparse
import logging
from pathlib import Path

from faceid.errors import run_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="orig's resolved run: data/runs/orig-<backbone>.json (stage runs)")
    parser.add_argument(
        "--weights", required=True, help="data/weights/<backbone>.pt (stage weights; empty for init: none)"
    )
    parser.add_argument("--crops", required=True, help="data/crops")
    parser.add_argument("--out", required=True, help="data/features/<backbone>")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from faceid.backbones.load import start_model
    from faceid.common.device import select_device
    from faceid.common.memory import retain_heap
    from faceid.config.train import load_run
    from faceid.features.trunk import write_feature_file

    retain_heap()  # the same activations' memory batch after batch, not fresh pages each time
    run = load_run(args.run)
    model, init = start_model(run, Path(args.weights))
    device = select_device(run.device, key="train.common.device")
    meta = write_feature_file(
        model, run.backbone, Path(args.crops), Path(args.out), run.image_size, run.eval_batch_size, device
    )
    logging.getLogger("features").info(
        "%s (%s): %d crops x 2 views x %d → %s", run.backbone, init, *meta["shape"][::2], args.out
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
