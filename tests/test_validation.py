"""Training's validation AUC (which picks the epoch that becomes model.pt) is the
evaluation's: embeddings by faceid.features.embed, the AUC by faceid.evaluate.metrics, on
the same pairs; no flip averaging, and float16 trunk features in the cached phases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from faceid.backbones.load import load_model
from faceid.config.train import TrainCommonParams, TrainParams, resolve_train_params
from faceid.evaluate.evaluation import score_pairs
from faceid.evaluate.metrics import roc_auc
from faceid.features.embed import embed, embed_cached
from faceid.features.trunk import cache_features
from faceid.train.collectives import DistInfo
from faceid.train.run import train_arcface
from faceid.train.taskdata import load_task_data
from faceid.train.validation import pair_auc, validation_aucs
from tests._params import section
from tests._train_fixtures import write_tiny_train_data

CPU = torch.device("cpu")
ONE_PROCESS = DistInfo(0, 0, 1, CPU)


def _run():
    common = section(
        TrainCommonParams,
        head_epochs=1, head_lr=None, neck_epochs=2, neck_lr=0.05, epochs=0, batch_size=4, warmup_epochs=0.5,
        device="cpu", eval_batch_size=16, standardize_features=True, select_epoch="last",
    )  # fmt: skip
    return resolve_train_params(section(TrainParams, common=common), "orig", "resnet50")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny orig run on cached features (head, then neck), the model it wrote, what it read."""
    root = tmp_path_factory.mktemp("validation")
    crops, pairs = write_tiny_train_data(root, n_identities=5)
    # every third crop pure noise: its genuine pairs look like impostors, so the val AUC is
    # below 1 (the tiny identities are otherwise told apart perfectly, even untrained)
    rng = np.random.default_rng(0)
    for shard in sorted(crops.glob("shard-*.npy")):
        array = np.load(shard, mmap_mode="r+")
        array[::3] = rng.integers(0, 256, array[::3].shape, dtype=np.uint8)
        array.flush()
        del array
    run = _run()
    train_arcface(run, crops, pairs, root / "model", root / "live")
    model, info = load_model(root / "model" / "model.pt")
    return run, load_task_data(crops, pairs, "orig"), model, info


def _evaluation_auc(embeddings: np.ndarray, images: pd.Index, pairs: pd.DataFrame) -> float:
    """What the evaluate stage computes: score_pairs' cosine, metrics.roc_auc."""
    scored = score_pairs(embeddings, images, pairs)
    genuine = scored["kind"] == "genuine"
    return roc_auc(scored.loc[genuine, "similarity"], scored.loc[~genuine, "similarity"])


def _val_features(model, data, run) -> torch.Tensor:
    # what the cached phases validate on: (1, N, D) float16 trunk features, one view
    return cache_features(model, data.val_datasets["task"], run.eval_batch_size, CPU, run.image_size, flips=False)


def test_the_recorded_val_auc_is_the_evaluations_of_the_saved_model(trained):
    run, data, model, info = trained
    history = info["metrics"]["history"]
    assert [h["phase"] for h in history] == ["head", "neck", "neck"] and info["epoch"] == 2  # select_epoch last
    features = _val_features(model, data, run)
    embeddings = embed_cached(model, features.transpose(0, 1), run.eval_batch_size, CPU, flip_average=False)
    recorded = history[-1]["val_auc_task"]
    assert 0.5 < recorded < 1.0  # a real number, not a degenerate one
    assert recorded == _evaluation_auc(embeddings, data.val_images["task"], data.val_pairs["task"])


def test_both_validation_paths_equal_the_evaluation_functions(trained):
    run, data, model, _ = trained
    images, pairs = data.val_images["task"], data.val_pairs["task"]
    from_crops = embed(model, data.val_datasets["task"], run.eval_batch_size, CPU, image_size=run.image_size,
                       num_workers=0, flip_average=False)  # fmt: skip
    assert validation_aucs(model, data, run, ONE_PROCESS, None) == {
        "val_auc_task": _evaluation_auc(from_crops, images, pairs)
    }
    features = _val_features(model, data, run)
    from_features = embed_cached(model, features.transpose(0, 1), run.eval_batch_size, CPU, flip_average=False)
    assert validation_aucs(model, data, run, ONE_PROCESS, {"task": features}) == {
        "val_auc_task": _evaluation_auc(from_features, images, pairs)
    }
    # no flip averaging in training's validation: the evaluation's default gives other numbers
    flipped = embed(model, data.val_datasets["task"], run.eval_batch_size, CPU, image_size=run.image_size,
                    num_workers=0, flip_average=True)  # fmt: skip
    assert not np.array_equal(flipped, from_crops)


def test_pair_auc_by_hand_and_with_one_kind_only(caplog):
    angles = np.array([0.0, 0.1, 0.5, 1.2])
    embeddings = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    images = pd.Index(["a", "b", "c", "d"])
    pairs = pd.DataFrame({
        "image_a": ["a", "a", "b", "c", "a"], "image_b": ["b", "c", "c", "d", "d"],
        "kind": ["genuine", "impostor", "genuine", "impostor", "impostor"],
    })  # fmt: skip
    # cosines: genuine cos .1, cos .4; impostor cos .5, cos .7, cos 1.2: genuine above every impostor
    assert pair_auc(embeddings, pairs, images) == 1.0
    pairs["kind"] = ["impostor", "genuine", "genuine", "impostor", "impostor"]
    # genuine cos .5, cos .4 against impostor cos .1, cos .7, cos 1.2: each is below cos .1 only
    expected = roc_auc_score(pairs["kind"] == "genuine", np.cos([0.1, 0.5, 0.4, 0.7, 1.2]))
    assert pair_auc(embeddings, pairs, images) == pytest.approx(expected) == pytest.approx(4 / 6)
    pairs["kind"] = "genuine"
    assert np.isnan(pair_auc(embeddings, pairs, images)) and "only genuine pairs" in caplog.text
