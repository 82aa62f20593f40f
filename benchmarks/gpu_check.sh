#!/usr/bin/env bash
# Every speed figure of benchmarks/ in one go, one summary table at the end (see gpu_check.py).
#   bash benchmarks/gpu_check.sh --dataset cifar10-jpeg --data-dir DATA   # one H100: about eight minutes
#   bash benchmarks/gpu_check.sh --sizes tiny                             # CPU plumbing check (CI runs it)
# PYTHON names the interpreter (default: python on the PATH).
set -euo pipefail
exec "${PYTHON:-python}" "$(dirname "$0")/gpu_check.py" "$@"
