"""Training subsets and the identification protocol: identities disjoint from evaluation,
balanced attribute subsets, the orig subset, shortfalls."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from faceid.config.pairs import IdentificationParams, TrainSubsetParams
from faceid.pairs import build_pairs, make_identification, make_train_subset
from tests._pairs_fixtures import TASKS, small_params
from tests._params import section


def test_train_and_evaluation_identities_are_disjoint(pairs_result):
    train = set(pairs_result.train_subsets["identity"])
    evaluation = set(pairs_result.pairs["identity_a"]) | set(pairs_result.pairs["identity_b"])
    assert train and evaluation and not train & evaluation
    assert not train & set(pairs_result.identification["identity"])


def test_identities_shared_with_training_are_excluded(pairs_manifest):
    leaky = pairs_manifest.copy()
    train_identity = leaky.loc[leaky["partition"] == 0, "identity"].iloc[0]
    moved = leaky.index[leaky["partition"] == 1][:3]
    leaky.loc[moved, "identity"] = train_identity
    res = build_pairs(leaky, small_params(), TASKS, ())
    assert train_identity not in set(res.pairs["identity_a"]) | set(res.pairs["identity_b"])
    usable = leaky.loc[moved, "status"].isin(["detected", "fallback"]).sum()
    assert res.metrics["excluded"]["identity_overlap"] == usable > 0



def test_train_subset_is_balanced(pairs_manifest):
    train = pairs_manifest[(pairs_manifest["partition"] == 0) & pairs_manifest["status"].isin(["detected", "fallback"])]
    params = section(TrainSubsetParams, min_attribute_images=1, min_other_images=1, max_ratio=0.5)
    subset, stats = make_train_subset(train, "Eyeglasses", params, np.random.default_rng(0))
    joined = subset.merge(train[["image", "Eyeglasses"]], on="image")
    per = joined.groupby("identity")["Eyeglasses"].agg(["sum", "count"])
    n_a, n_other = per["sum"], per["count"] - per["sum"]
    assert (n_a >= 1).all() and (n_other >= 1).all()
    assert (n_other <= np.maximum(np.floor(0.5 * n_a), 1)).all()
    # every A image of an identity with both kinds is kept
    both = train.groupby("identity")["Eyeglasses"].agg(["sum", "count"])
    both = both.index[(both["sum"] >= 1) & (both["count"] > both["sum"])]
    kept_a = train[train["identity"].isin(both) & train["Eyeglasses"]]
    assert set(kept_a["image"]) <= set(subset["image"])
    assert stats == {
        "images": len(subset), "identities": len(both), "attribute_images": len(kept_a),
        "other_images": int(n_other.sum()),
        "identities_without_both": train["identity"].nunique() - len(both),
    }
    labels = subset.groupby("identity")["label"].agg(["min", "max"])
    assert (labels["min"] == labels["max"]).all()
    assert sorted(labels["min"]) == list(range(len(both)))


@pytest.mark.parametrize("include_fallbacks", [False, True])
def test_orig_subset_is_every_detected_training_image(pairs_manifest, pairs_result, include_fallbacks):
    """Fallback crops (no detection agreed with the annotation) train only when asked."""
    statuses = ["detected", "fallback"] if include_fallbacks else ["detected"]
    if include_fallbacks:
        params = small_params(train=dataclasses.replace(small_params().train, include_fallbacks=True))
        pairs_result = build_pairs(pairs_manifest, params, TASKS, ())
    train = pairs_manifest[(pairs_manifest["partition"] == 0) & pairs_manifest["status"].isin(statuses)]
    orig = pairs_result.train_subsets[pairs_result.train_subsets["task"] == "orig"]
    assert list(orig["image"]) == sorted(train["image"])
    expected = {"images": len(train), "identities": train["identity"].nunique()}
    assert pairs_result.metrics["train_subsets"]["orig"] == expected
    assert list(pairs_result.train_subsets.columns) == ["task", "image", "identity", "label"]


def test_identification_protocol(pairs_manifest):
    test = pairs_manifest[(pairs_manifest["partition"] == 2) & pairs_manifest["status"].isin(["detected", "fallback"])]
    params = section(IdentificationParams, n_identities=5, n_images=20)
    protocol, stats = make_identification(test, params, np.random.default_rng(0))
    sizes = protocol.groupby("identity").size()
    assert len(sizes) == 5 and len(protocol) == 20 and (sizes >= 2).all()
    assert set(protocol["image"]) <= set(test["image"])
    assert stats["shortfall_identities"] == stats["shortfall_images"] == 0


def test_identification_shortfall(pairs_manifest):
    test = pairs_manifest[(pairs_manifest["partition"] == 2) & pairs_manifest["status"].isin(["detected", "fallback"])]
    sizes = test.groupby("identity").size()
    eligible = sizes[sizes >= 2]
    protocol, stats = make_identification(test, section(IdentificationParams), np.random.default_rng(0))
    assert stats["identities"] == len(eligible) and stats["images"] == int(eligible.sum()) == len(protocol)
    assert stats["shortfall_identities"] == 220 - len(eligible)
    assert stats["shortfall_images"] == 1000 - len(protocol)
