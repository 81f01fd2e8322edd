#!/usr/bin/env bash
# The built-in tiny main job: set up, then pretrain a small Llama-style GPTModel with Megatron-Core
# on CPU (two data-parallel ranks under torchrun/gloo), save a checkpoint, and resume from it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
. .venv/bin/activate
OUT=${OUT:-runs/quickstart}
rm -rf "$OUT"
MODEL="--mock-data --vocab-size 4000 --num-layers 4 --hidden-size 128 --num-attention-heads 4
       --seq-length 128 --micro-batch-size 8 --global-batch-size 16 --lr 3e-3 --min-lr 3e-4
       --lr-warmup-iters 10 --log-interval 20 --eval-interval 50 --eval-iters 4 --split 95,5,0
       --save $OUT/checkpoints --save-interval 100 --tensorboard-dir $OUT/tensorboard
       --data-cache-path $OUT/cache"
export OMP_NUM_THREADS=1 PYTHONWARNINGS=ignore
echo "== pretraining 150 iterations (DP=2) =="
torchrun --nproc-per-node 2 pretrain_prealign.py $MODEL --train-iters 150 --exit-interval 100
echo "== resuming from the iteration-100 checkpoint =="
torchrun --nproc-per-node 2 pretrain_prealign.py $MODEL --train-iters 150 --load $OUT/checkpoints
echo "checkpoints: $OUT/checkpoints   tensorboard: tensorboard --logdir $OUT/tensorboard"
