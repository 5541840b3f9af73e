"""`faceid experiments`: DVC's experiments as one compact table.

`dvc exp show` prints one column per param, metric key, dependency and output (306 on
the default pipeline), so no terminal shows it. This reads `dvc exp show --json` and
keeps what a comparison needs: one row per workspace, commit and experiment; a column
per param whose value differs between the rows; and a few headline numbers of
metrics/summary.json (by default the keys matching HEADLINE_PATTERNS: each backbone's
orig AUC, TAR at the global FMR and mean fine-tuning delta), in at most `width`
characters, as text, Markdown or CSV.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import math
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from faceid.errors import FaceidError

__all__ = [
    "HEADLINE_PATTERNS",
    "SUMMARY",
    "Experiment",
    "ExperimentTable",
    "build_table",
    "flatten",
    "load_experiments",
    "parse_experiments",
    "read_exp_show",
    "render_csv",
    "render_markdown",
    "render_text",
]

SUMMARY = "metrics/summary.json"
# the headline keys of metrics/summary.json, matched against the flattened key's last
# part (`resnet50.orig_auc` → `orig_auc`), in this order (`*orig_fnmr*`: the orig
# model's FNMR at its operating point); the keys are another stage's
# to choose, so a pattern that matches nothing is skipped and, when none matches, the
# first numeric keys are taken
HEADLINE_PATTERNS = ("*orig_auc*", "*orig_fnmr*", "*mean_delta*")
MAX_PARAM_COLUMNS = 8


@dataclass(frozen=True)
class Experiment:
    """One row: the workspace, a commit (`baseline`) or an experiment on a commit."""

    label: str  # workspace | branch name or short sha | experiment name
    rev: str
    kind: str  # workspace | baseline | experiment
    params: dict[str, Any]  # dotted key -> value (params.yaml)
    metrics: dict[str, Any]  # dotted key -> value (SUMMARY)


@dataclass(frozen=True)
class ExperimentTable:
    rows: list[Experiment]
    params: list[str]  # dotted keys that differ between rows
    metrics: list[str]  # dotted keys shown


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} → {"a.b": 1}; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _file_data(data: Mapping[str, Any] | None, section: str, path: str) -> dict[str, Any]:
    files = (data or {}).get(section) or {}
    return flatten((files.get(path) or {}).get("data") or {})


def _row(entry: Mapping[str, Any], kind: str, params_file: str, summary: str) -> Experiment:
    rev = entry.get("rev") or ""
    if kind == "workspace":
        label = "workspace"
    elif kind == "baseline":
        label = entry.get("name") or rev[:7]
    else:
        label = f"  {entry.get('name') or rev[:7]}"
    data = entry.get("data") or {}
    return Experiment(label, rev, kind, _file_data(data, "params", params_file), _file_data(data, "metrics", summary))


def parse_experiments(
    shown: Sequence[Mapping[str, Any]], params_file: str = "params.yaml", summary: str = SUMMARY
) -> list[Experiment]:
    """The rows of `dvc exp show --json`: workspace, then each commit and its experiments."""
    rows = []
    for entry in shown:
        kind = "workspace" if entry.get("rev") == "workspace" else "baseline"
        rows.append(_row(entry, kind, params_file, summary))
        for group in entry.get("experiments") or []:
            rows += [_row(rev, "experiment", params_file, summary) for rev in group.get("revs") or []]
    return rows


def read_exp_show(extra_args: Sequence[str] = (), cwd: str | None = None) -> list[dict[str, Any]]:
    """`dvc exp show --json` of the repository at `cwd`, parsed."""
    command = [sys.executable, "-m", "dvc", "exp", "show", "--json", *extra_args]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise FaceidError(
            f"`dvc exp show --json` failed: {reason}; run it in the project's folder (a git and DVC repository)"
        )
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise FaceidError(f"`dvc exp show --json` printed no JSON ({exc}): {done.stdout[:200]!r}") from exc


def load_experiments(source: str | None = None, extra_args: Sequence[str] = ()) -> list[dict[str, Any]]:
    """`dvc exp show --json`, run here, or read from `source` (a file it wrote earlier)."""
    if source is None:
        return read_exp_show(extra_args)
    try:
        with open(source, encoding="utf8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise FaceidError(f"{source}: not the JSON of `dvc exp show --json` ({exc})") from exc


def _differing(rows: Sequence[Experiment]) -> list[str]:
    keys = list(dict.fromkeys(key for row in rows for key in row.params))
    return [key for key in keys if len({json.dumps(row.params.get(key), sort_keys=True) for row in rows}) > 1]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def headline_keys(
    rows: Sequence[Experiment], patterns: Iterable[str] = HEADLINE_PATTERNS, fallback: int = 6
) -> list[str]:
    """The numeric metric keys matching `patterns` (per pattern, in the summary's order);
    the first `fallback` numeric keys when no pattern matches."""
    numeric = list(dict.fromkeys(k for row in rows for k, v in row.metrics.items() if _is_number(v)))
    chosen: list[str] = []
    for pattern in patterns:
        chosen += [k for k in numeric if k not in chosen and fnmatch.fnmatchcase(k.rsplit(".", 1)[-1], pattern)]
    return chosen or numeric[:fallback]


def build_table(rows: list[Experiment], patterns: Iterable[str] = HEADLINE_PATTERNS) -> ExperimentTable:
    return ExperimentTable(rows, _differing(rows), headline_keys(rows, patterns))


# --------------------------------------------------------------------------- rendering


def _abbreviate(part: str) -> str:
    """Short column names; the legend under the table spells them out:
    `inception_resnet_v1` → `irv1`, `resnet50` → `r50`, `orig_auc` → `auc` (the orig
    model's is the headline), `orig_tar_at_far_1e-3` → `tar@1e-3`."""
    part = part.replace("_at_far_", "@").replace("_at_fmr_", "@")
    part = part.removeprefix("orig_") if part.startswith("orig_") and len(part) > 5 else part
    words = part.split("_")
    if len(words) > 2 and len(part) > 12:
        return "".join(w if any(c.isdigit() for c in w) else w[0] for w in words)
    letters = part.rstrip("0123456789")
    if len(words) == 1 and len(letters) > 4 and letters != part and letters.isalpha():
        return part[0] + part[len(letters):]
    return part


def short_names(keys: Sequence[str]) -> dict[str, str]:
    """The shortest dotted suffix naming each key uniquely, abbreviated."""
    names = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            suffix = parts[-n:]
            if sum(1 for other in keys if other.split(".")[-n:] == suffix) == 1:
                break
        names[key] = ".".join(_abbreviate(p) for p in suffix)
    return names


def _cell(value: Any, metric: bool) -> str:
    if value is None:
        return "-"
    if metric and _is_number(value):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _columns(table: ExperimentTable) -> list[tuple[str, str, bool]]:
    """(key, header, is_metric) of every column after the label."""
    params, metrics = short_names(table.params), short_names(table.metrics)
    return [(k, params[k], False) for k in table.params] + [(k, metrics[k], True) for k in table.metrics]


def _grid(table: ExperimentTable, columns: Sequence[tuple[str, str, bool]]) -> list[list[str]]:
    header = ["experiment", *(name for _, name, _ in columns)]
    body = [
        [row.label, *(_cell((row.metrics if metric else row.params).get(key), metric) for key, _, metric in columns)]
        for row in table.rows
    ]
    return [header, *body]


def _fit(table: ExperimentTable, width: int) -> tuple[list[tuple[str, str, bool]], list[str]]:
    """The columns that fit `width` (params first, up to MAX_PARAM_COLUMNS), and the keys left out."""
    columns, left_out = [], []
    for key, name, metric in _columns(table):
        trial = [*columns, (key, name, metric)]
        too_many_params = not metric and sum(1 for c in columns if not c[2]) >= MAX_PARAM_COLUMNS
        if too_many_params or _width(_grid(table, trial)) > width:
            left_out.append(key)
        else:
            columns = trial
    return columns, left_out


def _width(grid: list[list[str]]) -> int:
    widths = [max(len(r[i]) for r in grid) for i in range(len(grid[0]))]
    return sum(widths) + 2 * (len(widths) - 1)


def _legend(columns: Sequence[tuple[str, str, bool]], left_out: Sequence[str], width: int) -> list[str]:
    lines, line = [], ""
    for key, name, metric in columns:
        item = f"{name} = {'' if metric else 'param '}{key}" if name != key else ""
        if not item:
            continue
        if line and len(line) + 2 + len(item) > width:
            lines.append(line)
            line = ""
        line = f"{line}; {item}" if line else item
    if line:
        lines.append(line)
    if left_out:
        note = f"not shown ({len(left_out)}, too wide): {', '.join(left_out)}"
        lines.append(note if len(note) <= width else note[: width - 40].rsplit(",", 1)[0] + ", … (--csv lists all)")
    return lines


def render_text(table: ExperimentTable, width: int = 120) -> str:
    """An aligned table of at most `width` characters, then a legend of the short names."""
    if not table.rows:
        return "no experiments: `dvc exp show` found no workspace or commit"
    columns, left_out = _fit(table, width)
    grid = _grid(table, columns)
    widths = [max(len(r[i]) for r in grid) for i in range(len(grid[0]))]
    lines = []
    for row in grid:
        cells = [c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
    if not table.params:
        lines.append("(no param differs between these rows)")
    return "\n".join(lines + _legend(columns, left_out, width)) + "\n"


def render_markdown(table: ExperimentTable, width: int = 120) -> str:
    """The same columns as text, as a Markdown table (for reports and pull requests)."""
    columns, left_out = _fit(table, width)
    grid = _grid(table, columns)
    lines = ["| " + " | ".join(grid[0]) + " |", "|" + "|".join(["---"] + ["---:"] * (len(grid[0]) - 1)) + "|"]
    lines += ["| " + " | ".join(c.strip() for c in row) + " |" for row in grid[1:]]
    legend = _legend(columns, left_out, width)
    return "\n".join(lines) + ("\n\n" + "  \n".join(legend) if legend else "") + "\n"


def render_csv(table: ExperimentTable) -> str:
    """Every differing param and every headline metric, full key names, full precision."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["experiment", "rev", "kind", *table.params, *table.metrics])
    for row in table.rows:
        params = [_cell(row.params.get(k), False) if row.params.get(k) is not None else "" for k in table.params]
        metrics = [row.metrics.get(k, "") if row.metrics.get(k) is not None else "" for k in table.metrics]
        writer.writerow([row.label.strip(), row.rev, row.kind, *params, *metrics])
    return out.getvalue()
