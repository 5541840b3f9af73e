"""Model names: which evaluation files the params name, and what each model is called.

The evaluate stages write `metrics/detail/<stem>.json` for the stems of dvc.yaml's
matrices: `base-<backbone>` for a backbone's starting point, `<task>-<backbone>` for a
trained model. The report names a starting point by what it is, from the `start` its
evaluation records: `pretrained-<backbone>` or `untrained-<backbone>`. Which models are
current comes from the params, never from what lies in the folder.
"""

from __future__ import annotations

import json
from pathlib import Path

from faceid.evaluate import EvaluateError

__all__ = ["BASE_PREFIX", "evaluation_stems", "load_evaluations", "model_name", "stale_evaluations"]

BASE_PREFIX = "base-"  # dvc.yaml's evaluate-base stage: metrics/detail/base-${item.backbone}.json


def evaluation_stems(backbones: tuple[str, ...], tasks: tuple[str, ...]) -> list[str]:
    """File stems the evaluate stages write: base-<backbone>, then <task>-<backbone>."""
    return [f"{BASE_PREFIX}{b}" for b in backbones] + [f"{t}-{b}" for t in tasks for b in backbones]


def model_name(stem: str, evaluation: dict) -> str:
    """The report's name of an evaluation: a starting point (base-<backbone>) is named by
    what it is, `<start>-<backbone>` (pretrained-… or untrained-…); others keep their stem."""
    start = (evaluation.get("model") or {}).get("start")
    if stem.startswith(BASE_PREFIX) and start:
        return f"{start}-{stem[len(BASE_PREFIX) :]}"
    return stem


def load_evaluations(folder: Path, stems: list[str]) -> dict[str, dict]:
    """Evaluations (metrics/detail/<stem>.json) by model name (`model_name`)."""
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
