"""report.md's first screen, "What this run shows", read top-down: the data, the operating
point, answer 1 (attributes that hurt matching, after false-discovery-rate control),
answer 2 (what each fine-tune did, paired against its actual start), then warnings.

Every sentence rests on a paired interval, a gated cell or a count (docs/evaluation.md,
"Conclusions"): a verdict word needs an interval that excludes 0, a ranking only uses
cells that meet the sample-size rule, a warning only harm whose interval excludes 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from faceid.report.comparisons import EQUAL, LOWERED, describe
from faceid.report.lookup import ORIGINAL, Roles, _cell, _number, roles
from faceid.report.tables import _fmt, _threshold

COLLAPSED_IMPOSTOR_MEDIAN = 0.9  # different people this similar: the embedding has collapsed
COLLAPSED_THRESHOLD = 0.99


@dataclass(frozen=True)
class Context:
    """What the report states beside the evaluations: the data and the paired comparisons."""

    dataset: Mapping = field(default_factory=dict)  # metrics/dataset.json
    crop: Mapping = field(default_factory=dict)  # metrics/crop.json
    comparisons: Mapping[str, dict] = field(default_factory=dict)  # faceid.report.comparisons.compare_models
    crop_review: str | None = None  # link to the crop stage's contact sheet, relative to report.md


def _pct(value) -> str:
    value = _number(value)
    return "—" if value is None else f"{100 * value:.1f}%"


def data_lines(context: Context, evaluations: Mapping[str, dict]) -> list[str]:
    """Which data, how large each split, how many faces were not acquired."""
    data = context.dataset or {}
    source = data.get("source", "unknown")
    if source == "synthetic":
        kind = ("**synthetic**: the embedded dataset of rendered faces, not photos of people; its numbers "
                "show the pipeline and the method, not how a model does on real faces")  # fmt: skip
    else:
        kind = f"**real photos** (CelebA, source `{source}`)"
    splits = ", ".join(
        f"{s} {data[s]['identities']} identities / {data[s]['images']} images"
        for s in ("train", "val", "test") if isinstance(data.get(s), Mapping)
    )  # fmt: skip
    split = sorted({ev["split"] for ev in evaluations.values()})
    crop = context.crop or {}
    lines = [
        f"**Data.** {kind}, layout {data.get('layout', '—')}: {data.get('identities', '—')} identities, "
        f"{data.get('images', '—')} images; {splits or 'split sizes not recorded'} (identity-disjoint); "
        f"evaluated on {', '.join(split)}.",
        f"**Faces acquired.** MTCNN found the face in {_pct(crop.get('detection_rate'))} of the images; "
        f"fallback crops {_pct(crop.get('fallback_rate'))}, missing {_pct(crop.get('missing_rate'))}, unreadable "
        f"{_pct(crop.get('unreadable_rate'))}: a pair with such an image is a failure to acquire, counted "
        "and not scored (FNMR with them below).",
    ]
    return lines


def operating_lines(evaluations: Mapping[str, dict], found: Roles) -> list[str]:
    """Per backbone, the orig model's global threshold with its false-match support."""
    lines = []
    for backbone in found.backbones:
        model = found.orig.get(backbone) or found.start.get(backbone)
        point = evaluations[model]["global_threshold"] if model else None
        if not point or _number(point.get("threshold")) is None:
            lines.append(f"**Operating point, {model}:** none ({(point or {}).get('reason') or 'no impostor pairs'}).")
            continue
        ci, fta = point.get("fnmr_ci") or {}, point.get("with_failures_to_acquire") or {}
        moved = f" ({point['reason']})" if point.get("reason") else ""
        lines.append(
            f"**Operating point, {model}:** threshold {_threshold(point['threshold'])} at FMR {point['fmr']:g}{moved}, "
            f"resting on {point.get('false_matches')} false matches of {point.get('n_impostor')} impostor "
            f"comparisons; FNMR {_fmt(point.get('fnmr'))} [{_fmt(ci.get('low'))}, {_fmt(ci.get('high'))}] over "
            f"{point.get('n_genuine')} genuine pairs; with failures to acquire counted as non-matches "
            f"{_fmt(fta.get('fnmr'))}."
        )
    return lines


def attribute_lines(evaluations: Mapping[str, dict], found: Roles) -> list[str]:
    """Answer 1, per backbone: the map's attributes whose paired ΔAUC (A/notA − notA/notA)
    survives Benjamini–Hochberg over the attributes that meet the sample-size rule."""
    lines = []
    for backbone in found.backbones:
        model = found.orig.get(backbone) or found.start.get(backbone)
        detail = evaluations.get(model) or {}
        tests = detail.get("attribute_tests")
        if not tests:
            continue
        attributes = detail["attributes"]
        skipped = tests["n_attributes"] - tests["n_tested"]
        scope = (f"{tests['n_tested']} of {tests['n_attributes']} attributes tested (Benjamini–Hochberg, FDR "
                 f"{tests['fdr']:g}); {skipped} below the sample-size rule or unmeasurable, "
                 "shown in the map only")  # fmt: skip
        if not tests["hurt"]:
            lines.append(f"**1. Attributes that hurt matching, {model}:** none detected; {scope}.")
            continue
        named = "; ".join(
            f"{a} ΔAUC {attributes[a]['delta_auc']:+.3f} [{attributes[a]['delta_auc_ci']['low']:+.3f}, "
            f"{attributes[a]['delta_auc_ci']['high']:+.3f}], q {attributes[a]['q_value']:.3g}"
            for a in tests["hurt"]
        )
        lines.append(f"**1. Attributes that hurt matching, {model}:** {named}; {scope}.")
    return lines


def finetune_lines(found: Roles, context: Context) -> list[str]:
    """Answer 2, one line per fine-tune: its attribute's A/notA pairs and the original
    pairs, each paired against the model it was fine-tuned from; first, each orig model
    against the starting point it was trained from."""
    lines = []
    for model in found.orig.values():
        entry = context.comparisons.get(model)
        if entry is not None:
            lines.append(f"**2. {model}** (from {entry['start']}): original pairs {describe(entry.get('original'))}.")
    for (task, _backbone), model in sorted(found.tuned.items()):
        entry = context.comparisons.get(model)
        if entry is None:
            lines.append(f"**2. {model}:** not compared (no embeddings of it or its start).")
            continue
        if entry["equals_start"]:
            lines.append(f"**2. {model}:** training did not beat its start on validation; the model equals "
                         f"{entry['start']} (left out of the mean change).")  # fmt: skip
            continue
        lines.append(f"**2. {model}** (from {entry['start']}): {task} A/notA AUC {describe(entry.get('attribute'))}; "
                     f"original pairs {describe(entry.get('original'))}.")  # fmt: skip
    return lines


def warning_lines(evaluations: Mapping[str, dict], found: Roles, context: Context, original_task: str) -> list[str]:
    """Harm whose paired interval excludes 0, collapsed embeddings, unsupported thresholds."""
    lines = []
    for model, entry in context.comparisons.items():
        original = entry.get("original") or {}
        if original.get("verdict") == LOWERED and not entry["equals_start"]:
            lines.append(f"**Warning:** {model} ended worse than its start {entry['start']} on the original "
                         f"pairs: AUC {describe(original)}.")  # fmt: skip
    for model, detail in evaluations.items():
        cell = _cell(evaluations, model, original_task)
        median = None if cell is None else _number(cell["similarity"]["impostor"]["p50"])
        threshold = _number(detail["global_threshold"]["threshold"])
        if (median is not None and median > COLLAPSED_IMPOSTOR_MEDIAN) or (
            threshold is not None and threshold >= COLLAPSED_THRESHOLD
        ):
            lines.append(f"**Warning:** {model} looks collapsed: median impostor cosine {_threshold(median)}, "
                         f"global threshold {_threshold(threshold)} "
                         "(different people are near-identical to it).")  # fmt: skip
        if detail["global_threshold"].get("supported") is False:
            lines.append(f"**Warning:** {model}: {detail['global_threshold']['reason']}.")
    return lines


def findings(evaluations: Mapping[str, dict], context: Context | None = None,
             original_task: str = ORIGINAL) -> list[str]:  # fmt: skip
    """'What this run shows', top-down: data, operating point, answer 1, answer 2, warnings."""
    context = context or Context()
    found = roles(evaluations, original_task)
    return [
        *data_lines(context, evaluations),
        *operating_lines(evaluations, found),
        *attribute_lines(evaluations, found),
        *finetune_lines(found, context),
        *warning_lines(evaluations, found, context, original_task),
    ]


__all__ = ["EQUAL", "Context", "findings"]
