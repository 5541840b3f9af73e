"""The features stage: a backbone's starting trunk features computed once, read by every
run and evaluation on that trunk, and the same embeddings and models as from the crops."""

import dataclasses
import hashlib
import json
import logging

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score
from stages import features as features_stage

from faceid.backbones.load import start_model
from faceid.config.evaluate import BootstrapParams, EvaluateParams
from faceid.config.train import (
    TrainCommonParams,
    TrainParams,
    TrainTaskParams,
    resolve_train_params,
)
from faceid.crop.reader import CropStore, prepare_batch
from faceid.evaluate.run import EvaluationFiles, evaluate_model, model_to_evaluate
from faceid.features.embed import embed, embed_cached
from faceid.features.trunk import (
    FeatureFile,
    FeatureFileError,
    trunk_fingerprint,
    write_feature_file,
)
from faceid.train.run import train_arcface
from tests._params import section
from tests._train_fixtures import write_tiny_train_data

CPU = torch.device("cpu")
# the stated tolerance of the cached path: float32 features, the same embedding layer
TOLERANCE = 1e-5


def _train(backbone="resnet50", **changes):
    common = section(
        TrainCommonParams,
        head_epochs=1, head_lr=None, neck_epochs=2, neck_lr=0.05, epochs=0, batch_size=4, warmup_epochs=0.5,
        device="cpu", eval_batch_size=32, standardize_features=True, **changes,
    )  # fmt: skip
    return section(
        TrainParams, common=common, task_defaults=TrainTaskParams(), task={"eyeglasses": TrainTaskParams(init="orig")}
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    crops, pairs = write_tiny_train_data(tmp_path_factory.mktemp("data"), n_identities=5)
    manifest = pd.read_parquet(crops / "manifest.parquet")  # the identification protocol: every image
    manifest[["image", "identity"]].to_parquet(pairs / "identification.parquet")
    return crops, pairs


@pytest.fixture(scope="module")
def features(data, tmp_path_factory):
    """resnet50's untrained start, as the stage computes it: in the run's eval_batch_size
    (32: training's batches, so the same float16 values; the evaluation embeds in 16s)."""
    run = resolve_train_params(_train(), "orig", "resnet50")
    model, _ = start_model(run, None)
    folder = tmp_path_factory.mktemp("features") / "resnet50"
    write_feature_file(model, "resnet50", data[0], folder, run.image_size, run.eval_batch_size, CPU)
    return folder


def test_the_file_holds_every_crop_and_its_mirror_image_in_shard_order(data, features):
    store = CropStore(data[0])
    meta = json.loads((features / "features.json").read_text())
    n_crops = sum(np.load(p, mmap_mode="r").shape[0] for p in store.paths.values())
    assert meta["shape"] == [n_crops, 2, 2048] and meta["dtype"] == "float32"
    array = np.load(features / "features.npy", mmap_mode="r")
    assert array.shape == (n_crops, 2, 2048) and array.dtype == np.float32
    # a crop's row: its shard's offset + its row; view 1 is its mirror image's
    run = resolve_train_params(_train(), "orig", "resnet50")
    model, _ = start_model(run, None)
    dataset = store.dataset(["000012.jpg"])
    images, _ = dataset.__getitems__([0])
    x = prepare_batch(images, CPU, run.image_size)
    with torch.no_grad():
        direct = torch.stack([model.features(x), model.features(x.flip(3))], 1).numpy()
    row = FeatureFile(features, store).rows(dataset)[0]
    assert row == 11  # shards of 10 rows: shard 1, row 1
    np.testing.assert_allclose(array[row], direct[0], rtol=1e-4, atol=1e-4)  # a batch of 1, not of 32


@pytest.mark.parametrize("flip_average", [True, False])
def test_cached_path_equals_image_path_and_gives_the_same_metrics(data, features, flip_average):
    store = CropStore(data[0])
    run = resolve_train_params(_train(), "orig", "resnet50")
    model, _ = start_model(run, None)
    file = FeatureFile(features, store)
    assert file.matches(model, "resnet50", run.image_size)
    manifest = pd.read_parquet(data[0] / "manifest.parquet")
    images = manifest.loc[manifest["shard"] >= 0, "image"].tolist()
    dataset = store.dataset(images)
    from_images = embed(model, dataset, 16, CPU, image_size=run.image_size, num_workers=0, flip_average=flip_average)
    views = file.read(dataset, 2 if flip_average else 1)
    from_features = embed_cached(model, views, 16, CPU, flip_average=flip_average)
    assert np.abs(from_images - from_features).max() <= TOLERANCE
    # an untrained trunk: every cosine within 1e-3 of 1, the hardest case for rank metrics
    pairs = pd.read_parquet(data[1] / "pairs.parquet").query("task == 'orig' and split == 'test'")
    pairs = pairs[pairs["image_a"].isin(images) & pairs["image_b"].isin(images)]
    index = pd.Index(images)

    def auc(embeddings):
        a = embeddings[index.get_indexer(pairs["image_a"])]
        b = embeddings[index.get_indexer(pairs["image_b"])]
        return roc_auc_score(pairs["kind"] == "genuine", np.sum(a * b, axis=1))

    assert round(auc(from_images), 4) == round(auc(from_features), 4)


def _settings():
    bootstrap = section(BootstrapParams, n_boot=20, n_boot_conclusions=20)
    return section(EvaluateParams, bootstrap=bootstrap, attributes=[], groups=[], batch_size=16, device="cpu")


def _evaluate(data, tmp_path, name, model, meta, features):
    files = EvaluationFiles(crops=data[0], pairs=data[1], embeddings=tmp_path / f"{name}.npz",
                            headline=tmp_path / f"{name}.json", detail=tmp_path / f"{name}-detail.json",
                            features=features)  # fmt: skip
    evaluate_model(model, meta, name, _train(), _settings(), files)
    return np.load(files.embeddings)["embeddings"], json.loads(files.headline.read_text())


def test_evaluation_reads_the_features_only_for_their_trunk(data, features, tmp_path, caplog):
    caplog.set_level(logging.INFO, "faceid.evaluate.run")
    model, meta = model_to_evaluate(_train(), None, "resnet50")
    cached, cached_numbers = _evaluate(data, tmp_path, "cached", model, meta, features)
    assert "trunk features from" in caplog.text
    model, meta = model_to_evaluate(_train(), None, "resnet50")
    direct, numbers = _evaluate(data, tmp_path, "direct", model, meta, None)
    assert np.abs(cached - direct).max() <= TOLERANCE
    assert {k: round(v, 4) for k, v in numbers.items() if isinstance(v, float)} == {
        k: round(v, 4) for k, v in cached_numbers.items() if isinstance(v, float)
    }
    # a trained trunk (one BatchNorm statistic moved) is embedded from its crops
    caplog.clear()
    with torch.no_grad():
        model.net.layer4[0].bn1.running_mean += 0.5
    assert not FeatureFile(features, CropStore(data[0])).matches(model, "resnet50", meta["image_size"])
    moved, _ = _evaluate(data, tmp_path, "moved", model, meta, features)
    assert "not the one of" in caplog.text
    dataset = CropStore(data[0]).dataset(pd.Index(_images(tmp_path / "moved.npz")))
    again = embed(model, dataset, 16, CPU, image_size=meta["image_size"], num_workers=0, flip_average=True)
    np.testing.assert_array_equal(moved, again)


def _images(path):
    return list(np.load(path)["images"])


def test_training_on_the_file_writes_the_same_model(data, features, tmp_path, caplog):
    caplog.set_level(logging.INFO, "faceid.train.run")
    run = resolve_train_params(_train(), "orig", "resnet50")
    train_arcface(run, *data, tmp_path / "file", tmp_path / "live1", features=features)
    assert "trunk features from" in caplog.text
    train_arcface(run, *data, tmp_path / "own", tmp_path / "live2")
    digest = [hashlib.sha256((tmp_path / d / "model.pt").read_bytes()).hexdigest() for d in ("file", "own")]
    assert digest[0] == digest[1]
    # a run whose trunk differs from the start (BatchNorm re-estimated first) computes its own
    caplog.clear()
    other = dataclasses.replace(run, bn_recalibration_images=8)
    train_arcface(other, *data, tmp_path / "recal", tmp_path / "live3", features=features)
    assert "its features are computed" in caplog.text


def test_fingerprint_sees_every_trunk_tensor_and_nothing_else():
    run = resolve_train_params(_train(), "orig", "resnet50")
    model, _ = start_model(run, None)
    first = trunk_fingerprint(model, "resnet50")
    with torch.no_grad():
        model.net.fc[1].weight += 1  # the embedding layer: not the trunk
        model.feature_mean += 1
    assert trunk_fingerprint(model, "resnet50") == first
    with torch.no_grad():
        model.net.conv1.weight[0, 0, 0, 0] += 1e-7
    assert trunk_fingerprint(model, "resnet50") != first


def test_features_of_other_crops_are_refused(data, features, tmp_path):
    crops, _ = write_tiny_train_data(tmp_path / "other", n_identities=5, seed=1)
    with pytest.raises(FeatureFileError, match=r"other crops.*dvc repro features@resnet50"):
        FeatureFile(features, CropStore(crops))
    with pytest.raises(FeatureFileError, match="no trunk features"):
        FeatureFile(tmp_path / "nowhere", CropStore(crops))
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    (truncated / "features.json").write_text((features / "features.json").read_text())
    (truncated / "features.npy").write_bytes((features / "features.npy").read_bytes()[:1000])
    with pytest.raises(FeatureFileError, match=r"unreadable.*dvc repro features@resnet50"):
        FeatureFile(truncated, CropStore(data[0]))


def test_stage_main_writes_the_start_of_the_run_file(data, tmp_path):
    run = resolve_train_params(_train(), "orig", "inception_resnet_v1")
    run_file = tmp_path / "orig-inception_resnet_v1.json"
    run_file.write_text(json.dumps(dataclasses.asdict(run)))
    weights = tmp_path / "none.pt"
    torch.save({}, weights)  # the weights stage's marker for init: none
    status = features_stage.main(
        ["--run", str(run_file), "--weights", str(weights), "--crops", str(data[0]), "--out", str(tmp_path / "f")]
    )
    meta = json.loads((tmp_path / "f" / "features.json").read_text())
    assert status == 0
    assert meta["shape"][1:] == [2, 1792] and meta["image_size"] == run.image_size
    model, _ = start_model(run, None)
    assert meta["trunk"] == trunk_fingerprint(model, "inception_resnet_v1")
