"""CI check of a finished default `dvc repro`: every promised output exists and is sane.

metrics/summary.json must hold, for every task x backbone (and each backbone's starting
point), an AUC within [0, 1] on the orig pairs and on the task's own pairs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml


def main() -> int:
    problems: list[str] = []
    params = yaml.safe_load(Path("params.yaml").read_text())
    tasks = params["pairs"]["tasks"]
    backbones = params["train"]["backbones"]
    summary = json.loads(Path("metrics/summary.json").read_text())
    for backbone in backbones:
        starts = [m for m in (f"untrained-{backbone}", f"pretrained-{backbone}") if f"{m}.orig.all.auc" in summary]
        models = [*starts, *(f"{task}-{backbone}" for task in tasks)]
        if not starts:
            problems.append(f"no starting-point evaluation of {backbone}")
        for model in models:
            for task in tasks:
                key = f"{model}.{task}.{'all' if task == 'orig' else 'pooled'}.auc"
                value = summary.get(key)
                if value is None or not 0.0 <= value <= 1.0:
                    problems.append(f"metrics/summary.json: {key} = {value!r}, expected an AUC in [0, 1]")
    for path in ("metrics/report/report.md", "metrics/dataset.json", "metrics/crop.json", "metrics/pairs.json"):
        if not Path(path).exists():
            problems.append(f"{path} missing")
    for problem in problems:
        print("FAIL", problem)
    if not problems:
        print(f"outputs OK: {len(backbones)} backbones x {len(tasks)} tasks, every AUC in [0, 1]")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
