"""Code stays readable: no module in src/ or tests/ over 450 lines, no function over 60
without a reason, and few modules at the top of the package (the rest live in the package
of the pipeline concern they serve).

A function may run longer when its `def` line (or the line above it) carries a comment
`# long: <why>`, e.g. a Flask app factory whose routes are closures.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_FILE_LINES = 450
MAX_FUNCTION_LINES = 60


def _python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


MAX_TOP_MODULES = 12


def test_few_modules_at_the_top_of_the_package() -> None:
    """A module belongs in the package of its pipeline concern; the top holds only what
    every concern shares (the CLI, the error type, the process server)."""
    top = sorted(p.name for p in (ROOT / "src" / "faceid").glob("*.py"))
    assert len(top) <= MAX_TOP_MODULES, f"{len(top)} modules at the top of src/faceid: {top}"


def test_no_test_file_over_450_lines() -> None:
    lines = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in _python_files("tests")}
    long = {name: n for name, n in lines.items() if n > MAX_FILE_LINES}
    assert not long, f"split these by behaviour (lines): {long}"


def test_no_module_in_src_over_450_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in _python_files("src")
        if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES
    }
    assert not long, f"split these by concern (lines): {long}"


def _has_reason(lines: list[str], node: ast.AST) -> bool:
    first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
    window = lines[max(first - 2, 0) : node.lineno]
    return any("# long:" in line for line in window)


def test_no_function_over_60_lines_without_a_reason() -> None:
    long = []
    for path in _python_files("src", "stages"):
        text = path.read_text()
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES and not _has_reason(lines, node):
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    assert not long, "split these, or say why not in a `# long:` comment:\n" + "\n".join(long)
