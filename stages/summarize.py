"""summarize stage: every metrics/eval/<model>.json → metrics/summary.json, metrics/report.md, ROC figures."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from faceid.errors import run_cli
from faceid.report import write_report


def load_evaluations(folder: Path) -> dict[str, dict]:
    """Evaluations by model name; a backbone's starting point (base-<backbone>.json) is
    named by what it is: pretrained-<backbone> or untrained-<backbone>."""
    evaluations = {}
    for path in sorted(Path(folder).glob("*.json")):
        evaluation = json.loads(path.read_text())
        name = path.stem
        start = (evaluation.get("model") or {}).get("start")
        if name.startswith("base-") and start:
            name = f"{start}-{name[len('base-'):]}"
        evaluations[name] = evaluation
    return evaluations


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--evaluations", default="metrics/eval", type=Path)
    parser.add_argument("--summary", default="metrics/summary.json", type=Path)
    parser.add_argument("--report", default="metrics/report/report.md", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    evaluations = load_evaluations(args.evaluations)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    written = write_report(evaluations, args.summary, args.report)
    logging.getLogger("summarize").info("%d models → %s", len(evaluations), ", ".join(map(str, written[:2])))
    return written


if __name__ == "__main__":
    run_cli(main)
