"""The crop stage's numbers: counts and rates per status and attribute side, why images
are missing, and the failure check that stops the stage (metrics/crop.json and
metrics/crop_detail.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from faceid.common.fileio import atomic_write
from faceid.crop.detect import NO_FACE, TOO_SMALL
from faceid.data.celeba import ATTRIBUTE_NAMES
from faceid.errors import FaceidError

__all__ = [
    "HEADLINE_KEYS",
    "STATUSES",
    "CropError",
    "check_failure_rate",
    "summarize_crops",
    "write_metrics",
]

STATUSES = ("detected", "fallback", "missing", "unreadable")
MAX_EXAMPLES = 20  # image names listed per kind of failure in the metrics


class CropError(FaceidError, RuntimeError):
    """The crop stage could not produce a trustworthy cache."""


def _rate(count: int, total: int) -> float | None:
    return count / total if total else None


def summarize_crops(manifest: pd.DataFrame, reasons: pd.DataFrame) -> dict[str, Any]:
    """Counts and rates of each status, why images are missing, and per attribute side
    the detection rate and the missing and unreadable counts.

    `reasons`: image, status, reason of every image that is not detected (others may be
    included). Rates are over all images, unreadable ones included (ISO/IEC 19795
    failure to acquire).
    """
    total = len(manifest)
    counts = {s: int((manifest["status"] == s).sum()) for s in STATUSES}
    status = manifest["status"].to_numpy()
    by_attribute = {}
    for attribute in ATTRIBUTE_NAMES:
        has = manifest[attribute].to_numpy(bool)
        by_attribute[attribute] = {
            side: {
                "images": int(mask.sum()),
                "detection_rate": _rate(int((status[mask] == "detected").sum()), int(mask.sum())),
                "missing": int((status[mask] == "missing").sum()),
                "unreadable": int((status[mask] == "unreadable").sum()),
            }
            for side, mask in (("with", has), ("without", ~has))
        }
    unreadable = reasons[reasons["status"] == "unreadable"]
    missing = reasons[reasons["status"] == "missing"]
    small = reasons.loc[reasons["reason"] == TOO_SMALL, "image"]
    metrics: dict[str, Any] = {"images": total}
    for status in STATUSES:
        metrics[status] = counts[status]
        metrics[f"{status}_rate"] = _rate(counts[status], total)
    metrics["detection_rate"] = metrics.pop("detected_rate")
    metrics["unreadable_images"] = [
        {"image": image, "reason": reason}
        for image, reason in zip(unreadable["image"], unreadable["reason"], strict=True)
    ]
    # a missing image either had no face the detector accepted or was smaller than the
    # smallest face it searches (crop.min_face_size); neither stops the stage
    metrics["missing_reasons"] = {
        reason: int((missing["reason"] == reason).sum()) for reason in (NO_FACE, TOO_SMALL)
    }
    # why each fallback image has no accepted detection: no face, a rule of
    # faceid.crop.accept broken by the nearest face, or never searched (too small)
    fallback = reasons.loc[reasons["status"] == "fallback", "reason"].replace("", NO_FACE)
    metrics["fallback_reasons"] = {str(k): int(v) for k, v in sorted(fallback.value_counts().items())}
    # images the detector could not search at all (cropped from annotations, or missing)
    metrics["too_small"] = len(small)
    metrics["too_small_examples"] = small.head(MAX_EXAMPLES).tolist()
    metrics["by_attribute"] = by_attribute
    return metrics


HEADLINE_KEYS = ("images", "detection_rate", "fallback_rate", "missing_rate", "unreadable_rate")


def write_metrics(path: str | Path, metrics: dict[str, Any]) -> None:
    """The headline rates to `path` (a DVC metric: few columns in `dvc metrics show`) and
    every count, per attribute too, to `<name>_detail.json` beside it."""
    path = Path(path)
    headline = json.dumps({k: metrics[k] for k in HEADLINE_KEYS}, indent=2) + "\n"
    detail = json.dumps(metrics, indent=2) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(headline))
    atomic_write(path.with_name(f"{path.stem}_detail.json"), lambda tmp: tmp.write_text(detail))


def check_failure_rate(metrics: dict[str, Any], max_failure_rate: float) -> None:
    """Fail when more than `max_failure_rate` of the images were unreadable."""
    total, count = metrics["images"], metrics["unreadable"]
    if total and count / total > max_failure_rate:
        examples = "; ".join(
            f"{u['image']} ({u['reason']})" for u in metrics["unreadable_images"][:5]
        )
        raise CropError(
            f"crop: {count} of {total} images ({count / total:.2%}) are unreadable, more than "
            f"crop.max_failure_rate ({max_failure_rate:.2%}); e.g. {examples}. Re-create the "
            "dataset (`dvc repro dataset`) or raise crop.max_failure_rate in params.yaml"
        )
