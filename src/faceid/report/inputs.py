"""The report's inputs: the current models' evaluations, by the names `faceid.project.naming` gives."""

from __future__ import annotations

import json
from pathlib import Path

from faceid.evaluate.evaluation import EvaluateError
from faceid.project.naming import model_name


def load_evaluations(folder: Path, stems: list[str]) -> dict[str, dict]:
    """Evaluations (metrics/detail/<stem>.json) by model name (`faceid.project.naming.model_name`)."""
    folder = Path(folder)
    missing = [s for s in stems if not (folder / f"{s}.json").is_file()]
    if missing:
        raise EvaluateError(
            f"{folder}: no evaluation of {', '.join(missing)}; run `dvc repro` (the evaluate stages write them)"
        )
    evaluations = {}
    for stem in stems:
        evaluation = json.loads((folder / f"{stem}.json").read_text())
        evaluations[model_name(stem, evaluation)] = evaluation
    return evaluations


def stale_evaluations(folders: list[Path], stems: list[str]) -> list[Path]:
    """Evaluation files of models the params no longer name (an earlier profile's)."""
    wanted = set(stems)
    return sorted(p for folder in folders if folder.is_dir() for p in folder.glob("*.json") if p.stem not in wanted)
