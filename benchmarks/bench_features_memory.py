"""Peak memory of the features stage and of a training run's read of its file, against
the number of crops: both must stay flat as the crops grow (CelebA: 202,599 crops, whose
float32 features file is 202,599 x 2 x 2048 x 4 B = 3.3 GB for resnet50).

    python benchmarks/bench_features_memory.py --crops 1000 4000

For each size: fake crops in shards (64 px, as the default's resnet50 input), then in a
fresh process `write_feature_file` (untrained resnet50, batch 128, CPU) and, in another,
`FeatureFile.read` of every crop as float16 (a training run's cached phases at CelebA
scale read its training partition, 80% of the crops, this way). Prints the peak RSS of
each process (ru_maxrss) and the file size.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

CHILD = """
import resource, sys, torch
from pathlib import Path
from faceid.crop.reader import CropStore
from faceid.features.trunk import FeatureFile, write_feature_file
from faceid.backbones.load import start_model
from faceid.config.train import TrainParams, resolve_train_params
from faceid.config.engine import load_sections
crops, out, what = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
(train,) = load_sections(sys.argv[4], TrainParams)
run = resolve_train_params(train, "orig", "resnet50")
if what == "write":
    model, _ = start_model(run, None)
    write_feature_file(model, "resnet50", crops, out, run.image_size, 128, torch.device("cpu"))
else:
    store = CropStore(crops)
    features = FeatureFile(out, store).read(store.dataset(store._where.index), 2, torch.float16)
    print("read", tuple(features.shape), file=sys.stderr)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def fake_crops(folder: Path, n: int, size: int = 64, shard_size: int = 8192) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for shard, start in enumerate(range(0, n, shard_size)):
        count = min(shard_size, n - start)
        array = np.lib.format.open_memmap(folder / f"shard-{shard:03d}.npy", "w+", np.uint8, (count, size, size, 3))
        for block in range(0, count, 1024):
            array[block : block + 1024] = rng.integers(0, 256, (min(1024, count - block), size, size, 3), np.uint8)
        array.flush()
        del array
        rows += [{"image": f"{start + r:06d}.jpg", "shard": shard, "row": r} for r in range(count)]
    manifest = pd.DataFrame(rows)
    manifest["identity"], manifest["partition"], manifest["status"] = 1, 0, "detected"
    manifest.astype({"shard": np.int16, "row": np.int32}).to_parquet(folder / "manifest.parquet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crops", type=int, nargs="+", default=[1000, 4000])
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    env = {"PYTHONPATH": f"{root / 'src'}:{root}", "FACEID_FORKSERVER": "0", "PATH": "/usr/bin:/bin"}
    print("| crops | features.npy MB | features stage peak RSS MB | read as float16 peak RSS MB |")
    print("|---|---|---|---|")
    for n in args.crops:
        with tempfile.TemporaryDirectory() as tmp:
            crops, out = Path(tmp) / "crops", Path(tmp) / "features"
            fake_crops(crops, n)
            rss = []
            for what in ("write", "read"):
                args = [sys.executable, "-c", CHILD, str(crops), str(out), what, str(root / "params.yaml")]
                done = subprocess.run(args,
                                      env=env, capture_output=True, text=True, check=True)  # fmt: skip
                rss.append(float(done.stdout.split()[-1]))
            size = (out / "features.npy").stat().st_size / 2**20
            print(f"| {n} | {size:.0f} | {rss[0]:.0f} | {rss[1]:.0f} |", flush=True)


if __name__ == "__main__":
    main()
