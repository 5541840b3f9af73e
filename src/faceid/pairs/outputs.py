"""The pairs stage's files: three or four parquet tables, headline counts and every count."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from faceid.fileio import atomic_write
from faceid.pairs.build import PairsResult
from faceid.pairs.manifest import EXCLUDED_STATUSES
from faceid.pairs.verification import EVAL_SPLITS

PAIRS_FILE = "pairs.parquet"
ATTRIBUTE_PAIRS_FILE = "attribute_pairs.parquet"  # evaluation-only, per evaluate.attributes
TRAIN_SUBSETS_FILE = "train_subsets.parquet"
IDENTIFICATION_FILE = "identification.parquet"


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
            atomic_write(out_dir / name, lambda p, f=frame: f.to_parquet(p, index=False))
    metrics_path = Path(metrics_path)
    detail_path = Path(detail_path) if detail_path else metrics_path.with_name(f"{metrics_path.stem}_detail.json")
    for path, content in ((metrics_path, headline_counts(result.metrics)), (detail_path, result.metrics)):
        # keys in the order built (no sort_keys, unlike fileio.write_json): the tracked files keep their bytes
        text = json.dumps(content, indent=2) + "\n"
        atomic_write(path, lambda p, t=text: p.write_text(t))
