"""Verification pairs, training subsets and the identification protocol.

Inputs: the crop manifest (one row per dataset image; see docs/ARCHITECTURE.md).
Outputs, per task (`orig` or a CelebA attribute A):

- verification pairs from the validation (model selection) and test (reporting)
  partitions: genuine (same identity) and impostor (different identities) pairs of the
  condition types A/A, A/notA and notA/notA; `orig` has one condition, `all`;
- a training subset of the training partition, `label` = contiguous class index;
- once, the closed-set identification protocol from the test partition.

Decisions, visible downstream:

- Crop status. `missing` and `unreadable` images have no crop: they enter no pair, no
  subset and no protocol, and are counted per task x partition x side (A / notA, or `all`
  for `orig`) under `excluded` in the metrics. `fallback` crops (no face found, the crop
  taken from the dataset's own box/landmarks) are real crops of the face and are
  included; pairs.parquet has a `fallback` column (0, 1 or 2: how many of the pair's
  two images are fallback crops) so evaluation can slice them out, and the metrics count
  pairs with any fallback image per cell.
- Identity disjointness. CelebA's partitions are identity-disjoint; should a manifest not
  be, val/test images of identities that also appear in the training partition are
  excluded from pairs and protocol and counted (`excluded.identity_overlap`).
- Sampling. Per cell, every valid pair has an index in [0, available): per left image,
  its partners in the right pool form at most two contiguous ranges of the pool sorted by
  identity (its own identity's block for genuine pairs, everything but that block for
  impostor pairs; for pools paired with themselves only partners after it, so each
  unordered pair has one index). Drawing indices without replacement and decoding them
  gives pairs uniform over all valid pairs, without self-pairs, same-identity impostors or
  duplicates, and with no rejection loop. Genuine pairs are therefore uniform over pairs,
  so identities with many images weigh more; the identities per cell are reported.
  When fewer pairs exist than asked, all of them are taken and the shortfall is reported.
- Orientation. A/notA pairs have the A image as `image_a`; in A/A, notA/notA and `all`
  pairs `image_a` comes first in (identity, image) order.
- Randomness. Every cell (task x split x kind x condition), subset and the protocol draws
  from its own `numpy.random.default_rng` seeded by (seed, purpose, task, split, kind,
  condition) codes, so adding or removing a task changes no other task's output.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from faceid.celeba import ATTRIBUTE_NAMES, PARTITIONS
from faceid.config.pairs import ORIG_TASK, IdentificationParams, PairsParams, TrainSubsetParams
from faceid.errors import FaceidError

__all__ = [
    "ALL_CONDITION",
    "CONDITIONS",
    "EVAL_SPLITS",
    "ManifestError",
    "PairsResult",
    "build_pairs",
    "check_manifest",
    "headline_counts",
    "label_flips",
    "make_identification",
    "make_train_subset",
    "read_manifest",
    "sample_pairs",
    "write_outputs",
]

logger = logging.getLogger(__name__)

USABLE_STATUSES = ("detected", "fallback")
EXCLUDED_STATUSES = ("missing", "unreadable")
TRAIN_PARTITION = 0
EVAL_SPLITS: dict[str, int] = {"val": 1, "test": 2}
CONDITIONS = ("A/A", "A/notA", "notA/notA")
ALL_CONDITION = "all"
KINDS = ("genuine", "impostor")

PAIRS_FILE = "pairs.parquet"
ATTRIBUTE_PAIRS_FILE = "attribute_pairs.parquet"  # evaluation-only, per evaluate.attributes
ATTRIBUTE_SPLIT = "test"
TRAIN_SUBSETS_FILE = "train_subsets.parquet"
IDENTIFICATION_FILE = "identification.parquet"

# codes for the per-stream seeds (see module docstring); never renumber
_PURPOSE = {"pairs": 1, "train": 2, "identification": 3, "attribute_pairs": 4}
_TASK_CODES = {task: i for i, task in enumerate((ORIG_TASK, *ATTRIBUTE_NAMES))}
_KIND_CODES = {kind: i for i, kind in enumerate(KINDS)}
_CONDITION_CODES = {c: i for i, c in enumerate((ALL_CONDITION, *CONDITIONS))}


class ManifestError(FaceidError, ValueError):
    """A crop manifest that does not follow the contract of docs/ARCHITECTURE.md."""


# --------------------------------------------------------------------------- manifest


def check_manifest(manifest: pd.DataFrame, tasks: tuple[str, ...], source: str = "manifest") -> None:
    """Raise ManifestError unless `manifest` has what the pairs stage reads, with valid values."""
    attributes = [t for t in tasks if t != ORIG_TASK]
    needed = ["image", "identity", "partition", "status", *attributes]
    absent = [c for c in needed if c not in manifest.columns]
    if absent:
        raise ManifestError(
            f"{source}: missing column(s) {', '.join(absent)}; expected the crop manifest "
            "of docs/ARCHITECTURE.md; re-run `dvc repro crop`"
        )
    statuses = set(manifest["status"].unique())
    unknown = statuses - set(USABLE_STATUSES) - set(EXCLUDED_STATUSES)
    if unknown:
        raise ManifestError(
            f"{source}: unknown status value(s) {sorted(map(str, unknown))}; expected "
            f"{', '.join(USABLE_STATUSES + EXCLUDED_STATUSES)}; re-run `dvc repro crop`"
        )
    partitions = set(manifest["partition"].unique()) - set(PARTITIONS)
    if partitions:
        raise ManifestError(f"{source}: partition values {sorted(partitions)}; expected 0, 1 or 2")
    duplicated = manifest["image"].duplicated()
    if duplicated.any():
        raise ManifestError(
            f"{source}: image {manifest['image'][duplicated].iloc[0]} listed more than once; "
            "expected one row per image; re-run `dvc repro crop`"
        )
    for attribute in attributes:
        if manifest[attribute].dtype != bool:
            raise ManifestError(
                f"{source}: column {attribute} has dtype {manifest[attribute].dtype}; expected bool"
            )


def read_manifest(path: str | Path, tasks: tuple[str, ...]) -> pd.DataFrame:
    """The columns of the crop manifest the tasks need, checked."""
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"{path}: no crop manifest; run `dvc repro crop` first")
    attributes = [t for t in tasks if t != ORIG_TASK]
    try:
        manifest = pd.read_parquet(path, columns=["image", "identity", "partition", "status", *attributes])
    except (KeyError, ValueError) as exc:  # pyarrow names the absent column
        raise ManifestError(f"{path}: cannot read the needed columns ({exc}); re-run `dvc repro crop`") from exc
    check_manifest(manifest, tasks, str(path))
    return manifest


# --------------------------------------------------------------------------- pair sampling


def _partner_ranges(
    left_ids: np.ndarray, right_ids: np.ndarray, kind: str, same_pool: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per left element, its valid partners as ranges [lo1, hi1) and [lo2, hi2) of right positions.

    Both pools must be sorted by identity; `same_pool` means left and right are one pool.
    """
    n_right = len(right_ids)
    start = np.searchsorted(right_ids, left_ids, side="left")  # its identity's block
    end = np.searchsorted(right_ids, left_ids, side="right")
    empty = np.zeros_like(start)
    if kind == "genuine" and same_pool:
        return np.arange(1, len(left_ids) + 1), end, empty, empty
    if kind == "genuine":
        return start, end, empty, empty
    if same_pool:
        return end, np.full_like(end, n_right), empty, empty
    return empty, start, end, np.full_like(end, n_right)


def sample_pairs(
    left_ids: np.ndarray,
    right_ids: np.ndarray | None,
    kind: str,
    n: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Draw up to `n` distinct genuine or impostor pairs between two pools of images.

    `left_ids`, `right_ids`: identities of the pools' images, each sorted; `right_ids=None`
    pairs the left pool with itself (unordered pairs, left position < right position).
    Returns (left positions, right positions, available): all valid pairs when
    `available <= n`, else `n` drawn uniformly without replacement, in index order.
    """
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    same_pool = right_ids is None
    right = left_ids if same_pool else right_ids
    assert np.all(np.diff(left_ids) >= 0) and np.all(np.diff(right) >= 0), "pools must be sorted"
    lo1, hi1, lo2, hi2 = _partner_ranges(left_ids, right, kind, same_pool)
    len1 = hi1 - lo1
    offsets = np.concatenate(([0], np.cumsum(len1 + (hi2 - lo2), dtype=np.int64)))
    available = int(offsets[-1])
    if available <= n:
        index = np.arange(available, dtype=np.int64)
    else:
        index = np.sort(rng.choice(available, size=n, replace=False))
    left = np.searchsorted(offsets, index, side="right") - 1
    rank = index - offsets[left]
    right_pos = np.where(rank < len1[left], lo1[left] + rank, lo2[left] + rank - len1[left])
    return left, right_pos, available


# --------------------------------------------------------------------------- verification


def _rng(seed: int, purpose: str, task: str, split: str = "", kind: str = "", condition: str = "") -> np.random.Generator:
    # equal-length keys: SeedSequence pads entropy, so [s, 1] and [s, 1, 0] could coincide
    key = [
        seed,
        _PURPOSE[purpose],
        _TASK_CODES[task],
        EVAL_SPLITS.get(split, 0),
        _KIND_CODES.get(kind, 0),
        _CONDITION_CODES.get(condition, 0),
    ]
    return np.random.default_rng(key)


def _condition_pools(table: pd.DataFrame, task: str) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Condition → (left pool, right pool or None for self-pairing) as positions in `table`."""
    everything = np.arange(len(table))
    if task == ORIG_TASK:
        return {ALL_CONDITION: (everything, None)}
    has = table[task].to_numpy()
    a, not_a = everything[has], everything[~has]
    return {"A/A": (a, None), "A/notA": (a, not_a), "notA/notA": (not_a, None)}


def _verification_pairs(
    table: pd.DataFrame, task: str, split: str, params: PairsParams, purpose: str = "pairs"
) -> tuple[list[pd.DataFrame], dict[str, Any], list[str]]:
    """All cells of one task x split. `table`: usable images of the split, sorted by identity.
    `purpose` keys the random streams, so an evaluation attribute's pairs are drawn apart
    from a training task's of the same name."""
    images = table["image"].to_numpy()
    identities = table["identity"].to_numpy()
    fallback = (table["status"] == "fallback").to_numpy()
    counts = params.verification
    requested = {
        "genuine": counts.orig_genuine if task == ORIG_TASK else counts.genuine_per_condition,
        "impostor": counts.orig_impostor if task == ORIG_TASK else counts.impostor_per_condition,
    }
    frames, metrics, shortfalls = [], {kind: {} for kind in KINDS}, []
    for condition, (left_pool, right_pool) in _condition_pools(table, task).items():
        for kind in KINDS:
            rng = _rng(params.seed, purpose, task, split, kind, condition)
            left, right, available = sample_pairs(
                identities[left_pool],
                None if right_pool is None else identities[right_pool],
                kind,
                requested[kind],
                rng,
            )
            a = left_pool[left]
            b = (left_pool if right_pool is None else right_pool)[right]
            n_fallback = fallback[a].astype(np.int8) + fallback[b]
            frames.append(
                pd.DataFrame(
                    {
                        "task": task,
                        "split": split,
                        "kind": kind,
                        "condition": condition,
                        "image_a": images[a],
                        "image_b": images[b],
                        "identity_a": identities[a],
                        "identity_b": identities[b],
                        "fallback": n_fallback.astype(np.int8),
                    }
                )
            )
            shortfall = max(0, requested[kind] - available)
            metrics[kind][condition] = {
                "pairs": len(a),
                "requested": requested[kind],
                "available": available,
                "shortfall": shortfall,
                "identities": len(np.union1d(identities[a], identities[b])),
                "pairs_with_fallback": int((n_fallback > 0).sum()),
            }
            if shortfall:
                shortfalls.append(
                    f"{'' if purpose == 'pairs' else 'attribute '}{task}/{split}/{kind}/{condition}: "
                    f"{available} of {requested[kind]} pairs (all that exist)"
                )
    return frames, metrics, shortfalls


# --------------------------------------------------------------------------- training subsets


def make_train_subset(
    table: pd.DataFrame, attribute: str | None, params: TrainSubsetParams, rng: np.random.Generator
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The training subset of one task from `table` (usable training images).

    `attribute=None` (task orig): every image. Otherwise the balanced subset: identities
    with >= min_attribute_images A images and >= min_other_images notA images; of each, all
    A images and at most max(floor(max_ratio * A images), min_other_images) notA images,
    drawn at random. Returns (image, identity, label sorted by image; label = rank of the
    identity among the subset's identities) and its counts.
    """
    if attribute is None:
        subset = table[["image", "identity"]]
        stats: dict[str, int] = {}
    else:
        has = table[attribute].to_numpy()
        per_identity = pd.DataFrame({"identity": table["identity"].to_numpy(), "a": has}).groupby("identity")["a"]
        n_a = per_identity.sum()
        n_other = per_identity.count() - n_a
        eligible = n_a.index[(n_a >= params.min_attribute_images) & (n_other >= params.min_other_images)]
        # +1e-9: 0.7 * 10 must give 7 even where the product rounds to 6.999…
        quota = np.maximum(np.floor(params.max_ratio * n_a + 1e-9), params.min_other_images).astype(np.int64)
        candidates = table.loc[table["identity"].isin(eligible), ["image", "identity", attribute]]
        others = candidates[~candidates[attribute]].assign(key=rng.random(int((~candidates[attribute]).sum())))
        others = others.sort_values(["identity", "key"], kind="stable")
        rank = others.groupby("identity").cumcount().to_numpy()
        kept_others = others[rank < quota.reindex(others["identity"]).to_numpy()]
        subset = pd.concat([candidates[candidates[attribute]], kept_others])[["image", "identity"]]
        stats = {
            "attribute_images": int(candidates[attribute].sum()),
            "other_images": len(kept_others),
            "identities_without_both": int(len(n_a) - len(eligible)),
        }
    subset = subset.sort_values("image", ignore_index=True)
    labels = np.searchsorted(np.unique(subset["identity"].to_numpy()), subset["identity"].to_numpy())
    subset = subset.assign(label=labels.astype(np.int32))
    stats = {"images": len(subset), "identities": int(labels.max() + 1) if len(subset) else 0, **stats}
    return subset, stats


# --------------------------------------------------------------------------- identification


def make_identification(
    table: pd.DataFrame, params: IdentificationParams, rng: np.random.Generator
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The identification protocol from `table` (usable test images).

    Draws n_identities identities among those with >= min_images_per_identity images, gives
    each min_images_per_identity random images, then fills up to n_images with images of
    the drawn identities drawn at random. Takes what exists when fewer are available.
    Returns (image, identity sorted by image) and its counts.
    """
    sizes = table.groupby("identity").size()
    eligible = sizes.index[sizes >= params.min_images_per_identity].to_numpy()
    n_identities = min(params.n_identities, len(eligible))
    chosen = np.sort(rng.choice(eligible, size=n_identities, replace=False))
    pool = table.loc[table["identity"].isin(chosen), ["image", "identity"]]
    pool = pool.assign(key=rng.random(len(pool))).sort_values(["identity", "key"], kind="stable")
    first = pool.groupby("identity").cumcount().to_numpy() < params.min_images_per_identity
    rest = np.flatnonzero(~first)
    n_rest = max(0, params.n_images - int(first.sum()))
    if len(rest) > n_rest:
        rest = rng.choice(rest, size=n_rest, replace=False)
    keep = first.copy()
    keep[rest] = True
    protocol = pool[keep][["image", "identity"]].sort_values("image", ignore_index=True)
    stats = {
        "eligible_identities": len(eligible),
        "identities": n_identities,
        "images": len(protocol),
        "requested_identities": params.n_identities,
        "requested_images": params.n_images,
        "shortfall_identities": params.n_identities - n_identities,
        "shortfall_images": params.n_images - len(protocol),
    }
    return protocol, stats


# --------------------------------------------------------------------------- everything


@dataclass(frozen=True)
class PairsResult:
    pairs: pd.DataFrame  # task, split, kind, condition, image_a, image_b, identity_a, identity_b, fallback
    train_subsets: pd.DataFrame  # task, image, identity, label
    identification: pd.DataFrame  # image, identity
    metrics: dict[str, Any]  # JSON-ready counts, see build_pairs
    # evaluation-only pairs per attribute (`task` = the attribute), test split; pairs' columns
    attribute_pairs: pd.DataFrame | None = None


def _excluded_counts(manifest: pd.DataFrame, tasks: tuple[str, ...]) -> dict[str, Any]:
    """Excluded (no crop) images per task x partition x side, and statuses per partition."""
    excluded = manifest["status"].isin(EXCLUDED_STATUSES).to_numpy()
    partition = manifest["partition"].to_numpy()
    status = manifest["status"].to_numpy()
    by_task: dict[str, Any] = {}
    for task in tasks:
        by_task[task] = {}
        for code, name in PARTITIONS.items():
            dropped = excluded & (partition == code)
            if task == ORIG_TASK:
                by_task[task][name] = {ALL_CONDITION: int(dropped.sum())}
            else:
                has = manifest[task].to_numpy()
                by_task[task][name] = {"A": int((dropped & has).sum()), "notA": int((dropped & ~has).sum())}
    by_status = {
        name: {s: int(((partition == code) & (status == s)).sum()) for s in USABLE_STATUSES + EXCLUDED_STATUSES}
        for code, name in PARTITIONS.items()
    }
    return {"by_task": by_task, "by_status": by_status}


def label_flips(manifest: pd.DataFrame, attributes: tuple[str, ...]) -> dict[str, dict[str, float | int | None]]:
    """Per attribute, the share of identities (with two or more usable images) whose label
    differs between their photos: label noise for a stable trait (Male), expected for a
    transient one (Eyeglasses)."""
    usable = manifest[manifest["status"].isin(USABLE_STATUSES)]
    grouped = usable.groupby("identity")
    several = grouped.size() >= 2
    out = {}
    for attribute in attributes:
        flips = (grouped[attribute].nunique() > 1)[several]
        out[attribute] = {"identities": int(several.sum()),
                          "flip_share": float(flips.mean()) if len(flips) else None}  # fmt: skip
    return out


def build_pairs(manifest: pd.DataFrame, params: PairsParams, attributes: tuple[str, ...] = ()) -> PairsResult:
    """Pairs, training subsets and the identification protocol for every task in params,
    and evaluation-only test pairs for each of `attributes` (evaluate.attributes).

    metrics: {"pairs": {task: {split: {kind: {condition: {pairs, requested, available,
    shortfall, identities, pairs_with_fallback}}}}}, "train_subsets": {task: {images,
    identities, …}}, "identification": {…}, "excluded": {by_task, by_status,
    identity_overlap}, "shortfalls": [readable lines], and with attributes
    "attribute_pairs": {attribute: {kind: {condition: {…}}}}, "label_flips": {attribute:
    {identities, flip_share}}}.
    """
    check_manifest(manifest, tuple(dict.fromkeys((*params.tasks, *attributes))))
    usable = manifest[manifest["status"].isin(USABLE_STATUSES)]
    train = usable[usable["partition"] == TRAIN_PARTITION].sort_values("image", ignore_index=True)
    train_identities = manifest.loc[manifest["partition"] == TRAIN_PARTITION, "identity"]
    overlap = usable["partition"].isin(list(EVAL_SPLITS.values())) & usable["identity"].isin(train_identities)
    if overlap.any():
        logger.warning(
            "%d val/test images belong to identities of the training partition; excluded from pairs",
            int(overlap.sum()),
        )
    evaluation = usable[~overlap].sort_values(["identity", "image"], ignore_index=True)
    splits = {split: evaluation[evaluation["partition"] == code].reset_index(drop=True) for split, code in EVAL_SPLITS.items()}

    pair_frames, subsets, shortfalls = [], [], []
    metrics: dict[str, Any] = {"pairs": {}, "train_subsets": {}}
    for task in params.tasks:
        metrics["pairs"][task] = {}
        for split, table in splits.items():
            frames, cells, missing = _verification_pairs(table, task, split, params)
            pair_frames += frames
            metrics["pairs"][task][split] = cells
            shortfalls += missing
        attribute = None if task == ORIG_TASK else task
        subset, stats = make_train_subset(train, attribute, params.train, _rng(params.seed, "train", task))
        subsets.append(subset.assign(task=task)[["task", "image", "identity", "label"]])
        metrics["train_subsets"][task] = stats
        logger.info("%s: %d training images of %d identities", task, stats["images"], stats["identities"])

    attribute_frames: list[pd.DataFrame] = []
    if attributes:
        metrics["attribute_pairs"] = {}
        for attribute in attributes:
            frames, cells, missing = _verification_pairs(
                splits[ATTRIBUTE_SPLIT], attribute, ATTRIBUTE_SPLIT, params, "attribute_pairs"
            )
            attribute_frames += frames
            metrics["attribute_pairs"][attribute] = cells
            shortfalls += missing
        metrics["label_flips"] = label_flips(manifest, attributes)

    identification, id_stats = make_identification(
        splits["test"], params.identification, _rng(params.seed, "identification", ORIG_TASK)
    )
    if id_stats["shortfall_identities"] or id_stats["shortfall_images"]:
        shortfalls.append(
            f"identification: {id_stats['identities']} of {id_stats['requested_identities']} identities, "
            f"{id_stats['images']} of {id_stats['requested_images']} images (all that exist)"
        )
    if shortfalls:
        logger.warning("%d cells have fewer items than asked (metrics: shortfalls)", len(shortfalls))
    for line in shortfalls:
        logger.info("shortfall %s", line)
    metrics["identification"] = id_stats
    metrics["excluded"] = {**_excluded_counts(manifest, params.tasks), "identity_overlap": int(overlap.sum())}
    metrics["shortfalls"] = shortfalls
    return PairsResult(
        pairs=pd.concat(pair_frames, ignore_index=True),
        train_subsets=pd.concat(subsets, ignore_index=True),
        identification=identification,
        metrics=metrics,
        attribute_pairs=pd.concat(attribute_frames, ignore_index=True) if attribute_frames else None,
    )


def _replace_atomically(path: Path, write: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def headline_counts(metrics: dict[str, Any]) -> dict[str, int]:
    """The few pair counts worth a column in `dvc metrics show`; the rest stays in the detail."""
    per_split = {split: 0 for split in EVAL_SPLITS}
    for splits in metrics["pairs"].values():
        for split, kinds in splits.items():
            per_split[split] += sum(cell["pairs"] for conditions in kinds.values() for cell in conditions.values())
    excluded = metrics["excluded"]["by_status"]
    return {
        **{f"{split}_pairs": n for split, n in per_split.items()},
        "shortfalls": len(metrics["shortfalls"]),
        "identification_images": metrics["identification"]["images"],
        "excluded_images": sum(excluded[p][s] for p in excluded for s in EXCLUDED_STATUSES),
    }


def write_outputs(
    result: PairsResult, out_dir: str | Path, metrics_path: str | Path, detail_path: str | Path | None = None
) -> None:
    """Write the three parquet files into `out_dir`, the headline counts (`headline_counts`)
    to `metrics_path` and every count to `detail_path` (beside it, `<name>_detail.json`,
    when not given)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in (
        (PAIRS_FILE, result.pairs),
        (TRAIN_SUBSETS_FILE, result.train_subsets),
        (IDENTIFICATION_FILE, result.identification),
        (ATTRIBUTE_PAIRS_FILE, result.attribute_pairs),
    ):
        if frame is not None:
            _replace_atomically(out_dir / name, lambda p, f=frame: f.to_parquet(p, index=False))
    metrics_path = Path(metrics_path)
    detail_path = Path(detail_path) if detail_path else metrics_path.with_name(f"{metrics_path.stem}_detail.json")
    for path, content in ((metrics_path, headline_counts(result.metrics)), (detail_path, result.metrics)):
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(content, indent=2) + "\n"
        _replace_atomically(path, lambda p, t=text: p.write_text(t))
