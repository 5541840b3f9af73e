import dataclasses
import hashlib
import json
import math
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from stages import runs as runs_stage
from stages import train as train_stage

from faceid.backbones.load import load_model
from faceid.backbones.registry import BackboneError
from faceid.config.engine import ParamsError
from faceid.config.train import (
    TrainCommonParams,
    TrainParams,
    TrainTaskParams,
    resolve_train_params,
)
from faceid.crop.reader import CropStore, prepare_batch
from faceid.pairs.files import task_train_files
from faceid.train import steps as steps_module
from faceid.train.run import TrainingDiverged, train_arcface, training_phases
from faceid.train.taskdata import TrainDataError, load_task_data
from tests._params import section, write_params
from tests._train_fixtures import write_tiny_train_data

COMMON = section(
    TrainCommonParams,
    head_epochs=1, head_lr=None, neck_epochs=2, neck_lr=0.05, epochs=2, batch_size=4, lr=0.01, warmup_epochs=0.5,
    max_steps_per_epoch=2, device="cpu", eval_batch_size=32, standardize_features=True,
)  # fmt: skip
PHASES = ["head", "neck", "neck", "backbone", "backbone"]


def _run(task="orig", backbone="resnet50", **changes):
    train = section(
        TrainParams,
        common=dataclasses.replace(COMMON, **changes),
        task_defaults=TrainTaskParams(),  # an empty override block: eyeglasses gets COMMON's phases
        task={"eyeglasses": TrainTaskParams(init="orig", epochs=1)},
    )
    return resolve_train_params(train, task, backbone)


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_tiny_train_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """An uninterrupted resnet50 run through all three phases."""
    root = tmp_path_factory.mktemp("ref")
    result = train_arcface(_run(), *data, root / "model", root / "live")
    return root, result


def test_model_file_follows_contract(reference):
    root, result = reference
    saved = torch.load(root / "model" / "model.pt", weights_only=False)
    assert set(saved) == {"backbone", "init", "state_dict", "epoch", "phase", "params", "metrics"}
    assert saved["backbone"] == "resnet50" and saved["init"] == "none"
    assert saved["params"]["task"] == "orig" and saved["params"]["epochs"] == 2
    assert [h["phase"] for h in result["history"]] == PHASES
    assert result["skipped"]["train_images"] == 1  # the fixture's image without a crop
    aucs = [h["val_auc_task"] for h in result["history"]]
    assert saved["epoch"] == aucs.index(max(aucs)) and saved["phase"] == PHASES[saved["epoch"]]  # best_task_auc
    assert "img_per_s" not in repr(saved["metrics"])  # no timings in a model file
    model, info = load_model(root / "model" / "model.pt")
    assert info["metrics"]["val_auc_task"] == max(aucs)
    assert not (root / "model.resume").exists()  # resume state goes once the model is written
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 512)


def test_neck_phase_learns_a_spread_embedding(data, tmp_path):
    """Impostors far apart, genuine pairs close: not the collapsed cosine ~1 of a random net."""
    train_arcface(
        _run(head_epochs=0, neck_epochs=8, epochs=0, select_epoch="last"), *data, tmp_path / "m", tmp_path / "l"
    )
    model, _ = load_model(tmp_path / "m" / "model.pt")
    assert model.feature_mean.abs().sum() > 0  # standardize_features set the statistics
    store = CropStore(data[0])
    images = [f"{i:06d}.jpg" for i in range(1, 24)]
    identity = np.repeat(np.arange(4), 6)[:23]
    x, _ = store.dataset(images).__getitems__(list(range(23)))
    with torch.no_grad():
        e = model(prepare_batch(x, torch.device("cpu"), 64)).numpy()
    similarity = e @ e.T
    same = identity[:, None] == identity[None, :]
    off = ~np.eye(23, dtype=bool)
    assert np.median(similarity[~same]) < 0.5
    assert np.median(similarity[same & off]) > np.median(similarity[~same]) + 0.2


def test_dvclive_logs_steps_and_epochs_without_timings_in_metrics(reference):
    root, _ = reference
    summary = json.loads((root / "live" / "metrics.json").read_text())
    assert {"loss", "lr"} <= set(summary["train"]) and "timing" not in summary
    assert {"val_auc_task", "val_auc_orig", "train_loss"} <= set(summary["epoch"])
    plots = root / "live" / "plots" / "metrics"
    assert len((plots / "train" / "loss.tsv").read_text().splitlines()) == 1 + 2 * 2  # backbone: 2 epochs x 2 steps
    assert len((plots / "epoch" / "val_auc_task.tsv").read_text().splitlines()) == 1 + len(PHASES)
    assert (plots / "timing" / "img_per_s.tsv").exists()  # timings stay in the plots


def test_same_inputs_same_model_bytes(reference, data, tmp_path):
    root, first = reference
    second = train_arcface(_run(), *data, tmp_path / "model", tmp_path / "live")
    assert _sha(tmp_path / "model" / "model.pt") == _sha(root / "model" / "model.pt")
    assert [h["train_loss"] for h in second["history"]] == [h["train_loss"] for h in first["history"]]
    other = train_arcface(_run(seed=1), *data, tmp_path / "other", tmp_path / "live2")
    assert other["history"][0]["train_loss"] != first["history"][0]["train_loss"]


def _interrupt_at(save):
    def interrupt(count):
        if count == save:
            raise KeyboardInterrupt

    return interrupt


# resume points: 1 features cached, then one per epoch of every phase: 2 head, 3 and 4
# neck, 5 and 6 backbone (3: mid-phase; cached phases used to save only at their end)
@pytest.mark.parametrize("save", [1, 2, 3, 5])
def test_resume_after_interruption_matches_uninterrupted(reference, data, tmp_path, save):
    root, first = reference
    with pytest.raises(KeyboardInterrupt):
        train_arcface(_run(), *data, tmp_path / "model", tmp_path / "live", on_epoch_end=_interrupt_at(save))
    assert not (tmp_path / "model" / "model.pt").exists() and (tmp_path / "model.resume").exists()
    # until the backbone phase the trunk is the one a restarted run builds: left out
    state = torch.load(tmp_path / "model.resume" / "state.pt", weights_only=False)
    assert ("net.conv1.weight" in state["model"]) == (save >= 5) and state["trunk_changed"] == (save >= 5)
    shutil.rmtree(tmp_path / "live")  # DVC deletes the stage's outputs before re-running it
    resumed = train_arcface(_run(), *data, tmp_path / "model", tmp_path / "live")
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in first["history"]]
    assert _sha(tmp_path / "model" / "model.pt") == _sha(root / "model" / "model.pt")
    loss_log = (tmp_path / "live" / "plots" / "metrics" / "train" / "loss.tsv").read_text()
    assert _same_steps(loss_log, root)  # replayed from the state: no step twice, none lost


def _same_steps(loss_log, root):
    """Steps and values equal (the timestamp column differs)."""
    def rows(text):
        return [line.split("\t")[1:] for line in text.splitlines()]

    return rows(loss_log) == rows((root / "live" / "plots" / "metrics" / "train" / "loss.tsv").read_text())


def test_changed_params_or_inputs_start_afresh(reference, data, tmp_path):
    """A resume state from other params, pairs or init model is discarded, not resumed."""
    crops, pairs = data
    with pytest.raises(KeyboardInterrupt):
        train_arcface(_run(), crops, pairs, tmp_path / "model", tmp_path / "live", on_epoch_end=_interrupt_at(4))
    changed = _run(lr=0.02)
    result = train_arcface(changed, crops, pairs, tmp_path / "model", tmp_path / "live")
    fresh = train_arcface(changed, crops, pairs, tmp_path / "fresh", tmp_path / "live2")
    assert [h["train_loss"] for h in result["history"]] == [h["train_loss"] for h in fresh["history"]]
    assert _sha(tmp_path / "model" / "model.pt") == _sha(tmp_path / "fresh" / "model.pt")

    other_pairs = tmp_path / "pairs"
    shutil.copytree(pairs, other_pairs)
    val = task_train_files(other_pairs, "orig")[1]
    pd.read_parquet(val).iloc[::-1].reset_index(drop=True).to_parquet(val)  # same rows, other bytes
    with pytest.raises(KeyboardInterrupt):
        train_arcface(_run(), crops, pairs, tmp_path / "m2", tmp_path / "l3", on_epoch_end=_interrupt_at(4))
    result = train_arcface(_run(), crops, other_pairs, tmp_path / "m2", tmp_path / "l3")
    assert [h["phase"] for h in result["history"]] == PHASES  # every phase ran again

    other_crops = tmp_path / "crops"
    shutil.copytree(crops, other_crops)
    with pytest.raises(KeyboardInterrupt):
        train_arcface(_run(), other_crops, pairs, tmp_path / "m3", tmp_path / "l4", on_epoch_end=_interrupt_at(4))
    shard = other_crops / "shard-000.npy"
    os.utime(shard, ns=(shard.stat().st_atime_ns, shard.stat().st_mtime_ns + 10**9))  # a rewritten shard
    saves = []
    train_arcface(_run(), other_crops, pairs, tmp_path / "m3", tmp_path / "l4", on_epoch_end=saves.append)
    assert saves == [1, 2, 3, 4, 5, 6]  # from the start, not from the state after save 4


def test_a_retrained_orig_model_retrains_the_fine_tune(reference, data, tmp_path):
    """The stale-resume case: a fine-tune interrupted from the old orig model, then orig changes."""
    root, _ = reference
    run = _run(task="eyeglasses")
    old_orig = root / "model" / "model.pt"
    new_orig = tmp_path / "orig2" / "model.pt"
    train_arcface(_run(seed=3), *data, new_orig.parent, tmp_path / "l0")
    with pytest.raises(KeyboardInterrupt):
        train_arcface(run, *data, tmp_path / "m", tmp_path / "l1", init_model=old_orig, on_epoch_end=_interrupt_at(3))
    resumed = train_arcface(run, *data, tmp_path / "m", tmp_path / "l1", init_model=new_orig)
    fresh = train_arcface(run, *data, tmp_path / "f", tmp_path / "l2", init_model=new_orig)
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in fresh["history"]]
    assert _sha(tmp_path / "m" / "model.pt") == _sha(tmp_path / "f" / "model.pt")


def test_nan_loss_stops_and_keeps_resume_state(data, tmp_path, monkeypatch):
    real_loss = steps_module.arcface_loss
    seen = []

    def loss_turning_nan(head, embeddings, labels):
        seen.append(1)
        loss = real_loss(head, embeddings, labels)
        return loss * math.nan if len(seen) > 8 else loss  # in the neck phase

    monkeypatch.setattr(steps_module, "arcface_loss", loss_turning_nan)
    with pytest.raises(
        TrainingDiverged, match=r"orig-resnet50: \w+ phase: loss is nan at .*resume state in .* is kept"
    ):
        train_arcface(_run(), *data, tmp_path / "model", tmp_path / "live")
    assert (tmp_path / "model.resume" / "state.pt").exists()
    assert not (tmp_path / "model" / "model.pt").exists()


def test_nan_loss_in_the_backbone_phase_stops_and_keeps_resume_state(data, tmp_path, monkeypatch):
    """The phase over images computes its loss through ArcFaceNet (not arcface_loss, which
    the cached phases use): logits turning NaN in its second epoch stop the run there."""
    real_forward = steps_module.ArcFaceNet.forward
    seen = []

    def forward_turning_nan(net, x, labels):
        seen.append(1)
        logits = real_forward(net, x, labels)
        return logits * math.nan if len(seen) > 2 else logits  # epoch 1 (2 steps an epoch)

    monkeypatch.setattr(steps_module.ArcFaceNet, "forward", forward_turning_nan)
    run = _run(head_epochs=0, neck_epochs=0)  # the backbone phase alone: 2 epochs of 2 steps
    with pytest.raises(
        TrainingDiverged, match=r"orig-resnet50: backbone phase: loss is nan at step 0; the resume state in .* is kept"
    ):
        train_arcface(run, *data, tmp_path / "model", tmp_path / "live")
    assert len(seen) == 3  # stopped at the first NaN, before its step
    assert (tmp_path / "model.resume" / "state.pt").exists()  # epoch 0's
    assert not (tmp_path / "model" / "model.pt").exists()


def test_phases_with_zero_epochs_are_skipped():
    assert [p.name for p in training_phases(_run(head_epochs=0))] == ["neck", "backbone"]
    assert [(p.name, p.lr) for p in training_phases(_run(epochs=0))] == [("head", 0.01), ("neck", 0.05)]
    with pytest.raises(ValueError, match="nothing to train"):
        train_arcface(_run(head_epochs=0, neck_epochs=0, epochs=0), "crops", "pairs", "out", "live")


def test_attribute_task_starts_from_orig(reference, data, tmp_path):
    root, _ = reference
    run = _run(task="eyeglasses")
    assert run.task_init == "orig" and run.epochs == 1 and run.neck_epochs == 2
    result = train_arcface(run, *data, tmp_path / "m", tmp_path / "live", init_model=root / "model" / "model.pt")
    assert torch.load(tmp_path / "m" / "model.pt", weights_only=False)["init"] == "orig"
    assert set(result) >= {"val_auc_task", "val_auc_orig"}
    with pytest.raises(ValueError, match=r"orig model .*missing; run `dvc repro train-orig@resnet50`"):
        train_arcface(run, *data, tmp_path / "m2", tmp_path / "live", init_model=tmp_path / "nope.pt")


def test_stage_main_trains_inception_resnet_v1(data, tmp_path):
    crops, pairs = data
    params = tmp_path / "params.yaml"
    write_params(params, {"train": {
        "common": {"neck_epochs": 1, "epochs": 1, "batch_size": 4, "max_steps_per_epoch": 1, "image_size": 80,
                   "device": "cpu", "frozen_blocks": "repeat_1"},
        "backbone": {"inception_resnet_v1": {"init": "none", "lr_scale": 0.5}},
    }})  # fmt: skip
    out = tmp_path / "models" / "orig-inception_resnet_v1"
    argv = ["--params", str(params), "--task", "orig", "--backbone", "inception_resnet_v1"]
    paths = ["--crops", str(crops), "--pairs", str(pairs), "--out", str(out), "--live-dir", str(tmp_path / "live")]
    assert train_stage.main([*argv, *paths, "--resume-dir", str(tmp_path / "resume")]) == 0
    saved = torch.load(out / "model.pt", weights_only=False)
    assert 0.0 <= saved["metrics"]["val_auc_task"] <= 1.0
    assert saved["backbone"] == "inception_resnet_v1" and saved["params"]["image_size"] == 80


def test_bad_backbone_name(data, tmp_path):
    block = section(TrainParams).backbone["resnet50"]
    train = section(TrainParams, common=COMMON, backbone={"vgg": block})
    with pytest.raises(BackboneError, match="unknown backbone 'vgg'; valid: inception_resnet_v1, resnet50"):
        train_arcface(resolve_train_params(train, "orig", "vgg"), *data, tmp_path / "m", tmp_path / "l")
    with pytest.raises(ParamsError, match=r"train.backbone.resnet50: missing"):
        resolve_train_params(train, "orig", "resnet50")


def test_merge_rule_task_over_backbone_over_common():
    repo = section(TrainParams)
    train = dataclasses.replace(
        repo,
        common=section(TrainCommonParams, batch_size=32, epochs=3, lr=0.1, frozen_blocks=0),
        backbone={"resnet50": dataclasses.replace(
            repo.backbone["resnet50"], init="imagenet", batch_size=16, frozen_blocks="layer1", lr_scale=0.1
        )},
        task={"hat": TrainTaskParams(init="orig", batch_size=8, lr=0.05)},
        task_defaults=TrainTaskParams(),
    )  # fmt: skip
    run = resolve_train_params(train, "hat", "resnet50")
    assert (run.batch_size, run.epochs, run.lr, run.frozen_blocks) == (8, 3, 0.05, "layer1")
    assert (run.weights_init, run.task_init, run.lr_scale) == ("imagenet", "orig", 0.1)
    assert resolve_train_params(train, "other", "resnet50").batch_size == 16
    with pytest.raises(ParamsError, match="'orig' would start the orig task from itself"):
        resolve_train_params(
            dataclasses.replace(train, task={"orig": TrainTaskParams(init="orig")}), "orig", "resnet50"
        )


def test_dataset_batches_span_shards_in_order(data):
    crops_dir, _ = data
    store = CropStore(crops_dir)
    dataset = store.dataset(["000012.jpg", "000002.jpg", "000015.jpg"], [2, 0, 3])
    images, labels = dataset.__getitems__([0, 1, 2])
    assert images.dtype == torch.uint8 and images.shape == (3, 64, 64, 3)
    assert labels.tolist() == [2, 0, 3]
    shard1 = np.load(crops_dir / "shard-001.npy")
    assert np.array_equal(images[0].numpy(), shard1[1])  # image 12 = shard 1, row 1
    assert np.array_equal(images[1].numpy(), np.load(crops_dir / "shard-000.npy")[1])


def test_prepare_batch_normalises_flips_and_resizes():
    images = torch.zeros(2, 4, 4, 3, dtype=torch.uint8)
    images[:, :, 0, :] = 255  # left column white
    x = prepare_batch(images, torch.device("cpu"), None, torch.tensor([True, False]))
    assert x.shape == (2, 3, 4, 4) and x.is_contiguous(memory_format=torch.channels_last)
    assert x[0, :, :, -1].eq((255 - 127.5) / 128).all() and x[0, :, :, 0].eq(-127.5 / 128).all()
    assert x[1, :, :, 0].eq((255 - 127.5) / 128).all()
    assert prepare_batch(images, torch.device("cpu"), 8).shape == (2, 3, 8, 8)


def test_load_model_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"model.pt: no such model; train it first"):
        load_model(tmp_path / "model.pt")


def test_the_stage_trains_the_run_file_it_is_given_as_params_would(data, tmp_path):
    """dvc.yaml's way (--run data/runs/<model>.json, written by the runs stage) and the
    by-hand way (--task/--backbone from params.yaml) train the same model bytes."""
    crops, pairs = data
    params = write_params(tmp_path / "params.yaml", {"train": {
        "common": {"neck_epochs": 1, "epochs": 1, "batch_size": 4, "max_steps_per_epoch": 1, "device": "cpu"},
    }})  # fmt: skip
    runs_stage.main(["--params", str(params), "--out", str(tmp_path / "runs")])
    paths = ["--params", str(params), "--crops", str(crops), "--pairs", str(pairs)]
    for name, which in (("a", ["--run", str(tmp_path / "runs" / "orig-resnet50.json")]),
                        ("b", ["--task", "orig", "--backbone", "resnet50"])):  # fmt: skip
        train_stage.main([*paths, *which, "--out", str(tmp_path / name), "--live-dir", str(tmp_path / f"live-{name}")])
    assert _sha(tmp_path / "a" / "model.pt") == _sha(tmp_path / "b" / "model.pt")
    saved = torch.load(tmp_path / "a" / "model.pt", weights_only=False)["params"]
    assert saved == json.loads((tmp_path / "runs" / "orig-resnet50.json").read_text())
    with pytest.raises(SystemExit):  # the file names the model: --task beside it is refused
        train_stage.main([*paths, "--run", str(tmp_path / "runs" / "orig-resnet50.json"), "--task", "orig",
                          "--out", str(tmp_path / "c"), "--live-dir", str(tmp_path / "live-c")])  # fmt: skip


def test_missing_or_empty_training_inputs_name_the_file(data, tmp_path):
    crops, pairs = data
    other = tmp_path / "pairs"
    shutil.copytree(pairs, other)
    subset, val = task_train_files(other, "orig")
    val.unlink()
    with pytest.raises(TrainDataError, match=r"orig/val_pairs.parquet: missing; run `dvc repro pairs` first"):
        load_task_data(crops, other, "orig")
    with pytest.raises(TrainDataError, match=r"train/Smiling/subset.parquet: missing; .*is 'Smiling' in train.tasks"):
        load_task_data(crops, other, "Smiling")
    shutil.copytree(pairs, other, dirs_exist_ok=True)
    pd.read_parquet(subset).iloc[:0].to_parquet(subset)
    with pytest.raises(TrainDataError, match=r"orig/subset.parquet: no training images for task 'orig'"):
        load_task_data(crops, other, "orig")
