"""Which evaluated model plays which part (start, orig, fine-tuned), and cell lookups.

Roles come from each detail's `model` metadata (backbone, task, init), never from its
name; `faceid.project.naming` names the models.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from faceid.errors import FaceidError
from faceid.evaluate.evaluation import json_ready
from faceid.evaluate.headline import task_cell

MISSING = "—"  # shown for numbers that do not exist (unmeasurable, empty, not run)
ORIGINAL = "orig"
SAME_CONDITION = "notA/notA"  # the attribute-free reference cell of an attribute task


class ReportError(FaceidError, ValueError):
    """Evaluations that cannot be put side by side."""


def _number(value) -> float | int | None:
    value = json_ready(value)
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class Roles:
    """Which model plays which part, per backbone."""

    start: dict[str, str] = field(default_factory=dict)  # backbone → starting point
    orig: dict[str, str] = field(default_factory=dict)  # backbone → model trained on everything
    tuned: dict[tuple[str, str], str] = field(default_factory=dict)  # (task, backbone) → fine-tuned
    init: dict[str, str | None] = field(default_factory=dict)  # model → the model it started from

    @property
    def backbones(self) -> list[str]:
        return sorted(set(self.start) | set(self.orig) | {b for _, b in self.tuned})

    @property
    def tasks(self) -> list[str]:
        return sorted({t for t, _ in self.tuned})


def roles(evaluations: Mapping[str, dict], original_task: str = ORIGINAL) -> Roles:
    """Roles from each detail's `model` metadata (not from its name)."""
    found = Roles()
    for name, detail in evaluations.items():
        meta = detail.get("model") or {}
        backbone, task = meta.get("backbone"), meta.get("task")
        if backbone is None:
            raise ReportError(f"model {name!r}: its evaluation has no model.backbone; re-run its evaluate stage")
        slot = found.start if task is None else found.orig if task == original_task else None
        key = backbone if slot is not None else (task, backbone)
        slot = slot if slot is not None else found.tuned
        if key in slot:
            raise ReportError(f"models {slot[key]!r} and {name!r} play the same part for {key}; report one")
        slot[key] = name
    for name, detail in evaluations.items():
        meta = detail["model"]
        if meta.get("task") is None:
            found.init[name] = None
        elif meta.get("init") == original_task and meta.get("task") != original_task:
            found.init[name] = found.orig.get(meta["backbone"])
        else:
            found.init[name] = found.start.get(meta["backbone"])
    return found


def _cell(evaluations, model: str | None, task: str, condition: str | None = None) -> dict | None:
    if model is None or model not in evaluations:
        return None
    if condition is None:
        return task_cell(evaluations[model], task)
    return evaluations[model]["tasks"].get(task, {}).get(condition)


def _auc(evaluations, model, task, condition=None) -> float | None:
    cell = _cell(evaluations, model, task, condition)
    return None if cell is None else _number(cell["auc"])


def _ci(cell: dict | None) -> tuple[float | None, float | None]:
    if cell is None:
        return None, None
    return _number(cell["auc_ci"]["low"]), _number(cell["auc_ci"]["high"])

