#!/usr/bin/env bash
# Create (or reuse) .venv with the CPU build of torch and megatron-prealign installed editable.
# GPU clusters: skip this; install into your CUDA environment with `pip install -e .[hf,gpu]`.
#
# Quiet on success: pip runs with -qq (errors only: a failed install still prints pip's error and stops
# the script), so neither pip's warnings nor setuptools' "Editable installation" banner show. The last
# line says what was installed, and says once, plainly, whether Transformer Engine and Apex are there
# (Megatron-Core warns about their absence at import, several times; it is silenced here).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
echo "setting up .venv: CPU torch 2.13.0 and megatron-prealign (editable); 2-3 min the first time"
python -m pip install -qq --upgrade pip >/dev/null 2>&1 || true
# The CPU build first: an unpinned torch would pull several GB of CUDA wheels.
python -m pip install -qq "torch==2.13.0"
python -m pip install -qq -e ".[test,hf]"
python -W ignore - <<'EOF'
import importlib.util

import megatron.core
import torch

import megatron_prealign  # noqa: F401  (the package imports)

fused = [name for name, module in (("Transformer Engine", "transformer_engine"), ("Apex", "apex"))
         if importlib.util.find_spec(module) is not None]
if fused:
    extras = " + ".join(fused)
elif torch.cuda.is_available():
    extras = "no Transformer Engine or Apex (optional on GPU: TE for FP8; torch fallbacks otherwise)"
else:
    extras = "CPU only (Transformer Engine and Apex are for GPUs)"
print(f"environment ready: torch {torch.__version__} | megatron-core {megatron.core.__version__} | {extras}")
EOF
