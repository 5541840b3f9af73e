"""Training under `torchrun --nproc_per_node=2` (gloo, CPU) against one process.

The same tiny run (resnet50, head + neck phases on cached features, then two backbone
epochs on images) once in this process and as a 2-process torchrun job: the job must
finish, only rank 0 may write, its loss and val-AUC curves must match the single
process's, and a job whose rank 0 crashes after a resume point must resume from it
(started again through stages/train.py --processes 2, the path dvc.yaml's cmd takes)
and end exactly where the uninterrupted job did.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from faceid.config.train import TrainCommonParams, TrainParams, resolve_train_params
from faceid.train.collectives import DistInfo
from faceid.train.run import _check_run
from tests._params import ROOT, section, write_params
from tests._train_fixtures import write_tiny_train_data

# params.yaml's, changed for a tiny run; the tolerances below were measured with these.
# lr 0.001: at 0.01 the backbone phase collapsed this tiny model's embeddings (val AUC 0.5),
# where the AUC is decided by rounding noise (DDP 0.520 vs one process 0.504 on one CPU
# kind, within 0.005 on another); at 0.001 it stays >= 0.998 and the two differ by <= 0.0011
TRAIN = {
    "common": {"head_epochs": 1, "head_lr": None, "neck_epochs": 2, "neck_lr": 0.05, "epochs": 2, "batch_size": 4,
               "lr": 0.001, "warmup_epochs": 0.5, "min_lr_ratio": 0.01, "max_steps_per_epoch": 3, "device": "cpu",
               "eval_batch_size": 8, "freeze_bn": True, "dropout": 0.0, "standardize_features": True,
               "frozen_blocks": 0, "margin": 0.5, "scale": 64.0},
    "backbone": {"resnet50": {"init": "none", "image_size": None}},
}  # fmt: skip
# Stated tolerance. The cached phases (head, neck) match bit for bit: features and
# validation embeddings are computed in the same batches in both, and the steps are the
# same. On images (backbone phase), DDP all-reduces gradients and each process convolves
# half a batch, which changes float rounding: losses agree to LOSS_RTOL, and val AUC of
# this tiny set (~470 pairs) to AUC_ATOL (a couple of pairs swapping order). BatchNorm is
# frozen and dropout 0 here: trained BatchNorm would see each process's slice (no
# SyncBatchNorm on CPU) and dropout masks are drawn per process, the two intended
# differences (tolerances above would not hold with them).
LOSS_RTOL = 1e-4
AUC_ATOL = 0.005


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def _args(root: Path, data: tuple[Path, Path], name: str) -> list[str]:
    crops, pairs = data
    return ["--params", str(root / "params.yaml"), "--task", "orig", "--backbone", "resnet50",
            "--crops", str(crops), "--pairs", str(pairs), "--out", str(root / name / "model"),
            "--live-dir", str(root / name / "live"), "--resume-dir", str(root / name / "resume")]  # fmt: skip


def _worker(root: Path, data, name: str, stop_after_save: int = 0) -> subprocess.CompletedProcess:
    (root / name).mkdir(exist_ok=True)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(ROOT / "tests" / "_ddp_train_worker.py"), str(root / name), str(stop_after_save), "--",
               *_args(root, data, name)]  # fmt: skip
    return subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=600, check=False)


def _curves(history: list[dict]) -> np.ndarray:
    return np.array([[h["train_loss"], h["val_auc_task"]] for h in history])


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_two_process_training_matches_one_process_writes_once_and_resumes(tmp_path):
    data = write_tiny_train_data(tmp_path / "data", n_identities=4, per_identity=8)
    write_params(tmp_path / "params.yaml", {"train": TRAIN})
    # the reference in a process of its own: one thread, as torchrun gives each process
    done = subprocess.run([sys.executable, str(ROOT / "stages" / "train.py"), *_args(tmp_path, data, "single")],
                          env=_env(), capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    single = torch.load(tmp_path / "single" / "model" / "model.pt", weights_only=False)["metrics"]

    full = _worker(tmp_path, data, "ddp")
    assert full.returncode == 0, full.stderr[-4000:]
    ranks = [json.loads((tmp_path / "ddp" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert ranks[1]["writes"] == []  # rank 1 wrote nothing: no state, no logs, no model
    assert "dvclive" in ranks[0]["writes"] and "file:model.pt" in ranks[0]["writes"]
    # a resume point after the feature cache and after every epoch: head, 2 neck, 2 backbone
    assert ranks[0]["writes"].count("resume-save") == 6
    assert [h["phase"] for h in ranks[0]["history"]] == ["head", "neck", "neck", "backbone", "backbone"]
    assert ranks[0]["history"] == ranks[1]["history"]  # every process computed the same validation
    ddp_curves, single_curves = _curves(ranks[0]["history"]), _curves(single["history"])
    np.testing.assert_array_equal(ddp_curves[:3], single_curves[:3])  # cached phases: bit for bit
    np.testing.assert_allclose(ddp_curves[:, 0], single_curves[:, 0], rtol=LOSS_RTOL)
    np.testing.assert_allclose(ddp_curves[:, 1], single_curves[:, 1], atol=AUC_ATOL)
    assert (tmp_path / "ddp" / "live" / "plots" / "metrics" / "train" / "loss.tsv").is_file()
    assert not (tmp_path / "ddp" / "resume").exists()  # cleared once model.pt is written

    # rank 0 dies after its 5th resume point (the first backbone epoch); torchrun stops rank 1
    crashed = _worker(tmp_path, data, "crash", stop_after_save=5)
    assert crashed.returncode != 0
    assert (tmp_path / "crash" / "resume" / "state.pt").is_file() and not (
        tmp_path / "crash" / "model" / "model.pt"
    ).exists()
    shutil.rmtree(tmp_path / "crash" / "live")  # DVC deletes a stage's outputs before it re-runs
    resumed = subprocess.run(
        [sys.executable, str(ROOT / "stages" / "train.py"), *_args(tmp_path, data, "crash"), "--processes", "2"],
        env=_env(), capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "resuming from" in resumed.stderr and "starting 2 processes" in resumed.stderr
    assert _sha(tmp_path / "crash" / "model" / "model.pt") == _sha(tmp_path / "ddp" / "model" / "model.pt")
    loss_log = (tmp_path / "crash" / "live" / "plots" / "metrics" / "train" / "loss.tsv").read_text()
    reference = (tmp_path / "ddp" / "live" / "plots" / "metrics" / "train" / "loss.tsv").read_text()
    assert [line.split("\t")[1:] for line in loss_log.splitlines()] == [
        line.split("\t")[1:] for line in reference.splitlines()
    ]


def test_batch_not_divisible_by_processes_is_refused():
    """Each process needs an equal slice of every global batch (checked before any data is read)."""
    train = section(TrainParams, common=section(TrainCommonParams, epochs=1, batch_size=6))
    run = resolve_train_params(train, "orig", "resnet50")
    with pytest.raises(ValueError, match="batch_size 6 is not a multiple of the 4 processes"):
        _check_run(run, DistInfo(0, 0, 4, torch.device("cpu")))
    assert _check_run(run, DistInfo(0, 0, 3, torch.device("cpu")))[-1].name == "backbone"
