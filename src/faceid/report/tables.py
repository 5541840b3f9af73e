"""report.md's number formatting and its three tables (accuracy, fine-tuning, identification)."""

from __future__ import annotations

from collections.abc import Mapping

from faceid.evaluate import CROSS_CONDITION
from faceid.report.lookup import MISSING, ORIGINAL, _auc, _cell, _ci, _delta, _number, roles


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


def _before_after(evaluations, before, after, task, condition=None) -> str:
    b, a = _auc(evaluations, before, task, condition), _auc(evaluations, after, task, condition)
    d = _delta(b, a)
    return f"{_fmt(b)} → {_fmt(a)} ({MISSING if d is None else f'{d:+.3f}'})"


def finetune_table(evaluations: Mapping[str, dict], original_task: str = ORIGINAL) -> str:
    """Table 2: per attribute task and backbone, AUC before (the model it was fine-tuned
    from, and the backbone's starting point) and after fine-tuning on the task: on the
    task's pooled pairs, its cross-condition (A/notA) pairs and the original pairs; and
    FNMR on the original pairs at the global fixed-FMR threshold (non-regression)."""
    found = roles(evaluations, original_task)
    headers = ["task", "backbone", "before", "AUC filtered before → after (Δ)", "AUC A/notA before → after (Δ)",
               "AUC original before → after (Δ)", "FNMR @ global FMR, original before → after",
               "AUC filtered, start"]  # fmt: skip
    rows = []
    for (task, backbone), model in sorted(found.tuned.items()):
        before = found.init.get(model)
        fnmr = [_cell(evaluations, m, original_task) for m in (before, model)]
        rows.append([
            task, backbone, before or MISSING,
            _before_after(evaluations, before, model, task),
            _before_after(evaluations, before, model, task, CROSS_CONDITION),
            _before_after(evaluations, before, model, original_task),
            " → ".join(MISSING if c is None else _fmt(c["at_global_threshold"]["fnmr"]) for c in fnmr),
            _fmt(_auc(evaluations, found.start.get(backbone), task)),
        ])  # fmt: skip
    return markdown_table(headers, rows)


def identification_table(evaluations: Mapping[str, dict]) -> str:
    """Table 3: closed-set top-k per model, with gallery size and probe counts."""
    idents = {m: ev["identification"] for m, ev in evaluations.items() if ev.get("identification")}
    if not idents:
        return "_no identification results_"
    ks = list(next(iter(idents.values()))["top_k"])
    headers = ["model", "score", "gallery", "probes", "excluded (single image)", *[k.replace("top", "top-") for k in ks]]
    rows = [
        [
            m, i["score"], str(i["gallery_size"]), str(i["n_probes"]),
            str(i["n_excluded_single_image"]), *[_fmt(i["top_k"][k]) for k in ks],
        ]
        for m, i in idents.items()
    ]  # fmt: skip
    return markdown_table(headers, rows)
