#!/usr/bin/env bash
# The GPU suite: one JSON of crop / training / embedding throughput against their
# baselines, peak GPU memory, `pytest -m gpu`, and a 2-process DDP smoke test (2+ GPUs).
# Sized for <= 8 minutes on one H100/H200. See benchmarks/gpu_suite.py for what is timed.
#
#   benchmarks/gpu_suite.sh [--out gpu_suite.json]            # on a GPU machine
#   benchmarks/gpu_suite.sh --dry-run --out /tmp/suite.json   # CPU, tiny sizes (CI)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$root/src:$root${PYTHONPATH:+:$PYTHONPATH}"
export DVC_NO_ANALYTICS=1 DVC_STUDIO_OFFLINE=true PYTHONUNBUFFERED=1
# the whole suite is bounded: a hung collective or a stuck download must not hold the GPU
exec timeout --signal=INT --kill-after=30 "${GPU_SUITE_TIMEOUT:-540}" \
  python "$root/benchmarks/gpu_suite.py" "$@"
