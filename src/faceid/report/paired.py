"""The paired comparisons the report states, from the evaluate stages' files: which model
is compared with which (`plan`: each trained model with its actual start, read from its
evaluation's `init`), and their embeddings (data/embeddings/<stem>.npz)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from faceid.config.evaluate import EvaluateParams
from faceid.evaluate.evaluation import EvaluateError
from faceid.pairs.files import PAIRS_FILE
from faceid.report.comparisons import Embeddings, compare_models
from faceid.report.lookup import roles


def plan(evaluations: Mapping[str, dict], original_task: str) -> list[tuple[str, str, str | None]]:
    """(model, its start, its task) for every trained model whose start was evaluated: a
    fine-tune against the model it was fine-tuned from (orig, or the backbone's starting
    point for `init: pretrained`), orig against the starting point."""
    found = roles(evaluations, original_task)
    out = []
    for name in [*found.orig.values(), *found.tuned.values()]:
        start = found.init.get(name)
        if start is not None:
            out.append((name, start, evaluations[name]["model"]["task"]))
    return out


def load_embeddings(folder: Path, stem: str) -> Embeddings:
    path = Path(folder) / f"{stem}.npz"
    if not path.is_file():
        raise EvaluateError(f"{path}: no embeddings of {stem}; run `dvc repro` (its evaluate stage writes them)")
    with np.load(path) as data:
        return Embeddings(images=data["images"], vectors=data["embeddings"])


def paired_comparisons(evaluations: Mapping[str, dict], embeddings_dir: Path, pairs_dir: Path, manifest: Path,
                       params: EvaluateParams, original_task: str) -> dict[str, dict]:  # fmt: skip
    """Every comparison of `plan`, on the evaluated split's pairs. Embeddings are found
    by each evaluation's file stem (its `model.name`: base-<backbone>, <task>-<backbone>)."""
    stems = {name: evaluation["model"].get("name", name) for name, evaluation in evaluations.items()}
    wanted = plan(evaluations, original_task)
    needed = sorted({m for model, start, _ in wanted for m in (model, start)})
    embeddings = {name: load_embeddings(embeddings_dir, stems[name]) for name in needed}
    pairs = pd.read_parquet(Path(pairs_dir) / PAIRS_FILE)
    pairs = pairs[pairs["split"] == params.split]
    status = pd.read_parquet(manifest, columns=["image", "status"]).set_index("image")["status"]
    return compare_models(pairs, status, embeddings, wanted, params)

