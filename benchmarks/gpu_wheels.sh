#!/usr/bin/env bash
# The wheels the GPU suite needs on a lent GPU machine without network, which lacks
# facenet-pytorch, ruamel.yaml, dvc and dvclive (see benchmarks/gpu_wheels.py for the list and
# why each is there). Run it here, where PyPI is reachable, before the device call;
# benchmarks/gpu_suite.sh installs them there.
#
#   benchmarks/gpu_wheels.sh          # download them into .whl/ (ignored), print them and the total
#   benchmarks/gpu_wheels.sh --list   # only print what .whl/ holds
#   benchmarks/gpu_wheels.sh --check  # install them into a throwaway CPython 3.12 and import them
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
exec "${PYTHON:-python3}" "$root/benchmarks/gpu_wheels.py" "$@"
