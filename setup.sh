#!/usr/bin/env bash
# Set up charnn in ./.venv: the CPU build of torch first where no CUDA GPU is present
# (an unpinned `torch` would pull a multi-GB CUDA build), then charnn with its test tools.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip=(.venv/bin/python -m pip install -q)

if .venv/bin/python -c 'import torch' 2>/dev/null; then
    :  # torch already there (CPU or CUDA): keep it
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    "${pip[@]}" torch                       # CUDA machine: the default (CUDA) build
else
    # CPU machine: a local CPU wheel if pip can see one, else PyTorch's CPU index.
    "${pip[@]}" "torch==2.13.0+cpu" 2>/dev/null \
        || "${pip[@]}" torch --index-url https://download.pytorch.org/whl/cpu \
        || "${pip[@]}" torch
fi
"${pip[@]}" -e ".[dev]"
echo "charnn is set up: .venv/bin/charnn --help" >&2
