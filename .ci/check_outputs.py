"""CI check of a finished default `dvc repro`: the promised outputs exist and the models work.

Per backbone (params train.backbones), from the level-2 files metrics/eval/<model>.json:
- every AUC lies in [0, 1];
- the orig model's test AUC >= 0.92, its bootstrap interval entirely above its start
  model's (base-<backbone>), and its top-1 >= the start's + 0.10;
- no trained model is collapsed: median impostor cosine in [-0.2, 0.4] and the global
  threshold (at evaluate.global_fmr) < 0.95.
And: metrics/summary.json has at most 40 values; the report opens with "What this run shows";
every evaluated model's embeddings (data/embeddings/<model>.npz, a DVC output, not in git)
exist, so metrics committed to git cannot pass for a run that did not happen.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml


def _leaves(value) -> int:
    return sum(_leaves(v) for v in value.values()) if isinstance(value, dict) else 1


def check_backbone(backbone: str, tasks: list[str], problems: list[str]) -> str:
    def load(name: str) -> dict:
        path = Path(f"metrics/eval/{name}.json")
        if not path.exists():
            problems.append(f"{path} missing")
            return {}
        embeddings = Path(f"data/embeddings/{name}.npz")
        if not embeddings.exists():
            problems.append(f"{embeddings} missing: did dvc repro run in this clone?")
        return json.loads(path.read_text())

    start, orig = load(f"base-{backbone}"), load(f"orig-{backbone}")
    trained = {f"orig-{backbone}": orig, **{f"{t}-{backbone}": load(f"{t}-{backbone}") for t in tasks if t != "orig"}}
    for name, values in {f"base-{backbone}": start, **trained}.items():
        auc = values.get("auc")
        if auc is None or not 0.0 <= auc <= 1.0:
            problems.append(f"{name}: auc = {auc!r}, expected an AUC in [0, 1]")
    if not (start and orig):
        return ""
    if orig["auc"] < 0.92:
        problems.append(f"orig-{backbone}: test AUC {orig['auc']:.4f} < 0.92")
    if not orig["auc_lo"] > start["auc_hi"]:
        problems.append(f"orig-{backbone}: AUC interval [{orig['auc_lo']:.4f}, {orig['auc_hi']:.4f}] overlaps the start's [{start['auc_lo']:.4f}, {start['auc_hi']:.4f}]")
    if orig["top1"] < start["top1"] + 0.10:
        problems.append(f"orig-{backbone}: top-1 {orig['top1']:.3f} < start {start['top1']:.3f} + 0.10")
    for name, values in trained.items():
        if values and not -0.2 <= values["imp_median"] <= 0.4:
            problems.append(f"{name}: median impostor cosine {values['imp_median']:.4f} outside [-0.2, 0.4] (collapsed?)")
        if values and not values["threshold"] < 0.95:
            problems.append(f"{name}: global threshold {values['threshold']:.4f} >= 0.95 (collapsed?)")
    return (
        f"{backbone}: start AUC {start['auc']:.4f} [{start['auc_lo']:.4f}, {start['auc_hi']:.4f}] top-1 {start['top1']:.3f}; "
        f"orig AUC {orig['auc']:.4f} [{orig['auc_lo']:.4f}, {orig['auc_hi']:.4f}] top-1 {orig['top1']:.3f}, "
        f"impostor median {orig['imp_median']:.4f}, threshold {orig['threshold']:.4f}"
    )


def main() -> int:
    problems: list[str] = []
    params = yaml.safe_load(Path("params.yaml").read_text())
    tasks, backbones = ["orig", *params["train"]["tasks"]], params["train"]["backbones"]
    lines = [check_backbone(backbone, tasks, problems) for backbone in backbones]
    summary = json.loads(Path("metrics/summary.json").read_text())
    if _leaves(summary) > 40:
        problems.append(f"metrics/summary.json: {_leaves(summary)} values, expected <= 40")
    report = Path("metrics/report/report.md")
    if not report.exists() or "What this run shows" not in report.read_text():
        problems.append(f"{report}: missing, or without its 'What this run shows' section")
    for path in ("metrics/dataset.json", "metrics/crop.json", "metrics/pairs.json"):
        if not Path(path).exists():
            problems.append(f"{path} missing")
    for line in lines:
        print(line)
    for problem in problems:
        print("FAIL", problem)
    if not problems:
        print(f"outputs OK: {len(backbones)} backbones x {len(tasks)} tasks")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
