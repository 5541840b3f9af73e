"""All of the pairs stage in one call: verification pairs, training subsets, identification."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pandas as pd

from faceid.config.pairs import PairsParams
from faceid.config.tasks import ORIG_TASK
from faceid.pairs.identification import make_identification
from faceid.pairs.manifest import (
    TRAIN_PARTITION,
    USABLE_STATUSES,
    check_manifest,
    excluded_counts,
    label_flips,
)
from faceid.pairs.subsets import make_train_subset
from faceid.pairs.verification import EVAL_SPLITS, stream_rng, verification_cells

logger = logging.getLogger(__name__)

ATTRIBUTE_SPLIT = "test"  # evaluation-only attribute pairs come from the test split


@dataclass(frozen=True)
class PairsResult:
    pairs: pd.DataFrame  # task, split, kind, condition, image_a, image_b, identity_a, identity_b, fallback
    train_subsets: pd.DataFrame  # task, image, identity, label
    identification: pd.DataFrame  # image, identity
    metrics: dict[str, Any]  # JSON-ready counts, see build_pairs
    # evaluation-only pairs per attribute (`task` = the attribute), test split; pairs' columns
    attribute_pairs: pd.DataFrame | None = None


def _split_tables(
    manifest: pd.DataFrame, include_fallbacks: bool
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame], pd.Series]:
    """(training images by image: detected, and fallback crops if `include_fallbacks`;
    {split: usable images sorted by identity}, the val/test images left out because their
    identity is also in the training partition)."""
    usable = manifest[manifest["status"].isin(USABLE_STATUSES)]
    trainable = usable if include_fallbacks else usable[usable["status"] == "detected"]
    train = trainable[trainable["partition"] == TRAIN_PARTITION].sort_values("image", ignore_index=True)
    train_identities = manifest.loc[manifest["partition"] == TRAIN_PARTITION, "identity"]
    overlap = usable["partition"].isin(list(EVAL_SPLITS.values())) & usable["identity"].isin(train_identities)
    if overlap.any():
        logger.warning(
            "%d val/test images belong to identities of the training partition; excluded from pairs",
            int(overlap.sum()),
        )
    evaluation = usable[~overlap].sort_values(["identity", "image"], ignore_index=True)
    splits = {
        split: evaluation[evaluation["partition"] == code].reset_index(drop=True) for split, code in EVAL_SPLITS.items()
    }
    return train, splits, overlap


def _attribute_pairs(
    splits: dict[str, pd.DataFrame], attributes: tuple[str, ...], params: PairsParams
) -> tuple[list[pd.DataFrame], dict[str, Any], list[str]]:
    """Evaluation-only test pairs per attribute: (frames, cells per attribute, shortfalls)."""
    frames, cells, shortfalls = [], {}, []
    for attribute in attributes:
        found, cells[attribute], missing = verification_cells(
            splits[ATTRIBUTE_SPLIT], attribute, ATTRIBUTE_SPLIT, params, "attribute_pairs"
        )
        frames += found
        shortfalls += missing
    return frames, cells, shortfalls


def _identification_protocol(test: pd.DataFrame, params: PairsParams) -> tuple[pd.DataFrame, dict, list[str]]:
    """The protocol, its counts, and its shortfall line (if any)."""
    protocol, stats = make_identification(
        test, params.identification, stream_rng(params.seed, "identification", ORIG_TASK)
    )
    shortfalls = []
    if stats["shortfall_identities"] or stats["shortfall_images"]:
        shortfalls.append(
            f"identification: {stats['identities']} of {stats['requested_identities']} identities, "
            f"{stats['images']} of {stats['requested_images']} images (all that exist)"
        )
    return protocol, stats, shortfalls


def build_pairs(
    manifest: pd.DataFrame, params: PairsParams, tasks: tuple[str, ...], attributes: tuple[str, ...]
) -> PairsResult:
    """Pairs, training subsets and the identification protocol for every task of `tasks`
    (orig and the attribute tasks: faceid.config.tasks.all_tasks), and evaluation-only test
    pairs for each of `attributes` (evaluate.attributes).

    metrics: {"pairs": {task: {split: {kind: {condition: {pairs, requested, available,
    shortfall, identities, pairs_with_fallback}}}}}, "train_subsets": {task: {images,
    identities, …}}, "identification": {…}, "excluded": {by_task, by_status,
    identity_overlap}, "shortfalls": [readable lines], and with attributes
    "attribute_pairs": {attribute: {kind: {condition: {…}}}}, "label_flips": {attribute:
    {identities, flip_share}}}.
    """
    check_manifest(manifest, tuple(dict.fromkeys((*tasks, *attributes))))
    train, splits, overlap = _split_tables(manifest, params.train.include_fallbacks)
    pair_frames, subsets, shortfalls = [], [], []
    metrics: dict[str, Any] = {"pairs": {}, "train_subsets": {}}
    for task in tasks:
        metrics["pairs"][task] = {}
        for split, table in splits.items():
            frames, cells, missing = verification_cells(table, task, split, params)
            pair_frames += frames
            metrics["pairs"][task][split] = cells
            shortfalls += missing
        attribute = None if task == ORIG_TASK else task
        subset, stats = make_train_subset(train, attribute, params.train, stream_rng(params.seed, "train", task))
        subsets.append(subset.assign(task=task)[["task", "image", "identity", "label"]])
        metrics["train_subsets"][task] = stats
        logger.info("%s: %d training images of %d identities", task, stats["images"], stats["identities"])
    attribute_frames: list[pd.DataFrame] = []
    if attributes:
        attribute_frames, metrics["attribute_pairs"], missing = _attribute_pairs(splits, attributes, params)
        shortfalls += missing
        metrics["label_flips"] = label_flips(manifest, attributes)
    identification, metrics["identification"], missing = _identification_protocol(splits["test"], params)
    shortfalls += missing
    metrics["excluded"] = {**excluded_counts(manifest, tasks), "identity_overlap": int(overlap.sum())}
    metrics["shortfalls"] = shortfalls
    return PairsResult(
        pairs=pd.concat(pair_frames, ignore_index=True),
        train_subsets=pd.concat(subsets, ignore_index=True),
        identification=identification,
        metrics=metrics,
        attribute_pairs=pd.concat(attribute_frames, ignore_index=True) if attribute_frames else None,
    )
