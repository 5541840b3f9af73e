"""The embedded dataset's known truth: label-noise attributes have no pixels behind them
and no other label depends on them, so they are true nulls (benchmarks/known_truth.py)."""

import dataclasses
import zipfile

import numpy as np
import pandas as pd
import pytest
from benchmarks.known_truth import tally, within_fdr

from faceid.data.celeba import ATTR_FILE
from faceid.data.synthetic import people
from faceid.data.synthetic.generate import generate
from tests.test_synthetic import TINY


def _attributes(folder):
    table = pd.read_csv(folder / ATTR_FILE, sep=r"\s+", skiprows=1)
    return table


def test_label_noise_changes_no_pixel_and_no_other_label(tmp_path, monkeypatch):
    params = dataclasses.replace(TINY, n_identities=6)
    generate(tmp_path / "drawn", params, layout="aligned")
    monkeypatch.setattr(people, "_label_noise", lambda seed, rates: dict.fromkeys(people.LABEL_NOISE, True))
    generate(tmp_path / "forced", params, layout="aligned")
    drawn, forced = (zipfile.ZipFile(next((tmp_path / d).glob("*.zip"))) for d in ("drawn", "forced"))
    assert [drawn.read(n) for n in drawn.namelist()] == [forced.read(n) for n in forced.namelist()]
    a, b = _attributes(tmp_path / "drawn"), _attributes(tmp_path / "forced")
    others = [c for c in a.columns if c not in people.LABEL_NOISE]
    assert a[others].equals(b[others])  # nothing else reads them
    assert (b[list(people.LABEL_NOISE)] == 1).all().all() and (a[list(people.LABEL_NOISE)] == -1).any().any()


def test_label_noise_varies_within_people_so_the_map_can_test_it(tmp_path):
    generate(tmp_path, dataclasses.replace(TINY, n_identities=12), layout="aligned")
    table = _attributes(tmp_path)
    identities = pd.read_csv(tmp_path / "identity_CelebA.txt", sep=" ", header=None, index_col=0)[1]
    both = table.groupby(identities.reindex(table.index).to_numpy())["Attractive"].nunique()
    assert (both == 2).sum() >= 3  # A/notA genuine pairs exist


def _detail(flags: dict[str, tuple[bool, bool, float]]) -> dict:
    """A map: attribute -> (tested, discovery, delta AUC)."""
    attributes = {a: {"tested": t, "discovery": d, "delta_auc": v,
                      "delta_auc_ci": {"low": v - 0.03, "high": v + 0.03}} for a, (t, d, v) in flags.items()}
    hurt = [a for a, (_, d, v) in flags.items() if d and v < 0]
    helped = [a for a, (_, d, v) in flags.items() if d and v > 0]
    return {"attributes": attributes, "attribute_tests": {"hurt": hurt, "helped": helped}}


def test_tally_counts_false_discoveries_and_power():
    details = {
        "orig-a": _detail({"Attractive": (True, False, 0.0), "Eyeglasses": (True, True, -0.1),
                           "Blurry": (True, False, -0.02), "Wearing_Hat": (True, True, -0.2)}),
        "orig-b": _detail({"Attractive": (True, True, 0.05), "Straight_Hair": (False, False, -0.3),
                           "Eyeglasses": (True, True, -0.1)}),
        "no-map": {},
    }  # fmt: skip
    counts = tally(details)
    assert (counts["models"], counts["null_tests"], counts["false_discoveries"]) == (2, 2, 1)
    assert counts["flagged_nulls"] == ["orig-b:Attractive"] and counts["discoveries"] == 4
    assert (counts["harmful_tests"], counts["harmful_detected"]) == (3, 2)
    assert counts["harmful_nominal"] == 2 and counts["null_nominal"] == 1  # -0.02 ± 0.03 straddles 0; +0.05 does not
    assert counts["fdp"] == pytest.approx(0.25) and counts["power"] == pytest.approx(2 / 3)
    assert within_fdr(counts, 0.05)  # one by chance
    assert not within_fdr({**counts, "false_discoveries": 3}, 0.05)
    assert np.isnan(tally({})["power"])
