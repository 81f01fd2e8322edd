#!/usr/bin/env bash
# The built-in main job: set up .venv, then the English / English-Clone experiment at the `tiny`
# preset (joint training vs PreAlign, one seed, the whole pipeline) on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
. .venv/bin/activate
export PYTHONWARNINGS=ignore
python examples/english_clone/run.py --preset tiny --output-dir "${OUT:-runs/english_clone_tiny}"
