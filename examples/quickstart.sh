#!/usr/bin/env bash
# The built-in main job: set up .venv, then the English / English-Clone experiment at the `tiny`
# preset (joint training vs PreAlign, one seed, the whole pipeline) on CPU. It ends with a headline
# table (clone and English PPL, knowledge, transfer, P@1 per level, per arm) and the path of the full
# report, results.md. OUT=DIR picks the output directory.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
. .venv/bin/activate
# Library warnings off (Megatron-Core's TE/Apex ones among them): setup_env.sh said once what is installed.
export PYTHONWARNINGS=ignore
python examples/experiment/run.py --preset tiny --output-dir "${OUT:-runs/english_clone_tiny}"
