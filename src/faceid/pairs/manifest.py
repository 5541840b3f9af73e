"""The crop manifest as the pairs stage reads it: columns, statuses, checks, and what it excludes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from faceid.config.tasks import ORIG_TASK
from faceid.data.celeba import PARTITIONS
from faceid.errors import FaceidError
from faceid.pairs.verification import ALL_CONDITION

USABLE_STATUSES = ("detected", "fallback")
EXCLUDED_STATUSES = ("missing", "unreadable")
TRAIN_PARTITION = 0


class ManifestError(FaceidError, ValueError):
    """A crop manifest that does not follow the contract of docs/ARCHITECTURE.md."""


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


def excluded_counts(manifest: pd.DataFrame, tasks: tuple[str, ...]) -> dict[str, Any]:
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
