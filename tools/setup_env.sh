#!/usr/bin/env bash
# Create (or reuse) .venv with the CPU build of torch and megatron-prealign installed editable.
# GPU clusters: skip this; install into your CUDA environment with `pip install -e .[hf,gpu]`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# The CPU build first: an unpinned torch would pull several GB of CUDA wheels.
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[test,hf]"
python -c "import torch, megatron.core, megatron_prealign; print('environment ready: torch', torch.__version__, '| megatron-core', megatron.core.__version__)"
