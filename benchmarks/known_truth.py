"""The known-truth check: on the embedded dataset the renderer knows which attributes have
no pixels behind them (faceid.data.synthetic.people.LABEL_NOISE, drawn per photo independently
of everything), so an honest robustness map flags them at most at its false-discovery
rate; rendered harmful ones (glasses, blur) should be found.

Reads the current run's evaluations (metrics/detail/<model>.json for the models params.yaml
names) and prints, over their maps: the null attributes tested and flagged (false
discoveries), all discoveries, the false-discovery proportion, and the power on the
rendered harmful attributes. `--check` exits 1 when the nulls are flagged more often than
the FDR allows (more than q x discoveries, plus one for chance) — CI runs it after the
default `dvc repro`. Real data has no known truth: the script says so and exits 0.

    python benchmarks/known_truth.py [--check] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import yaml

from faceid.config.tasks import all_tasks
from faceid.data.synthetic.people import LABEL_NOISE
from faceid.project.naming import evaluation_stems

HARMFUL = ("Eyeglasses", "Blurry")  # rendered, and they hide or smear the face


def _excludes_zero(entry: dict) -> bool:
    """The attribute's own 95% interval excludes 0 (before any correction for many tests)."""
    ci = entry.get("delta_auc_ci") or {}
    return ci.get("low") is not None and (ci["low"] > 0 or ci["high"] < 0)


def tally(details: dict[str, dict], nulls=LABEL_NOISE, harmful=HARMFUL) -> dict:
    """Counts over every model's map: null tests and false discoveries, all discoveries,
    harmful tests and detections (a detection: discovered with ΔAUC < 0)."""
    out = {"models": 0, "null_tests": 0, "false_discoveries": 0, "discoveries": 0, "harmful_tests": 0,
           "harmful_detected": 0, "flagged_nulls": [], "null_nominal": 0, "harmful_nominal": 0}  # fmt: skip
    for name, detail in details.items():
        attributes, tests = detail.get("attributes") or {}, detail.get("attribute_tests")
        if not tests:
            continue
        out["models"] += 1
        out["discoveries"] += len(tests["hurt"]) + len(tests["helped"])
        for attribute in nulls:
            entry = attributes.get(attribute) or {}
            if entry.get("tested"):
                out["null_tests"] += 1
                out["null_nominal"] += int(_excludes_zero(entry))
                if entry.get("discovery"):
                    out["false_discoveries"] += 1
                    out["flagged_nulls"].append(f"{name}:{attribute}")
        for attribute in harmful:
            entry = attributes.get(attribute) or {}
            if entry.get("tested"):
                out["harmful_tests"] += 1
                out["harmful_detected"] += int(bool(entry.get("discovery")) and entry["delta_auc"] < 0)
                out["harmful_nominal"] += int(_excludes_zero(entry) and entry["delta_auc"] < 0)
    out["fdp"] = out["false_discoveries"] / out["discoveries"] if out["discoveries"] else 0.0
    out["power"] = out["harmful_detected"] / out["harmful_tests"] if out["harmful_tests"] else math.nan
    return out


def within_fdr(counts: dict, q: float) -> bool:
    """False discoveries no more than the FDR's share of the discoveries, plus one by chance."""
    return counts["false_discoveries"] <= q * counts["discoveries"] + 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml", type=Path)
    parser.add_argument("--details", default="metrics/detail", type=Path)
    parser.add_argument("--check", action="store_true", help="exit 1 when nulls are flagged beyond the FDR")
    parser.add_argument("--json", type=Path, help="also write the counts here")
    args = parser.parse_args(argv)
    params = yaml.safe_load(args.params.read_text())
    if params["dataset"]["source"] != "synthetic":
        print("known truth: none on real data (only the embedded dataset knows which labels have no pixels)")
        return 0
    stems = evaluation_stems(tuple(params["train"]["backbones"]), all_tasks(tuple(params["train"]["tasks"])))
    details = {s: json.loads((args.details / f"{s}.json").read_text()) for s in stems}
    counts = tally(details)
    q = params["evaluate"]["fdr"]
    print(f"known truth over {counts['models']} models' maps (BH at FDR {q:g}): nulls {', '.join(LABEL_NOISE)} "
          f"tested {counts['null_tests']} times, flagged {counts['false_discoveries']} "
          f"({', '.join(counts['flagged_nulls']) or 'none'}); discoveries {counts['discoveries']}, "
          f"false-discovery proportion {counts['fdp']:.3f}; power on {', '.join(HARMFUL)}: "
          f"{counts['harmful_detected']} of {counts['harmful_tests']} tests ({counts['power']:.2f}); "
          f"uncorrected (own 95% interval excludes 0): nulls {counts['null_nominal']} of {counts['null_tests']}, "
          f"glasses/blur {counts['harmful_nominal']} of {counts['harmful_tests']}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(counts, indent=1) + "\n")
    if args.check and not within_fdr(counts, q):
        print(f"FAIL: {counts['false_discoveries']} null attributes flagged, more than FDR {q:g} allows")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
