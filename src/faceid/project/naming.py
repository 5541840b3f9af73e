"""Model names: which evaluations the params name, and what each model is called.

The evaluate stages write `metrics/detail/<stem>.json` for the stems of dvc.yaml's
matrices: `base-<backbone>` for a backbone's starting point, `<task>-<backbone>` for a
trained model. A starting point's evaluation records what it is (`start`: pretrained
weights or untrained), and the report names it by that: `pretrained-<backbone>` or
`untrained-<backbone>`. Pure functions, no imports: the evaluate stage (where `start` is
made) and the report (where the names are read) can both use it without depending on
each other.
"""

from __future__ import annotations

__all__ = ["BASE_PREFIX", "evaluate_stage", "evaluation_stems", "model_name", "model_stem", "start_label"]

BASE_PREFIX = "base-"  # dvc.yaml's evaluate-base stage: metrics/detail/base-${item.backbone}.json
ORIG_PREFIX = "orig-"  # dvc.yaml's evaluate-orig stage: metrics/detail/orig-${item.backbone}.json


def model_stem(task: str, backbone: str) -> str:
    """A trained model's name: data/models/<stem>, data/runs/<stem>.json, metrics/detail/<stem>.json."""
    return f"{task}-{backbone}"


def evaluate_stage(stem: str) -> str:
    """The dvc.yaml stage that evaluates model `stem`: evaluate-base@<backbone>,
    evaluate-orig@<backbone> or evaluate@<task>-<backbone>."""
    for prefix in (BASE_PREFIX, ORIG_PREFIX):
        if stem.startswith(prefix):
            return f"evaluate-{prefix[:-1]}@{stem[len(prefix):]}"
    return f"evaluate@{stem}"


def evaluation_stems(backbones: tuple[str, ...], tasks: tuple[str, ...]) -> list[str]:
    """File stems the evaluate stages write: base-<backbone>, then <task>-<backbone> for
    each of `tasks` (orig first: faceid.config.tasks.all_tasks)."""
    return [f"{BASE_PREFIX}{b}" for b in backbones] + [model_stem(t, b) for t in tasks for b in backbones]


def start_label(init: str) -> str:
    """What a starting point is, from its weights (`init`, "none" for random ones)."""
    return "untrained" if init == "none" else "pretrained"


def model_name(stem: str, evaluation: dict) -> str:
    """The report's name of an evaluation: a starting point (base-<backbone>) is named by
    what it is, `<start>-<backbone>` (pretrained-… or untrained-…); others keep their stem."""
    start = (evaluation.get("model") or {}).get("start")
    if stem.startswith(BASE_PREFIX) and start:
        return f"{start}-{stem[len(BASE_PREFIX) :]}"
    return stem
