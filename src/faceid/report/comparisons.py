"""Paired comparisons of models on the same pairs: each trained model against its actual
start (a fine-tune against the model it was fine-tuned from, orig against the backbone's
starting point), from the evaluations' embeddings (data/embeddings/<model>.npz).

Both models score the same acquired pairs, and every bootstrap replicate draws the
identities once for both (`faceid.evaluate.metrics.paired_difference`), so the interval is that of
the difference itself, not two intervals side by side. Words follow the interval
(`verdict`): "raised" / "lowered" only when it excludes 0, "no detectable change"
otherwise, "equals its start" for a model whose embeddings are its start's bit for bit
(training never beat the start on validation), "too little data" for a cell below the
sample-size rule. docs/evaluation.md, "Conclusions".
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from faceid.config.evaluate import EvaluateParams
from faceid.evaluate import metrics
from faceid.evaluate.attribute_map import CROSS_CONDITION, pair_sample
from faceid.evaluate.evaluation import mark_acquired, score_pairs

__all__ = ["Embeddings", "compare_models", "describe", "verdict"]

RAISED, LOWERED, NO_CHANGE, EQUAL, TOO_LITTLE = (
    "raised", "lowered", "no detectable change", "equals its start", "too little data",
)  # fmt: skip


@dataclass(frozen=True)
class Embeddings:
    """One model's embeddings (N, D), row i for images[i]."""

    images: np.ndarray
    vectors: np.ndarray


def verdict(difference: metrics.Difference | None, equal: bool, support: metrics.Support | None) -> str:
    """The word for a paired difference: its interval decides, never its sign alone."""
    if equal:
        return EQUAL
    if difference is None or support is None or not support.sufficient or math.isnan(difference.low):
        return TOO_LITTLE
    if difference.low > 0:
        return RAISED
    if difference.high < 0:
        return LOWERED
    return NO_CHANGE


def describe(entry: Mapping | None) -> str:
    """'raised by +0.012 [+0.004, +0.020]', 'no detectable change (+0.001 [-0.015, +0.018])' …"""
    if not entry:
        return "not compared"
    word = entry["verdict"]
    if word == EQUAL:
        return EQUAL
    if entry.get("delta") is None:
        return word
    numbers = f"{entry['delta']:+.3f} [{entry['low']:+.3f}, {entry['high']:+.3f}]"
    if word in (RAISED, LOWERED):
        return f"{word} by {numbers}"
    reason = entry.get("reason")
    return f"{word} ({numbers}{'; ' + reason if word == TOO_LITTLE and reason else ''})"


def _identical(a: Embeddings, b: Embeddings) -> bool:
    return bool(np.array_equal(a.images, b.images) and np.array_equal(a.vectors, b.vectors))


def _scored(pairs: pd.DataFrame, status: pd.Series, model: Embeddings, common: pd.Index) -> pd.DataFrame:
    """`pairs` scored by one model, restricted to pairs both compared models embedded."""
    scored = mark_acquired(score_pairs(model.vectors, list(model.images), pairs), status)
    inside = pairs["image_a"].isin(common).to_numpy() & pairs["image_b"].isin(common).to_numpy()
    return scored.assign(acquired=scored["acquired"].to_numpy() & inside)


def _compare_cell(cell: pd.DataFrame, after: Embeddings, before: Embeddings, status: pd.Series, common: pd.Index,
                  params: EvaluateParams, rng: np.random.Generator, equal: bool) -> dict:  # fmt: skip
    a, b = (pair_sample(_scored(cell, status, m, common)) for m in (after, before))
    support = metrics.cell_support(a.genuine.size, np.unique(a.genuine_ids).size, params.min_genuine_pairs,
                                   params.min_identities)  # fmt: skip
    entry = {"delta": None, "low": None, "high": None, "p_value": None, "support": dataclasses.asdict(support),
             "reason": support.reason}  # fmt: skip
    difference = None
    if a.genuine.size and a.impostor.size:
        difference = metrics.paired_difference(a, b, params.bootstrap.n_boot_conclusions, rng, params.bootstrap.level)
        entry.update(delta=difference.value, low=difference.low, high=difference.high, p_value=difference.p_value)
    entry["verdict"] = verdict(difference, equal, support)
    return entry


def compare_models(
    pairs: pd.DataFrame, status: pd.Series, embeddings: Mapping[str, Embeddings],
    plan: list[tuple[str, str, str | None]], params: EvaluateParams,
) -> dict[str, dict]:  # fmt: skip
    """Per (model, start, task) of `plan`: the model against its start on the global task's
    pairs (`original`) and, for an attribute task, on the task's A/notA pairs (`attribute`),
    with `equals_start`. `pairs`: the evaluated split's pairs; `status`: crop status per
    image (failures to acquire are left out, as in the evaluation).

    The plan's entries run in `params.processes` processes (0: one per CPU core); entry k
    draws its bootstrap from its own stream (seed, 4, k), so the result is the same for
    any number of processes."""
    global _SHARED
    workers = min(params.processes or os.cpu_count() or 1, len(plan))
    _SHARED = (pairs, status, embeddings, plan, params)
    try:
        if workers <= 1:
            entries = list(map(_compare_entry, range(len(plan))))
        else:
            # fork: the children inherit _SHARED instead of unpickling it; numpy only, no threads to break
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                entries = pool.map(_compare_entry, range(len(plan)), chunksize=1)
    finally:
        _SHARED = None
    return {model: entry for (model, _, _), entry in zip(plan, entries, strict=True)}


_SHARED: tuple | None = None  # compare_models' inputs, for its worker processes


def _compare_entry(k: int) -> dict:
    pairs, status, embeddings, plan, params = _SHARED
    model, start, task = plan[k]
    after, before = embeddings[model], embeddings[start]
    common = pd.Index(after.images).intersection(pd.Index(before.images))
    equal = _identical(after, before)
    rng = np.random.default_rng([params.bootstrap.seed, 4, k])
    cells = {"original": pairs[pairs["task"] == params.global_task]}
    if task is not None and task != params.global_task:
        cells["attribute"] = pairs[(pairs["task"] == task) & (pairs["condition"] == CROSS_CONDITION)]
    return {"start": start, "task": task, "equals_start": equal,
            **{name: _compare_cell(cell, after, before, status, common, params, rng, equal)
               for name, cell in cells.items()}}  # fmt: skip
