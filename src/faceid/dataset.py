"""The dataset stage's library side: bring a CelebA-format folder into place and describe it."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from faceid import celeba
from faceid.config.dataset import DatasetParams

log = logging.getLogger(__name__)


def prepare_dataset(out_dir: Path, params: DatasetParams) -> pd.DataFrame:
    """Fill `out_dir` from `params.source` and return its validated annotation table."""
    out_dir = Path(out_dir)
    if params.source == "synthetic":
        from faceid.synthetic.generate import generate

        generate(out_dir, params.synthetic, params.layout)
    elif params.source == "celeba":
        from faceid.download import fetch_celeba

        fetch_celeba(out_dir, params)
    else:
        from faceid.local_source import import_local_copy

        import_local_copy(out_dir, params)
    return celeba.load_dataset(out_dir, params.layout)


def describe(table: pd.DataFrame, params: DatasetParams) -> dict:
    """Counts for metrics/dataset.json: images, identities and attribute rates per partition."""
    summary: dict = {"source": params.source, "layout": params.layout, "images": len(table),
                     "identities": int(table["identity"].nunique())}  # fmt: skip
    for code, name in celeba.PARTITIONS.items():
        part = table[table["partition"] == code]
        summary[name] = {"images": len(part), "identities": int(part["identity"].nunique())}
    summary["attribute_rate"] = {
        a: round(float(table[a].mean()), 4) if len(table) else 0.0 for a in celeba.ATTRIBUTE_NAMES
    }
    # identities with photos both with and without the attribute: the A/notA genuine pairs
    summary["identities_with_both"] = {
        a: int((table.groupby("identity")[a].agg(["any", "all"]).pipe(lambda g: g["any"] & ~g["all"])).sum())
        for a in celeba.STUDY_ATTRIBUTES
    }
    return summary
