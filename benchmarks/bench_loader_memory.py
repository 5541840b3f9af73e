"""Peak RSS of reading every crop once through the training DataLoader, vs naive loading.

Writes a fake shard set (default 40,000 crops of 112x112, 1.5 GB) and, each in its own
process, reads all of it in shuffled batches:
  project  faceid.crop.reader loader (shards mapped per batch, uint8 batches)
  mmap     one long-lived np.load(mmap_mode="r") per shard, kept open (pages stay resident)
  naive    np.load of every shard into RAM first (what "just load the crops" does)
Prints the peak RSS (VmHWM) of each reading process and of its largest worker.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from faceid.crop.reader import CropDataset, make_loader


def write_shards(root: Path, n: int, size: int, shard_size: int) -> dict[int, Path]:
    rng = np.random.default_rng(0)
    paths = {}
    for s, start in enumerate(range(0, n, shard_size)):
        count = min(shard_size, n - start)
        path = root / f"shard-{s:03d}.npy"
        out = np.lib.format.open_memmap(path, "w+", np.uint8, (count, size, size, 3))
        for i in range(0, count, 1024):
            out[i : i + 1024] = rng.integers(0, 256, out[i : i + 1024].shape, dtype=np.uint8)
        out.flush()
        del out
        paths[s] = path
    return paths


def _peak_kib() -> int:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forked parent
    return int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0])


def read_all(mode: str, root: Path, batch_size: int, num_workers: int) -> None:
    baseline = _peak_kib()  # interpreter + torch + pandas, before any crop is read
    paths = {int(p.stem.split("-")[1]): p for p in sorted(root.glob("shard-*.npy"))}
    counts = {s: np.load(p, mmap_mode="r").shape[0] for s, p in paths.items()}
    shard = np.concatenate([np.full(c, s) for s, c in counts.items()])
    row = np.concatenate([np.arange(c) for c in counts.values()])
    order = np.random.default_rng(0).permutation(len(row))
    checksum, start = 0, time.perf_counter()
    if mode == "project":
        dataset = CropDataset(paths, shard, row, np.zeros(len(row), np.int64))
        loader = make_loader(
            dataset, batch_size, shuffle=True, generator=torch.Generator().manual_seed(0), num_workers=num_workers
        )
        for images, _ in loader:
            checksum += int(images[:, 0, 0, 0].sum())
    else:
        arrays = {s: np.load(p, mmap_mode="r") if mode == "mmap" else np.load(p) for s, p in paths.items()}
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            batch = np.stack([arrays[shard[j]][row[j]] for j in idx])
            checksum += int(batch[:, 0, 0, 0].sum())
    elapsed = time.perf_counter() - start
    grown = (_peak_kib() - baseline) / 1024
    worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 if num_workers else 0.0
    print(
        f"{mode:8s} workers={num_workers}  peak RSS {baseline / 1024:5.0f} MiB after imports, "
        f"+{grown:5.0f} MiB reading; largest worker {worker:5.0f} MiB  "
        f"{len(row) / elapsed:8.0f} img/s  (checksum {checksum})",
        flush=True,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=40_000)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--shard-size", type=int, default=8192)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "ROOT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        read_all(args.child[0], Path(args.child[1]), args.batch_size, args.num_workers)
        return
    with tempfile.TemporaryDirectory() as tmp:
        write_shards(Path(tmp), args.n, args.size, args.shard_size)
        total = args.n * args.size * args.size * 3 / 2**20
        print(f"{args.n} crops of {args.size}x{args.size}: {total:.0f} MiB in shards")
        runs = [("project", 0), ("project", args.num_workers), ("mmap", 0), ("naive", 0)]
        for mode, workers in runs:
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    mode,
                    tmp,
                    "--batch-size",
                    str(args.batch_size),
                    "--num-workers",
                    str(workers),
                ],
                check=True,
            )


if __name__ == "__main__":
    main()
