"""report.md: findings, the three tables, the robustness map and demographic sections."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from faceid import robustness
from faceid.report.lookup import MISSING, ORIGINAL, roles
from faceid.report.narrative import findings
from faceid.report.tables import _threshold, accuracy_table, finetune_table, identification_table


def _map_sections(evaluations: Mapping[str, dict], figures: list[Path], flips, original_task: str) -> list[str]:
    found = roles(evaluations, original_task)
    lines: list[str] = []
    if any(ev.get("attributes") for ev in evaluations.values()):
        lines += ["## 4. Robustness map: which attributes lower cross-condition matching", "",
                  "ΔAUC = AUC(A/notA) − AUC(notA/notA) on evaluation-only test pairs per attribute "
                  "(negative: photos with the attribute match photos without it worse), identity-bootstrap "
                  "intervals; label flips: share of identities whose label differs between their photos "
                  "(noise for a stable trait, expected for a transient one).", ""]  # fmt: skip
        for backbone in found.backbones:
            start, orig = found.start.get(backbone), found.orig.get(backbone)
            lines += [f"### {backbone}", "", robustness.robustness_table(evaluations, start, orig, flips), ""]
        lines += [f"![{p.stem}]({p.name})" for p in figures if p.stem.startswith(("map_", "finetune_map_"))]
        lines.append("")
    groups = [m for m in [*found.start.values(), *found.orig.values()] if evaluations[m].get("groups")]
    if groups:
        lines += ["## 5. Demographic differentials (NIST FRVT Part 3 style, at each model's global threshold)", "",
                  robustness.demographic_paragraph(evaluations, groups), "",
                  robustness.demographics_table(evaluations, groups), ""]  # fmt: skip
    return lines


def render_report(
    evaluations: Mapping[str, dict], figures: list[Path], original_task: str = ORIGINAL,
    flips: Mapping[str, dict] | None = None,
) -> str:  # fmt: skip
    splits = sorted({ev["split"] for ev in evaluations.values()})
    thresholds = {m: ev["global_threshold"] for m, ev in evaluations.items()}
    lines = [
        "# Evaluation report",
        "",
        "## What this run shows",
        "",
        *[f"- {sentence}" for sentence in findings(evaluations, original_task)],
        "",
        f"Split: {', '.join(splits)}. Models: {', '.join(evaluations)}.",
        f"`{MISSING}`: not measurable (TAR@FAR needs at least 1/FAR impostor pairs), an empty "
        "cell, or a model not evaluated. Accuracy is the share of genuine pairs with "
        "similarity > t; FAR in brackets is the share of impostor pairs above the same t. "
        "Intervals: identity (cluster) bootstrap, see docs/evaluation.md.",
        "",
        "Global thresholds (fixed FMR on the pooled impostors of the original pairs): "
        + "; ".join(f"{m}: {_threshold(t['threshold'])} at FMR {t['fmr']:g}" for m, t in thresholds.items()),
        "",
        "## 1. Same-person threshold accuracy per attribute",
        "",
        accuracy_table(evaluations, original_task),
        "",
        "## 2. Fine-tuning: AUC on filtered, cross-condition and original pairs",
        "",
        finetune_table(evaluations, original_task),
        "",
        "## 3. Identification (closed set, leave-one-out)",
        "",
        identification_table(evaluations),
        "",
        *_map_sections(evaluations, figures, flips, original_task),
        "## ROC before/after fine-tuning",
        "",
        *[f"![{p.stem}]({p.name})" for p in figures if p.stem.startswith("roc_")],
        "",
    ]
    return "\n".join(lines)
