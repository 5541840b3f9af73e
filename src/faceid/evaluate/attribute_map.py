"""The robustness map of one model (per attribute: AUC of each condition and the AUC
drop of A/notA against notA/notA) and demographic differentials (FNMR/FMR ratios per
group attribute at the global threshold), from scored attribute pairs
(`faceid.evaluate.evaluation.score_pairs`). Part of the evaluation's detail (docs/evaluation.md).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from faceid.config.evaluate import EvaluateParams
from faceid.evaluate import metrics

__all__ = ["CROSS_CONDITION", "PairColumns", "evaluate_attributes", "evaluate_groups", "pair_sample"]

CROSS_CONDITION = "A/notA"  # the study's cross-condition cell of an attribute task


@dataclasses.dataclass(frozen=True)
class PairColumns:
    """Scored pairs (`faceid.evaluate.evaluation.mark_acquired`'s frame) as numpy columns,
    cut into cells by row positions in their original order: filtering the frame once per
    cell (pyarrow strings) cost more than the cells' metrics. `task`, `condition` (and
    `images`, `image_status`) are codes into the sorted labels (-1: missing, as groupby
    leaves out), present when the frame has those columns (when a status is given)."""

    genuine: np.ndarray  # kind == "genuine"
    impostor: np.ndarray  # kind == "impostor"
    similarity: np.ndarray
    acquired: np.ndarray
    has_embedding: np.ndarray | None
    ids: np.ndarray  # (n, 2) identity_a, identity_b
    task: np.ndarray | None = None
    condition: np.ndarray | None = None
    images: np.ndarray | None = None  # (n, 2) codes of image_a, image_b
    labels: dict = dataclasses.field(default_factory=dict)  # column -> its sorted labels
    image_status: np.ndarray | None = None  # per image code, a code into labels["status"]

    @classmethod
    def of(cls, frame: pd.DataFrame, status: pd.Series | None = None) -> PairColumns:
        kind = frame["kind"]
        codes, labels = {}, {}
        for column in ("task", "condition"):
            if column in frame.columns:
                codes[column], labels[column] = pd.factorize(frame[column], sort=True)
        columns = cls(
            genuine=(kind == "genuine").to_numpy(dtype=bool, na_value=False),
            impostor=(kind == "impostor").to_numpy(dtype=bool, na_value=False),
            similarity=frame["similarity"].to_numpy(), acquired=frame["acquired"].to_numpy(dtype=bool),
            has_embedding=frame["has_embedding"].to_numpy(dtype=bool) if "has_embedding" in frame.columns else None,
            ids=frame[["identity_a", "identity_b"]].to_numpy(), labels=labels, **codes,
        )  # fmt: skip
        if status is None:
            return columns
        image_codes, names = pd.factorize(np.r_[frame["image_a"].to_numpy(), frame["image_b"].to_numpy()])
        status_codes, labels["status"] = pd.factorize(status.reindex(names), sort=True)
        return dataclasses.replace(columns, images=image_codes.reshape(2, -1).T, image_status=status_codes)

    def take(self, rows: np.ndarray) -> PairColumns:
        """The pairs at `rows` (positions or a boolean mask), labels kept."""
        cut = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name not in ("labels", "image_status") and getattr(self, f.name) is not None}  # fmt: skip
        return dataclasses.replace(self, **{name: array[rows] for name, array in cut.items()})

    def groups(self, column: str) -> list[tuple[str, np.ndarray]]:
        """(label, row positions) of each value of `column` present, labels in sorted order
        (pandas' groupby(sort=True) of the frame)."""
        codes = getattr(self, column)
        present = np.unique(codes[codes >= 0])
        return [(str(self.labels[column][c]), np.flatnonzero(codes == c)) for c in present]

    def equals(self, column: str, label: str) -> np.ndarray:
        """Mask of the pairs whose `column` is `label`."""
        found = np.flatnonzero(np.asarray(self.labels[column]) == label)
        return getattr(self, column) == (found[0] if found.size else -2)


def pair_sample(cell: pd.DataFrame | PairColumns) -> metrics.PairSample:
    """The acquired pairs of a cell (`faceid.evaluate.evaluation.mark_acquired`) as genuine and
    impostor similarities with their identities."""
    columns = cell if isinstance(cell, PairColumns) else PairColumns.of(cell)
    scored = columns.take(columns.acquired)
    genuine, sims, ids = scored.genuine, scored.similarity, scored.ids
    return metrics.PairSample(sims[genuine], sims[~genuine], ids[genuine][:, 0], ids[~genuine])


def _map_cell(sample: metrics.PairSample, threshold: float, params: EvaluateParams, rng) -> dict:
    """AUC with its interval, FNMR and FMR at the global threshold, counts and the
    sample-size rule's verdict (each rate whenever its side has pairs)."""
    g, i = sample.genuine, sample.impostor
    nan = math.nan
    measurable = not math.isnan(threshold)
    support = metrics.cell_support(g.size, np.unique(sample.genuine_ids).size, params.min_genuine_pairs,
                                   params.min_identities)  # fmt: skip
    out = {
        "n_pairs": {"genuine": int(g.size), "impostor": int(i.size)},
        "n_identities": int(np.unique(np.r_[sample.genuine_ids.ravel(), sample.impostor_ids.ravel()]).size),
        "support": dataclasses.asdict(support),
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


def _untested(entry: dict, reason: str) -> dict:
    return {**entry, "tested": False, "p_value": math.nan, "q_value": math.nan, "discovery": False, "reason": reason}


def _matched_reference(pairs: PairColumns) -> PairColumns:
    """The notA/notA pairs that are the A/notA cell's reference: its genuine pairs of the
    people who have A/notA genuine pairs (the same people on both sides, so ΔAUC compares a
    person's photos with and without A, not one group of people with another), and all
    its impostor pairs."""
    cross = pairs.acquired & pairs.equals("condition", CROSS_CONDITION) & pairs.genuine
    people = np.unique(pairs.ids[cross, 0])
    return pairs.take(pairs.equals("condition", "notA/notA") & (pairs.impostor | np.isin(pairs.ids[:, 0], people)))


def evaluate_attributes(scored: pd.DataFrame, threshold: float, params: EvaluateParams, rng) -> tuple[dict, dict]:
    """The robustness map of one model and its tests: per attribute (the `task` of
    attribute pairs), each condition's cell (`_map_cell`) and `delta_auc` = AUC(A/notA) -
    AUC(notA/notA of the same people, `_matched_reference`) with an interval and a p-value
    from the same identity draws for both (negative: A lowers matching). Attributes whose
    two samples meet the sample-size rule are tested together under Benjamini–Hochberg at
    `evaluate.fdr`; the second dict says how many were tested and which are discoveries
    (`hurt`: ΔAUC < 0, `helped`)."""
    out = {}
    columns = PairColumns.of(scored)
    for attribute, rows in columns.groups("task"):
        pairs = columns.take(rows)
        samples = {c: pair_sample(pairs.take(cell)) for c, cell in pairs.groups("condition")}
        cells = {c: _map_cell(sample, threshold, params, rng) for c, sample in samples.items()}
        entry = {"cells": cells, "delta_auc": math.nan, "delta_auc_ci": {"low": math.nan, "high": math.nan}}
        cross, same = samples.get(CROSS_CONDITION), pair_sample(_matched_reference(pairs))
        if cross is None or not all(s.genuine.size and s.impostor.size for s in (cross, same)):
            out[str(attribute)] = _untested(entry, "not measurable: no A/notA genuine pairs, or no reference")
            continue
        difference = metrics.paired_difference(cross, same, params.bootstrap.n_boot, rng, params.bootstrap.level)
        reference = metrics.cell_support(same.genuine.size, np.unique(same.genuine_ids).size,
                                         params.min_genuine_pairs, params.min_identities)  # fmt: skip
        entry.update(delta_auc=difference.value, delta_auc_ci={"low": difference.low, "high": difference.high},
                     reference_support=dataclasses.asdict(reference))  # fmt: skip
        short = [cells[CROSS_CONDITION]["support"]["reason"], reference.reason]
        short = [f"{name}: {reason}" for name, reason in zip(("A/notA", "reference"), short, strict=True) if reason]
        if short:
            out[str(attribute)] = _untested(entry, f"{'; '.join(short)}: shown, not tested")
            continue
        out[str(attribute)] = {**entry, "tested": True, "p_value": difference.p_value, "p_tail": difference.p_tail,
                               "reason": None}  # fmt: skip
    return out, _control_fdr(out, params.fdr)


def _control_fdr(entries: dict, q: float) -> dict:
    tested = [a for a, e in entries.items() if e["tested"]]
    discovered, adjusted = metrics.benjamini_hochberg([entries[a]["p_value"] for a in tested], q)
    for attribute, found, q_value in zip(tested, discovered, adjusted, strict=True):
        entries[attribute].update(discovery=bool(found), q_value=float(q_value))
    found = sorted((entries[a]["delta_auc"], a) for a in tested if entries[a]["discovery"])
    return {
        "fdr": q, "n_attributes": len(entries), "n_tested": len(tested),
        "hurt": [a for d, a in found if d < 0], "helped": [a for d, a in reversed(found) if d > 0],
    }  # fmt: skip


def _ratio_entry(point: np.ndarray, replicates: np.ndarray, errors: np.ndarray, people: np.ndarray,
                 params: EvaluateParams, what: str) -> dict:  # fmt: skip
    """The ratio of two groups' rates, worse group (on the full sample) over better, with
    the percentile interval of the same orientation in every replicate, so the interval
    contains its estimate and may reach below 1 (the data cannot tell which group is
    worse). Gated: each group needs >= min_false_matches errors and >= min_identities
    people (`reason` says which rule failed; the value is still shown)."""
    top = int(np.nanargmax(point)) if np.isfinite(point).any() else 0
    other = 1 - top
    with np.errstate(invalid="ignore", divide="ignore"):
        value = float(point[top] / point[other]) if point[other] > 0 else math.nan
    low, high = metrics.ratio_interval(replicates[:, top], replicates[:, other], params.bootstrap.level)
    short = [f"{what} errors {int(e)} < {params.min_false_matches}" for e in errors if e < params.min_false_matches]
    short += [f"{int(n)} people < {params.min_identities}" for n in people if n < params.min_identities]
    reason = None if math.isfinite(value) else f"{what}: a group has no error at this threshold (or no pairs)"
    if reason is None and short:
        reason = f"insufficient: {'; '.join(short)} (evaluate.min_false_matches / min_identities)"
    return {"value": value, "low": low, "high": high, "worse": ["A", "notA"][top] if what == "FNMR" else
            ["A/A", "notA/notA"][top], "sufficient": reason is None, "reason": reason}  # fmt: skip


def _group_parts(pairs: PairColumns, threshold: float) -> dict:
    """(kind, condition) → (error per pair, identities) of one group attribute's pairs."""
    parts = {}
    for kind, condition in (("genuine", "A/A"), ("genuine", "notA/notA"), ("impostor", "A/A"),
                            ("impostor", "notA/notA"), ("impostor", "A/notA")):  # fmt: skip
        cell = pairs.take(getattr(pairs, kind) & pairs.equals("condition", condition))
        sims = cell.similarity
        event = sims <= threshold if kind == "genuine" else sims > threshold
        parts[(kind, condition)] = (event, cell.ids[:, :1] if kind == "genuine" else cell.ids)
    return parts


def evaluate_groups(scored: pd.DataFrame, groups: Sequence[str], threshold: float, params: EvaluateParams, rng) -> dict:
    """Demographic differentials at the global threshold (NIST FRVT Part 3 style), per group
    attribute G, from its acquired attribute pairs: FNMR of genuine pairs within G (`A/A`)
    and within not-G (`notA/notA`); FMR of impostor pairs within G, within not-G and across
    (`A/notA`); the worse/better ratios of the two FNMRs and of the two within-group FMRs,
    with intervals from shared identity draws (`_ratio_entry`)."""
    out = {}
    columns = PairColumns.of(scored)
    for group in groups:
        pairs = columns.take(columns.equals("task", group) & columns.acquired)
        if not pairs.acquired.size or math.isnan(threshold):
            out[group] = {"reason": "no attribute pairs of this group, or no global threshold"}
            continue
        parts = _group_parts(pairs, threshold)
        point = np.array([e.mean() if e.size else np.nan for e, _ in parts.values()])
        errors = np.array([e.sum() for e, _ in parts.values()])
        people = np.array([np.unique(i).size for _, i in parts.values()])
        usable = [k for k, (e, _) in parts.items() if e.size]
        replicates = np.full((params.bootstrap.n_boot, len(parts)), np.nan)
        if usable:
            drawn = metrics.bootstrap_rates([parts[k][0] for k in usable], [parts[k][1] for k in usable],
                                            params.bootstrap.n_boot, rng)  # fmt: skip
            replicates[:, [list(parts).index(k) for k in usable]] = drawn
        out[group] = {
            "fnmr": {"A": point[0], "notA": point[1]},
            "fmr": {"A/A": point[2], "notA/notA": point[3], "A/notA": point[4]},
            "n_pairs": {f"{k}_{c}": int(parts[(k, c)][0].size) for k, c in parts},
            "n_errors": {f"{k}_{c}": int(e) for (k, c), e in zip(parts, errors, strict=True)},
            "fnmr_ratio": _ratio_entry(point[:2], replicates[:, :2], errors[:2], people[:2], params, "FNMR"),
            "fmr_ratio": _ratio_entry(point[2:4], replicates[:, 2:4], errors[2:4], people[2:4], params, "FMR"),
            "reason": None,
        }
    return out
