#!/usr/bin/env bash
# The GPU suite: one JSON of crop / training / embedding throughput against their
# baselines, peak GPU memory, `pytest -m gpu`, and a 2-process DDP smoke test (2+ GPUs).
# Sized for <= 8 minutes on one H100/H200. See benchmarks/gpu_suite.py for what is timed.
#
#   benchmarks/gpu_suite.sh [--out gpu_suite.json]            # on a GPU machine
#   benchmarks/gpu_suite.sh --dry-run --out /tmp/suite.json   # CPU, tiny sizes (CI)
#
# On a lent GPU machine without network, in one call: its image has torch, numpy, pandas,
# scikit-*, pyyaml … but not facenet-pytorch, ruamel.yaml, dvc or dvclive. First, here (PyPI
# reachable), in the checkout the device tool sends:
#   benchmarks/gpu_wheels.sh            # wheels into .whl/ (ignored, ~4.6 MiB); --check tests them
# then the device tool's `run` with carry [".whl"] and the command
#   benchmarks/gpu_suite.sh --out $OUT/gpu_suite.json
# This script installs .whl/*.whl (--no-index --no-deps) into a folder under /tmp and puts it on
# PYTHONPATH after the repo's src, unless what they provide is importable already (the project's
# venv, CI's --dry-run): then it installs nothing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$(command -v python3 || command -v python)}  # the machine's python3 holds torch
export PYTHONPATH="$root/src:$root${PYTHONPATH:+:$PYTHONPATH}"
export DVC_NO_ANALYTICS=1 DVC_STUDIO_OFFLINE=true PYTHONUNBUFFERED=1
shopt -s nullglob
wheels=("$root"/.whl/*.whl)
if ((${#wheels[@]})) && ! "$python" -c 'import importlib.util as u, sys
sys.exit(not all(u.find_spec(m) for m in ("facenet_pytorch", "ruamel.yaml", "dvclive")))' 2>/dev/null; then
  site="${TMPDIR:-/tmp}/faceid-gpu-suite-site"
  rm -rf "$site"
  env -u PYTHONPATH PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore "$python" -m pip install -q \
    --no-index --no-deps --no-compile --no-cache-dir --target "$site" "${wheels[@]}" ||
    { echo "gpu_suite.sh: installing .whl/ failed (wheels for another Python? rerun benchmarks/gpu_wheels.sh)" >&2; exit 1; }
  # after the repo's src and root; the wheels hold no torch, numpy …, so the machine's own stay in use
  export PYTHONPATH="$PYTHONPATH:$site"
  echo "gpu_suite.sh: installed ${#wheels[@]} wheels from .whl/ into $site" >&2
fi
# the whole suite is bounded: a hung collective or a stuck download must not hold the GPU
exec timeout --signal=INT --kill-after=30 "${GPU_SUITE_TIMEOUT:-540}" \
  "$python" "$root/benchmarks/gpu_suite.py" "$@"
