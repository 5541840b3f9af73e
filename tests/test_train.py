import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from stages import train as train_stage

from faceid import train as train_module
from faceid.backbones import BackboneError
from faceid.config import (
    ParamsError,
    TrainBackboneParams,
    TrainCommonParams,
    TrainParams,
    TrainTaskParams,
    resolve_train_params,
)
from faceid.data import CropStore, prepare_batch
from faceid.train import TrainingDiverged, load_model, train_arcface
from tests._train_fixtures import write_tiny_train_data

COMMON = TrainCommonParams(
    epochs=2, batch_size=4, lr=0.01, warmup_epochs=0.5, max_steps_per_epoch=2, device="cpu", eval_batch_size=32
)


def _run(task="orig", backbone="resnet50", **changes):
    train = TrainParams(
        common=dataclasses.replace(COMMON, **changes),
        backbone={"resnet50": TrainBackboneParams(init="none"), "inception_resnet_v1": TrainBackboneParams(init="none")},
        task={"eyeglasses": TrainTaskParams(init="orig", epochs=1)},
    )
    return resolve_train_params(train, task, backbone)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_tiny_train_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """An uninterrupted 2-epoch resnet50 run."""
    root = tmp_path_factory.mktemp("ref")
    result = train_arcface(_run(), *data, root / "model", root / "live")
    return root, result


def test_model_file_follows_contract(reference):
    root, result = reference
    saved = torch.load(root / "model" / "model.pt", weights_only=False)
    assert set(saved) == {"backbone", "init", "state_dict", "epoch", "params", "metrics"}
    assert saved["backbone"] == "resnet50" and saved["init"] == "none"
    assert saved["params"]["task"] == "orig" and saved["params"]["epochs"] == 2
    assert [h["epoch"] for h in result["history"]] == [0, 1]
    assert result["skipped"]["train_images"] == 1  # the fixture's image without a crop
    aucs = [h["val_auc_task"] for h in result["history"]]
    assert saved["epoch"] == aucs.index(max(aucs))  # select_epoch: best_task_auc
    model, info = load_model(root / "model" / "model.pt")
    assert info["metrics"]["val_auc_task"] == max(aucs)
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 512)


def test_dvclive_logs_steps_and_epochs(reference):
    root, _ = reference
    summary = json.loads((root / "live" / "metrics.json").read_text())
    assert {"loss", "lr", "img_per_s"} <= set(summary["train"])
    assert {"val_auc_task", "val_auc_orig"} <= set(summary["epoch"])
    losses = (root / "live" / "plots" / "metrics" / "train" / "loss.tsv").read_text().splitlines()
    assert len(losses) == 1 + 2 * 2  # header + 2 epochs x 2 steps


@pytest.mark.slow  # the resume test below already compares two runs bit for bit
def test_same_seed_same_loss_curve(reference, data, tmp_path):
    _, first = reference
    second = train_arcface(_run(), *data, tmp_path / "model", tmp_path / "live")
    assert [h["train_loss"] for h in second["history"]] == [h["train_loss"] for h in first["history"]]
    other = train_arcface(_run(seed=1, epochs=1, max_steps_per_epoch=1), *data, tmp_path / "other", tmp_path / "live2")
    assert other["history"][0]["train_loss"] != first["history"][0]["train_loss"]


def test_resume_after_interruption_matches_uninterrupted(reference, data, tmp_path):
    root, first = reference

    def interrupt(epoch):
        if epoch == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_arcface(_run(), *data, tmp_path / "model", tmp_path / "live", on_epoch_end=interrupt)
    assert not (tmp_path / "model" / "model.pt").exists()
    resumed = train_arcface(_run(), *data, tmp_path / "model", tmp_path / "live")
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in first["history"]]
    a = torch.load(root / "model" / "model.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "model" / "model.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_changed_params_start_afresh(reference, data, tmp_path):
    root, _ = reference
    out = tmp_path / "model"
    out.mkdir()
    for name in ("checkpoint.pt", "selected.pt"):
        (out / name).write_bytes((root / "model" / name).read_bytes())
    result = train_arcface(_run(epochs=1, lr=0.02, max_steps_per_epoch=1), *data, out, tmp_path / "live")
    assert [h["epoch"] for h in result["history"]] == [0]


def test_nan_loss_stops_and_keeps_checkpoint(data, tmp_path, monkeypatch):
    real_loss = train_module.arcface_loss
    seen = []

    def loss_turning_nan(head, embeddings, labels):
        seen.append(1)
        loss = real_loss(head, embeddings, labels)
        return loss * math.nan if len(seen) > 2 else loss  # epoch 1 (2 steps per epoch)

    monkeypatch.setattr(train_module, "arcface_loss", loss_turning_nan)
    with pytest.raises(TrainingDiverged, match=r"loss is nan at epoch 1, step 0;.*checkpoint.*of epoch 0 is kept"):
        train_arcface(_run(), *data, tmp_path / "model", tmp_path / "live")
    assert torch.load(tmp_path / "model" / "checkpoint.pt", weights_only=False)["epoch"] == 0
    assert not (tmp_path / "model" / "model.pt").exists()


def test_attribute_task_starts_from_orig(reference, data, tmp_path):
    root, _ = reference
    run = _run(task="eyeglasses")
    assert run.task_init == "orig" and run.epochs == 1
    result = train_arcface(run, *data, tmp_path / "m", tmp_path / "live", init_model=root / "model" / "model.pt")
    assert torch.load(tmp_path / "m" / "model.pt", weights_only=False)["init"] == "orig"
    assert set(result) >= {"val_auc_task", "val_auc_orig"}
    with pytest.raises(ValueError, match=r"orig model .*missing; run `dvc repro train@orig-resnet50`"):
        train_arcface(run, *data, tmp_path / "m2", tmp_path / "live", init_model=tmp_path / "nope.pt")


def test_stage_main_trains_inception_resnet_v1(data, tmp_path):
    crops, pairs = data
    params = tmp_path / "params.yaml"
    params.write_text(
        "train:\n"
        "  common: {epochs: 1, batch_size: 4, max_steps_per_epoch: 1, image_size: 80, device: cpu, frozen_blocks: repeat_1}\n"
        "  backbone:\n"
        "    inception_resnet_v1: {init: none, lr_scale: 0.5}\n"
    )
    out = tmp_path / "models" / "orig-inception_resnet_v1"
    argv = ["--params", str(params), "--task", "orig", "--backbone", "inception_resnet_v1"]
    paths = ["--crops", str(crops), "--pairs", str(pairs), "--out", str(out), "--live-dir", str(tmp_path / "live")]
    result = train_stage.main(argv + paths)
    assert 0.0 <= result["val_auc_task"] <= 1.0
    saved = torch.load(out / "model.pt", weights_only=False)
    assert saved["backbone"] == "inception_resnet_v1" and saved["params"]["image_size"] == 80


def test_bad_backbone_name(data, tmp_path):
    train = TrainParams(common=COMMON, backbone={"vgg": TrainBackboneParams()})
    with pytest.raises(BackboneError, match="unknown backbone 'vgg'; valid: inception_resnet_v1, resnet50"):
        train_arcface(resolve_train_params(train, "orig", "vgg"), *data, tmp_path / "m", tmp_path / "l")
    with pytest.raises(ParamsError, match=r"train.backbone.resnet50: missing"):
        resolve_train_params(train, "orig", "resnet50")


def test_merge_rule_task_over_backbone_over_common():
    train = TrainParams(
        common=TrainCommonParams(batch_size=32, epochs=3, lr=0.1, frozen_blocks=0),
        backbone={"resnet50": TrainBackboneParams(init="imagenet", batch_size=16, frozen_blocks="layer1", lr_scale=0.1)},
        task={"hat": TrainTaskParams(init="orig", batch_size=8, lr=0.05)},
    )
    run = resolve_train_params(train, "hat", "resnet50")
    assert (run.batch_size, run.epochs, run.lr, run.frozen_blocks) == (8, 3, 0.05, "layer1")
    assert (run.weights_init, run.task_init, run.lr_scale) == ("imagenet", "orig", 0.1)
    assert resolve_train_params(train, "other", "resnet50").batch_size == 16
    with pytest.raises(ParamsError, match="'orig' would start the orig task from itself"):
        resolve_train_params(dataclasses.replace(train, task={"orig": TrainTaskParams(init="orig")}), "orig", "resnet50")


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
