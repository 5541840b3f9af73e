"""Warm stage processes (faceid.forkserver): a delegated script behaves as the same script
run by Python (argv, cwd, environment, streams, exit status, signals), and a stage run
through the server writes the same bytes as one run in its own process."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests._params import write_params
from tests._train_fixtures import write_tiny_train_data

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = '''from __future__ import annotations

from faceid.forkserver import delegate_main

delegate_main(__name__, __file__)
import os, sys, time
print("argv", sys.argv[1:], "cwd", os.getcwd(), "x", os.environ.get("X_TEST"),
      "child", os.environ.get("FACEID_FORKSERVER_CHILD"), "warm", "torch" in sys.modules, flush=True)
print("on stderr", file=sys.stderr)
if sys.argv[1:] == ["fail"]:
    raise ValueError("boom")
if sys.argv[1:] == ["sleep"]:
    open(os.environ["PID_FILE"], "w").write(str(os.getpid()))
    time.sleep(60)
sys.exit(int(sys.argv[1]) if sys.argv[1:] and sys.argv[1].isdigit() else 0)
'''


def _env(**extra):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + str(ROOT), "FACEID_FORKSERVER_IDLE_S": "20"}
    env.pop("FACEID_FORKSERVER", None)
    return {**env, **extra}


def _run(script, *args, cwd, **env):
    return subprocess.run(
        [sys.executable, str(script), *args], cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=120
    )


def _warm(script, cwd):
    """Run once (starts the server), then until a run is delegated (the server imports first)."""
    first = _run(script, cwd=cwd)
    assert "child None" in first.stdout and first.returncode == 0  # ran in its own process
    for _ in range(120):
        done = _run(script, cwd=cwd)
        if "child 1" in done.stdout:
            return
        time.sleep(1)
    pytest.fail("the server never answered")


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scripts")  # its own folder: its own sys.path, its own server
    path = folder / "script.py"
    path.write_text(SCRIPT)
    _warm(path, folder)
    return path


def test_a_delegated_run_is_the_script_run_by_python(script, tmp_path):
    done = _run(script, "7", "two words", cwd=tmp_path, X_TEST="seen")
    assert done.returncode == 7
    assert done.stdout.strip() == f"argv ['7', 'two words'] cwd {tmp_path} x seen child 1 warm True"
    assert done.stderr == "on stderr\n"
    failed = _run(script, "fail", cwd=tmp_path)
    assert failed.returncode == 1
    # the traceback starts at the script, as Python's own
    assert failed.stderr.splitlines()[1:] == [
        "Traceback (most recent call last):", f'  File "{script}", line 11, in <module>',
        '    raise ValueError("boom")', "ValueError: boom",
    ]  # fmt: skip
    off = _run(script, cwd=tmp_path, FACEID_FORKSERVER="0")
    assert "child None" in off.stdout  # FACEID_FORKSERVER=0: its own process


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


@pytest.mark.parametrize("how", ["interrupt", "kill"])
def test_signals_reach_the_stage_and_a_killed_caller_stops_it(script, tmp_path, how):
    pid_file = tmp_path / "pid"
    caller = subprocess.Popen([sys.executable, str(script), "sleep"], cwd=tmp_path, env=_env(PID_FILE=str(pid_file)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    for _ in range(100):
        if pid_file.exists() and pid_file.read_text():
            break
        time.sleep(0.1)
    child = int(pid_file.read_text())
    assert child != caller.pid and _alive(child)  # the forked child, not the caller
    caller.send_signal(signal.SIGINT if how == "interrupt" else signal.SIGKILL)
    caller.wait(timeout=30)
    if how == "interrupt":  # as Ctrl-C on the script: KeyboardInterrupt, status 130
        assert caller.returncode == 130 and "KeyboardInterrupt" in caller.stderr.read()
    for _ in range(100):
        if not _alive(child):
            break
        time.sleep(0.1)
    assert not _alive(child)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_stage_through_the_server_writes_the_same_bytes(tmp_path):
    crops, pairs = write_tiny_train_data(tmp_path / "data")
    params = tmp_path / "params.yaml"
    write_params(
        params, {"train": {"common": {"neck_epochs": 2, "batch_size": 4, "device": "cpu", "eval_batch_size": 16}}}
    )
    trace = tmp_path / "trace.txt"

    def train(out, **env):
        args = ["--params", str(params), "--task", "orig", "--backbone", "resnet50",
                "--crops", str(crops), "--pairs", str(pairs),
                "--out", str(out / "model"), "--live-dir", str(out / "live")]  # fmt: skip
        done = _run(ROOT / "stages/train.py", *args, cwd=tmp_path, FACEID_FORKSERVER_TRACE=str(trace), **env)
        assert done.returncode == 0, done.stderr[-2000:]

    train(tmp_path / "own", FACEID_FORKSERVER="0")
    for attempt in range(60):  # the first runs start the server and run in their own process
        train(tmp_path / f"run{attempt}")
        if trace.exists():
            break
        time.sleep(1)
    assert "delegated" in trace.read_text()
    for name in ("model/model.pt", "live/metrics.json", "live/plots/metrics/epoch/val_auc_task.tsv"):
        assert _sha(tmp_path / "own" / name) == _sha(tmp_path / f"run{attempt}" / name), name
