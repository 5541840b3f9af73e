"""faceid.common.locks: one writer per output folder; a killed holder's lock is taken over."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from faceid.common.locks import OutputLockedError, lock_path, output_lock, read_holder

ROOT = Path(__file__).resolve().parents[1]


def test_a_second_holder_is_refused_naming_the_folder_and_the_pid(tmp_path):
    out = tmp_path / "crops"
    with output_lock(out, command="stages/crop.py"):
        assert read_holder(lock_path(out))["pid"] == os.getpid()
        with pytest.raises(
            OutputLockedError,
            match=rf"{out} is being written by pid {os.getpid()} on {socket.gethostname()} "
            rf".*stages/crop.py.*kill {os.getpid()}",
        ):
            with output_lock(out):
                pass
    with output_lock(out):  # released
        pass
    assert read_holder(lock_path(out)) == {}  # a clean release leaves nothing to take over


def test_a_live_holder_in_another_process_refuses_the_stage(tmp_path):
    out = tmp_path / "crops"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from faceid.common.locks import output_lock\n"
         f"with output_lock({str(out)!r}, command='holder'):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        done = subprocess.run(
            [sys.executable, str(ROOT / "stages" / "crop.py"), "--params", str(ROOT / "params.yaml"),
             "--dataset", str(tmp_path / "none"), "--out", str(out), "--metrics", str(tmp_path / "m.json"),
             "--review", str(tmp_path / "review.png")],
            capture_output=True, text=True, timeout=300,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])},
        )  # fmt: skip
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"error: {out} is being written by pid {holder.pid}" in done.stderr
    # the holder was killed: its lock is stale and the next run takes it over
    with output_lock(out):
        pass


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path, caplog):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "models" / "orig-resnet50"
    path = lock_path(out)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": 0, "command": "train"}))
    with caplog.at_level(logging.WARNING, logger="faceid.common.locks"), output_lock(out, command="again"):
        assert read_holder(path)["pid"] == os.getpid()
    assert f"taking over the stale lock of pid {dead.pid}" in caplog.text
