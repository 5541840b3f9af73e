"""The GPU suite's figures in one JSON: crop, training and embedding throughput, peak GPU
memory, `pytest -m gpu`, and, when two GPUs exist, a 2-process DDP smoke test of
`faceid.train.collectives` and the train stage itself as 2 torchrun processes (nccl).

Run through `benchmarks/gpu_suite.sh` (sizes for ≤ 8 minutes on one H100/H200);
`--dry-run` uses tiny sizes and runs on the CPU, so CI keeps the suite from rotting.
Every throughput is measured against its baseline in the same run:

- crop: `faceid.crop.cache.crop_dataset` (batched MTCNN, decode threads, shards) vs the naive
  `MTCNN()(img)` per-image loop, on aligned 178x218 and varied-size (240-420 px) folders;
- training: the train stage's epoch (`faceid.train.steps.train_one_epoch`: uint8 shards, bf16
  autocast, channels_last, batch 256 on CUDA) vs the study's (fp32, batch 16, JPEG decoded every step), per backbone;
- embedding: `faceid.features.embed.embed` img/s per backbone.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from tests._params import write_params
from tests._train_fixtures import write_tiny_train_data

from bench_crop import build_folder, naive, stage
from bench_train import bench as bench_train_step
from bench_train import fake_crops
from faceid.backbones.registry import BACKBONES, build_backbone
from faceid.config.crop import CropParams
from faceid.config.engine import load_sections
from faceid.crop.reader import CropDataset
from faceid.features.embed import embed

ROOT = Path(__file__).resolve().parents[1]

# (real run, dry run)
SIZES = {
    "crop_images": (3000, 12),  # enough that spawning 2 processes is not the whole time
    "naive_images": (120, 4),
    "train_steps": (25, 1),
    "train_batch": (256, 8),
    "train_size": (160, 80),
    "embed_images": (8192, 16),
    "embed_batch": (1024, 8),
}


def _peak_mib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def crop_figures(tmp: Path, device: torch.device, sizes: dict[str, int]) -> dict[str, Any]:
    """Project vs naive img/s per layout; processes 1 (and 2 on a GPU) for the project."""
    figures: dict[str, Any] = {}
    warm = tmp / "celeba-warm"
    build_folder(warm, "aligned", 4, seed=9)
    # params.yaml's crop section, with MTCNN's own min_face_size (20 px), as the naive baseline uses
    (repo_crop,) = load_sections(ROOT / "params.yaml", CropParams)
    base = {"device": device.type, "workers": 4, "threads": 0 if device.type == "cuda" else 1, "min_face_size": 20}
    batch = 128 if device.type == "cuda" else 8
    stage(warm, "aligned", dataclasses.replace(repo_crop, **base, batch_size=batch), tmp / "crops-warm")  # CUDA init
    for layout in ("aligned", "wild"):
        root = tmp / f"celeba-{layout}"
        build_folder(root, layout, sizes["crop_images"])
        naive_root = tmp / f"celeba-naive-{layout}"
        build_folder(naive_root, layout, sizes["naive_images"], seed=1)
        canvas = {} if layout == "aligned" else {"canvas_width": 320, "canvas_height": 400}
        entry: dict[str, Any] = {"images": sizes["crop_images"], "naive_images": sizes["naive_images"]}
        entry["naive_img_per_s"], _ = naive(naive_root, layout, threads=0, device=str(device))
        for processes in (1, 2) if device.type == "cuda" else (1,):
            params = dataclasses.replace(repo_crop, **base, **canvas, batch_size=batch, processes=processes)
            _reset_peak(device)
            rate, detected = stage(root, layout, params, tmp / f"crops-{layout}-{processes}")
            entry[f"project_img_per_s_processes_{processes}"] = rate
            entry[f"detected_processes_{processes}"] = detected
            if processes == 1:  # other processes' memory is not visible from here
                entry["peak_gpu_mib"] = _peak_mib(device)
        entry["ratio"] = entry["project_img_per_s_processes_1"] / entry["naive_img_per_s"]
        figures[layout] = entry
        print(f"crop {layout}: {json.dumps(entry)}", flush=True)
    return figures


def train_figures(tmp: Path, device: torch.device, sizes: dict[str, int]) -> dict[str, Any]:
    args = SimpleNamespace(
        batch_size=sizes["train_batch"], steps=sizes["train_steps"], classes=1000,
        num_workers=4 if device.type == "cuda" else 0,
    )  # fmt: skip
    figures = {}
    for backbone in sorted(BACKBONES):
        size = max(sizes["train_size"], BACKBONES[backbone].min_image_size)
        _reset_peak(device)
        figures[backbone] = {
            "image_size": size,
            **bench_train_step(backbone, size, args, device, tmp),
            "peak_gpu_mib": _peak_mib(device),
        }
    return figures


def embed_figures(tmp: Path, device: torch.device, sizes: dict[str, int]) -> dict[str, Any]:
    n, size = sizes["embed_images"], sizes["train_size"]
    path = tmp / "embed-shard.npy"
    shard = np.lib.format.open_memmap(path, "w+", np.uint8, (n, size, size, 3))
    shard[:] = fake_crops(n, size, np.random.default_rng(0))
    shard.flush()
    del shard
    dataset = CropDataset({0: path}, np.zeros(n, np.int64), np.arange(n), np.zeros(n, np.int64))
    figures = {}
    for backbone in sorted(BACKBONES):
        # dropout is off while embedding (eval mode): any rate times the same
        model = build_backbone(backbone, "none", dropout=0.0).to(device, memory_format=torch.channels_last)
        warm = CropDataset(dataset.paths, dataset.shard[:8], dataset.row[:8], dataset.labels[:8])
        embed(model, warm, 8, device, image_size=None, num_workers=0, flip_average=False)  # CUDA kernels, cudnn plans
        _reset_peak(device)
        start = time.perf_counter()
        out = embed(model, dataset, sizes["embed_batch"], device, image_size=None,
                    num_workers=4 if device.type == "cuda" else 0, flip_average=False)  # fmt: skip
        elapsed = time.perf_counter() - start
        assert out.shape == (n, 512) and np.isfinite(out).all()
        figures[backbone] = {"img_per_s": n / elapsed, "batch_size": sizes["embed_batch"], "image_size": size,
                             "peak_gpu_mib": _peak_mib(device)}  # fmt: skip
        print(f"embed {backbone}: {json.dumps(figures[backbone])}", flush=True)
        del model
    return figures


def _run(args: list[str], timeout: float) -> dict[str, Any]:
    # the repo first; then what gpu_suite.sh added (the wheels carried to a machine without network)
    inherited = [
        p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in (str(ROOT / "src"), str(ROOT))
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT), *inherited])}
    start = time.perf_counter()
    try:
        done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"command": " ".join(args), "returncode": None, "error": f"timed out after {timeout} s"}
    tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
    return {"command": " ".join(args[1:]), "returncode": done.returncode, "seconds": time.perf_counter() - start,
            "tail": tail}  # fmt: skip


def gpu_test_files() -> list[str]:
    """The test files that hold gpu-marked tests: `pytest -m gpu` over all of tests/ would import
    every test module (dvc, flask, dvclive …), which a GPU machine without them cannot."""
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py") if "mark.gpu" in p.read_text())


def gpu_tests(dry_run: bool) -> dict[str, Any]:
    """`pytest -m gpu` (dry run: only collected, since there is no GPU to run them on)."""
    files = gpu_test_files()
    if not files:
        return {"skipped": "no test file marks a test gpu"}
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", *files]
    return _run([*command, "--collect-only"] if dry_run else command, timeout=240)


def ddp_smoke(tmp: Path, device: torch.device, dry_run: bool) -> dict[str, Any]:
    """tests/_ddp_worker.py under torchrun: 2 GPUs with nccl, or (dry run) 2 CPU processes with gloo."""
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    if gpus < 2 and not dry_run:
        return {"skipped": f"{gpus} GPU(s); the DDP smoke test needs 2"}
    backend_device = "cuda" if gpus >= 2 else "cpu"
    out = tmp / "ddp"
    out.mkdir()
    result = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                   str(ROOT / "tests" / "_ddp_worker.py"), str(out), backend_device], timeout=240)  # fmt: skip
    ranks = [json.loads(p.read_text()) for p in sorted(out.glob("rank-*.json"))]
    result["device"] = backend_device
    result["ranks_reporting"] = len(ranks)
    result["backends"] = sorted({r["backend"] for r in ranks})
    result["losses_agree_across_ranks"] = len(ranks) == 2 and ranks[0]["losses"] == ranks[1]["losses"]
    if result.get("returncode") == 0 and not result["losses_agree_across_ranks"]:
        result["error"] = "the ranks did not both report, or their losses differ"
    return result


def ddp_train(tmp: Path, device: torch.device, dry_run: bool) -> dict[str, Any]:
    """The train stage itself as 2 processes (`stages/train.py --processes 2`: torchrun, nccl
    on 2 GPUs, or gloo on the CPU in the dry run) on tiny data: finishes, writes model.pt."""
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    if gpus < 2 and not dry_run:
        return {"skipped": f"{gpus} GPU(s); DDP training needs 2"}
    run_device = "cuda" if gpus >= 2 else "cpu"
    crops, pairs = write_tiny_train_data(tmp / "ddp-train-data", n_identities=4, per_identity=8)
    common = {"head_epochs": 1, "neck_epochs": 1, "epochs": 1, "batch_size": 4, "max_steps_per_epoch": 2,
              "eval_batch_size": 8, "device": run_device}  # fmt: skip
    params = write_params(
        tmp / "ddp-train.yaml",
        {"train": {"common": common, "backbone": {"resnet50": {"init": "none", "image_size": 64}}}},
    )
    out = tmp / "ddp-train"
    result = _run([sys.executable, str(ROOT / "stages" / "train.py"), "--params", str(params), "--task", "orig",
                   "--backbone", "resnet50", "--crops", str(crops), "--pairs", str(pairs), "--out", str(out / "model"),
                   "--live-dir", str(out / "live"), "--resume-dir", str(out / "resume"), "--processes", "2"],
                  timeout=300)  # fmt: skip
    result["device"] = run_device
    result["model_written"] = (out / "model" / "model.pt").is_file()
    if result.get("returncode") == 0 and not result["model_written"]:
        result["error"] = "the job ended without model.pt"
    return result


def environment(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
                            "cpu_cores": os.cpu_count()}  # fmt: skip
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpus"] = torch.cuda.device_count()
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU: checks the suite runs")
    parser.add_argument("--out", type=Path, default=Path("gpu_suite.json"), help="the JSON to write")
    parser.add_argument("--skip", nargs="*", default=[], choices=["crop", "train", "embed", "pytest", "ddp"])
    args = parser.parse_args(argv)
    if args.dry_run:
        device = torch.device("cpu")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cudnn pick its fastest kernels
    else:
        parser.error("no CUDA device: run with --dry-run, or on a GPU machine")
    sizes = {key: real_dry[args.dry_run] for key, real_dry in SIZES.items()}
    started = time.perf_counter()
    result: dict[str, Any] = {"dry_run": args.dry_run, "environment": environment(device), "sizes": sizes}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sections = {
            "crop": lambda: crop_figures(tmp, device, sizes),
            "train": lambda: train_figures(tmp, device, sizes),
            "embed": lambda: embed_figures(tmp, device, sizes),
            "pytest_gpu": lambda: gpu_tests(args.dry_run),
            "ddp_smoke": lambda: ddp_smoke(tmp, device, args.dry_run),
            "ddp_train": lambda: ddp_train(tmp, device, args.dry_run),
        }
        for name, measure in sections.items():
            if name.split("_")[0] in args.skip:
                result[name] = {"skipped": "--skip"}
                continue
            section_start = time.perf_counter()
            result[name] = measure()
            print(f"{name}: {time.perf_counter() - section_start:.1f} s", flush=True)
    result["seconds"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    failed = [
        name for name in ("pytest_gpu", "ddp_smoke", "ddp_train")
        if "error" in result[name] or result[name].get("returncode", 0) != 0
    ]  # fmt: skip
    print(f"wrote {args.out} in {result['seconds']:.0f} s" + (f"; FAILED: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
