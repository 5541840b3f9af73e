"""Warm stage processes: `python stages/<stage>.py …` forked from a process that has
already imported torch, torchvision, facenet-pytorch, scikit-learn, pandas and dvclive.

A stage is a new process, and on 2 CPU cores those imports take 5–7 s before it does any
work: over the default's 30 torch stages, a third of `dvc repro`. Each stage script calls
`delegate_main(__name__, __file__)` first. The first call starts a server in the
background (a process in its own session that imports the libraries above, never
`faceid`, and waits on a Unix socket) and runs the stage itself, as before; every later
call sends the server its argv, working directory, environment, `sys.path` and its own
stdin/stdout/stderr, the server forks, and the forked child runs the script as `__main__`
exactly as Python would, writing to the caller's streams. The caller waits, forwards
SIGINT/SIGTERM/SIGHUP to the child, and exits with the child's status. DVC sees one
process per stage, as before; each stage's code is imported fresh in its own child, so
an edit to src/ between two stages takes effect (only third-party libraries are warm).

One server per (Python executable, `sys.path`, the preloaded packages' files, the
environment variables libraries read at import: OMP_*, MKL_*, CUDA_*, PYTHONHASHSEED, …,
`sys.flags`); it exits after `IDLE_S` seconds without a request. The server never
initialises CUDA or runs a parallel torch operation, so its children start as a new
process would. Off with `FACEID_FORKSERVER=0`, and anywhere without `os.fork` and
`socket.send_fds` (Linux only: macOS's fork is unsafe with these libraries). Any failure
to reach or use the server falls back to running the stage in the calling process.

Standard library only: the calling process imports nothing else before it delegates.
"""

from __future__ import annotations

import array
import atexit
import hashlib
import importlib.util
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

__all__ = ["IDLE_S", "PRELOAD", "delegate_main", "server_address"]

PRELOAD = ("numpy", "pandas", "pyarrow.parquet", "PIL.Image", "torch", "torchvision", "facenet_pytorch",
           "sklearn.metrics", "skimage.transform", "dvclive", "yaml", "tqdm")  # fmt: skip
IDLE_S = float(os.environ.get("FACEID_FORKSERVER_IDLE_S", "120"))  # then the server exits
_ENV = "FACEID_FORKSERVER"  # 0: off
_CHILD = "FACEID_FORKSERVER_CHILD"  # set in a forked child: its script must not delegate again
# read by libraries when they load (OpenMP, MKL, CUDA, torch, Python's hash seed): a
# server's children see the values it was started with, so they are part of its key
_LOAD_TIME_ENV = (
    "OMP_",
    "MKL_",
    "KMP_",
    "OPENBLAS_",
    "CUDA_",
    "NVIDIA_",
    "TORCH_",
    "PYTORCH_",
    "PYTHON",
    "LD_",
    "SKLEARN_",
    "SCIPY_",
)
_MAX_MESSAGE = 1 << 20


def _enabled() -> bool:
    return (os.environ.get(_ENV, "1") != "0" and _CHILD not in os.environ and sys.platform == "linux"
            and hasattr(os, "fork") and hasattr(socket, "send_fds"))  # fmt: skip


def _key(path: list[str]) -> str:
    """What a server's children inherit from it rather than from the caller."""
    origins = []
    for name in PRELOAD:
        top = name.split(".")[0]
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            spec = None
        origin = spec.origin if spec is not None else None
        origins.append([top, origin, os.stat(origin).st_mtime_ns if origin and os.path.exists(origin) else None])
    env = sorted((k, v) for k, v in os.environ.items() if k.startswith(_LOAD_TIME_ENV))
    described = [sys.executable, sys.version, path, origins, env, list(sys.flags), os.getuid()]
    return hashlib.sha256(json.dumps(described, default=str).encode()).hexdigest()[:20]


def server_address(path: list[str] | None = None) -> str:
    """The Unix socket of the server for this interpreter, path and environment."""
    return os.path.join(tempfile.gettempdir(), f"faceid-forkserver-{_key(sys.path if path is None else path)}.sock")


def _send(sock: socket.socket, message: dict) -> None:
    data = json.dumps(message).encode()
    sock.sendall(len(data).to_bytes(4, "big") + data)


def _receive(sock: socket.socket) -> dict | None:
    header = _read_exactly(sock, 4)
    if header is None:
        return None
    size = int.from_bytes(header, "big")
    body = _read_exactly(sock, size) if size <= _MAX_MESSAGE else None
    return None if body is None else json.loads(body)


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = sock.recv(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# --- the calling side ---------------------------------------------------------------


def delegate_main(name: str, script: str) -> None:
    """In a stage script run as `__main__`: run it in the warm server and exit with its
    status; return (to run the script here) when off, in a child, or the server is not
    there yet (then start one for the next stage)."""
    if name != "__main__" or not _enabled():
        return
    path = list(sys.path)
    address = server_address(path)
    try:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(address)
    except OSError:
        _start_server(address, path)
        return
    request = {
        "script": os.path.abspath(script),
        "argv": sys.argv,
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "path": path,
    }
    try:
        socket.send_fds(client, [json.dumps(request).encode()], [0, 1, 2])
        started = _receive(client)
    except OSError:
        started = None
    if not started or "pid" not in started:  # the server went away: run here
        client.close()
        return
    _trace(f"delegated {script} to {started['pid']}")
    sys.exit(_wait(client, started["pid"]))


def _trace(line: str) -> None:
    """FACEID_FORKSERVER_TRACE=<file>: one line per delegated run (tests, debugging)."""
    path = os.environ.get("FACEID_FORKSERVER_TRACE")
    if path:
        with open(path, "a") as handle:
            handle.write(line + "\n")


def _wait(client: socket.socket, pid: int) -> int:
    """The child's exit status; SIGINT/SIGTERM/SIGHUP to this process go to the child."""

    def forward(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    while True:
        try:
            done = _receive(client)
            break
        except InterruptedError:
            continue
    if not done or "status" not in done:
        print(f"error: the stage process {pid} ended without a status (faceid.forkserver)", file=sys.stderr)
        return 1
    return int(done["status"])


def _start_server(address: str, path: list[str]) -> None:
    """A detached server for `address`; a race between two callers leaves one listening."""
    code = "import sys; sys.path[:] = sys.argv[2:]; from faceid.forkserver import _serve; _serve(sys.argv[1])"
    try:
        quiet = subprocess.DEVNULL
        subprocess.Popen([sys.executable, "-c", code, address, *path], stdin=quiet, stdout=quiet, stderr=quiet,
                         start_new_session=True, close_fds=True)  # fmt: skip
    except OSError:
        pass


# --- the server -----------------------------------------------------------------------


def _serve(address: str) -> None:
    lock = address + ".lock"
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)  # one starter wins
    except FileExistsError:
        if time.time() - os.stat(lock).st_mtime < 60:
            return
        os.unlink(lock)  # a starter that died
        return
    os.close(fd)
    try:
        for name in PRELOAD:  # what a stage would import; none of faceid
            try:
                __import__(name)
            except Exception:  # a missing optional library: the stage imports (or fails) itself
                pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            if os.path.exists(address):
                os.unlink(address)
            listener.bind(address)
        finally:
            os.umask(old)
        listener.listen(16)
    finally:
        os.unlink(lock)
    try:
        _loop(listener)
    finally:
        listener.close()
        if os.path.exists(address):
            os.unlink(address)


def _loop(listener: socket.socket) -> None:
    children: dict[int, socket.socket] = {}  # pid -> its caller's connection
    idle_since = time.monotonic()
    wake, wake_write = os.pipe()  # a child's exit wakes the select at once (SIGCHLD)
    os.set_blocking(wake, False)
    os.set_blocking(wake_write, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_write)
    while children or time.monotonic() - idle_since < IDLE_S:
        ready, _, _ = select.select([listener, wake, *children.values()], [], [], 1.0)
        for sock in ready:
            if sock == wake:
                while True:
                    try:
                        if not os.read(wake, 512):
                            break
                    except BlockingIOError:
                        break
            elif sock is listener:
                conn, _ = listener.accept()
                pid = _fork_child(listener, conn, children)
                if pid is None:
                    conn.close()
                else:
                    children[pid] = conn
            else:  # a caller's connection closed early (killed): stop its child
                pid = next(p for p, c in children.items() if c is sock)
                if not sock.recv(1, socket.MSG_PEEK):
                    _kill(pid)
        for pid, conn in list(children.items()):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                code = os.waitstatus_to_exitcode(status)
                try:
                    _send(conn, {"status": code if code >= 0 else 128 - code})
                except OSError:
                    pass
                conn.close()
                del children[pid]
                idle_since = time.monotonic()


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def _fork_child(listener: socket.socket, conn: socket.socket, children: dict[int, socket.socket]) -> int | None:
    try:
        if conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)[4:8] != array.array("i", [os.getuid()]).tobytes():
            return None  # only this user's processes
        data, fds, _, _ = socket.recv_fds(conn, _MAX_MESSAGE, 3)
        request = json.loads(data)
    except (OSError, ValueError):
        return None
    if len(fds) != 3:
        for fd in fds:
            os.close(fd)
        return None
    pid = os.fork()
    if pid:
        for fd in fds:
            os.close(fd)
        _send(conn, {"pid": pid})
        return pid
    # the child: become the stage process the caller would have been
    try:
        signal.set_wakeup_fd(-1)
        listener.close()
        for other in children.values():
            other.close()
        conn.close()
        status = _run_child(request, fds)
    except BaseException:  # a child must never return into the server's loop
        status = 1
    os._exit(status)


def _run_child(request: dict, fds: list[int]) -> int:
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.setsid()  # its own process group: the caller forwards signals to it
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ[_CHILD] = "1"
    os.chdir(request["cwd"])
    sys.path[:] = request["path"]
    sys.argv[:] = request["argv"]
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", closefd=False, buffering=1 if unbuffered or os.isatty(1) else -1)
    sys.stderr = open(2, "w", closefd=False, buffering=1)
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import runpy

    status = 0
    try:
        runpy.run_path(request["script"], run_name="__main__")
    except SystemExit as exc:
        code = exc.code
        if code is None:
            status = 0
        elif isinstance(code, int):
            status = code
        else:
            print(code, file=sys.stderr)
            status = 1
    except BaseException as exc:  # as Python reports an uncaught exception: from the script's frame on
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != request["script"]:
            tb = tb.tb_next
        traceback.print_exception(type(exc), exc, tb or exc.__traceback__)
        status = 130 if isinstance(exc, KeyboardInterrupt) else 1
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
    return status
