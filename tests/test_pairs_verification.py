"""Verification pairs: each meets its task's condition, no self or duplicate pairs, counts
and shortfalls in the metrics, excluded images, attribute pairs, label flips."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from faceid.config.pairs import VerificationParams
from faceid.pairs import build_pairs, label_flips
from tests._pairs_fixtures import SPLIT_CODES, TASKS, small_params


def test_every_pair_meets_its_condition(pairs_manifest, pairs_result):
    info = pairs_manifest.set_index("image")
    pairs = pairs_result.pairs
    a = info.loc[pairs["image_a"]].reset_index()
    b = info.loc[pairs["image_b"]].reset_index()
    assert (a["identity"].to_numpy() == pairs["identity_a"].to_numpy()).all()
    assert (b["identity"].to_numpy() == pairs["identity_b"].to_numpy()).all()
    codes = pairs["split"].map(SPLIT_CODES).to_numpy()
    assert (a["partition"].to_numpy() == codes).all() and (b["partition"].to_numpy() == codes).all()
    same = pairs["identity_a"].to_numpy() == pairs["identity_b"].to_numpy()
    assert (same == (pairs["kind"] == "genuine").to_numpy()).all()
    usable = ["detected", "fallback"]
    assert a["status"].isin(usable).all() and b["status"].isin(usable).all()
    expected_fallback = (a["status"] == "fallback").astype(int) + (b["status"] == "fallback").astype(int)
    assert (pairs["fallback"].to_numpy() == expected_fallback.to_numpy()).all()
    for task in TASKS[1:]:
        rows = (pairs["task"] == task).to_numpy()
        cond = pairs["condition"][rows].to_numpy()
        has_a, has_b = a[task][rows].to_numpy(), b[task][rows].to_numpy()
        assert set(cond) == {"A/A", "A/notA", "notA/notA"}
        assert (has_a == (cond != "notA/notA")).all()
        assert (has_b == (cond == "A/A")).all()
    assert set(pairs.loc[pairs["task"] == "orig", "condition"]) == {"all"}


def test_no_self_or_duplicate_pairs(pairs_result):
    pairs = pairs_result.pairs
    assert (pairs["image_a"] != pairs["image_b"]).all()
    low = np.minimum(pairs["image_a"], pairs["image_b"])
    high = np.maximum(pairs["image_a"], pairs["image_b"])
    keys = pd.DataFrame({"task": pairs["task"], "split": pairs["split"], "low": low, "high": high})
    assert not keys.duplicated().any()


def test_counts_and_shortfalls_in_metrics(pairs_result):
    pairs, metrics = pairs_result.pairs, pairs_result.metrics
    sizes = pairs.groupby(["task", "split", "kind", "condition"]).size()
    cells = 0
    for task, splits in metrics["pairs"].items():
        for split, kinds in splits.items():
            for kind, conditions in kinds.items():
                for condition, cell in conditions.items():
                    cells += 1
                    assert cell["pairs"] == sizes.get((task, split, kind, condition), 0)
                    assert cell["pairs"] == min(cell["requested"], cell["available"])
                    assert cell["shortfall"] == max(0, cell["requested"] - cell["available"])
                    rows = pairs[(pairs["task"] == task) & (pairs["split"] == split)
                                 & (pairs["kind"] == kind) & (pairs["condition"] == condition)]
                    ids = set(rows["identity_a"]) | set(rows["identity_b"])
                    assert cell["identities"] == len(ids)
                    assert cell["pairs_with_fallback"] == int((rows["fallback"] > 0).sum())
    assert cells == 2 * 2 * (1 + 3 * (len(TASKS) - 1))
    short = [
        f"{task}/{split}/{kind}/{condition}: {cell['available']} of {cell['requested']} pairs (all that exist)"
        for task, splits in metrics["pairs"].items() for split, kinds in splits.items()
        for kind, conditions in kinds.items() for condition, cell in conditions.items()
        if cell["shortfall"]
    ]
    assert short and sorted(metrics["shortfalls"]) == sorted(short)  # identification is not short here


def test_genuine_shortfall_takes_all_pairs(pairs_manifest):
    params = small_params(verification=VerificationParams(*[10**6] * 4))
    res = build_pairs(pairs_manifest, params, TASKS, ())
    usable = pairs_manifest[pairs_manifest["status"].isin(["detected", "fallback"])]
    usable = usable[usable["partition"] == 1]
    sizes = usable.groupby("identity").size()
    cell = res.metrics["pairs"]["orig"]["val"]["genuine"]["all"]
    assert cell["pairs"] == cell["available"] == int((sizes * (sizes - 1) // 2).sum())
    n = len(usable)
    impostor = res.metrics["pairs"]["orig"]["val"]["impostor"]["all"]
    assert impostor["available"] == n * (n - 1) // 2 - cell["available"]
    assert impostor["shortfall"] == 10**6 - impostor["available"]


def test_excluded_images_are_counted_and_absent(pairs_manifest, pairs_result):
    dropped = pairs_manifest[pairs_manifest["status"].isin(["missing", "unreadable"])]
    used = set(pairs_result.pairs["image_a"]) | set(pairs_result.pairs["image_b"])
    used |= set(pairs_result.train_subsets["image"]) | set(pairs_result.identification["image"])
    assert not used & set(dropped["image"])
    counts = pairs_result.metrics["excluded"]["by_task"]
    val = dropped[dropped["partition"] == 1]
    assert counts["orig"]["val"] == {"all": len(val)}
    assert counts["Eyeglasses"]["val"] == {"A": int(val["Eyeglasses"].sum()), "notA": int((~val["Eyeglasses"]).sum())}
    status = pairs_result.metrics["excluded"]["by_status"]["test"]
    test_missing = (pairs_manifest["partition"] == 2) & (pairs_manifest["status"] == "missing")
    assert status["missing"] == int(test_missing.sum())
    fallback = set(pairs_manifest.loc[pairs_manifest["status"] == "fallback", "image"])
    assert used & fallback  # fallback crops are included



def test_attribute_pairs_are_test_only_per_condition_and_apart_from_tasks(pairs_manifest, pairs_result):
    attributes = ("Eyeglasses", "Male")
    with_map = build_pairs(pairs_manifest, small_params(), TASKS, attributes)
    pd.testing.assert_frame_equal(with_map.pairs, pairs_result.pairs)  # the tasks' pairs do not move
    pairs = with_map.attribute_pairs
    assert set(pairs["task"]) == set(attributes) and set(pairs["split"]) == {"test"}
    rows = pairs_manifest.set_index("image")
    for (attribute, condition), cell in pairs.groupby(["task", "condition"]):
        a, b = rows.loc[cell["image_a"], attribute].to_numpy(), rows.loc[cell["image_b"], attribute].to_numpy()
        expected = {"A/A": (True, True), "A/notA": (True, False), "notA/notA": (False, False)}[condition]
        assert (a == expected[0]).all() and (b == expected[1]).all(), (attribute, condition)
        assert (rows.loc[cell["image_a"], "partition"] == 2).all()
    # drawn apart from the Eyeglasses task's own test pairs, from their own random streams
    task_pairs = pairs_result.pairs[(pairs_result.pairs.task == "Eyeglasses") & (pairs_result.pairs.split == "test")]
    mine = pairs[pairs.task == "Eyeglasses"]
    assert len(mine) and not mine[["image_a", "image_b"]].equals(task_pairs[["image_a", "image_b"]])
    counts = with_map.metrics["attribute_pairs"]["Male"]["genuine"]["A/notA"]
    assert counts["pairs"] == len(
        pairs[(pairs.task == "Male") & (pairs.kind == "genuine") & (pairs.condition == "A/notA")]
    )
    assert set(with_map.metrics["label_flips"]) == set(attributes)




def test_label_flips_share_of_identities_with_changing_labels():
    manifest = pd.DataFrame({
        "image": [f"{i}.jpg" for i in range(7)], "identity": [1, 1, 2, 2, 3, 3, 4],
        "partition": 0, "status": ["detected"] * 6 + ["missing"],
        "Male": [True, True, False, True, True, True, False],  # identity 2 flips
    })  # fmt: skip
    flips = label_flips(manifest, ("Male",))["Male"]
    assert flips == {"identities": 3, "flip_share": pytest.approx(1 / 3)}  # identity 4: one usable image at most
