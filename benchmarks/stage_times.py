"""Where the seconds of README command 1 go: `dvc repro` of the default, per stage,
for one or more commits, one after the other on this machine (ratios, not absolute times).

    python benchmarks/stage_times.py 913acbe HEAD --out stage_times.json

Each commit is cloned into a temporary folder and run with this environment's Python
(its `src/` first on PYTHONPATH, so the clone's code runs, not the installed one). A stage's
seconds are the time from DVC's "Running stage" line to the next one (the last stage ends
when `dvc repro` exits): its process start-up, its work and DVC's own bookkeeping.

After each repro, `--imports` re-runs a few stage commands with `python -X importtime`
and reports the seconds each spends importing (the sum of its top-level imports): in its
own process (FACEID_FORKSERVER=0) and as `dvc repro` runs it (warm, faceid.forkserver).

Prints a table per stage kind (the matrix items summed: train@*, evaluate@*, ...) with
each commit's seconds and the ratio to the first commit, and the total.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import yaml

RUNNING = re.compile(r"Running stage '([^']+)'")
REPO = Path(__file__).resolve().parents[1]
# stage commands timed for their imports: one of each kind the default runs many times
IMPORT_STAGES = ("check-params", "runs", "train@Eyeglasses-resnet50", "evaluate@Eyeglasses-resnet50", "curves")


def _env(clone: Path) -> dict[str, str]:
    env = dict(os.environ, DVC_NO_ANALYTICS="1", DVC_STUDIO_OFFLINE="true", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = f"{clone / 'src'}{os.pathsep}{clone}"
    return env


def timed_repro(clone: Path) -> tuple[dict[str, float], float]:
    """{stage: seconds} and the total wall seconds of `dvc repro` in `clone`."""
    started = time.perf_counter()
    proc = subprocess.Popen(["dvc", "repro"], cwd=clone, env=_env(clone), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)  # fmt: skip
    marks: list[tuple[str, float]] = []
    tail: list[str] = []
    for line in proc.stdout:
        tail = [*tail, line][-40:]
        found = RUNNING.search(line)
        if found:
            marks.append((found.group(1), time.perf_counter()))
    if proc.wait():
        sys.exit(f"error: dvc repro failed in {clone}:\n{''.join(tail)}")
    ended = time.perf_counter()
    seconds = {}
    for (name, start), nxt in zip(marks, [m[1] for m in marks[1:]] + [ended], strict=True):
        seconds[name] = round(nxt - start, 2)
    return seconds, round(ended - started, 1)


def _stage_command(clone: Path, stage: str) -> str | None:
    """The stage's command as dvc.lock recorded it (None: no such stage in this commit)."""
    entry = yaml.safe_load((clone / "dvc.lock").read_text())["stages"].get(stage)
    return entry["cmd"] if entry else None


def import_seconds(clone: Path, stage: str, warm: bool) -> float | None:
    """Seconds the stage's process spends importing (python -X importtime, top-level sum):
    `warm`, as `dvc repro` runs it (handed to a warm server, faceid.forkserver, where the
    commit has one: the caller's own imports), or in its own process (FACEID_FORKSERVER=0)."""
    cmd = _stage_command(clone, stage)
    if cmd is None:
        return None
    argv = shlex.split(cmd)
    assert argv[0] == "python", cmd
    env = _env(clone) if warm else {**_env(clone), "FACEID_FORKSERVER": "0"}
    if warm:  # -X importtime is part of a server's key: this run may start one, the next is served
        subprocess.run([sys.executable, "-X", "importtime", *argv[1:]], cwd=clone, env=env, capture_output=True)
        time.sleep(20)
    proc = subprocess.run([sys.executable, "-X", "importtime", *argv[1:]], cwd=clone, env=env,
                          capture_output=True, text=True)  # fmt: skip
    total = 0
    for line in proc.stderr.splitlines():
        parts = line.split("|")
        if (
            line.startswith("import time:")
            and len(parts) == 3
            and parts[2].startswith(" ")
            and not parts[2].startswith("  ")
        ):
            if parts[1].strip().isdigit():
                total += int(parts[1])
    return round(total / 1e6, 2)


def kind(stage: str) -> str:
    return stage.split("@")[0] + ("@*" if "@" in stage else "")


def run_commit(rev: str, imports: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="stage_times-") as tmp:
        clone = Path(tmp) / "faceid"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        subprocess.run(["git", "checkout", "-q", rev], cwd=clone, check=True)
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True
        ).stdout.strip()
        print(f"{rev} ({sha}): dvc repro in {clone} ...", flush=True)
        stages, total = timed_repro(clone)
        result = {"rev": rev, "commit": sha, "total_s": total, "stages": stages}
        if imports:
            result["import_s"] = {s: import_seconds(clone, s, warm=False) for s in IMPORT_STAGES}
            result["import_warm_s"] = {s: import_seconds(clone, s, warm=True) for s in IMPORT_STAGES}
        print(f"{rev}: {len(stages)} stages, {total:.0f} s", flush=True)
        return result


def table(results: list[dict]) -> str:
    kinds: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(results))
    counts: dict[str, list[int]] = defaultdict(lambda: [0] * len(results))
    for i, result in enumerate(results):
        for stage, seconds in result["stages"].items():
            kinds[kind(stage)][i] += seconds
            counts[kind(stage)][i] += 1
    head = "| stage | " + " | ".join(f"{r['rev']} ({r['commit']}) s" for r in results) + " | ratio |"
    lines = [head, "|" + "---|" * (len(results) + 2)]
    for name, values in kinds.items():
        cells = [f"{v:.1f} ({c})" if c else "-" for v, c in zip(values, counts[name], strict=True)]
        ratio = f"{values[-1] / values[0]:.2f}" if values[0] and values[-1] else "-"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {ratio} |")
    totals = [r["total_s"] for r in results]
    lines.append("| **dvc repro** | " + " | ".join(f"{t:.0f}" for t in totals) + f" | {totals[-1] / totals[0]:.2f} |")
    for key, what in (("import_s", "own process"), ("import_warm_s", "as dvc repro runs it")):
        if all(key in r for r in results):
            for stage in IMPORT_STAGES:
                values = [r[key].get(stage) for r in results]
                lines.append(
                    f"| imports of {stage} ({what}) | "
                    + " | ".join("-" if v is None else f"{v:.2f}" for v in values)
                    + " | |"
                )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("revs", nargs="+", help="commits to time, the first is the baseline")
    parser.add_argument("--out", type=Path, help="write every stage's seconds as JSON")
    parser.add_argument("--imports", action="store_true", help="also time a few stages' imports")
    args = parser.parse_args()
    results = [run_commit(rev, args.imports) for rev in args.revs]
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
