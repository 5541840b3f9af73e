"""Training throughput: the project's step vs the study's, same run, per backbone.

project: the train stage's own backbone-phase epoch (`faceid.train.steps.train_one_epoch` over
         a `GlobalBatchSampler` loader, the run params of params.yaml's orig run with
         every block trained): uint8 crops memory-mapped from shards, normalised (and
         flipped) on the device, bf16 autocast + channels_last + fused optimizer on CUDA,
         batch --batch-size.
study:   fp32, batch 16, every crop stored as JPEG (encoded in memory here) and decoded
         with PIL + normalised per image in the DataLoader at every step.

Prints img/s of both, their ratio, and the share of step time spent waiting for data.
On CPU keep it small: `python benchmarks/bench_train.py --sizes 64 80 96 112 --steps 3`.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from faceid.backbones.registry import BACKBONES, build_backbone
from faceid.common.device import select_device
from faceid.config.engine import load_sections
from faceid.config.tasks import ORIG_TASK
from faceid.config.train import TrainParams, resolve_train_params
from faceid.crop.reader import CropDataset, make_loader, prepare_batch
from faceid.train.arcface import ArcFaceHead
from faceid.train.sampler import GlobalBatchSampler
from faceid.train.schedule import Phase, build_optimizer, build_scheduler, phase_parameters
from faceid.train.steps import ArcFaceNet, train_one_epoch


class JpegDataset(Dataset):
    """The study's loading: decode a JPEG and normalise it per image, every time."""

    def __init__(self, jpegs: list[bytes], labels: np.ndarray):
        self.jpegs, self.labels = jpegs, labels

    def __len__(self):
        return len(self.jpegs)

    def __getitem__(self, i):
        image = np.asarray(Image.open(io.BytesIO(self.jpegs[i])).convert("RGB"), np.float32)
        return torch.from_numpy((image - 127.5) / 128.0).permute(2, 0, 1), int(self.labels[i])


def fake_crops(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    base = rng.integers(0, 256, (n, size // 8, size // 8, 3), dtype=np.uint8)
    return base.repeat(8, axis=1).repeat(8, axis=2)  # smooth-ish, JPEG-compressible


ROOT = Path(__file__).resolve().parents[1]


def time_steps(model, head, loader, steps, device):
    """The study's step, timed: fp32, its own loader (JPEG decoded per image)."""
    optimizer = torch.optim.SGD([*model.parameters(), *head.parameters()], lr=1e-3, momentum=0.9)
    data_time, total, images_done = 0.0, 0.0, 0
    iterator = iter(loader)
    for step in range(steps + 1):  # step 0 warms up
        start = time.perf_counter()
        images, labels = next(iterator)
        x, labels = images.to(device), labels.to(device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        loaded = time.perf_counter()
        loss = F.cross_entropy(head(model(x), labels), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        end = time.perf_counter()
        if step > 0:
            data_time += loaded - start
            total += end - start
            images_done += len(labels)
    return images_done / total, data_time / total


def project_run(backbone: str, size: int, args, device: torch.device):
    """params.yaml's orig run of `backbone`, every block trained, at the benchmark's sizes."""
    (train,) = load_sections(ROOT / "params.yaml", TrainParams)
    run = resolve_train_params(train, ORIG_TASK, backbone)
    return dataclasses.replace(
        run, batch_size=args.batch_size, image_size=size, max_steps_per_epoch=args.steps + 1, frozen_blocks=0,
        freeze_bn=False, flip=True, num_workers=args.num_workers, device=device.type, epochs=1,
    )  # fmt: skip


def time_project(backbone: str, size: int, dataset: CropDataset, args, device: torch.device):
    """The train stage's epoch on images (faceid.train.steps), timed per step; data share from
    fetching the same batches alone."""
    run = project_run(backbone, size, args, device)
    torch.manual_seed(0)
    model = build_backbone(backbone, "none", dropout=run.dropout).to(device, memory_format=torch.channels_last)
    head = ArcFaceHead(512, args.classes, run.margin, run.scale).to(device)
    net = ArcFaceNet(model, head)
    sampler = GlobalBatchSampler(len(dataset), run.batch_size, seed=0, drop_last=True)
    loader = make_loader(dataset, run.batch_size, shuffle=False, num_workers=run.num_workers,
                         pin_memory=device.type == "cuda", batch_sampler=sampler)  # fmt: skip
    phase = Phase("backbone", 1, run.lr)
    optimizer = build_optimizer(run, phase_parameters(phase, run, model, head), device)
    scheduler = build_scheduler(optimizer, run, 1, run.max_steps_per_epoch)
    rates: list[float] = []

    def on_step(values: dict) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(values["timing/img_per_s"])

    sampler.set_epoch(0)
    train_one_epoch(net, loader, sampler, optimizer, scheduler, run, device, 0, on_step)
    steady = rates[1:] or rates  # step 0 warms up
    rate = len(steady) / sum(1 / r for r in steady)  # images per second over the timed steps
    started = time.perf_counter()
    fetched = 0
    for step, (images, _) in enumerate(loader):
        if step > args.steps:
            break
        prepare_batch(images, device, size)
        fetched += len(images)
    data_share = (time.perf_counter() - started) / fetched * rate
    return rate, min(data_share, 1.0)


def bench(backbone, size, args, device, workdir: Path) -> dict[str, float]:
    """img/s and data-wait share of the project's and the study's step; also printed."""
    rng = np.random.default_rng(0)
    n = max(args.batch_size, 16) * (args.steps + 1)
    crops = fake_crops(n, size, rng)
    labels = rng.integers(0, args.classes, n)
    shard = np.lib.format.open_memmap(workdir / f"shard-{size}.npy", "w+", np.uint8, crops.shape)
    shard[:] = crops
    shard.flush()
    del shard
    dataset = CropDataset({0: workdir / f"shard-{size}.npy"}, np.zeros(n, np.int64), np.arange(n), labels)
    jpegs = []
    for crop in crops[: 16 * (args.steps + 1)]:  # what the study's batch-16 steps read
        buffer = io.BytesIO()
        Image.fromarray(crop).save(buffer, format="JPEG", quality=90)
        jpegs.append(buffer.getvalue())
    study_loader = DataLoader(
        JpegDataset(jpegs, labels[: len(jpegs)]),
        batch_size=16,
        shuffle=True,
        num_workers=args.num_workers,
        drop_last=True,
    )
    results = {"project": time_project(backbone, size, dataset, args, device)}
    torch.manual_seed(0)
    model = build_backbone(backbone, "none", dropout=0.6).to(device).train()  # the study's (facenet-pytorch's)
    head = ArcFaceHead(512, args.classes, 0.5, 64.0).to(device)
    results["study"] = time_steps(model, head, study_loader, args.steps, device)
    (p_rate, p_data), (s_rate, s_data) = results["project"], results["study"]
    print(
        f"{backbone:20s} {size:4d}px  project {p_rate:8.1f} img/s (batch {args.batch_size}, data {p_data:5.1%})"
        f"  study {s_rate:8.1f} img/s (batch 16, data {s_data:5.1%})  ratio {p_rate / s_rate:5.2f}x",
        flush=True,
    )
    return {"project_img_per_s": p_rate, "project_data_share": p_data, "project_batch_size": args.batch_size,
            "study_img_per_s": s_rate, "study_data_share": s_data, "study_batch_size": 16,
            "ratio": p_rate / s_rate}  # fmt: skip


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=sorted(BACKBONES))
    parser.add_argument("--sizes", nargs="+", type=int, default=[96])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    print(f"device {device}, torch threads {torch.get_num_threads()}, steps {args.steps}")
    with tempfile.TemporaryDirectory() as tmp:
        for backbone in args.backbones:
            for size in args.sizes:
                if size < BACKBONES[backbone].min_image_size:
                    print(f"{backbone:20s} {size:4d}px  skipped: below min_image_size")
                    continue
                bench(backbone, size, args, device, Path(tmp))


if __name__ == "__main__":
    main()
