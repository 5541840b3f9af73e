"""ArcFace training of one (task, backbone) in up to three phases, then `model.pt`.

1. `head`: the ArcFace class centres alone, on cached trunk features (everything else
   frozen). A fine-tune from `orig` starts with a fresh head over the task's identities:
   its random centres would otherwise send random gradients into the embedding.
2. `neck`: the embedding layer (pooled features -> 512-d, BatchNorm) with the head, still
   on cached features: seconds per epoch, and on random or pretrained trunks it is what
   turns pooled features into a face embedding (impostor cosine near 0, not 0.9999).
3. `backbone`: every unfrozen block (train.*.frozen_blocks) on images, as the budget allows.

Before them, `bn_recalibration_images` crops can re-estimate the BatchNorm statistics.
One path for every device: autocast (bf16 on CUDA, disabled on CPU), channels_last and
fused optimizers on CUDA. After every epoch of every phase the resume state is
saved outside the DVC output (see faceid.train.resume); a non-finite loss stops the run with
`TrainingDiverged` and keeps the last good state. Every evaluated epoch's val AUC is
logged; `select_epoch` picks the weights that become `model.pt` = {backbone, init,
state_dict, epoch, phase, params, metrics, ...metadata}. No timings or wall-clock values
go into model.pt (two runs with the same inputs write the same bytes); img/s lives in
the dvclive plots only.

Under torchrun (`stages/train.py --processes N`, or `torchrun … stages/train.py`) the same
code runs in every process (faceid.train.collectives): feature caching and validation embed a
share of the images per process and gather them; the cached phases then run the same
steps in every process (cheap: seconds) and rank 0's weights are broadcast after each; the
backbone phase wraps the network in DistributedDataParallel over a GlobalBatchSampler, so
a global batch is split across processes and the step equals one process's. Only rank 0
writes: resume state, dvclive logs, model.pt. Every process reads the resume state rank 0
accepted (the resume folder must be on a filesystem all nodes share for multi-node runs).
BatchNorm layers that train in the backbone phase see each process's slice of the batch
(no SyncBatchNorm), the one known difference from one process.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from dvclive import Live
from torch import nn

from faceid.backbones.load import initial_model
from faceid.backbones.registry import EMBEDDING_SIZE, freeze_stages, get_spec
from faceid.common.fileio import save_torch_atomic
from faceid.config.train import TrainRunParams, run_record
from faceid.crop.reader import make_loader
from faceid.features.trunk import FeatureFile, recalibrate_batchnorm
from faceid.train.arcface import ArcFaceHead
from faceid.train.collectives import DistInfo, barrier, broadcast_module, distributed, wrap_model
from faceid.train.run_state import RunState, load_resume_state, open_resume_state
from faceid.train.sampler import GlobalBatchSampler
from faceid.train.schedule import (
    Phase,
    build_optimizer,
    build_scheduler,
    phase_parameters,
    training_phases,
)
from faceid.train.steps import ArcFaceNet, TrainingDiverged, train_cached_epoch, train_one_epoch
from faceid.train.taskdata import TaskData, TrainDataError, load_task_data
from faceid.train.validation import shared_features, validation_aucs

__all__ = ["TrainDataError", "TrainingDiverged", "train_arcface", "training_phases"]

log = logging.getLogger(__name__)


def _strip_timings(live_dir: Path) -> None:
    """Drop img/s from dvclive's metrics.json: timings vary run to run, results must not."""
    path = Path(live_dir) / "metrics.json"
    if path.exists():
        summary = json.loads(path.read_text())
        summary.pop("timing", None)
        path.write_text(json.dumps(summary, indent=4) + "\n")


def _check_run(run: TrainRunParams, info: DistInfo) -> list[Phase]:
    spec = get_spec(run.backbone)  # a bad name fails before any data is read
    phases = training_phases(run)
    if not phases:
        raise TrainDataError(
            f"{run.task}-{run.backbone}: head_epochs, neck_epochs and epochs are all 0: nothing to train"
        )
    if run.image_size is not None and run.image_size < spec.min_image_size:
        raise TrainDataError(
            f"train image_size {run.image_size} < {spec.min_image_size}, the least {run.backbone} takes"
        )
    if run.epochs and run.batch_size % info.world_size:
        raise TrainDataError(
            f"train batch_size {run.batch_size} is not a multiple of the {info.world_size} processes: "
            "each process must get an equal slice of a global batch; change batch_size or train.processes"
        )
    return phases


def open_live(live_dir: str | Path) -> Live:
    """The run's dvclive logger (metrics/train/<model>: the stage's output, no dvc.yaml of its own).

    Inside `dvc exp run`, dvclive's `end()` git-adds the files of its folder that no stage
    outputs: it loads the project's DVC index and runs `git status` (1.1 s per train stage
    measured, 2 of a one-task sweep's ~60 s). The train stage outputs every file dvclive
    writes there (metrics.json, plots/metrics), so there is never such a file: that step is
    skipped."""
    live = Live(dir=str(live_dir), dvcyaml=False, save_dvc_exp=False)
    if hasattr(live, "_inside_dvc_exp"):  # dvclive's own flag for that step (3.x)
        live._inside_dvc_exp = False
    return live


def train_arcface(
    run: TrainRunParams,
    crops_dir: Path,
    pairs_dir: Path,
    out_dir: Path,
    live_dir: Path,
    weights: Path | None = None,
    init_model: Path | None = None,
    on_epoch_end: Callable[[int], None] | None = None,
    metadata: dict[str, Any] | None = None,
    resume_dir: Path | None = None,
    features: Path | None = None,
) -> dict[str, Any]:
    """Train through the run's phases, resuming from `resume_dir` when it holds this run; write out_dir/model.pt.

    One process, or each process of a torchrun job (only rank 0 writes). `resume_dir`
    defaults to `<out_dir>.resume`; it is removed once model.pt is written.
    `on_epoch_end(n)` is called (rank 0) after the n-th saved resume point (tests interrupt there).
    `features`: the features stage's folder (data/features/<backbone>); the cached phases
    read it when the run's trunk is the one it was computed with, else compute their own.
    """
    out_dir, metadata = Path(out_dir), metadata or {}
    with distributed(run.device) as info:
        phases = _check_run(run, info)
        data = load_task_data(crops_dir, pairs_dir, run.task)
        resume = open_resume_state(
            run, crops_dir, pairs_dir, resume_dir or out_dir.with_name(out_dir.name + ".resume"),
            weights, init_model, metadata, features,
        )  # fmt: skip
        model, head, init = _build_networks(run, data.n_classes, info.device, weights, init_model)
        state = load_resume_state(resume, info)
        live = open_live(live_dir) if info.is_main else None
        with live if live is not None else contextlib.nullcontext():
            job = RunState(run, model, head, live, resume, on_epoch_end, info)
            job.feature_file = FeatureFile(features, data.store) if features is not None else None
            _start(job, state, data)
            for phase in phases:
                _run_phase(job, phase, data, state)
        result = {
            **job.selected["metrics"],
            "selected_epoch": job.selected["index"],
            "history": job.history,
            "skipped": data.skipped,
        }
        if info.is_main:
            _strip_timings(live_dir)
            _write_model(job, init, result, metadata, out_dir / "model.pt")
            resume.clear()
        barrier()
    return result


def _build_networks(
    run: TrainRunParams, n_classes: int, device: torch.device, weights: Path | None, init_model: Path | None
) -> tuple[nn.Module, ArcFaceHead, str]:
    """The run's starting network (frozen blocks set) and a fresh ArcFace head, on `device`,
    drawn from the run's seed; and the network's init name."""
    torch.manual_seed(run.seed)
    model, init = initial_model(run, weights, init_model)
    freeze_stages(model, get_spec(run.backbone), run.frozen_blocks)
    head = ArcFaceHead(EMBEDDING_SIZE, n_classes, run.margin, run.scale)
    model.to(device, memory_format=torch.channels_last)
    head.to(device)
    return model, head, init


def _start(job: RunState, state: dict[str, Any] | None, data: TaskData) -> None:
    run = job.run
    if state is not None:
        job.restore(state)
        log.info("resuming from %s after %s", job.resume.folder, job.done)
    elif run.bn_recalibration_images:  # the same crops in every process: the same statistics
        used = recalibrate_batchnorm(
            job.model,
            data.train,
            run.bn_recalibration_images,
            run.eval_batch_size,
            job.info.device,
            run.image_size,
            run.seed,
        )
        job.trunk_changed = True
        log.info("BatchNorm statistics re-estimated on %d training crops", used)


def _run_phase(job: RunState, phase: Phase, data: TaskData, state: dict[str, Any] | None) -> None:
    first = job.done.get(phase.name, 0)
    if first >= phase.epochs:
        return
    try:
        if phase.name == "backbone":
            _backbone_phase(job, phase, data, first, state if first else None)
        else:
            _cached_phase(job, phase, data, first, state if first else None)
    except TrainingDiverged as exc:
        folder = job.resume.folder
        kept = f"the resume state in {folder} is kept" if folder.exists() else "no resume state was written yet"
        raise TrainingDiverged(
            f"{job.run.task}-{job.run.backbone}: {phase.name} phase: {exc}; {kept}; lower its lr or check the crops"
        ) from exc


def _write_model(job: RunState, init: str, result: dict[str, Any], metadata: dict[str, Any], path: Path) -> None:
    run, chosen = job.run, job.selected
    info = {
        "backbone": run.backbone,
        "init": init,
        "epoch": chosen["index"],
        "phase": chosen["metrics"]["phase"],
        "params": run_record(run),
        "metrics": result,
        **metadata,
    }
    # through JSON: pickle writes a shared object once and refers back to it, so the same
    # values built in another order (a resumed run) would give other bytes
    save_torch_atomic({"state_dict": chosen["state_dict"], **json.loads(json.dumps(info))}, path)


def _cached_phase(job: RunState, phase: Phase, data: TaskData, first: int, state: dict | None) -> None:
    """The head (or neck + head) trained on cached trunk features; every epoch evaluated,
    with a resume point after each (the features saved once, before the first)."""
    run, model, device = job.run, job.model, job.info.device
    if job.features is None:
        job.features = _trunk_features(job, data)
        job.save_features()  # the features are the slow part of a cached phase: keep them for a resume
        job.save()
    features = job.features["train"]
    # set once, by the run that trains the neck from scratch; a fine-tune from orig keeps
    # orig's, since its embedding layer was trained on them
    if phase.name == "neck" and run.standardize_features and not model.has_feature_statistics():
        model.set_feature_statistics(features.flatten(0, 1))
    labels = torch.from_numpy(data.train.labels)
    steps = max(features.shape[1] // min(run.batch_size, features.shape[1]), 1)
    optimizer = build_optimizer(run, phase_parameters(phase, run, model, job.head), device)
    scheduler = build_scheduler(optimizer, run, phase.epochs, steps)
    order = torch.Generator().manual_seed(run.seed * 1_000_003 + len(phase.name))
    if state is not None and "order" in state:  # mid-phase: where the interrupted run stood
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        order.set_state(state["order"])
    for epoch in range(first, phase.epochs):
        loss = train_cached_epoch(
            model, job.head, features, labels, optimizer, scheduler, run, device, order, train_neck=phase.name == "neck"
        )
        metrics = {"train_loss": loss, **validation_aucs(model, data, run, job.info, job.features)}
        job.record(phase.name, epoch, metrics)
        job.done[phase.name] = epoch + 1
        job.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "order": order.get_state()})
    broadcast_module(model)  # every process ran the same steps; rank 0's weights are the truth
    broadcast_module(job.head)


def _trunk_features(job: RunState, data: TaskData) -> dict[str, torch.Tensor]:
    """(V, N, D) float16 trunk features of the training subset (V = 2 with flips) and of each
    val pair set's images (V = 1): read from the features stage's file when the run's trunk
    is the one it holds, else computed (each process its share)."""
    run, model, device, file = job.run, job.model, job.info.device, job.feature_file
    if file is not None and file.matches(model, run.backbone, run.image_size):
        log.info("trunk features from %s", file.folder)
        read = lambda ds, views: file.read(ds, views, torch.float16).transpose(0, 1).contiguous()  # noqa: E731
        return {"train": read(data.train, 2 if run.flip else 1)} | {
            name: read(ds, 1) for name, ds in data.val_datasets.items()
        }
    if file is not None:
        log.info("the run's trunk is not the one of %s: its features are computed", file.folder)
        job.feature_file = None
    features = {"train": shared_features(model, data.train, run, device, run.flip, job.info)}
    return features | {
        name: shared_features(model, ds, run, device, False, job.info) for name, ds in data.val_datasets.items()
    }


def _backbone_phase(job: RunState, phase: Phase, data: TaskData, first: int, state: dict | None) -> None:
    """Every unfrozen block on images, an epoch at a time, with a resume point after each."""
    run, model, info = job.run, job.model, job.info
    job.trunk_changed = True  # from here on every resume point holds the whole network
    drop_last = len(data.train) >= run.batch_size  # a batch of 1 breaks BatchNorm1d
    sampler = GlobalBatchSampler(
        len(data.train), run.batch_size, seed=run.seed, rank=info.rank, world_size=info.world_size, drop_last=drop_last
    )
    loader = make_loader(
        data.train,
        run.batch_size,
        shuffle=False,
        num_workers=run.num_workers,
        pin_memory=info.device.type == "cuda",
        batch_sampler=sampler,
    )
    steps = len(sampler) if run.max_steps_per_epoch is None else min(len(sampler), run.max_steps_per_epoch)
    net = wrap_model(ArcFaceNet(model, job.head), info)  # DDP: starts from rank 0's weights
    optimizer = build_optimizer(run, phase_parameters(phase, run, model, job.head), info.device)
    scheduler = build_scheduler(optimizer, run, phase.epochs, steps)
    if state is not None and "optimizer" in state:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    for epoch in range(first, phase.epochs):
        sampler.set_epoch(epoch)  # each epoch's order (epoch_seed(seed, epoch)), resumable
        stats = train_one_epoch(net, loader, sampler, optimizer, scheduler, run, info.device, epoch, job.log)
        metrics = {"train_loss": stats["loss"], **validation_aucs(model, data, run, info, None)}
        job.record(phase.name, epoch, metrics)
        job.done[phase.name] = epoch + 1
        job.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()})
