"""report.md's number formatting and its three tables (accuracy, fine-tuning, identification)."""

from __future__ import annotations

from collections.abc import Mapping

from faceid.evaluate.evaluation import CROSS_CONDITION
from faceid.report.lookup import MISSING, ORIGINAL, _auc, _cell, _ci, _number, roles


def _fmt(value, digits: int = 3) -> str:
    value = _number(value)
    if value is None:
        return MISSING
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def _threshold(value) -> str:
    """Thresholds get 4 decimals: 0.9995 and 0.9999 are different operating points."""
    return _fmt(value, 4)


def _auc_ci(cell: dict | None) -> str:
    if cell is None:
        return MISSING
    low, high = _ci(cell)
    return f"{_fmt(cell['auc'])} [{_fmt(low)}, {_fmt(high)}]"


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def accuracy_table(evaluations: Mapping[str, dict], original_task: str = ORIGINAL) -> str:
    """Table 1: per model, task and condition, the study's threshold accuracy (with the
    false-accept rate at the same threshold), TAR@FAR (with its threshold), AUC with its
    interval, EER, FNMR/FMR at the global threshold, detection failures and counts.

    Starting points and orig models get a row per task; a fine-tuned model only its own
    task (its other tasks are in its detail file), which keeps the table readable.
    """
    any_cell = next(c for ev in evaluations.values() for cells in ev["tasks"].values() for c in cells.values())
    thresholds = [row["threshold"] for row in any_cell["threshold_accuracy"]]
    fars = [point["far"] for point in any_cell["tar_at_far"]]
    headers = ["model", "task", "condition"]
    headers += [f"acc > {_threshold(t)} (FAR)" for t in thresholds] + [f"TAR@FAR {f:g} (threshold)" for f in fars]
    headers += ["AUC [95% CI]", "EER", "FNMR / FMR @ global", "detect. fail", "pairs gen/imp (ids)"]
    rows = []
    for model, ev in evaluations.items():
        own_task = ev["model"].get("task")
        for task, cells in ev["tasks"].items():
            if own_task not in (None, original_task) and task != own_task:
                continue
            for condition, cell in cells.items():
                row = [model, task, condition]
                row += [f"{_fmt(r['accuracy'])} ({_fmt(r['far'])})" for r in cell["threshold_accuracy"]]
                row += [f"{_fmt(p['tar'])} ({_threshold(p['threshold'])})" for p in cell["tar_at_far"]]
                at = cell["at_global_threshold"]
                row += [
                    _auc_ci(cell),
                    _fmt(cell["eer"]),
                    f"{_fmt(at['fnmr'])} / {_fmt(at['fmr'])}",
                    _fmt(cell["detection"]["failure_rate"]),
                    f"{cell['n_pairs']['genuine']}/{cell['n_pairs']['impostor']} ({cell['n_identities']['all']})",
                ]
                rows.append(row)
    return markdown_table(headers, rows)


def study_table(evaluations: Mapping[str, dict], original_task: str = ORIGINAL) -> str:
    """The study's table 1, compact: per attribute task, each starting point's and orig
    model's cross-condition (A/notA) cell: threshold accuracy with the false-accept rate at
    the same threshold, AUC with its interval, pairs and people, and whether the cell meets
    the sample-size rule (every cell of every model is in report_appendix.md)."""
    found = roles(evaluations, original_task)
    models = [m for b in found.backbones for m in (found.start.get(b), found.orig.get(b)) if m]
    any_cell = next(c for ev in evaluations.values() for cells in ev["tasks"].values() for c in cells.values())
    thresholds = [row["threshold"] for row in any_cell["threshold_accuracy"]]
    headers = ["task (A/notA)", "model", *[f"acc > {t:g} (FAR)" for t in thresholds], "AUC [95% CI]",
               "pairs gen/imp (people)", "rule"]  # fmt: skip
    rows = []
    for task in found.tasks:
        for model in models:
            cell = _cell(evaluations, model, task, CROSS_CONDITION)
            if cell is None:
                continue
            support = cell.get("support") or {}
            rows.append([
                task, model, *[f"{_fmt(r['accuracy'])} ({_fmt(r['far'])})" for r in cell["threshold_accuracy"]],
                _auc_ci(cell), f"{cell['n_pairs']['genuine']}/{cell['n_pairs']['impostor']} "
                f"({cell['n_identities']['genuine']})", "ok" if support.get("sufficient") else "too few",
            ])  # fmt: skip
    return markdown_table(headers, rows)


def finetune_table(evaluations: Mapping[str, dict], comparisons: Mapping[str, dict],
                   original_task: str = ORIGINAL) -> str:  # fmt: skip
    """Table 2: per attribute task and backbone, the fine-tune paired against the model
    it started from: AUC after, the paired change on the task's A/notA pairs and on the
    original pairs (verdicts as in the first screen), and FNMR at the operating point
    before → after (non-regression at a fixed FMR)."""
    from faceid.report.comparisons import describe

    found = roles(evaluations, original_task)
    headers = ["task", "backbone", "start", "A/notA AUC after", "A/notA: paired change", "original: paired change",
               "FNMR @ operating point, start → after"]  # fmt: skip
    rows = []
    for (task, backbone), model in sorted(found.tuned.items()):
        entry = comparisons.get(model) or {}
        start = entry.get("start") or found.init.get(model)
        fnmr = [(evaluations.get(m) or {}).get("global_threshold", {}).get("fnmr") for m in (start, model)]
        rows.append([
            task, backbone, start or MISSING, _fmt(_auc(evaluations, model, task, CROSS_CONDITION)),
            describe(entry.get("attribute")), describe(entry.get("original")), " → ".join(_fmt(v) for v in fnmr),
        ])  # fmt: skip
    return markdown_table(headers, rows)


def identification_table(evaluations: Mapping[str, dict]) -> str:
    """Table 3: closed-set top-k per model, with gallery size and probe counts."""
    idents = {m: ev["identification"] for m, ev in evaluations.items() if ev.get("identification")}
    if not idents:
        return "_no identification results_"
    ks = list(next(iter(idents.values()))["top_k"])
    headers = ["model", "score", "gallery", "probes (people)", "excluded (single image)",
               *[k.replace("top", "top-") + " [95% CI]" for k in ks]]  # fmt: skip

    def top(i: dict, k: str) -> str:
        ci = (i.get("top_k_ci") or {}).get(k) or {}
        return f"{_fmt(i['top_k'][k])} [{_fmt(ci.get('low'))}, {_fmt(ci.get('high'))}]"

    rows = [
        [
            m, i["score"], str(i["gallery_size"]), f"{i['n_probes']} ({i.get('n_probe_identities', MISSING)})",
            str(i["n_excluded_single_image"]), *[top(i, k) for k in ks],
        ]
        for m, i in idents.items()
    ]  # fmt: skip
    return markdown_table(headers, rows)
