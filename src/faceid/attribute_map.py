"""The robustness map of one model (per attribute: AUC of each condition and the AUC
drop of A/notA against notA/notA) and demographic differentials (FNMR/FMR ratios per
group attribute at the global threshold), from scored attribute pairs
(`faceid.evaluate.score_pairs`). Part of the evaluation's detail (docs/evaluation.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from faceid import metrics
from faceid.config.evaluate import EvaluateParams

__all__ = ["CROSS_CONDITION", "evaluate_attributes", "evaluate_groups"]

CROSS_CONDITION = "A/notA"  # the study's cross-condition cell of an attribute task


def _sample(cell: pd.DataFrame) -> metrics.PairSample:
    scored = cell[cell["has_embedding"]]
    genuine = (scored["kind"] == "genuine").to_numpy()
    sims = scored["similarity"].to_numpy()
    ids = scored[["identity_a", "identity_b"]].to_numpy()
    return metrics.PairSample(sims[genuine], sims[~genuine], ids[genuine][:, 0], ids[~genuine])


def _map_cell(sample: metrics.PairSample, threshold: float, params: EvaluateParams, rng) -> dict:
    """AUC with its interval, FNMR and FMR at the global threshold, counts (each rate
    whenever its side has pairs)."""
    g, i = sample.genuine, sample.impostor
    nan = math.nan
    measurable = not math.isnan(threshold)
    out = {
        "n_pairs": {"genuine": int(g.size), "impostor": int(i.size)},
        "n_identities": int(np.unique(np.r_[sample.genuine_ids.ravel(), sample.impostor_ids.ravel()]).size),
        "auc": nan,
        "auc_ci": {"low": nan, "high": nan},
        "fnmr": float(np.mean(g <= threshold)) if g.size and measurable else nan,
        "fmr": float(np.mean(i > threshold)) if i.size and measurable else nan,
    }
    if g.size and i.size:
        interval = metrics.bootstrap_auc(g, i, sample.genuine_ids, sample.impostor_ids, params.bootstrap.n_boot,
                                         rng, level=params.bootstrap.level)  # fmt: skip
        # weighted_auc with unit weights is roc_auc without scikit-learn's input checks,
        # which cost more than the AUC over 40 attributes x 3 cells
        auc = float(metrics.weighted_auc(g, i, np.ones(g.size), np.ones(i.size))[0])
        out.update(auc=auc, auc_ci={"low": interval.low, "high": interval.high})
    return out


def evaluate_attributes(scored: pd.DataFrame, threshold: float, params: EvaluateParams, rng) -> dict:
    """The robustness map of one model: per attribute (the `task` of attribute pairs), each
    condition's cell (`_map_cell`) and `delta_auc` = AUC(A/notA) - AUC(notA/notA) with an
    interval from the same identity draws for both cells (negative: A lowers matching)."""
    out = {}
    for attribute, pairs in scored.groupby("task", sort=True):
        samples = {str(c): _sample(cell) for c, cell in pairs.groupby("condition", sort=True)}
        cells = {c: _map_cell(sample, threshold, params, rng) for c, sample in samples.items()}
        entry = {"cells": cells, "delta_auc": math.nan, "delta_auc_ci": {"low": math.nan, "high": math.nan}}
        cross, same = samples.get(CROSS_CONDITION), samples.get("notA/notA")
        if cross is not None and same is not None and all(
            s.genuine.size and s.impostor.size for s in (cross, same)
        ):
            delta, interval = metrics.bootstrap_auc_difference(
                cross, same, params.bootstrap.n_boot, rng, params.bootstrap.level
            )
            entry.update(delta_auc=delta, delta_auc_ci={"low": interval.low, "high": interval.high})
        out[str(attribute)] = entry
    return out


def _ratio(values: np.ndarray) -> np.ndarray:
    """max / min along the last axis; NaN where the min is 0 or a value is missing."""
    with np.errstate(invalid="ignore", divide="ignore"):
        low, high = np.min(values, axis=-1), np.max(values, axis=-1)
        return np.where(low > 0, high / low, np.nan)


def _ratio_entry(point: np.ndarray, replicates: np.ndarray, level: float, what: str) -> dict:
    value = float(_ratio(point))
    low, high, _ = metrics.percentile_interval(_ratio(replicates), level)
    reason = None if math.isfinite(value) else f"{what}: a group has no error at this threshold (or no pairs)"
    return {"value": value, "low": low, "high": high, "reason": reason}


def evaluate_groups(scored: pd.DataFrame, groups: Sequence[str], threshold: float, params: EvaluateParams, rng) -> dict:
    """Demographic differentials at the global threshold (NIST FRVT Part 3 style), per group
    attribute G, from its attribute pairs: FNMR of genuine pairs within G (`A/A`) and
    within not-G (`notA/notA`); FMR of impostor pairs within G, within not-G and across
    (`A/notA`); the max/min ratios of the two FNMRs and of the two within-group FMRs, with
    percentile intervals from shared identity draws."""
    out = {}
    for group in groups:
        pairs = scored[(scored["task"] == group) & scored["has_embedding"]]
        if pairs.empty or math.isnan(threshold):
            out[group] = {"reason": "no attribute pairs of this group, or no global threshold"}
            continue
        parts = {}
        for kind, condition in (("genuine", "A/A"), ("genuine", "notA/notA"), ("impostor", "A/A"),
                                ("impostor", "notA/notA"), ("impostor", "A/notA")):  # fmt: skip
            cell = pairs[(pairs["kind"] == kind) & (pairs["condition"] == condition)]
            sims = cell["similarity"].to_numpy()
            event = sims <= threshold if kind == "genuine" else sims > threshold
            ids = cell[["identity_a"]].to_numpy() if kind == "genuine" else cell[["identity_a", "identity_b"]].to_numpy()
            parts[(kind, condition)] = (event, ids)
        point = np.array([e.mean() if e.size else np.nan for e, _ in parts.values()])
        usable = [k for k, (e, _) in parts.items() if e.size]
        replicates = np.full((params.bootstrap.n_boot, len(parts)), np.nan)
        if usable:
            drawn = metrics.bootstrap_rates([parts[k][0] for k in usable], [parts[k][1] for k in usable],
                                            params.bootstrap.n_boot, rng)  # fmt: skip
            replicates[:, [list(parts).index(k) for k in usable]] = drawn
        level = params.bootstrap.level
        out[group] = {
            "fnmr": {"A": point[0], "notA": point[1]},
            "fmr": {"A/A": point[2], "notA/notA": point[3], "A/notA": point[4]},
            "n_pairs": {f"{k}_{c}": int(parts[(k, c)][0].size) for k, c in parts},
            "fnmr_ratio": _ratio_entry(point[:2], replicates[:, :2], level, "FNMR"),
            "fmr_ratio": _ratio_entry(point[2:4], replicates[:, 2:4], level, "FMR"),
            "reason": None,
        }
    return out
