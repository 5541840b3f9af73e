"""Pairs params and manifests: bad values are a ParamsError naming file and key, params.yaml's
tasks all get pairs and a subset, a bad manifest is a ManifestError saying what to do."""

from __future__ import annotations

import pytest

from faceid.config.engine import ParamsError
from faceid.config.pairs import IdentificationParams, TrainSubsetParams, VerificationParams
from faceid.config.tasks import all_tasks
from faceid.config.whole import load_all_params
from faceid.pairs import ManifestError, build_pairs, read_manifest
from tests._pairs_fixtures import TASKS, small_params
from tests._params import PARAMS, section, write_params


@pytest.mark.parametrize("seed", [-3, -1])
def test_a_negative_seed_is_a_params_error_not_a_numpy_traceback(seed):
    with pytest.raises(ParamsError, match=rf"pairs.seed: expected an integer >= 0, got {seed}"):
        small_params(seed=seed)



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
        match=r"params.yaml: train.tasks\[0\]: unknown task 'Sunglasses' \(did you mean 'Eyeglasses'\?\); "
        r"valid: 5_o_Clock",
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


def test_default_params_give_pairs_and_a_subset_for_every_trained_task(pairs_manifest):
    """Every task of params.yaml's task list, and orig, gets pairs (all conditions, both
    splits) and a training subset."""
    defaults = load_all_params(PARAMS)
    res = build_pairs(pairs_manifest, small_params(), all_tasks(defaults.train.tasks), ())
    assert set(res.train_subsets["task"]) == {"orig", *defaults.train.tasks}
    for task in defaults.train.tasks:
        cells = res.pairs[res.pairs["task"] == task].groupby(["split", "condition"]).size()
        assert len(cells) == 2 * 3, (task, cells)
        assert (res.train_subsets["task"] == task).sum() > 0, task


# --------------------------------------------------------------------------- manifest errors


def test_manifest_errors(tmp_path, pairs_manifest):
    with pytest.raises(ManifestError, match=r"no crop manifest; run `dvc repro crop` first"):
        read_manifest(tmp_path / "absent.parquet", TASKS)
    path = tmp_path / "manifest.parquet"
    pairs_manifest.drop(columns=["Wearing_Hat"]).to_parquet(path)
    with pytest.raises(ManifestError, match=r"manifest.parquet: cannot read the needed columns"):
        read_manifest(path, TASKS)
    broken = pairs_manifest.assign(status=pairs_manifest["status"].replace("missing", "lost"))
    with pytest.raises(ManifestError, match=r"unknown status value\(s\) \['lost'\]; expected detected"):
        build_pairs(broken, small_params(), TASKS, ())
    with pytest.raises(ManifestError, match=r"missing column\(s\) Wearing_Hat"):
        build_pairs(pairs_manifest.drop(columns=["Wearing_Hat"]), small_params(), TASKS, ())
