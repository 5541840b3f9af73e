"""Each DVC stage's code dependencies, derived from what its script imports.

`python tests/stage_deps.py` prints, per stage of dvc.yaml, the src/ files its script runs
(the transitive closure of its `faceid` imports, lazy imports inside functions included)
beside what dvc.yaml lists; tests/test_stage_deps.py asserts they agree, so a stage is
re-run exactly when code it runs changes (and not when, say, the demo's schema does).
`python tests/stage_deps.py --write` rewrites dvc.yaml's code deps to the derived ones.
"""

from __future__ import annotations

import ast
import re
import sys
from functools import cache
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
# files every import of the package runs but that hold no logic a stage's result depends on
IGNORED = {"src/faceid/__init__.py",
           # how a stage's process starts (warm or not), not what it computes
           "src/faceid/common/forkserver.py"}


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


def expected_deps(script: str) -> set[str]:
    return {p for p in closure(ROOT / script) if p not in IGNORED}


def covered(files: set[str], listed: list[str]) -> set[str]:
    """The files that a listed dep (a file, or a folder above it) covers."""
    return {f for f in files if any(f == d or f.startswith(d.rstrip("/") + "/") for d in listed)}


def compare(name: str, script: str, listed: list[str]) -> tuple[set[str], set[str]]:
    """(files the stage runs that dvc.yaml misses, listed deps the stage never runs)."""
    needed = expected_deps(script)
    missing = needed - covered(needed, listed)
    unused = {d for d in listed if not covered(needed, [d])}
    return missing, unused


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


def main() -> int:
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
