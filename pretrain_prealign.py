"""Pretrain a GPT model with Megatron-Core, PreAlign style.

One process (CPU or one GPU), built-in synthetic data::

    python pretrain_prealign.py --mock-data --num-layers 2 --hidden-size 64 \
        --num-attention-heads 4 --seq-length 64 --micro-batch-size 4 --train-iters 20 --lr 1e-3

prints one line per --log-interval, e.g.::

    iteration      10/20 | lm loss: 8.912345 | lr: 1.000e-03 | grad norm: 1.2345 | tokens/s: 9,000

Several processes (tensor, pipeline and data parallel; gloo on CPU, NCCL on GPUs)::

    torchrun --nproc-per-node 8 pretrain_prealign.py --tensor-model-parallel-size 2 \
        --pipeline-model-parallel-size 2 --data-path 0.7 out/en_text_document 0.3 out/clone_text_document \
        --tokenizer-type SentencePieceTokenizer --tokenizer-model out/spm.model --english-clone \
        --bf16 --micro-batch-size 8 --global-batch-size 256 --train-iters 2000 --save ckpt --load ckpt

Shards come from ``tools/preprocess_data.py`` (code-switching is baked into them there); every flag
is described by ``--help``; flags keep Megatron-LM's names.
"""

import os
import sys

from megatron_prealign.arguments import ArgumentError, parse_args
from megatron_prealign.errors import PreAlignError


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
    except ArgumentError as err:
        print(f"pretrain_prealign.py: error: {err}", file=sys.stderr)
        return 2
    from megatron_prealign import cpu_compat

    cpu_compat.apply()  # before the stage modules import megatron.core
    from megatron_prealign.checkpointing.store import check_save_target

    try:  # before anything is built; every rank reads the same files, so all stop together
        check_save_target(args)
    except PreAlignError as err:
        if os.environ.get("RANK", "0") == "0":
            print(f"error: {err}", file=sys.stderr)
        return 1
    if args.stage == "align":
        from megatron_prealign.training.align import run
    else:
        from megatron_prealign.training.pretrain import run
    return run(args)


if __name__ == "__main__":  # the guard also keeps async checkpoint workers from re-running main
    sys.exit(main())
