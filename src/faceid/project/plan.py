"""`faceid status`: which models a params edit retrains and re-evaluates, before running it.

Each train stage depends on its run file (data/runs/<model>.json, written by the `runs`
stage) rather than on params.yaml keys, so `dvc status` after editing, say,
`train.backbone.resnet50.image_size` names only `runs`, and `dvc repro --dry` cannot see
past it either: which run files change is known only once `runs` has run. The plan
here resolves every run from params.yaml now (the `runs` stage's own function), compares
each with the hash dvc.lock recorded for that stage's run file, adds the stages DVC
itself reports changed, and follows DVC's graph downstream: what `dvc repro` would run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from faceid.config.engine import load_sections
from faceid.config.tasks import all_tasks
from faceid.config.train import TrainParams, resolve_train_params, run_record
from faceid.errors import FaceidError
from faceid.train.runs import run_path

__all__ = ["Plan", "changed_runs", "expected_runs", "make_plan", "render_plan"]

RUNS_DIR = "data/runs"


def _run_text(record: Mapping[str, Any]) -> str:
    return json.dumps(record, indent=2, sort_keys=True) + "\n"  # as faceid.common.fileio.write_json writes it


def expected_runs(params_path: str | Path, runs_dir: str = RUNS_DIR) -> dict[str, dict[str, Any]]:
    """run file path → the settings the `runs` stage would write from params.yaml now."""
    (train,) = load_sections(params_path, TrainParams)
    return {
        run_path(runs_dir, task, backbone).as_posix(): run_record(resolve_train_params(train, task, backbone))
        for backbone in train.backbones
        for task in all_tasks(train.tasks)
    }


def _lock_stages(lock_path: Path) -> dict[str, Any]:
    if not lock_path.is_file():
        return {}
    try:
        return (yaml.safe_load(lock_path.read_text()) or {}).get("stages") or {}
    except yaml.YAMLError as exc:
        raise FaceidError(f"{lock_path}: not readable YAML ({exc}); `git checkout dvc.lock` restores it") from exc


def _setting_changes(old_path: Path, new: Mapping[str, Any]) -> list[str]:
    """`key old → new` for the settings that differ from the run file on disk (if any)."""
    try:
        old = json.loads(old_path.read_text())
    except (OSError, json.JSONDecodeError):
        return []
    return [f"{k} {old.get(k)!r} → {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


def changed_runs(root: Path, params_path: Path, runs_dir: str = RUNS_DIR) -> dict[str, str]:
    """stage → why, for every stage whose run file dvc.lock recorded differs from what
    params.yaml gives now (or that dvc.lock does not hold yet)."""
    expected = expected_runs(params_path, runs_dir)
    locked = _lock_stages(root / "dvc.lock")
    reasons: dict[str, str] = {}
    for stage, entry in locked.items():
        for dep in entry.get("deps") or []:
            path = dep.get("path", "")
            if not path.startswith(f"{runs_dir}/") or path == runs_dir:
                continue
            record = expected.get(path)
            if record is None:
                reasons[stage] = f"{path}: no such run in params.yaml any more"
            elif hashlib.md5(_run_text(record).encode()).hexdigest() != dep.get("md5"):
                settings = _setting_changes(root / path, record)
                reasons[stage] = f"{path} changes" + (f": {', '.join(settings)}" if settings else "")
    locked_runs = {dep.get("path") for entry in locked.values() for dep in entry.get("deps") or []}
    for path in expected:
        if path not in locked_runs:
            reasons[f"(new) {Path(path).stem}"] = f"{path}: a new run"
    return reasons


@dataclass
class Plan:
    """Stages `dvc repro` would run, grouped for people."""

    why: dict[str, str] = field(default_factory=dict)  # stage -> reason (the roots)
    stages: list[str] = field(default_factory=list)  # every stage that would run, DAG order

    def group(self, prefixes: Iterable[str]) -> list[str]:
        return [s for s in self.stages if s.split("@", 1)[0] in set(prefixes)]


def _dvc_status(repo: Any) -> dict[str, str]:
    """stage → DVC's own reason (changed deps, params, outs), from `dvc status`."""
    reasons = {}
    for name, changes in repo.status().items():
        parts = []
        for change in changes:
            if isinstance(change, Mapping):
                for what, items in change.items():
                    keys = ", ".join(sorted(items)) if isinstance(items, Mapping) else str(items)
                    parts.append(f"{what}: {keys}")
            else:
                parts.append(str(change))
        reasons[name.split(":")[-1]] = "; ".join(parts) or "changed"
    return reasons


def make_plan(root: str | Path = ".", params_path: str | Path = "params.yaml") -> Plan:
    """What `dvc repro` would run in the repository at `root` now, run files included."""
    import networkx as nx
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    root = Path(root)
    try:
        with Repo(str(root)) as repo:
            why = _dvc_status(repo)
            why.update(changed_runs(root, root / params_path))
            graph = repo.index.graph
            by_name = {stage.addressing: stage for stage in graph.nodes}
            run = set()
            for name in why:
                if name in by_name:
                    run |= {by_name[name], *nx.ancestors(graph, by_name[name])}  # edges point to dependencies
            order = [s.addressing for s in reversed(list(nx.topological_sort(graph))) if s in run]
    except DvcException as exc:
        raise FaceidError(f"{root}: DVC could not read the pipeline ({exc})") from exc
    return Plan(why={k: v for k, v in why.items() if k in order or k.startswith("(new)")}, stages=order)


def _model(stage: str) -> str:
    """train-orig@resnet50 → orig-resnet50, evaluate-base@resnet50 → base-resnet50, train@X → X."""
    group, _, item = stage.partition("@")
    prefix = {"train-orig": "orig-", "evaluate-orig": "orig-", "evaluate-base": "base-"}.get(group, "")
    return prefix + item


def render_plan(plan: Plan, verbose: bool = False) -> str:
    if not plan.stages:
        return "up to date: `dvc repro` would run nothing\n"
    train = plan.group(("train", "train-orig"))
    evaluate = plan.group(("evaluate", "evaluate-orig", "evaluate-base"))
    rest = [s for s in plan.stages if s not in train and s not in evaluate]
    lines = [f"`dvc repro` would run {len(plan.stages)} stages:"]
    if train:
        lines.append(f"  retrain ({len(train)}): {', '.join(map(_model, train))}")
    if evaluate:
        lines.append(f"  re-evaluate ({len(evaluate)}): {', '.join(map(_model, evaluate))}")
    if rest:
        lines.append(f"  other ({len(rest)}): {', '.join(rest)}")
    lines.append("because:")
    roots = plan.why if verbose else dict(list(plan.why.items())[:8])
    lines += [f"  {stage}: {reason}" for stage, reason in roots.items()]
    if len(plan.why) > len(roots):
        lines.append(f"  … and {len(plan.why) - len(roots)} more (--verbose)")
    return "\n".join(lines) + "\n"
