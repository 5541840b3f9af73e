"""The report's words follow paired intervals, sample-size rules and the rule of 30:
planted effects read as effects, planted nulls as nulls, tiny cells as too little data."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from faceid.config.evaluate import BootstrapParams, EvaluateParams
from faceid.evaluate import metrics
from faceid.evaluate.evaluation import evaluate_attributes, evaluate_groups
from faceid.report.comparisons import (
    EQUAL,
    LOWERED,
    NO_CHANGE,
    RAISED,
    TOO_LITTLE,
    Embeddings,
    compare_models,
    describe,
)
from tests._params import section

N_ID, PER, DIM = 40, 6, 16


def _params(**overrides):
    return section(EvaluateParams, **{"bootstrap": section(BootstrapParams, n_boot=300, n_boot_conclusions=300),
                                      **overrides})


def _world(seed=0):
    """Images of N_ID people (the first 3 of each without attribute A, the rest with it),
    every genuine and impostor pair of task orig and the A/notA pairs of task Eyeglasses."""
    rng = np.random.default_rng(seed)
    identities = np.repeat(np.arange(N_ID), PER)
    names = np.array([f"{i:06d}.jpg" for i in range(identities.size)])
    centres = rng.normal(size=(N_ID, DIM))[identities]
    noise = rng.normal(size=centres.shape)
    rows = []
    for a in range(identities.size):
        for b in range(a + 1, identities.size):
            kind = "genuine" if identities[a] == identities[b] else "impostor"
            rows.append(("orig", "test", kind, "all", names[a], names[b], identities[a], identities[b]))
            if (a % PER < 3) != (b % PER < 3) and (kind == "genuine" or b % 7 == 0):
                rows.append(("Eyeglasses", "test", kind, "A/notA", names[a], names[b], identities[a], identities[b]))
    pairs = pd.DataFrame(rows, columns=["task", "split", "kind", "condition", "image_a", "image_b",
                                        "identity_a", "identity_b"])  # fmt: skip
    status = pd.Series("detected", index=names)
    return names, centres, noise, pairs, status


def _model(names, centres, noise, scale, extra=None):
    vectors = centres + scale * noise + (0 if extra is None else extra)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return Embeddings(names, vectors.astype(np.float32))


@pytest.fixture(scope="module")
def compared():
    names, centres, noise, pairs, status = _world()
    start = _model(names, centres, noise, 1.6)
    other = np.random.default_rng(1).normal(size=noise.shape)
    models = {
        "start": start,
        "better": _model(names, centres, noise, 1.1),  # less noise: every pair easier
        "worse": _model(names, centres, noise, 2.4),
        "null": _model(names, centres, noise, 1.6, 0.01 * other),  # a different model, the same quality
        "same": Embeddings(start.images, start.vectors.copy()),
    }
    plan = [(m, "start", "Eyeglasses") for m in ("better", "worse", "null", "same")]
    return compare_models(pairs, status, models, plan, _params()), pairs, (status, models, plan)


def test_any_number_of_processes_gives_the_same_comparisons(compared):
    """Each (model, start) draws from its own stream: one process or three, the same numbers."""
    result, pairs, (status, models, plan) = compared
    one = compare_models(pairs, status, models, plan, dataclasses.replace(_params(), processes=1))
    three = compare_models(pairs, status, models, plan, dataclasses.replace(_params(), processes=3))
    same = json.dumps(result, sort_keys=True)  # NaN-safe equality
    assert json.dumps(one, sort_keys=True) == json.dumps(three, sort_keys=True) == same
    assert result["better"]["original"]["delta"] is not None


def test_a_planted_gain_reads_raised_a_loss_lowered(compared):
    result, *_ = compared
    better, worse = result["better"], result["worse"]
    assert better["original"]["verdict"] == RAISED and better["original"]["low"] > 0
    assert better["attribute"]["verdict"] == RAISED
    assert worse["original"]["verdict"] == LOWERED and worse["original"]["high"] < 0
    assert describe(better["original"]).startswith("raised by +0.")


def test_a_planted_null_reads_no_detectable_change_and_an_identical_model_equals_its_start(compared):
    result, *_ = compared
    null = result["null"]["original"]
    assert null["verdict"] == NO_CHANGE and null["low"] < 0 < null["high"]
    assert describe(null).startswith("no detectable change (")
    same = result["same"]
    assert same["equals_start"] and same["original"]["verdict"] == EQUAL and same["original"]["delta"] == 0.0
    assert not result["null"]["equals_start"]


def test_a_tiny_cell_reads_too_little_data():
    names, centres, noise, pairs, status = _world()
    two_people = pairs[~((pairs.task == "Eyeglasses") & (pairs.identity_a > 1))]
    models = {"start": _model(names, centres, noise, 1.6), "better": _model(names, centres, noise, 0.5)}
    result = compare_models(two_people, status, models, [("better", "start", "Eyeglasses")], _params())
    cell = result["better"]["attribute"]
    assert cell["verdict"] == TOO_LITTLE and "people with genuine pairs < 5" in cell["reason"]
    assert result["better"]["original"]["verdict"] == RAISED  # the big cell still speaks


def _cell(rng, attribute, condition, kind, n, mean, people):
    a = rng.integers(0, people, n)
    b = a if kind == "genuine" else (a + 1 + rng.integers(0, people - 1, n)) % people
    return pd.DataFrame({"task": attribute, "split": "test", "kind": kind, "condition": condition,
                         "image_a": "", "image_b": "", "identity_a": a, "identity_b": b,
                         "similarity": rng.normal(mean, 0.15, n), "has_embedding": True, "acquired": True})  # fmt: skip


def _map(seed=0, nulls=12):
    """Hat lowers A/notA matching; `nulls` attributes change nothing; Tiny has a huge
    effect on two people only."""
    rng = np.random.default_rng(seed)
    cells = []
    plan = {"Wearing_Hat": (0.5, 40)} | {f"Null{k:02d}": (0.5, 40) for k in range(nulls)} | {"Tiny": (0.5, 2)}
    for attribute, (same, people) in plan.items():
        cross = 0.3 if attribute in ("Wearing_Hat", "Tiny") else same
        for condition, genuine in (("A/notA", cross), ("notA/notA", same)):
            n = 20 if people == 2 else 300
            cells += [_cell(rng, attribute, condition, "genuine", n, genuine, people),
                      _cell(rng, attribute, condition, "impostor", 300, 0.1, 40)]  # fmt: skip
    return pd.concat(cells, ignore_index=True)


def test_the_map_flags_the_planted_harm_keeps_nulls_and_tiny_cells_out():
    found, tests = evaluate_attributes(_map(), 0.4, _params(), np.random.default_rng(0))
    assert tests["hurt"] == ["Wearing_Hat"] and tests["helped"] == []
    assert tests["n_tested"] == 13 and tests["n_attributes"] == 14
    tiny = found["Tiny"]
    assert not tiny["tested"] and not tiny["discovery"] and "insufficient" in tiny["reason"]
    assert tiny["delta_auc"] < -0.1  # shown, with a large effect, yet never concluded from
    assert found["Wearing_Hat"]["q_value"] < 0.05


def test_nulls_are_flagged_at_most_at_the_false_discovery_rate():
    discoveries = 0
    for seed in range(6):
        _, tests = evaluate_attributes(_map(seed, nulls=10).query("task != 'Wearing_Hat'"), 0.4, _params(),
                                       np.random.default_rng(seed))  # fmt: skip
        discoveries += len(tests["hurt"]) + len(tests["helped"])
    assert discoveries <= 1  # 60 null tests: BH at 5% with no true effect flags almost none


def test_benjamini_hochberg_by_hand():
    p = [0.01, 0.04, 0.03, 0.20, float("nan")]
    found, adjusted = metrics.benjamini_hochberg(p, 0.05)
    # m = 4: sorted 0.01, 0.03, 0.04, 0.20 → scaled 0.04, 0.06, 0.0533, 0.20 → step-up min
    assert adjusted[:4] == pytest.approx([0.04, 0.0533333, 0.0533333, 0.20], rel=1e-5)
    assert found.tolist() == [True, False, False, False, False] and np.isnan(adjusted[4])


@pytest.mark.parametrize(("n_impostor", "fmr", "supported"), [(40_000, 1e-3, True), (3_000, 1e-2, True),
                                                               (29_401, 1.1e-3, True), (50, 1e-3, False)])  # fmt: skip
def test_the_threshold_rests_on_thirty_false_matches(n_impostor, fmr, supported):
    rng = np.random.default_rng(0)
    people = 50
    sample = metrics.PairSample(rng.normal(0.6, 0.2, 2000), rng.normal(0.0, 0.2, n_impostor),
                                rng.integers(0, people, 2000), rng.integers(0, people, (n_impostor, 2)))  # fmt: skip
    point = metrics.operating_point(sample, 1e-3, 30, 200, rng, level=0.95)
    assert point.fmr == fmr and point.supported is supported
    assert point.false_matches >= 30 or not supported
    assert point.fnmr_low <= point.fnmr <= point.fnmr_high
    if n_impostor == 3_000:
        assert point.reason == "moved from FMR 0.001, where it would rest on 3 false matches, fewer than 30"


def test_group_ratio_interval_contains_its_estimate_and_groups_of_one_person_are_marked():
    rng = np.random.default_rng(0)
    cells = []
    for condition, people, mean in (("A/A", 1, 0.5), ("notA/notA", 30, 0.5)):
        cells += [_cell(rng, "Pale_Skin", condition, "genuine", 200, mean, people),
                  _cell(rng, "Pale_Skin", condition, "impostor", 400, 0.1, max(people, 2))]  # fmt: skip
    for condition in ("A/A", "notA/notA"):  # equal rates: the ratio's interval straddles 1
        cells += [_cell(rng, "Male", condition, "genuine", 600, 0.5, 30)]
    scored = pd.concat(cells, ignore_index=True)
    groups = evaluate_groups(scored, ["Pale_Skin", "Male"], 0.5, _params(), rng)
    male = groups["Male"]["fnmr_ratio"]
    assert male["low"] <= male["value"] <= male["high"] and male["low"] < 1.0
    pale = groups["Pale_Skin"]["fnmr_ratio"]
    assert not pale["sufficient"] and "1 people < 5" in pale["reason"]


def test_the_map_compares_the_same_people_with_and_without_the_attribute():
    """People 0-9 are hard to match whatever they wear, and only they ever wear hats:
    their A/notA pairs score low because of who they are, not because of the hat. Against
    all people's notA/notA pairs the hat would look harmful; against the same people's it
    does not."""
    rng = np.random.default_rng(0)

    def genuine(condition, people, n):
        a = rng.choice(people, n)
        mean = np.where(a < 10, 0.25, 0.6)
        return pd.DataFrame({"task": "Wearing_Hat", "split": "test", "kind": "genuine", "condition": condition,
                             "image_a": "", "image_b": "", "identity_a": a, "identity_b": a,
                             "similarity": rng.normal(mean, 0.1), "has_embedding": True, "acquired": True})  # fmt: skip

    scored = pd.concat([genuine("A/notA", np.arange(10), 300), genuine("notA/notA", np.arange(40), 1200),
                        _cell(rng, "Wearing_Hat", "A/notA", "impostor", 600, 0.1, 40),
                        _cell(rng, "Wearing_Hat", "notA/notA", "impostor", 600, 0.1, 40)],
                       ignore_index=True)  # fmt: skip
    found, tests = evaluate_attributes(scored, 0.4, _params(), np.random.default_rng(0))
    hat = found["Wearing_Hat"]
    assert abs(hat["delta_auc"]) < 0.03 and hat["delta_auc_ci"]["low"] < 0 < hat["delta_auc_ci"]["high"]
    assert tests["hurt"] == [] and hat["reference_support"]["genuine_identities"] == 10
    everyone = found["Wearing_Hat"]["cells"]["notA/notA"]["auc"] - found["Wearing_Hat"]["cells"]["A/notA"]["auc"]
    assert everyone > 0.1  # the unmatched comparison would have blamed the hat
