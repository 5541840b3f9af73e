import json
import math

import numpy as np
import pandas as pd
import pytest

from faceid.config.engine import ParamsError
from faceid.config.evaluate import BootstrapParams, EvaluateParams
from faceid.config.whole import load_all_params
from faceid.evaluate import metrics
from faceid.evaluate.evaluation import (
    POOLED,
    EvaluateError,
    evaluate_attributes,
    evaluate_embeddings,
    evaluate_groups,
    json_ready,
    rate_name,
)
from faceid.evaluate.headline import headline
from tests._params import section, write_params

N_IDENTITIES = 40
PER_IDENTITY = 6  # images 0-2 of an identity are clean, 3-5 carry attribute A
DROPPED = "000001.jpg"  # identity 0, clean image 1: no crop, so no embedding


def _name(identity, k):
    return f"{identity * PER_IDENTITY + k:06d}.jpg"


def _world(seed=0, dim=32):
    """Embeddings where A images carry no identity signal, pairs and a manifest."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(N_IDENTITIES, dim))
    rows, names, identities = [], [], []
    for identity in range(N_IDENTITIES):
        for k in range(PER_IDENTITY):
            clean = k < 3
            rows.append(centres[identity] + 0.3 * rng.normal(size=dim) if clean else rng.normal(size=dim))
            names.append(_name(identity, k))
            identities.append(identity)
    emb = np.array(rows, dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)

    def block(task, condition, ka, kb):
        out = []
        for i in range(N_IDENTITIES):
            j = (i + 1) % N_IDENTITIES
            out.append((task, "test", "genuine", condition, _name(i, ka), _name(i, kb), i, i))
            out.append((task, "test", "impostor", condition, _name(i, ka), _name(j, kb), i, j))
        return out

    records = [
        *block("orig", "all", 0, 1),
        *block("eyeglasses", "A/A", 3, 4),
        *block("eyeglasses", "A/notA", 3, 0),
        *block("eyeglasses", "notA/notA", 1, 2),
        ("orig", "val", "genuine", "all", _name(0, 0), _name(0, 2), 0, 0),
    ]
    pairs = pd.DataFrame(
        records,
        columns=["task", "split", "kind", "condition", "image_a", "image_b", "identity_a", "identity_b"],
    )
    status = np.array(["detected"] * len(names), dtype=object)
    status[names.index(DROPPED)] = "missing"
    status[names.index(_name(5, 0))] = "fallback"
    manifest = pd.DataFrame({"image": names, "identity": identities, "status": status})
    keep = [i for i, n in enumerate(names) if n != DROPPED]
    protocol = pd.DataFrame({"image": names, "identity": identities})
    return emb[keep], [names[i] for i in keep], pairs, manifest, protocol


def _params(**overrides):
    # one false match supports a threshold here (39 impostors); the rule of 30 is tested on its own
    base = {"fars": (1e-3, 0.05), "global_fmr": 0.05, "fpr_grid_size": 8, "fpr_grid_min": 1e-3,
            "min_false_matches": 1}
    return section(EvaluateParams, **{**base, **overrides})


@pytest.fixture(scope="module")
def world():
    return _world()


@pytest.fixture(scope="module")
def result(world):
    emb, images, pairs, manifest, protocol = world
    return evaluate_embeddings(emb, images, pairs, manifest, protocol, _params())


def test_planted_structure_shows_in_auc(result):
    orig = result["tasks"]["orig"]
    glasses = result["tasks"]["eyeglasses"]
    assert set(orig) == {"all"}  # one condition: no pooled twin
    assert set(glasses) == {"A/A", "A/notA", "notA/notA", POOLED}
    assert orig["all"]["auc"] > 0.97
    assert glasses["notA/notA"]["auc"] > 0.97
    assert 0.25 < glasses["A/A"]["auc"] < 0.75  # A images carry no identity signal
    assert 0.25 < glasses["A/notA"]["auc"] < 0.75
    assert glasses["A/A"]["auc"] < glasses[POOLED]["auc"] < glasses["notA/notA"]["auc"]
    ci = glasses["notA/notA"]["auc_ci"]
    assert ci["low"] <= glasses["notA/notA"]["auc"] <= ci["high"] and ci["n_identities"] == N_IDENTITIES


def test_pairs_without_embedding_are_counted_not_dropped(result):
    # DROPPED is in orig's genuine pair of identity 0 and eyeglasses notA/notA's genuine
    # and impostor pairs starting at identity 0 (image 1); identity 5's image 0 is a
    # fallback crop: orig's genuine and impostor pairs of identity 5 and eyeglasses'
    # A/notA pairs of identity 5 are failures to acquire, counted and not scored
    orig = result["tasks"]["orig"]["all"]
    assert orig["n_pairs"] == {"genuine": N_IDENTITIES - 2, "impostor": N_IDENTITIES - 2}
    assert orig["n_pairs_without_embedding"] == {"genuine": 1, "impostor": 1}
    assert orig["n_pairs_failed_to_acquire"] == {"genuine": 1, "impostor": 1}
    assert result["tasks"]["eyeglasses"]["A/notA"]["n_pairs_failed_to_acquire"] == {"genuine": 1, "impostor": 1}
    assert result["tasks"]["eyeglasses"]["A/A"]["n_pairs_failed_to_acquire"] == {"genuine": 0, "impostor": 0}
    plain = result["tasks"]["eyeglasses"]["notA/notA"]
    assert plain["n_pairs_without_embedding"] == {"genuine": 1, "impostor": 1}
    assert result["tasks"]["eyeglasses"]["A/A"]["n_pairs_without_embedding"] == {"genuine": 0, "impostor": 0}
    assert result["tasks"]["eyeglasses"][POOLED]["n_pairs_without_embedding"] == {"genuine": 1, "impostor": 1}
    assert result["n_pairs_without_embedding"] == 4
    assert result["n_pairs"] == 4 * 2 * N_IDENTITIES  # the val pair is not on this split


def test_detection_failure_rate_counts_every_non_detected_image(result):
    orig = result["tasks"]["orig"]["all"]["detection"]
    # orig uses images 0 and 1 of every identity; DROPPED is missing, (5, 0) a fallback
    assert orig["n_images"] == 2 * N_IDENTITIES
    assert orig["status_counts"] == {"detected": 2 * N_IDENTITIES - 2, "fallback": 1, "missing": 1}
    assert orig["failure_rate"] == pytest.approx(2 / (2 * N_IDENTITIES))
    assert result["tasks"]["eyeglasses"]["A/A"]["detection"]["failure_rate"] == 0.0


def test_threshold_metrics_match_direct_computation(world, result):
    emb, images, pairs, _, _ = world
    index = {n: i for i, n in enumerate(images)}
    cell = pairs[(pairs.task == "eyeglasses") & (pairs.condition == "notA/notA") & (pairs.split == "test")]
    cell = cell[cell.image_a.isin(index) & cell.image_b.isin(index)]
    sims = metrics.pair_similarity(emb, cell.image_a.map(index).to_numpy(), cell.image_b.map(index).to_numpy())
    genuine = sims[(cell.kind == "genuine").to_numpy()]
    impostor = sims[(cell.kind == "impostor").to_numpy()]
    out = result["tasks"]["eyeglasses"]["notA/notA"]
    assert [r["threshold"] for r in out["threshold_accuracy"]] == [0.6, 0.7, 0.8]
    for row in out["threshold_accuracy"]:
        assert row["accuracy"] == pytest.approx(np.mean(genuine > row["threshold"]))
        assert row["far"] == pytest.approx(np.mean(impostor > row["threshold"]))
    assert out["similarity"]["genuine"]["mean"] == pytest.approx(genuine.mean())
    assert out["eer"] == pytest.approx(metrics.eer(genuine, impostor).eer)


def test_tar_at_far_reports_unmeasurable_rates(result):
    low, high = result["tasks"]["orig"]["all"]["tar_at_far"]
    assert (low["far"], high["far"]) == (0.001, 0.05)
    assert math.isnan(low["tar"])
    assert low["reason"].startswith("unmeasurable: FAR 0.001 needs at least 1000 impostor pairs")
    assert high["reason"] is None and high["tar"] > 0.9


def test_global_threshold_is_set_on_orig_impostors(result):
    gt = result["global_threshold"]
    assert gt["reason"] is None and gt["n_impostor"] == N_IDENTITIES - 2  # a missing and a fallback crop
    orig = result["tasks"]["orig"]["all"]
    assert orig["at_global_threshold"]["fmr"] <= 0.05
    # at the global FMR on the same impostors, TAR@FAR and 1 - FNMR are one number
    assert orig["tar_at_far"][1]["threshold"] == gt["threshold"]
    assert orig["tar_at_far"][1]["tar"] == pytest.approx(1 - orig["at_global_threshold"]["fnmr"])
    glasses = result["tasks"]["eyeglasses"]
    # the same threshold rejects far more genuine pairs where A destroys identity
    assert glasses["A/A"]["at_global_threshold"]["fnmr"] > glasses["notA/notA"]["at_global_threshold"]["fnmr"] + 0.5


def test_global_threshold_unmeasurable_is_reported(world):
    emb, images, pairs, manifest, _ = world
    out = evaluate_embeddings(emb, images, pairs, manifest, None, _params(global_fmr=1e-3))
    # 38 impostors: FMR 1e-3 rests on no false match; the lowest rate with one is 1/38
    assert "moved from FMR 0.001, where it would rest on 0 false matches" in out["global_threshold"]["reason"]
    assert out["global_threshold"]["fmr"] == 0.027 and out["global_threshold"]["supported"]
    assert out["identification"] is None


def test_roc_points_on_grid_only_in_the_cells_plots_read(result):
    roc = result["tasks"]["orig"]["all"]["roc"]
    grid = metrics.log_fpr_grid(8, 1e-3)
    assert [p["fpr"] for p in roc] == pytest.approx([f for f in grid if f >= 1 / (N_IDENTITIES - 1)])
    assert all(set(p) == {"fpr", "tpr", "threshold"} for p in roc)
    glasses = result["tasks"]["eyeglasses"]
    assert "roc" in glasses[POOLED] and not any("roc" in glasses[c] for c in ("A/A", "A/notA", "notA/notA"))


def _keys(tree, prefix=""):
    if isinstance(tree, dict):
        return [k for key, value in tree.items() for k in [f"{prefix}{key}", *_keys(value, f"{prefix}{key}/")]]
    if isinstance(tree, list):
        return [k for value in tree for k in _keys(value, prefix)]
    return []


def test_no_key_holds_a_dot(result):
    assert [k for k in _keys(json_ready(result)) if "." in k.rsplit("/", 1)[-1]] == []


def test_headline_has_the_same_twelve_numbers_for_every_model(result):
    params = _params()
    base = headline({**result, "model": {"task": None}}, params)
    tuned = headline({**result, "model": {"task": "eyeglasses"}}, params)
    assert list(base) == list(tuned) and len(base) == 13
    assert rate_name(0.05) == "5e-2" and rate_name(1e-3) == "1e-3" and rate_name(0.0015) == "1p5e-3"
    orig = result["tasks"]["orig"]["all"]
    assert base["auc"] == orig["auc"] and base["auc_lo"] == orig["auc_ci"]["low"]
    assert base["tar_op"] == pytest.approx(orig["tar_at_far"][1]["tar"]) and base["op_fmr"] == 0.05
    assert base["threshold"] == result["global_threshold"]["threshold"]
    assert base["imp_median"] == orig["similarity"]["impostor"]["p50"]
    assert (base["top1"], base["top5"]) == (result["identification"]["top_k"]["top1"],
                                            result["identification"]["top_k"]["top5"])  # fmt: skip
    assert base["task_auc"] is None and base["task_fnmr"] is None
    assert tuned["task_auc"] == result["tasks"]["eyeglasses"]["A/notA"]["auc"]
    assert not any("." in key for key in base)


def test_identification(result):
    ident = result["identification"]
    assert ident["gallery_size"] == N_IDENTITIES
    assert ident["n_images_without_embedding"] == 1
    assert ident["n_probes"] == N_IDENTITIES * PER_IDENTITY - 1
    # clean probes find their identity, A probes mostly do not
    assert 0.3 < ident["top_k"]["top1"] < 0.7
    assert ident["top_k"]["top1"] <= ident["top_k"]["top5"]
    assert [c["rank"] for c in ident["cmc"]] == list(range(1, 21))


def test_empty_cell_gets_a_reason(world):
    emb, images, pairs, manifest, _ = world
    only_genuine = pairs[~((pairs.condition == "A/A") & (pairs.kind == "impostor"))]
    out = evaluate_embeddings(emb, images, only_genuine, manifest, None, _params())
    cell = out["tasks"]["eyeglasses"]["A/A"]
    assert cell["reason"] == "empty cell: 40 genuine and 0 impostor pairs with embeddings"
    assert math.isnan(cell["auc"]) and math.isnan(cell["threshold_accuracy"][0]["far"])
    assert not math.isnan(cell["threshold_accuracy"][0]["accuracy"])


def test_same_seed_same_result_and_json_ready(world, result):
    emb, images, pairs, manifest, protocol = world
    again = evaluate_embeddings(emb, images, pairs, manifest, protocol, _params())
    text = json.dumps(json_ready(result), allow_nan=False, sort_keys=True)
    assert text == json.dumps(json_ready(again), allow_nan=False, sort_keys=True)
    assert '"tar": null' in text  # NaN becomes null


def test_input_errors(world):
    emb, images, pairs, manifest, _ = world
    test_only = pairs[pairs.split == "test"]
    with pytest.raises(EvaluateError, match=r"no pairs on split 'val' \(splits present: \['test'\]\)"):
        evaluate_embeddings(emb, images, test_only, manifest, None, _params(split="val"))
    with pytest.raises(EvaluateError, match=r"1 images are not in the crop manifest \(e.g. \['000002.jpg'\]\)"):
        evaluate_embeddings(emb, images, pairs, manifest[manifest.image != "000002.jpg"], None, _params())
    with pytest.raises(EvaluateError, match=r"pairs: missing columns \['condition'\]"):
        evaluate_embeddings(emb, images, pairs.drop(columns="condition"), manifest, None, _params())
    with pytest.raises(EvaluateError, match="embeddings: 10 rows for 239 image names"):
        evaluate_embeddings(emb[:10], images, pairs, manifest, None, _params())


def test_evaluate_params_from_yaml(tmp_path):
    path = write_params(tmp_path / "params.yaml", {"evaluate": {
        "split": "val", "bootstrap": {"n_boot": 50}, "identification": {"score": "mean"},
    }})  # fmt: skip
    params = load_all_params(path).evaluate
    assert (params.split, params.bootstrap.n_boot, params.identification.score) == ("val", 50, "mean")
    assert params.thresholds == (0.6, 0.7, 0.8) and params.fars == (1e-3, 1e-2)
    write_params(path, {"evaluate": {"fars": [0.001, 1.5]}})
    with pytest.raises(ParamsError, match=r"evaluate.fars: expected rates in \(0, 1\), got \(0.001, 1.5\)"):
        load_all_params(path)
    write_params(path, {"evaluate": {"identification": {"score": "median"}}})
    with pytest.raises(ParamsError, match=r"evaluate\.identification\.score: 'median' is not a valid choice"):
        load_all_params(path)


# --------------------------------------------------------------------------- robustness map


def _planted(rng, attribute, condition, kind, n, mean, identities=30):
    """Scored pairs of one cell with similarities around `mean`."""
    a = rng.integers(0, identities, n)
    b = a if kind == "genuine" else (a + 1 + rng.integers(0, identities - 1, n)) % identities
    return pd.DataFrame({"task": attribute, "split": "test", "kind": kind, "condition": condition,
                         "image_a": "", "image_b": "", "identity_a": a, "identity_b": b,
                         "similarity": rng.normal(mean, 0.1, n), "has_embedding": True,
                         "acquired": True})  # fmt: skip


def _planted_map(seed=0):
    """Wearing_Hat makes A/notA genuine pairs look like impostors; Smiling changes nothing
    (its genuine and impostor scores overlap alike in every condition);
    Male identities collide: their impostor pairs score like genuine ones."""
    rng = np.random.default_rng(seed)
    cells = []
    for attribute, same_genuine, cross_genuine in (("Wearing_Hat", 0.7, 0.1), ("Smiling", 0.3, 0.3)):
        for condition in ("A/A", "A/notA", "notA/notA"):
            genuine = cross_genuine if condition == "A/notA" else same_genuine
            cells += [_planted(rng, attribute, condition, "genuine", 300, genuine),
                      _planted(rng, attribute, condition, "impostor", 300, 0.1)]  # fmt: skip
    for condition, impostor in (("A/A", 0.6), ("A/notA", 0.1), ("notA/notA", 0.1)):
        cells += [_planted(rng, "Male", condition, "genuine", 300, 0.7),
                  _planted(rng, "Male", condition, "impostor", 300, impostor)]  # fmt: skip
    return pd.concat(cells, ignore_index=True)


def test_robustness_map_finds_the_planted_harmful_attribute():
    scored = _planted_map()
    params = _params(bootstrap=section(BootstrapParams, n_boot=100))
    found, tests = evaluate_attributes(scored, 0.5, params, np.random.default_rng(0))
    assert tests["n_tested"] == 3 and tests["hurt"] == ["Wearing_Hat"] and "Smiling" not in tests["helped"]
    hat, smile = found["Wearing_Hat"], found["Smiling"]
    assert hat["delta_auc"] < -0.4 and hat["delta_auc_ci"]["high"] < 0  # interval entirely below 0
    assert abs(smile["delta_auc"]) < 0.05 and smile["delta_auc_ci"]["low"] < 0 < smile["delta_auc_ci"]["high"]
    cross = hat["cells"]["A/notA"]
    genuine = scored[(scored.task == "Wearing_Hat") & (scored.condition == "A/notA") & (scored.kind == "genuine")]
    assert cross["fnmr"] == pytest.approx(np.mean(genuine.similarity <= 0.5))
    assert cross["n_pairs"] == {"genuine": 300, "impostor": 300}
    ranked = sorted(found, key=lambda a: found[a]["delta_auc"])
    assert ranked[0] == "Wearing_Hat"


def test_group_differentials_equal_a_brute_force_count():
    scored = _planted_map()
    params = _params(bootstrap=section(BootstrapParams, n_boot=100))
    threshold = 0.3  # impostors at 0.1 ± 0.1: a few false matches outside the colliding group too
    male = evaluate_groups(scored, ["Male"], threshold, params, np.random.default_rng(0))["Male"]

    def brute(kind, condition):
        hits = total = 0
        for row in scored[(scored.task == "Male")].itertuples():
            if row.kind == kind and row.condition == condition:
                total += 1
                hits += (row.similarity <= threshold) if kind == "genuine" else (row.similarity > threshold)
        return hits / total

    assert male["fnmr"] == {"A": pytest.approx(brute("genuine", "A/A")),
                            "notA": pytest.approx(brute("genuine", "notA/notA"))}  # fmt: skip
    for condition in ("A/A", "notA/notA", "A/notA"):
        assert male["fmr"][condition] == pytest.approx(brute("impostor", condition))
    # the colliding group: FMR within Male far above within not-Male
    assert male["fmr"]["A/A"] > 0.9 and 0 < male["fmr"]["notA/notA"] < 0.1
    assert male["fnmr_ratio"]["reason"]  # no genuine pair of either group is rejected: no FNMR ratio
    ratio = male["fmr_ratio"]
    assert ratio["value"] == pytest.approx(male["fmr"]["A/A"] / male["fmr"]["notA/notA"])
    assert ratio["low"] > 10 and ratio["reason"] is None
    assert evaluate_groups(scored, ["Young"], threshold, params, np.random.default_rng(0))["Young"]["reason"]


def test_attribute_pairs_enter_the_detail(world):
    emb, images, pairs, manifest, protocol = world
    test = pairs[pairs.split == "test"]
    attribute_pairs = test[test.task == "eyeglasses"].assign(task="Eyeglasses")
    out = evaluate_embeddings(emb, images, pairs, manifest, protocol, _params(groups=("Eyeglasses",)), attribute_pairs)
    glasses = out["attributes"]["Eyeglasses"]
    assert glasses["cells"]["A/notA"]["auc"] == pytest.approx(out["tasks"]["eyeglasses"]["A/notA"]["auc"])
    assert glasses["delta_auc"] < -0.2  # A images carry no identity in this world
    assert set(out["groups"]["Eyeglasses"]["fmr"]) == {"A/A", "notA/notA", "A/notA"}
    # the map has its own random stream: the task cells' intervals do not move
    plain = evaluate_embeddings(emb, images, pairs, manifest, protocol, _params())
    assert json.dumps(json_ready(plain["tasks"])) == json.dumps(json_ready(out["tasks"])) and "attributes" not in plain


def test_evaluation_attributes_and_groups_params(tmp_path):
    path = tmp_path / "params.yaml"
    assert (
        len(section(EvaluateParams, attributes="all").attribute_names) == 40
    )  # all of CelebA's, the groups among them
    write_params(path, {"evaluate": {"attributes": ["Eyeglasses"], "groups": ["Male"]}})
    assert load_all_params(path).evaluate.attribute_names == ("Eyeglasses", "Male")
    write_params(path, {"evaluate": {"attributes": [], "groups": []}})
    assert load_all_params(path).evaluate.attribute_names == ()


@pytest.mark.parametrize(("evaluate", "message"), [
    ({"attributes": ["eyeglasses"]}, r"evaluate.attributes\[0\]: unknown attribute 'eyeglasses'; valid: all"),
    ({"groups": ["Male", "Male"]}, r"evaluate\.groups: an attribute is listed twice"),
])  # fmt: skip
def test_bad_evaluation_attributes_are_rejected(tmp_path, evaluate, message):
    with pytest.raises(ParamsError, match=message):
        load_all_params(write_params(tmp_path / "params.yaml", {"evaluate": evaluate}))
