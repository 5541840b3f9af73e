"""report.md (findings, compact tables, the robustness map and demographic sections) and
report_appendix.md (every cell of every model)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from faceid.report import robustness
from faceid.report.lookup import MISSING, ORIGINAL, roles
from faceid.report.narrative import Context, findings
from faceid.report.tables import (
    _threshold,
    accuracy_table,
    finetune_table,
    identification_table,
    study_table,
)


def _map_sections(evaluations: Mapping[str, dict], figures: list[Path], flips, original_task: str) -> list[str]:
    found = roles(evaluations, original_task)
    lines: list[str] = []
    if any(ev.get("attributes") for ev in evaluations.values()):
        lines += ["## 4. Robustness map: which attributes lower cross-condition matching", "",
                  "ΔAUC = AUC(A/notA) − AUC(notA/notA) on evaluation-only test pairs per attribute "
                  "(negative: photos with the attribute match photos without it worse), paired identity-bootstrap "
                  "intervals; attributes whose two cells meet the sample-size rule are tested together "
                  "(Benjamini–Hochberg, q = adjusted p-value), the others ranked last and marked; "
                  "label flips: share of identities whose label differs between their photos "
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
    flips: Mapping[str, dict] | None = None, context: Context | None = None,
) -> str:  # fmt: skip
    """report.md: the first screen (findings, top-down), then compact tables and figures;
    every cell of every model is in the appendix (`render_appendix`) and the detail JSON."""
    context = context or Context()
    lines = [
        "# Evaluation report",
        "",
        "## What this run shows",
        "",
        *[f"- {sentence}" for sentence in findings(evaluations, context, original_task)],
        "",
        f"Intervals: 95% identity (cluster) bootstrap; a change is called raised or lowered only when its "
        f"paired interval excludes 0. `{MISSING}`: not measurable. Method: docs/evaluation.md; every cell of "
        "every model: report_appendix.md and metrics/detail/.",
        "",
        *([f"The crop stage's lowest-confidence accepted faces, for a person to check: ![crops]({context.crop_review})",
           ""] if context.crop_review else []),
        "## 1. The study's threshold accuracy (cross-condition pairs)",
        "",
        study_table(evaluations, original_task),
        "",
        "## 2. Fine-tuning, paired against each model's start",
        "",
        finetune_table(evaluations, context.comparisons, original_task),
        "",
        "## 3. Identification (closed set, leave-one-out; probes resampled by person)",
        "",
        identification_table(evaluations),
        "",
        *_map_sections(evaluations, figures, flips, original_task),
        "## ROC and DET before/after fine-tuning",
        "",
        *[f"![{p.stem}]({p.name})" for p in figures if p.stem.startswith(("roc_", "det_", "crop_"))],
        "",
    ]
    return "\n".join(lines)


def render_appendix(evaluations: Mapping[str, dict], original_task: str = ORIGINAL) -> str:
    """Every (task, condition) cell of every model: the study's accuracy with FAR, TAR@FAR,
    AUC, EER, FNMR/FMR at the global threshold, detection failures and counts."""
    thresholds = "; ".join(f"{m}: {_threshold(ev['global_threshold']['threshold'])} at FMR "
                           f"{ev['global_threshold']['fmr']:g}" for m, ev in evaluations.items())  # fmt: skip
    return "\n".join([
        "# Evaluation report: appendix", "",
        "Accuracy is the share of genuine pairs with similarity > t; FAR in brackets is the share of impostor "
        "pairs above the same t. Cells count acquired pairs only (both faces detected).", "",
        f"Global thresholds: {thresholds}.", "",
        accuracy_table(evaluations, original_task), "",
    ])  # fmt: skip
