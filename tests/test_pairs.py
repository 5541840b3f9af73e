"""Tests of faceid.pairs, PairsParams and stages/pairs.py on small manifests built here."""

from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import pandas as pd
import pytest
from stages.pairs import main

from faceid.config.engine import ParamsError
from faceid.config.evaluate import EvaluateParams
from faceid.config.pairs import (
    IdentificationParams,
    PairsParams,
    TrainSubsetParams,
    VerificationParams,
)
from faceid.config.tasks import all_tasks
from faceid.config.whole import load_all_params
from faceid.data.celeba import ATTRIBUTE_NAMES
from faceid.pairs import (
    ManifestError,
    build_pairs,
    label_flips,
    make_identification,
    make_train_subset,
    read_manifest,
    sample_pairs,
    task_train_files,
    write_train_folders,
)
from tests._params import PARAMS, section, write_params

TASKS = ("orig", "Eyeglasses", "Wearing_Hat")
SPLIT_CODES = {"val": 1, "test": 2}


def make_manifest(seed: int = 0, n_identities: int = 60) -> pd.DataFrame:
    """Identities of 1-14 images, partitions by identity, identity-linked attributes, all statuses."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 15, n_identities)
    identity = np.repeat(np.arange(100, 100 + n_identities), sizes).astype(np.int32)
    n = len(identity)
    # shuffle image names so identity order and image order differ
    frame = pd.DataFrame({"image": [f"{i:06d}.jpg" for i in rng.permutation(n) + 1], "identity": identity})
    share = np.searchsorted(np.arange(100, 100 + n_identities), identity) / n_identities
    frame["partition"] = np.select([share < 0.5, share < 0.75], [0, 1], 2).astype(np.int8)
    propensity = rng.random((n_identities, len(ATTRIBUTE_NAMES)))[identity - 100]
    for j, name in enumerate(ATTRIBUTE_NAMES):
        frame[name] = rng.random(n) < propensity[:, j] * 0.8
    frame["status"] = rng.choice(["detected", "fallback", "missing", "unreadable"], n, p=[0.75, 0.15, 0.06, 0.04])
    return frame.sort_values("image", ignore_index=True)


def small_params(**changes) -> PairsParams:
    base = section(
        PairsParams,
        seed=7,
        verification=section(
            VerificationParams, genuine_per_condition=30, impostor_per_condition=40, orig_genuine=50, orig_impostor=60
        ),
        identification=section(IdentificationParams, n_identities=8, n_images=30),
    )
    return dataclasses.replace(base, **changes)


@pytest.fixture(scope="module")
def manifest() -> pd.DataFrame:
    return make_manifest()


@pytest.fixture(scope="module")
def result(manifest):
    return build_pairs(manifest, small_params(), TASKS)


# --------------------------------------------------------------------------- sample_pairs


def brute_force(left_ids, right_ids, kind):
    """Every valid pair of positions, by enumeration."""
    same_pool = right_ids is None
    right = left_ids if same_pool else right_ids
    found = set()
    for i, j in itertools.product(range(len(left_ids)), range(len(right))):
        if same_pool and j <= i:
            continue
        if (left_ids[i] == right[j]) == (kind == "genuine"):
            found.add((i, j))
    return found


@pytest.mark.parametrize("kind", ["genuine", "impostor"])
@pytest.mark.parametrize("same_pool", [True, False])
def test_sample_pairs_takes_every_valid_pair_when_short(kind, same_pool):
    left = np.array([1, 1, 1, 2, 4, 4, 7])
    right = None if same_pool else np.array([1, 2, 2, 3, 4, 9, 9, 9])
    expected = brute_force(left, right, kind)
    a, b, available = sample_pairs(left, right, kind, 1000, np.random.default_rng(0))
    assert available == len(expected)
    assert set(zip(a.tolist(), b.tolist(), strict=True)) == expected
    assert len(a) == len(expected)  # no repeats


@pytest.mark.parametrize("kind", ["genuine", "impostor"])
@pytest.mark.parametrize("same_pool", [True, False])
def test_sample_pairs_draws_distinct_valid_pairs(kind, same_pool):
    rng = np.random.default_rng(3)
    left = np.sort(rng.integers(0, 12, 80))
    right = None if same_pool else np.sort(rng.integers(0, 12, 70))
    expected = brute_force(left, right, kind)
    a, b, available = sample_pairs(left, right, kind, 50, np.random.default_rng(1))
    drawn = list(zip(a.tolist(), b.tolist(), strict=True))
    assert available == len(expected) > 50
    assert len(drawn) == len(set(drawn)) == 50
    assert set(drawn) <= expected


def test_sample_pairs_is_roughly_uniform():
    # 3 identities of sizes 1, 2, 3 → 11 impostor pairs; 11,000 draws of one pair each
    left = np.array([0, 1, 1, 2, 2, 2])
    hits = pd.Series(
        [tuple(np.concatenate(sample_pairs(left, None, "impostor", 1, np.random.default_rng(s))[:2]))
         for s in range(4400)]
    ).value_counts()
    assert len(hits) == 11
    assert hits.min() > 300 and hits.max() < 500  # expected 400 each; sd ≈ 19


# --------------------------------------------------------------------------- verification pairs


def test_every_pair_meets_its_condition(manifest, result):
    info = manifest.set_index("image")
    pairs = result.pairs
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


def test_no_self_or_duplicate_pairs(result):
    pairs = result.pairs
    assert (pairs["image_a"] != pairs["image_b"]).all()
    low = np.minimum(pairs["image_a"], pairs["image_b"])
    high = np.maximum(pairs["image_a"], pairs["image_b"])
    keys = pd.DataFrame({"task": pairs["task"], "split": pairs["split"], "low": low, "high": high})
    assert not keys.duplicated().any()


def test_counts_and_shortfalls_in_metrics(result):
    pairs, metrics = result.pairs, result.metrics
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


def test_genuine_shortfall_takes_all_pairs(manifest):
    params = small_params(verification=VerificationParams(*[10**6] * 4))
    res = build_pairs(manifest, params, TASKS)
    usable = manifest[manifest["status"].isin(["detected", "fallback"]) & (manifest["partition"] == 1)]
    sizes = usable.groupby("identity").size()
    cell = res.metrics["pairs"]["orig"]["val"]["genuine"]["all"]
    assert cell["pairs"] == cell["available"] == int((sizes * (sizes - 1) // 2).sum())
    n = len(usable)
    impostor = res.metrics["pairs"]["orig"]["val"]["impostor"]["all"]
    assert impostor["available"] == n * (n - 1) // 2 - cell["available"]
    assert impostor["shortfall"] == 10**6 - impostor["available"]


def test_excluded_images_are_counted_and_absent(manifest, result):
    dropped = manifest[manifest["status"].isin(["missing", "unreadable"])]
    used = set(result.pairs["image_a"]) | set(result.pairs["image_b"]) | set(result.train_subsets["image"])
    used |= set(result.identification["image"])
    assert not used & set(dropped["image"])
    counts = result.metrics["excluded"]["by_task"]
    val = dropped[dropped["partition"] == 1]
    assert counts["orig"]["val"] == {"all": len(val)}
    assert counts["Eyeglasses"]["val"] == {"A": int(val["Eyeglasses"].sum()), "notA": int((~val["Eyeglasses"]).sum())}
    status = result.metrics["excluded"]["by_status"]["test"]
    assert status["missing"] == int(((manifest["partition"] == 2) & (manifest["status"] == "missing")).sum())
    fallback = set(manifest.loc[manifest["status"] == "fallback", "image"])
    assert used & fallback  # fallback crops are included


# --------------------------------------------------------------------------- disjointness


def test_train_and_evaluation_identities_are_disjoint(result):
    train = set(result.train_subsets["identity"])
    evaluation = set(result.pairs["identity_a"]) | set(result.pairs["identity_b"])
    assert train and evaluation and not train & evaluation
    assert not train & set(result.identification["identity"])


def test_identities_shared_with_training_are_excluded(manifest):
    leaky = manifest.copy()
    train_identity = leaky.loc[leaky["partition"] == 0, "identity"].iloc[0]
    moved = leaky.index[leaky["partition"] == 1][:3]
    leaky.loc[moved, "identity"] = train_identity
    res = build_pairs(leaky, small_params(), TASKS)
    assert train_identity not in set(res.pairs["identity_a"]) | set(res.pairs["identity_b"])
    usable = leaky.loc[moved, "status"].isin(["detected", "fallback"]).sum()
    assert res.metrics["excluded"]["identity_overlap"] == usable > 0


# --------------------------------------------------------------------------- training subsets


def test_train_subset_is_balanced(manifest):
    train = manifest[(manifest["partition"] == 0) & manifest["status"].isin(["detected", "fallback"])]
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
def test_orig_subset_is_every_detected_training_image(manifest, result, include_fallbacks):
    """Fallback crops (no detection agreed with the annotation) train only when asked."""
    statuses = ["detected", "fallback"] if include_fallbacks else ["detected"]
    if include_fallbacks:
        params = small_params(train=dataclasses.replace(small_params().train, include_fallbacks=True))
        result = build_pairs(manifest, params, TASKS)
    train = manifest[(manifest["partition"] == 0) & manifest["status"].isin(statuses)]
    orig = result.train_subsets[result.train_subsets["task"] == "orig"]
    assert list(orig["image"]) == sorted(train["image"])
    assert result.metrics["train_subsets"]["orig"] == {"images": len(train), "identities": train["identity"].nunique()}
    assert list(result.train_subsets.columns) == ["task", "image", "identity", "label"]


@pytest.mark.parametrize("seed", [-3, -1])
def test_a_negative_seed_is_a_params_error_not_a_numpy_traceback(seed):
    with pytest.raises(ParamsError, match=rf"pairs.seed: expected an integer >= 0, got {seed}"):
        small_params(seed=seed)


# --------------------------------------------------------------------------- identification


def test_identification_protocol(manifest):
    test = manifest[(manifest["partition"] == 2) & manifest["status"].isin(["detected", "fallback"])]
    params = section(IdentificationParams, n_identities=5, n_images=20)
    protocol, stats = make_identification(test, params, np.random.default_rng(0))
    sizes = protocol.groupby("identity").size()
    assert len(sizes) == 5 and len(protocol) == 20 and (sizes >= 2).all()
    assert set(protocol["image"]) <= set(test["image"])
    assert stats["shortfall_identities"] == stats["shortfall_images"] == 0


def test_identification_shortfall(manifest):
    test = manifest[(manifest["partition"] == 2) & manifest["status"].isin(["detected", "fallback"])]
    sizes = test.groupby("identity").size()
    eligible = sizes[sizes >= 2]
    protocol, stats = make_identification(test, section(IdentificationParams), np.random.default_rng(0))
    assert stats["identities"] == len(eligible) and stats["images"] == int(eligible.sum()) == len(protocol)
    assert stats["shortfall_identities"] == 220 - len(eligible)
    assert stats["shortfall_images"] == 1000 - len(protocol)


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_output_other_seed_differs(manifest, result):
    again = build_pairs(manifest, small_params(), TASKS)
    pd.testing.assert_frame_equal(again.pairs, result.pairs)
    pd.testing.assert_frame_equal(again.train_subsets, result.train_subsets)
    pd.testing.assert_frame_equal(again.identification, result.identification)
    other = build_pairs(manifest, small_params(seed=8), TASKS)
    assert not other.pairs.equals(result.pairs)


def test_adding_a_task_leaves_other_tasks_unchanged(manifest, result, tmp_path):
    more = build_pairs(manifest, small_params(), ("Blurry", *TASKS))
    for name in ("pairs", "train_subsets"):
        mine = getattr(result, name)
        theirs = getattr(more, name)
        pd.testing.assert_frame_equal(theirs[theirs["task"] != "Blurry"].reset_index(drop=True)
                                      .sort_values(list(mine.columns), ignore_index=True),
                                      mine.sort_values(list(mine.columns), ignore_index=True))
    # what the train stages depend on: every other task's folder keeps its bytes
    for res, out in ((result, tmp_path / "before"), (more, tmp_path / "after")):
        write_train_folders(out, res.train_subsets, res.pairs, list(res.metrics["train_subsets"]))
    for task in TASKS:
        for before, after in zip(
            task_train_files(tmp_path / "before", task), task_train_files(tmp_path / "after", task), strict=True
        ):
            assert before.read_bytes() == after.read_bytes(), before
    assert task_train_files(tmp_path / "after", "Blurry")[0].is_file()


# --------------------------------------------------------------------------- params


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: section(VerificationParams, genuine_per_condition=0),
            r"pairs.verification.genuine_per_condition: expected an integer >= 1, got 0",
        ),
        (lambda: section(TrainSubsetParams, max_ratio=0.0), r"pairs.train.max_ratio: expected a number > 0"),
        (
            lambda: section(IdentificationParams, min_images_per_identity=1),
            r"min_images_per_identity: expected an integer >= 2",
        ),
        (
            lambda: section(IdentificationParams, n_identities=220, n_images=300),
            r"n_images: 300 cannot give .* set it to at least 440",
        ),
    ],
)
def test_bad_params_are_rejected(make, message):
    with pytest.raises(ParamsError, match=message):
        make()


def test_bad_params_in_yaml_name_file_and_key(tmp_path):
    path = write_params(tmp_path / "params.yaml", {"train": {"tasks": ["Sunglasses"]}})
    with pytest.raises(
        ParamsError,
        match=r"params.yaml: train.tasks\[0\]: unknown task 'Sunglasses' \(did you mean 'Eyeglasses'\?\); valid: 5_o_Clock",
    ):
        load_all_params(path)
    write_params(path, lambda d: d["pairs"]["identification"].update(top_k=3))
    with pytest.raises(ParamsError, match=r"unknown key 'pairs.identification.top_k'; valid keys: n_identities"):
        load_all_params(path)
    write_params(path, {"evaluate": {"identification": {"score": "median"}}})
    with pytest.raises(
        ParamsError, match=r"evaluate.identification.score: 'median' is not a valid choice; valid: max, mean"
    ):
        load_all_params(path)


def test_default_params_give_pairs_and_a_subset_for_every_trained_task(manifest):
    """Every task of params.yaml's task list, and orig, gets pairs (all conditions, both
    splits) and a training subset."""
    defaults = load_all_params(PARAMS)
    res = build_pairs(manifest, small_params(), all_tasks(defaults.train.tasks))
    assert set(res.train_subsets["task"]) == {"orig", *defaults.train.tasks}
    for task in defaults.train.tasks:
        cells = res.pairs[res.pairs["task"] == task].groupby(["split", "condition"]).size()
        assert len(cells) == 2 * 3, (task, cells)
        assert (res.train_subsets["task"] == task).sum() > 0, task


# --------------------------------------------------------------------------- manifest errors


def test_manifest_errors(tmp_path, manifest):
    with pytest.raises(ManifestError, match=r"no crop manifest; run `dvc repro crop` first"):
        read_manifest(tmp_path / "absent.parquet", TASKS)
    path = tmp_path / "manifest.parquet"
    manifest.drop(columns=["Wearing_Hat"]).to_parquet(path)
    with pytest.raises(ManifestError, match=r"manifest.parquet: cannot read the needed columns"):
        read_manifest(path, TASKS)
    broken = manifest.assign(status=manifest["status"].replace("missing", "lost"))
    with pytest.raises(ManifestError, match=r"unknown status value\(s\) \['lost'\]; expected detected"):
        build_pairs(broken, small_params(), TASKS)
    with pytest.raises(ManifestError, match=r"missing column\(s\) Wearing_Hat"):
        build_pairs(manifest.drop(columns=["Wearing_Hat"]), small_params(), TASKS)


# --------------------------------------------------------------------------- stage


def test_stage_end_to_end(tmp_path, manifest):
    manifest.to_parquet(tmp_path / "manifest.parquet", index=False)
    write_params(tmp_path / "params.yaml", {"train": {"tasks": list(TASKS[1:])}, "pairs": {
        "seed": 7,
        "verification": {"genuine_per_condition": 30, "impostor_per_condition": 40,
                         "orig_genuine": 50, "orig_impostor": 60},
        "identification": {"n_identities": 8, "n_images": 30},
    }})  # fmt: skip

    def run(out):
        args = ["--params", str(tmp_path / "params.yaml"), "--manifest", str(tmp_path / "manifest.parquet"),
                "--out", str(tmp_path / out), "--metrics", str(tmp_path / out / "metrics.json"),
                "--detail", str(tmp_path / out / "metrics_detail.json")]
        assert main(args) == 0
        return {str(p.relative_to(tmp_path / out)): p.read_bytes() for p in sorted((tmp_path / out).rglob("*.*"))}

    first, second = run("a"), run("b")
    assert sorted(first) == ["attribute_pairs.parquet", "identification.parquet", "metrics.json",
                             "metrics_detail.json", "pairs.parquet",
                             *(f"train/{t}/{f}.parquet" for t in sorted(TASKS) for f in ("subset", "val_pairs"))]  # fmt: skip
    assert first == second  # byte-identical
    pairs = pd.read_parquet(tmp_path / "a" / "pairs.parquet")
    assert list(pairs.columns) == ["task", "split", "kind", "condition", "image_a", "image_b",
                                   "identity_a", "identity_b", "fallback"]
    assert list(pd.read_parquet(tmp_path / "a" / "identification.parquet").columns) == ["image", "identity"]
    for task in TASKS:  # what a training run reads: its rows, in the order of the whole tables
        subset_path, val_path = task_train_files(tmp_path / "a", task)
        expected_val = pairs[(pairs["task"] == task) & (pairs["split"] == "val")].reset_index(drop=True)
        pd.testing.assert_frame_equal(pd.read_parquet(val_path), expected_val)
        subset = pd.read_parquet(subset_path)
        assert list(subset.columns) == ["task", "image", "identity", "label"] and set(subset["task"]) == {task}
    detail = json.loads(first["metrics_detail.json"])
    expected = build_pairs(
        manifest, small_params(), TASKS, section(EvaluateParams).attribute_names
    )  # params.yaml's: all 40
    pd.testing.assert_frame_equal(pairs, expected.pairs)
    assert detail == json.loads(json.dumps(expected.metrics))
    headline = json.loads(first["metrics.json"])  # the DVC metric: a few counts, no nesting
    assert set(headline) == {"val_pairs", "test_pairs", "shortfalls", "identification_images", "excluded_images"}
    assert headline["val_pairs"] + headline["test_pairs"] == len(pairs)
    assert headline["shortfalls"] == len(detail["shortfalls"])
    assert headline["identification_images"] == len(pd.read_parquet(tmp_path / "a" / "identification.parquet"))


def test_attribute_pairs_are_test_only_per_condition_and_apart_from_tasks(manifest, result):
    attributes = ("Eyeglasses", "Male")
    with_map = build_pairs(manifest, small_params(), TASKS, attributes)
    pd.testing.assert_frame_equal(with_map.pairs, result.pairs)  # the tasks' pairs do not move
    pairs = with_map.attribute_pairs
    assert set(pairs["task"]) == set(attributes) and set(pairs["split"]) == {"test"}
    rows = manifest.set_index("image")
    for (attribute, condition), cell in pairs.groupby(["task", "condition"]):
        a, b = rows.loc[cell["image_a"], attribute].to_numpy(), rows.loc[cell["image_b"], attribute].to_numpy()
        expected = {"A/A": (True, True), "A/notA": (True, False), "notA/notA": (False, False)}[condition]
        assert (a == expected[0]).all() and (b == expected[1]).all(), (attribute, condition)
        assert (rows.loc[cell["image_a"], "partition"] == 2).all()
    # drawn apart from the Eyeglasses task's own test pairs, from their own random streams
    task_pairs = result.pairs[(result.pairs.task == "Eyeglasses") & (result.pairs.split == "test")]
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
