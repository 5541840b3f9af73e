"""Load on `faceid serve`: huge uploads at once, then many requests; latency, memory, errors.

    PYTHONPATH=src:. python benchmarks/bench_server.py [--requests 200 --concurrency 8]

Loopback only, bounded: it starts its own server (`python -m faceid.cli serve` on
127.0.0.1, a free port) on the tests' tiny demo project (tests/_demo_fixtures.py: a
calibrated random InceptionResnetV1, three enrolled people), runs

1. `--huge` (8) simultaneous uploads of a 7000x7000 PNG (one face on a plain background,
   ~0.2 MB compressed, 49 M pixels: under demo.max_image_pixels), then
2. `--requests` (200) uploads of a 600x240 group photo, `--concurrency` (8) at a time,

each request with a timeout, the whole run with `--max-seconds`, then stops the server.
Prints per phase the HTTP statuses, p50/p95 latency and the server's peak resident
memory (VmHWM from /proc: Linux), and exits 1 if any answer was 5xx other than a
deliberate 503 (and 2 if 503s were seen, which a run within demo.max_waiting must not).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests._demo_fixtures

from tests._demo_fixtures import MODEL, make_demo_project, render_face  # noqa: E402


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=9)
    return buffer.getvalue()


def huge_photo(side: int) -> bytes:
    canvas = Image.new("RGB", (side, side), (128, 128, 128))
    canvas.paste(Image.fromarray(render_face(1)), (side // 2, side // 2))
    return _png(canvas)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextlib.contextmanager
def running_server(project, port: int):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    server = subprocess.Popen(
        [sys.executable, "-m", "faceid.cli", "serve", "--port", str(port), *project.dirs()],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                raise SystemExit(f"the server exited with {server.returncode} before answering")
            try:
                requests.get(f"http://127.0.0.1:{port}/api/models", timeout=2)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise SystemExit("the server did not answer within 120 s") from None
                time.sleep(0.5)
        yield server
    finally:
        server.terminate()
        server.wait(30)


def run_phase(url: str, photo: bytes, name: str, count: int, concurrency: int, timeout: float, deadline: float):
    """(statuses, latencies in s) of `count` uploads, `concurrency` at a time."""

    def one(_: int) -> tuple[int, float]:
        if time.monotonic() > deadline:
            return -1, float("nan")  # the run's time budget is spent: not sent
        start = time.perf_counter()
        try:
            response = requests.post(url, files={"photo": (name, photo)}, data={"model": MODEL}, timeout=timeout)
            status = response.status_code
        except requests.RequestException:
            status = 0  # timed out or connection refused
        return status, time.perf_counter() - start

    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(count)))
    return Counter(s for s, _ in results), np.array([t for s, t in results if s > 0])


def report(phase: str, statuses: Counter, latencies: np.ndarray, rss: float, peak: float) -> None:
    p50, p95 = (np.percentile(latencies, [50, 95]) if len(latencies) else (float("nan"),) * 2)
    print(f"{phase}: statuses {dict(sorted(statuses.items()))}; latency p50 {p50:.2f} s, p95 {p95:.2f} s, "
          f"max {latencies.max(initial=0):.2f} s; server RSS now {rss:.0f} MB, peak so far {peak:.0f} MB")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--huge", type=int, default=8, help="simultaneous huge uploads")
    parser.add_argument("--side", type=int, default=7000, help="side of the huge PNG, pixels")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=300.0, help="per request, seconds")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="whole run; later requests are not sent")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.max_seconds
    with tempfile.TemporaryDirectory() as tmp:
        project = make_demo_project(Path(tmp) / "demo")
        enroll = [sys.executable, "-m", "faceid.cli", "enroll", "--folder", str(project.people), *project.dirs()]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        subprocess.run(enroll, env=env, check=True, capture_output=True)
        huge = huge_photo(args.side)
        group = project.group.read_bytes()
        print(
            f"huge photo: {args.side}x{args.side} PNG, {len(huge) / 1e6:.2f} MB; group photo {len(group) / 1e3:.0f} kB"
        )
        port = _free_port()
        url = f"http://127.0.0.1:{port}/api/identify"
        all_statuses: Counter = Counter()
        with running_server(project, port) as server:
            print(f"server pid {server.pid}: RSS {_rss_mb(server.pid):.0f} MB after start")
            # warm up: the first request loads the model and gallery
            run_phase(url, group, "group.png", 1, 1, args.timeout, deadline)
            print(f"after one request: RSS {_rss_mb(server.pid):.0f} MB")
            for phase, photo, name, count, concurrency in (
                (f"{args.huge} x {args.side}^2 PNG at once", huge, "huge.png", args.huge, args.huge),
                (f"{args.requests} x group photo, {args.concurrency} at a time", group, "group.png",
                 args.requests, args.concurrency),
            ):  # fmt: skip
                start = time.perf_counter()
                statuses, latencies = run_phase(url, photo, name, count, concurrency, args.timeout, deadline)
                report(phase, statuses, latencies, _rss_mb(server.pid), _peak_rss_mb(server.pid))
                print(f"  wall {time.perf_counter() - start:.1f} s")
                all_statuses.update(statuses)
    failures = {s: n for s, n in all_statuses.items() if (s >= 500 and s != 503) or s == 0}
    if failures:
        print(f"FAILED: server errors or timeouts {failures}")
        return 1
    if all_statuses.get(503):
        print(f"{all_statuses[503]} requests refused with 503 (saturated)")
        return 2
    print("no 5xx")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
