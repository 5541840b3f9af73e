"""The `faceid` command's surface: fast start, `--version`, and every error one `error:` line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faceid import __version__

ROOT = Path(__file__).resolve().parents[1]


def _faceid(*args: str, cwd: Path = ROOT, code: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "faceid.cli", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_version():
    done = _faceid("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"faceid {__version__}"


def test_help_and_version_import_no_heavy_library():
    # the demo's libraries load in the subcommands that use them
    code = ("import sys; from faceid.cli import main\n"
            "try: main(['--help'])\nexcept SystemExit: pass\n"
            "heavy = ('torch', 'facenet_pytorch', 'sklearn', 'pandas', 'dvclive', 'dvc')\n"
            "print(sorted(m for m in heavy if m in sys.modules))")  # fmt: skip
    done = _faceid(code=code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    start = time.perf_counter()
    assert _faceid("--help").returncode == 0
    assert time.perf_counter() - start < 5.0  # ~0.15 s on 2 cores; importing torch took ~9 s


def test_check_params_imports_no_torch():
    # the params checks read the backbone registry, which no longer imports torch (~8 s)
    code = ("import sys; from faceid.cli import main\n"
            f"rc = main(['check-params', '--params', {str(ROOT / 'params.yaml')!r}])\n"
            "heavy = ('torch', 'facenet_pytorch', 'sklearn', 'dvclive')\n"
            "print(rc, sorted(m for m in heavy if m in sys.modules))")  # fmt: skip
    done = _faceid(code=code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "0 []"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["bogus"], "error: faceid: argument command: invalid choice: 'bogus'"),
        (["check-params", "--params", "nope.yaml"], "error: nope.yaml: no such params file"),
        (["identify", "x.jpg", "--top-k", "0"], "error: faceid identify: --top-k: expected an integer >= 1"),
        (["experiments", "--width"], "error: faceid experiments: argument --width: expected one argument"),
    ],
)
def test_every_error_is_one_line_starting_with_error(tmp_path, args, expected):
    done = _faceid(*args, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [done.stderr.strip()], done.stderr  # one line, no usage, no traceback
    assert done.stderr.startswith(expected), done.stderr
