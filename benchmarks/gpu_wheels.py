"""The wheels `benchmarks/gpu_suite.sh` needs on a lent GPU machine that has no network and
lacks some of this project's pure-Python dependencies (run through `benchmarks/gpu_wheels.sh`).

The machine (x86-64, CPython 3.12, torch/torchvision/numpy/pandas/scikit-* … already there)
lacks facenet-pytorch, ruamel.yaml, dvc and dvclive. This downloads, into the ignored `.whl/`,
one cp312-manylinux or pure-Python wheel of each package the suite imports that the machine
lacks, `--no-deps`, pinned to the project venv's versions; `gpu_suite.sh` installs them
(`pip install --no-index --no-deps --target`) and puts that folder on PYTHONPATH after the repo.

What the suite imports (traced: `gpu_suite.py`, `pytest -m gpu` on the files that hold gpu
tests, tests/_ddp_worker.py, and the train stage as 2 torchrun processes):

- facenet-pytorch: faceid.crop.cache / facecrop / backbone_nets, bench_crop (MTCNN, InceptionResnetV1);
- ruamel.yaml: tests/_params.py → faceid/config/profile.py (`from ruamel.yaml import YAML`);
- the train stage's dvclive (the 2-GPU `ddp_train` section only): faceid/train/run.py imports
  `dvclive.Live`, dvclive/live.py imports `dvc.exceptions` at module level, and `Live()` opens
  the DVC repo (`dvc.repo.Repo()`), so dvc and the part of its closure that path loads travel.

`--check` installs the wheels into a throwaway CPython 3.12 venv exactly as the suite does,
with only the machine's own packages beside them (from the registry, never torch), and imports
what can be imported without torch; it says what it could not check.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEST = ROOT / ".whl"

# name -> version: the project venv's (facenet-pytorch is the project's own pin)
WHEELS = {
    "facenet-pytorch": "2.5.3",
    "ruamel.yaml": "0.19.1",
    # the train stage's dvclive, and what `Live()` loads of dvc's closure (traced)
    "dvclive": "3.49.1",
    "dvc": "3.67.1",
    "dvc-render": "1.0.2",
    "dvc-studio-client": "0.23.0",
    "dvc-data": "3.18.3",
    "dvc-objects": "5.2.0",
    "dvc-http": "2.32.0",
    "scmrepo": "3.6.2",
    "dulwich": "1.2.21",
    "sqltrie": "0.11.3",
    "pygtrie": "2.6.2",
    "orjson": "3.13.0",
    "diskcache": "5.6.3",
    "dpath": "2.2.0",
    "configobj": "5.0.9",
    "platformdirs": "4.14.9",
    "flufl.lock": "9.2.0",
    "atpublic": "9.0.0",
    "zc.lockfile": "4.0",
    "flatten-dict": "0.5.0",
    "funcy": "2.1",
    "voluptuous": "0.16.0",
}

# Packages the GPU machine's image holds (its package list, 2026-11-17) that the wheels above
# declare or load. The check installs these (not torch/torchvision) from the registry as the
# machine's stand-ins; a declared requirement in neither list is absent there.
ON_MACHINE = {
    "aiohttp", "attrs", "colorama", "fsspec", "networkx", "numpy", "nvidia-ml-py", "packaging",
    "pandas", "pathspec", "pillow", "psutil", "pyparsing", "pyyaml", "requests", "rich",
    "setuptools", "tabulate", "torch", "torchvision", "tqdm", "urllib3",
}  # fmt: skip
NOT_INSTALLABLE_HERE = {"torch", "torchvision"}  # multi-GB; the check imports nothing that needs them

# never carried: a carried copy would shadow the machine's build (PYTHONPATH precedes site-packages)
MACHINE_CORE = {"torch", "torchvision", "triton", "numpy", "pillow", "pandas", "scipy", "pyarrow"}
REPO_PACKAGES = {"faceid", "tests", "stages", "benchmarks"}  # must not be shadowed either

PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64"]  # fmt: skip
# the suite's own install command (gpu_suite.sh runs the same)
INSTALL = ["-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir"]


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_class():
    try:
        from packaging.requirements import Requirement
    except ImportError:  # pip vendors it
        from pip._vendor.packaging.requirements import Requirement
    return Requirement


def wheel_files(dest: Path = DEST) -> list[Path]:
    return sorted(dest.glob("*.whl"))


def metadata(wheel: Path) -> tuple[str, str, list[str]]:
    """(name, version, the Requires-Dist names that apply on the machine: CPython 3.12, Linux x86-64)."""
    requirement = _requirement_class()
    env = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
           "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}  # fmt: skip
    with zipfile.ZipFile(wheel) as z:
        (meta,) = [n for n in z.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
        text = z.read(meta).decode()
    name = re.search(r"^Name: *(.+)$", text, re.M).group(1).strip()
    version = re.search(r"^Version: *(.+)$", text, re.M).group(1).strip()
    needs = []
    for line in text.splitlines():
        if line.startswith("Requires-Dist:"):
            req = requirement(line.split(":", 1)[1].strip())
            if req.marker is None or req.marker.evaluate(env):
                needs.append(norm(req.name))
    return name, version, needs


def importable_names(wheel: Path) -> list[str]:
    """The wheel's top-level modules, a namespace package's subpackages (ruamel.yaml, zc.lockfile)."""
    with zipfile.ZipFile(wheel) as z:
        files = [n for n in z.namelist() if not n.split("/")[0].endswith((".dist-info", ".data"))]
    names = set()
    for path in files:
        parts = path.split("/")
        if len(parts) == 1 and parts[0].endswith(".py"):
            names.add(parts[0][:-3])
        elif len(parts) > 1 and f"{parts[0]}/__init__.py" in files:
            names.add(parts[0])
        elif len(parts) > 2 and f"{parts[0]}/{parts[1]}/__init__.py" in files:
            names.add(f"{parts[0]}.{parts[1]}")
    return sorted(names)


def download() -> int:
    DEST.mkdir(exist_ok=True)
    for old in wheel_files():  # one version of each: two stop the whole install
        old.unlink()
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
               "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(DEST),
               *(f"{name}=={version}" for name, version in WHEELS.items())]  # fmt: skip
    subprocess.run(command, check=True)
    return report()


def report() -> int:
    wheels = wheel_files()
    versions = {norm(name): version for name, version in WHEELS.items()}
    found = {}
    problems = []
    for wheel in wheels:
        name, version, _ = metadata(wheel)
        if norm(name) in found:
            problems.append(f"two wheels of {name}: {found[norm(name)].name}, {wheel.name}")
        found[norm(name)] = wheel
        if versions.get(norm(name)) != version:
            problems.append(f"{wheel.name}: not in the list at this version")
        if norm(name) in MACHINE_CORE:
            problems.append(f"{wheel.name}: would shadow the machine's own {name}")
        if shadowed := {n.split(".")[0] for n in importable_names(wheel)} & REPO_PACKAGES:
            problems.append(f"{wheel.name}: a top-level package named like the repo's {sorted(shadowed)}")
    problems += [f"missing: {name}=={version}" for name, version in WHEELS.items() if norm(name) not in found]
    total = 0
    for wheel in wheels:
        size = wheel.stat().st_size
        total += size
        print(f"{size / 2**20:7.2f} MiB  {wheel.relative_to(ROOT)}")
    print(f"{total / 2**20:7.2f} MiB  total, {len(wheels)} wheels in {DEST.relative_to(ROOT)}/ "
          "(carried with the working tree: 64 MiB in all)")  # fmt: skip
    declared = {need for wheel in wheels for need in metadata(wheel)[2]}
    absent = sorted(declared - set(found) - ON_MACHINE)
    print("declared by them, on the machine:", " ".join(sorted(declared & ON_MACHINE)))
    print("declared by them, carried by neither (unused on the suite's paths; --check imports without them):",
          " ".join(absent))  # fmt: skip
    if total > 48 * 2**20:
        problems.append(f"{total / 2**20:.1f} MiB leaves too little of the 64 MiB for the working tree")
    for problem in problems:
        print("ERROR:", problem, file=sys.stderr)
    return 1 if problems else 0


def _python312() -> str | None:
    candidates = [os.environ.get("GPU_WHEELS_PYTHON", ""), shutil.which("python3.12") or ""]
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/3.12*/bin/python3.12"), reverse=True)
    for candidate in filter(None, candidates):
        done = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 12))"],
                              capture_output=True, text=True, check=False)  # fmt: skip
        if done.stdout.strip() == "True":  # a pyenv shim for a version not selected fails here
            return candidate
    return None


NOT_CHECKED = [
    "anything that imports torch: facenet_pytorch beyond compiling its sources, faceid.*, the suite, "
    "`pytest -m gpu`, the train stage (no torch for 3.12 here)",
    "the machine's own package versions (the stand-ins are the registry's latest for 3.12)",
    "the GPU itself, and the 2-GPU sections (the lent machine has one GPU: they skip there)",
]


def _dry_run_only(wheels: list[Path]) -> int:
    """No CPython 3.12 here: at least pip's tag resolution for CPython 3.12 on manylinux x86-64."""
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, *INSTALL, "--dry-run", "--only-binary=:all:", "--python-version", "3.12",
                   "--implementation", "cp", *platforms, "--target", tmp, *map(str, wheels)]  # fmt: skip
        subprocess.run(command, check=True)
    print("checked: pip accepts every wheel for CPython 3.12 on manylinux x86-64 (dry run)")
    print("NOT checked (no CPython 3.12 here; set GPU_WHEELS_PYTHON): installing, importing")
    return 0


def _venv_with_standins(python: str, tmp: Path, absent: list[str], env: dict[str, str]) -> str:
    """A venv of `python` with only the machine's own packages (from the registry, not torch)."""
    subprocess.run([python, "-m", "venv", str(tmp / "venv")], check=True)
    py = str(tmp / "venv" / "bin" / "python")
    standins = sorted(ON_MACHINE - NOT_INSTALLABLE_HERE)
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-compile", "--only-binary=:all:", *standins],
                   check=True, env=env)  # fmt: skip
    probe = ("import importlib.metadata as m, sys\nfor n in sys.argv[1:]:\n"
             "    try: m.distribution(n); print(n)\n    except m.PackageNotFoundError: pass")
    if leaked := subprocess.run(
        [py, "-c", probe, *absent], capture_output=True, text=True, check=True, env=env
    ).stdout.split():
        raise SystemExit(
            f"ERROR: the stand-ins brought {leaked}, absent on the machine: the check would not be faithful"
        )
    return py


LIVE_SMOKE = """import os, sys
from dvclive import Live
with Live(dir=sys.argv[1], dvcyaml=False, save_dvc_exp=False) as live:  # as faceid/train/run.py
    for step in range(2):
        live.log_metric("train_loss", 1.0 / (step + 1))
        live.next_step()
assert os.path.isfile(os.path.join(sys.argv[1], "metrics.json"))
"""


def _imports(py: str, site: Path, wheels: list[Path], tmp: Path, env: dict[str, str]) -> list[str]:
    """Import each wheel's packages (facenet_pytorch: compile it), the suite's torch-free imports,
    and dvclive's Live() as the train stage makes it; returns what was checked."""
    env = {**env, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT), str(site)]),
           "DVC_NO_ANALYTICS": "1", "DVC_STUDIO_OFFLINE": "true"}  # fmt: skip
    modules = [n for w in wheels for n in importable_names(w) if n != "facenet_pytorch"]
    importer = "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)"
    subprocess.run([py, "-c", importer, *modules], check=True, env=env, cwd=tmp)
    done = [f"these import on 3.12: {' '.join(modules)}"]
    facenet = site / "facenet_pytorch"
    subprocess.run([py, "-m", "compileall", "-q", str(facenet)], check=True, env=env, stdout=subprocess.DEVNULL)
    if (weights := sorted(p.name for p in (facenet / "data").glob("*net.pt"))) != ["onet.pt", "pnet.pt", "rnet.pt"]:
        raise SystemExit(f"ERROR: facenet_pytorch's MTCNN weights: {weights}")
    done.append("facenet_pytorch: its sources compile on 3.12, MTCNN's weights (p/r/o-net) are in it")
    subprocess.run(
        [py, "-c", "import sys, tests._params; assert 'torch' not in sys.modules"], check=True, env=env, cwd=tmp
    )
    done.append("the suite's tests._params (→ faceid.config.profile → ruamel.yaml) imports")
    # in a copy of the committed repo without .git (whether the device's copy has .git is not
    # checked) and in a folder outside any repo: Live() opens the DVC repo it finds
    copy = tmp / "repo"
    copy.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(copy)], input=archive.stdout, check=True)
    for cwd in (copy, tmp):
        subprocess.run([py, "-c", LIVE_SMOKE, str(tmp / "live" / cwd.name)], check=True, env=env, cwd=cwd)
    done.append("dvclive: the train stage's Live(dir, dvcyaml=False, save_dvc_exp=False) logs 2 steps, "
                "in the repo's files without .git and outside any repo")  # fmt: skip
    return done


def check() -> int:
    wheels = wheel_files()
    if not wheels:
        print("no wheels in .whl/: run benchmarks/gpu_wheels.sh first", file=sys.stderr)
        return 1
    if report():
        return 1
    if (python := _python312()) is None:
        return _dry_run_only(wheels)
    names = {norm(metadata(w)[0]) for w in wheels}
    absent = sorted({need for w in wheels for need in metadata(w)[2]} - names - ON_MACHINE)
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_ROOT_USER_ACTION": "ignore"}
    for name in ("PYTHONPATH", "VIRTUAL_ENV"):
        env.pop(name, None)
    with tempfile.TemporaryDirectory(prefix="gpu-wheels-check-") as tmp:
        tmp = Path(tmp)
        py = _venv_with_standins(python, tmp, absent, env)
        site = tmp / "site"
        subprocess.run([py, *INSTALL, "--target", str(site), *map(str, wheels)], check=True, env=env)
        if missing := [f"{w.name}: {n}" for w in wheels for n in importable_names(w)
                       if not (site / n.replace(".", "/")).is_dir() and not (site / f"{n}.py").is_file()]:  # fmt: skip
            print("ERROR: not installed:", missing, file=sys.stderr)
            return 1
        verified = [
            f"the suite's install command puts all {len(wheels)} wheels into a clean CPython 3.12 ({python}) "
            "with --no-index --no-deps; each wheel's top-level packages are there",
            f"beside them only the machine's packages ({', '.join(sorted(ON_MACHINE - NOT_INSTALLABLE_HERE))}); "
            f"none of the declared-but-absent ones ({', '.join(absent)})",
            *_imports(py, site, wheels, tmp, env),
        ]  # fmt: skip
    print("\nchecked:\n" + "".join(f"  - {line}\n" for line in verified), end="")
    print("NOT checked:\n" + "".join(f"  - {line}\n" for line in NOT_CHECKED), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help="install .whl/ into a throwaway CPython 3.12 and import what needs no torch")  # fmt: skip
    parser.add_argument("--list", action="store_true", help="only list .whl/ and its total size")
    args = parser.parse_args(argv)
    if args.check:
        return check()
    if args.list:
        return report()
    return download()


if __name__ == "__main__":
    sys.exit(main())
