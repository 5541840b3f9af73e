"""Detailed evaluations of the current models → summary.json, report.md, plot data, figures.

Input everywhere: `{model_name: detail}`, each detail as made by
`faceid.evaluate.evaluation.evaluate_embeddings` with its `model` metadata (backbone, task, init,
start). Names come from `faceid.project.naming`: a backbone's starting point is
`pretrained-<backbone>` or `untrained-<backbone>`; a trained model `<task>-<backbone>`
(`orig-<backbone>` for the model trained on the whole training partition).

- summary.json (level 1, docs/evaluation.md): per backbone the start and orig AUC, orig
  TAR at the global FMR and top-1; per attribute task the cross-condition (A/notA) AUC
  after fine-tuning and its change from the model it was fine-tuned from; their mean.
- report.md: "What this run shows" (sentences computed from the numbers), then the
  study's three tables (threshold accuracy per attribute; fine-tuning AUC on filtered,
  cross-condition and original pairs; top-k per model).
- plot data for `dvc plots show` (ROC per task, CMC) and roc_<task>.png beside report.md.

One module per part: `inputs` (reading the evaluations), `lookup` (which model plays
which part, cell lookups), `summary`, `tables`, `narrative` ("What this run shows"),
`markdown` (report.md), `plots`; public names are importable from `faceid.report`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from faceid.common.fileio import atomic_write
from faceid.report.inputs import load_evaluations, stale_evaluations
from faceid.report.lookup import MISSING, ORIGINAL, ReportError, Roles, roles
from faceid.report.markdown import render_appendix, render_report
from faceid.report.narrative import Context, findings
from faceid.report.plots import figure_plan, plot_attribute_roc, plot_data, plot_det, render_figure
from faceid.report.summary import summarize, summary_size
from faceid.report.tables import (
    accuracy_table,
    finetune_table,
    identification_table,
    markdown_table,
    study_table,
)

__all__ = [
    "MISSING",
    "ORIGINAL",
    "Context",
    "FigureJob",
    "ReportError",
    "Roles",
    "accuracy_table",
    "findings",
    "finetune_table",
    "identification_table",
    "load_evaluations",
    "markdown_table",
    "plot_attribute_roc",
    "plot_data",
    "plot_det",
    "render_appendix",
    "render_figures",
    "render_report",
    "roles",
    "stale_evaluations",
    "study_table",
    "summarize",
    "summary_size",
    "write_report",
]


def _write_json(path: Path, content) -> Path:
    # indent 1 and key order as built (not fileio.write_json's indent 2, sorted): the
    # tracked summary and plot files keep their bytes
    text = json.dumps(content, indent=1, allow_nan=False) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def render_figures(evaluations: Mapping[str, dict], folder: str | Path, original_task: str = ORIGINAL) -> list[Path]:
    """roc_<task>.png and det_<task>.png per task, and the robustness maps, into `folder`."""
    return [path for _, path in _render_share(evaluations, Path(folder), original_task, 0, 1)]


def _render_share(evaluations: Mapping[str, dict], folder: Path, original_task: str, k: int, n: int
                  ) -> list[tuple[int, Path]]:  # fmt: skip
    """(position in `figure_plan`, path) of the k-th of every n figures, drawn."""
    if not evaluations:
        raise ReportError("no evaluations to report; run the evaluate stages first")
    folder.mkdir(parents=True, exist_ok=True)
    plan = list(enumerate(figure_plan(evaluations, original_task)))[k::n]
    drawn = ((i, render_figure(evaluations, folder, original_task, kind, key)) for i, (kind, key) in plan)
    return [(i, path) for i, path in drawn if path is not None]


class FigureJob:
    """The report's figures drawn in `processes` forked processes while the caller goes on
    (summarize's paired comparisons): they need only the evaluations, and on 2 cores their
    ~8 s of matplotlib would otherwise run after the comparisons. `processes` 0: in the
    calling process, when `result()` is called. The same files either way, in the same order."""

    def __init__(self, evaluations: Mapping[str, dict], folder: str | Path, original_task: str, processes: int):
        self._args = (evaluations, Path(folder), original_task)
        self._pool = None
        self._futures = []
        if processes > 0:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # fork: the children inherit the evaluations instead of unpickling them; they
            # run matplotlib only (no torch, no threads to break)
            self._pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork"))
            self._futures = [self._pool.submit(_render_share, *self._args, k, processes) for k in range(processes)]

    def result(self) -> list[Path]:
        """The figures' paths in `figure_plan`'s order, once written; a failure in a child
        is raised here."""
        if not self._futures:
            return render_figures(*self._args)
        try:
            drawn = [item for future in self._futures for item in future.result()]
        finally:
            self.close()
        return [path for _, path in sorted(drawn)]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def write_report(
    evaluations: Mapping[str, dict],
    summary_path: str | Path,
    report_path: str | Path,
    plots_dir: str | Path,
    original_task: str = ORIGINAL,
    flips: Mapping[str, dict] | None = None,
    context: Context | None = None,
    figures: list[Path] | None = None,
) -> list[Path]:
    """Write summary.json, report.md and report_appendix.md with the figures beside them
    (roc_<task>.png, det_<task>.png; with a robustness map map_<backbone>.png and
    finetune_map_<task>.png), and the plot data under `plots_dir`; return the paths
    written. `flips`: label-flip shares per attribute (metrics/pairs_detail.json), shown
    beside the map; `context`: the data facts and paired comparisons the first screen states;
    `figures`: the figures, already rendered into report.md's folder (`render_figures`,
    `FigureJob`), or None to render them here."""
    if not evaluations:
        raise ReportError("no evaluations to report; run the evaluate stages first")
    context = context or Context()
    report_path = Path(report_path)
    if figures is None:
        figures = render_figures(evaluations, report_path.parent, original_task)
    text = render_report(evaluations, figures, original_task, flips, context)
    atomic_write(report_path, lambda tmp: tmp.write_text(text))
    appendix = report_path.with_name("report_appendix.md")
    appendix_text = render_appendix(evaluations, original_task)
    atomic_write(appendix, lambda tmp: tmp.write_text(appendix_text))
    summary = summarize(evaluations, context.comparisons, original_task)
    plots = [_write_json(Path(plots_dir) / rel, data) for rel, data in plot_data(evaluations, original_task).items()]
    return [_write_json(Path(summary_path), summary), report_path, appendix, *figures, *plots]
