"""The robustness map and the demographic differentials in the report and summary.

Reads each detail's `attributes` and `groups` (`faceid.evaluate.evaluation.evaluate_attributes`,
`evaluate_groups`). An attribute's cost is its `delta_auc` = AUC(A/notA) - AUC(notA/notA):
negative when photos with the attribute are harder to match with photos without it.
Per backbone the map compares its starting point and its orig model; per fine-tuned task
it compares the model before (the one it was fine-tuned from) and after, over every
attribute (does fine-tuning on Eyeglasses cost Wearing_Hat?).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from faceid.evaluate.evaluation import json_ready

__all__ = [
    "demographic_paragraph",
    "demographics_table",
    "largest_ratio",
    "plot_costs",
    "ranked_attributes",
    "robustness_table",
]

MISSING = "—"


def _num(value) -> float | None:
    value = json_ready(value)
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _f(value, digits: int = 3) -> str:
    value = _num(value)
    return MISSING if value is None else f"{value:.{digits}f}"


def _delta(detail: dict | None, attribute: str) -> tuple[float | None, float | None, float | None]:
    entry = ((detail or {}).get("attributes") or {}).get(attribute) or {}
    ci = entry.get("delta_auc_ci") or {}
    return _num(entry.get("delta_auc")), _num(ci.get("low")), _num(ci.get("high"))


def ranked_attributes(detail: dict | None) -> list[str]:
    """Attributes of a model's map: the tested ones (both cells meet the sample-size rule)
    most harmful (lowest delta AUC) first, then the untested ones, unmeasured last."""
    attributes = (detail or {}).get("attributes") or {}

    def key(a: str):
        value = _delta(detail, a)[0]
        return (not attributes[a].get("tested", True), value is None, value or 0.0, a)

    return sorted(attributes, key=key)


def _test_text(detail: dict | None, attribute: str) -> str:
    entry = ((detail or {}).get("attributes") or {}).get(attribute) or {}
    if not entry.get("tested"):
        return "too few" if "insufficient" in (entry.get("reason") or "") else "not measurable"
    word = ("hurts" if entry["delta_auc"] < 0 else "helps") if entry.get("discovery") else "no detection"
    return f"{word} (q {entry['q_value']:.2g})"


def _delta_text(detail: dict | None, attribute: str) -> str:
    value, low, high = _delta(detail, attribute)
    return MISSING if value is None else f"{value:+.3f} [{_f(low)}, {_f(high)}]"


def robustness_table(evaluations: Mapping[str, dict], start: str | None, orig: str | None,
                     flips: Mapping[str, dict] | None = None) -> str:  # fmt: skip
    """Ranked by the orig model's cost (the start's when there is no orig): delta AUC with
    interval for start and orig, the orig model's A/notA and notA/notA AUC and FNMR at the
    global threshold, pairs, and the attribute's label-flip share."""
    reference = evaluations.get(orig) or evaluations.get(start)
    headers = ["rank", "attribute", f"ΔAUC {start or 'start'} [CI]", f"ΔAUC {orig or 'orig'} [CI]",
               f"{orig or start} after FDR", "AUC A/notA vs notA/notA", "FNMR @ global A/notA vs notA/notA",
               "pairs gen/imp (A/notA)", "label flips"]  # fmt: skip
    rows = []
    tested = [a for a in ranked_attributes(reference) if reference["attributes"][a].get("tested", True)]
    for attribute in ranked_attributes(reference):
        rank = tested.index(attribute) + 1 if attribute in tested else MISSING  # untested: shown, not ranked
        cells = reference["attributes"][attribute]["cells"]
        cross, same = cells.get("A/notA") or {}, cells.get("notA/notA") or {}
        flip = ((flips or {}).get(attribute) or {}).get("flip_share")
        rows.append([
            str(rank), attribute,
            _delta_text(evaluations.get(start), attribute), _delta_text(evaluations.get(orig), attribute),
            _test_text(reference, attribute),
            f"{_f(cross.get('auc'))} vs {_f(same.get('auc'))}", f"{_f(cross.get('fnmr'))} vs {_f(same.get('fnmr'))}",
            "/".join(str(cross.get("n_pairs", {}).get(k, 0)) for k in ("genuine", "impostor")),
            _f(flip, 2),
        ])  # fmt: skip
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _ratio_text(entry: dict | None) -> str:
    """worse/better ratio [interval], which group is worse, and 'too few' below the rules."""
    if not entry or _num(entry.get("value")) is None:
        return MISSING
    mark = "" if entry.get("sufficient") else ", too few"
    interval = f"[{_f(entry.get('low'), 2)}, {_f(entry.get('high'), 2)}]"
    return f"{_f(entry['value'], 2)} {interval} ({entry.get('worse')} worse{mark})"


def demographics_table(evaluations: Mapping[str, dict], models: list[str]) -> str:
    """Per model and group: FNMR within the group and without it, FMR within each and
    across, and the max/min ratios with intervals (all at the model's global threshold)."""
    headers = ["model", "group G", "FNMR G / not G", "FMR within G / within not G / across",
               "FNMR max/min [CI]", "FMR max/min [CI]"]  # fmt: skip
    rows = []
    for model in models:
        for group, entry in ((evaluations[model].get("groups") or {}).items()):
            if entry.get("reason") and "fnmr" not in entry:
                rows.append([model, group, MISSING, MISSING, MISSING, entry["reason"]])
                continue
            fmr = entry["fmr"]
            rows.append([
                model, group, f"{_f(entry['fnmr']['A'], 4)} / {_f(entry['fnmr']['notA'], 4)}",
                f"{_f(fmr['A/A'], 4)} / {_f(fmr['notA/notA'], 4)} / {_f(fmr['A/notA'], 4)}",
                _ratio_text(entry["fnmr_ratio"]), _ratio_text(entry["fmr_ratio"]),
            ])  # fmt: skip
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def largest_ratio(detail: dict | None) -> tuple[float, str, str] | None:
    """(ratio, group, 'FNMR' | 'FMR') of a model's largest measurable differential."""
    found = [
        (value, group, rate)
        for group, entry in ((detail or {}).get("groups") or {}).items()
        for rate in ("FNMR", "FMR")
        for ratio in [entry.get(f"{rate.lower()}_ratio") or {}]
        for value in [_num(ratio.get("value"))]
        if value is not None and math.isfinite(value) and ratio.get("sufficient")
    ]
    return max(found) if found else None


def demographic_paragraph(evaluations: Mapping[str, dict], models: list[str]) -> str:
    """One sentence naming the largest differential over `models`, with its interval."""
    best = None
    for model in models:
        found = largest_ratio(evaluations[model])
        if found and (best is None or found[0] > best[0][0]):
            best = (found, model)
    if best is None:
        return ("No demographic differential can be told: no group and its complement both have "
                "enough errors and people at the global threshold (evaluate.min_false_matches / "
                "min_identities); the table shows the values, marked.")  # fmt: skip
    (value, group, rate), model = best
    entry = evaluations[model]["groups"][group][f"{rate.lower()}_ratio"]
    which = "genuine pairs rejected" if rate == "FNMR" else "impostor pairs accepted within a group"
    return (f"The largest demographic differential that meets the rules: {model}, {group} vs not {group}: "
            f"{rate} ({which}) is {value:.2f} times higher for {entry.get('worse')} (interval "
            f"{_f(entry.get('low'), 2)} to {_f(entry.get('high'), 2)}; below 1 the data cannot tell which "
            "group is worse) at the model's global threshold.")  # fmt: skip


def plot_costs(series: list[tuple[str, dict]], title: str, path: str | Path, order: list[str]) -> Path:
    """Horizontal bars of delta AUC per attribute (in `order`, top = first), one bar per
    (label, detail) series, error bars = the intervals; attributes no series could measure
    (no pairs across the condition, e.g. a trait that never changes within an identity) are
    named in the title instead."""
    unmeasured = [a for a in order if all(_delta(d, a)[0] is None for _, d in series)]
    order = [a for a in order if a not in unmeasured]
    if unmeasured:
        title = f"{title}\nnot measurable: {len(unmeasured)} attributes (see the table)"
    import matplotlib

    matplotlib.use("Agg")  # files only; chosen here so importing stays side-effect free
    import matplotlib.pyplot as plt
    import numpy as np

    height = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(7, 0.28 * max(len(order), 1) + 1.5))
    y = np.arange(len(order))[::-1]
    for k, (label, detail) in enumerate(series):
        values = [_delta(detail, a) for a in order]
        mid = np.array([np.nan if v is None else v for v, _, _ in values])
        low = np.array([np.nan if v is None or lo is None else v - lo for v, lo, _ in values])
        high = np.array([np.nan if v is None or hi is None else hi - v for v, _, hi in values])
        ax.barh(y + (k - (len(series) - 1) / 2) * height, mid, height, xerr=np.vstack([low, high]),
                label=label, capsize=2, error_kw={"elinewidth": 0.8})  # fmt: skip
    labels = [a if any(((d or {}).get("attributes") or {}).get(a, {}).get("tested", True) for _, d in series)
              else f"{a} (too few)" for a in order]  # fmt: skip
    ax.set_yticks(y, labels, fontsize=7)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("ΔAUC = AUC(A/notA) − AUC(notA/notA); left = the attribute hurts matching")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(True, axis="x", alpha=0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path
