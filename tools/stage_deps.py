"""Each DVC stage's dependencies, derived from its code: code deps and params deps.

Code deps: the src/ files a stage's script runs (the transitive closure of its `faceid`
imports, lazy imports inside functions included), each named by its package folder (but
config/, file by file): a stage re-runs when a package it uses changes (and not when, say,
the demo's or the report's does).
One dvc.lock entry per package, not per file: DVC re-reads and rewrites the whole lock after
every stage, and at one entry per file (1,300 of them) that was ~2.5 s per stage, a third
of `dvc repro`'s bookkeeping.

Params deps: the params keys a stage reads, recorded while it runs (FACEID_PARAMS_TRACE,
faceid.config.engine): each key read must be covered by one the stage's dvc.yaml entry lists.

    python tools/stage_deps.py             # compare dvc.yaml's code deps with the imports
    python tools/stage_deps.py --write     # rewrite dvc.yaml's code deps to the derived ones
    python tools/stage_deps.py --params TRACE   # compare params deps with a trace of `dvc repro`
                                                # run with FACEID_PARAMS_TRACE=TRACE

tests/test_stage_deps.py asserts the code deps agree; tests/test_pipeline.py runs the tiny
pipeline with a trace and asserts no stage reads a key its entry does not list.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import sys
from functools import cache
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
# files every import of the package runs but that hold no logic a stage's result depends on
IGNORED = {
    "src/faceid/__init__.py",
    # how a stage's process starts (warm or not), not what it computes
    "src/faceid/forkserver.py",
}
# packages listed file by file: config's modules are the schemas of params.yaml's sections,
# one per section, and every stage imports a few of them; as one folder, adding a training
# param would re-run the dataset, crop and features stages too
FILE_BY_FILE = {"config"}


def module_file(name: str) -> Path | None:
    """src/faceid/a/b.py or src/faceid/a/b/__init__.py for module faceid.a.b (None: not ours)."""
    if name != "faceid" and not name.startswith("faceid."):
        return None
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(path: Path) -> set[str]:
    """Every faceid module `path` imports (packages of a dotted name included)."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(SRC).with_suffix("").parts) if path.is_relative_to(SRC) else ""
    if path.name == "__init__.py":
        package += ".__init__"
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                parent = package.split(".")[: -node.level]
                base = ".".join([*parent, base] if base else parent)
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                if module_file(".".join(parts[:i])) is not None:
                    found.add(".".join(parts[:i]))
    return found


@cache
def closure(path: Path) -> frozenset[str]:
    """Repo-relative paths of `path` and of every faceid file it runs, transitively."""
    seen: set[Path] = set()
    todo = [path]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for name in _imported_modules(current):
            target = module_file(name)
            if target is not None and target not in seen:
                todo.append(target)
    return frozenset(str(p.relative_to(ROOT)) for p in seen)


def stage_scripts(dvc_yaml: Path = ROOT / "dvc.yaml") -> dict[str, tuple[str, list[str]]]:
    """stage name → (its script, its deps that are code: stages/*.py and src/ paths)."""
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    out = {}
    for name, stage in stages.items():
        script = re.search(r"python (stages/\w+\.py)", stage["cmd"]).group(1)
        code = [d for d in stage.get("deps", []) if d.startswith(("src/", "stages/"))]
        out[name] = (script, code)
    return out


def expected_files(script: str) -> set[str]:
    """Every file the stage's script runs (stages/ and src/), less IGNORED."""
    return {p for p in closure(ROOT / script) if p not in IGNORED}


def expected_deps(script: str) -> set[str]:
    """expected_files with each src/ file named by its package folder (see `collapse`)."""
    return collapse(expected_files(script))


def collapse(files: set[str]) -> set[str]:
    """Each file under a subpackage of src/faceid replaced by that subpackage's folder (the
    outermost one below `faceid`), except in FILE_BY_FILE; the top package's own modules
    stay file by file."""
    top = SRC / "faceid"
    out = set()
    for file in files:
        parts = (ROOT / file).relative_to(top).parts if (ROOT / file).is_relative_to(top) else ()
        if len(parts) > 1 and parts[0] not in FILE_BY_FILE:
            out.add(str((top / parts[0]).relative_to(ROOT)))
        else:
            out.add(file)
    return out


def compare(name: str, script: str, listed: list[str]) -> tuple[set[str], set[str]]:
    """(derived deps dvc.yaml does not list as such, listed deps that are not derived ones:
    a file the stage never runs, or a folder holding files it does not run)."""
    derived = expected_deps(script)
    return derived - set(listed), set(listed) - derived


def rewrite(dvc_yaml: Path = ROOT / "dvc.yaml") -> None:
    """Replace each stage's code deps in dvc.yaml by the derived ones (text edit: comments stay)."""
    lines = dvc_yaml.read_text().splitlines(keepends=True)
    scripts = stage_scripts(dvc_yaml)
    out: list[str] = []
    stage, written = None, False
    for line in lines:
        head = re.match(r"^  ([\w-]+):\s*$", line)
        if head and head.group(1) in scripts:
            stage, written = head.group(1), False
        dep = re.match(r"^(\s+)- (src/|stages/)\S+\s*$", line)
        if stage and dep:
            if not written:
                indent = dep.group(1)
                out.extend(f"{indent}- {p}\n" for p in sorted(expected_deps(scripts[stage][0])))
                written = True
            continue
        out.append(line)
    dvc_yaml.write_text("".join(out))


def traced_reads(trace: Path, root: Path) -> tuple[dict[str, set[str]], list[str]]:
    """(stage address → params keys its process read, commands that are no stage's) from a
    FACEID_PARAMS_TRACE file written while `dvc repro` ran in `root`."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        by_argv = {tuple(shlex.split(stage.cmd)[1:]): stage.name for stage in repo.index.stages if stage.cmd}
    reads: dict[str, set[str]] = {}
    strays = []
    for line in trace.read_text().splitlines():
        record = json.loads(line)
        stage = by_argv.get(tuple(record["argv"]))
        if stage is None:
            strays.append(" ".join(record["argv"]))
        else:
            reads.setdefault(stage, set()).update(record["keys"])
    return reads, strays


def listed_params(root: Path) -> dict[str, list[str]]:
    """stage address → the params.yaml keys its dvc.yaml entry lists (matrix items resolved)."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return {
            stage.name: [
                key for dep in stage.deps if isinstance(dep, ParamsDependency) for key in dep.params
            ]
            for stage in repo.index.stages
        }


def unlisted_reads(reads: set[str], listed: list[str]) -> set[str]:
    """The keys read that no listed key covers (itself or a section above it)."""
    return {key for key in reads if not any(key == k or key.startswith(k + ".") for k in listed)}


def check_params(trace: Path, root: Path = ROOT) -> int:
    reads, strays = traced_reads(trace, root)
    listed = listed_params(root)
    bad = len(strays)
    for command in strays:
        print(f"not a stage of dvc.yaml: {command}")
    for stage in sorted(reads):
        missing = unlisted_reads(reads[stage], listed.get(stage, []))
        unread = [k for k in listed.get(stage, []) if not any(r == k or r.startswith(k + ".") for r in reads[stage])]
        bad += bool(missing)
        print(f"{stage}: {'ok' if not missing else 'READS UNLISTED KEYS'}")
        for key in sorted(missing):
            print(f"  + {key}   (read, not in params deps)")
        for key in unread:
            print(f"  . {key}   (listed, not read on this run)")
    return 1 if bad else 0


def main() -> int:
    if "--params" in sys.argv[1:]:
        return check_params(Path(sys.argv[sys.argv.index("--params") + 1]))
    if "--write" in sys.argv[1:]:
        rewrite()
    bad = 0
    for name, (script, listed) in stage_scripts().items():
        missing, unused = compare(name, script, listed)
        status = "ok" if not (missing or unused) else "DIFFERS"
        bad += status != "ok"
        print(f"{name}: {status}")
        for path in sorted(missing):
            print(f"  + {path}   (imported, not in deps)")
        for path in sorted(unused):
            print(f"  - {path}   (in deps, never imported)")
        if status != "ok":
            print("  expected:\n" + "\n".join(f"      - {p}" for p in sorted(expected_deps(script))))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
