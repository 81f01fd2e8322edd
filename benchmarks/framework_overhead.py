"""Framework overhead: ``pretrain_prealign``'s loop vs a bare Megatron-Core loop, side by side.

Both loops drive the same model (one ``build_model`` call), DDP wrapper, Megatron optimizer,
scheduler and data iterator. The bare loop is what Megatron-Core's minimal training example does per
step (zero grads, ``get_forward_backward_func``, ``optimizer.step``); ours is ``training.loop.train``
with everything it adds (loss reduction over ranks, the non-finite check, logging, exit checks).
Blocks of steps alternate between the two so machine noise hits both alike; the median step time of
each is compared.

    python benchmarks/framework_overhead.py            # prints the step times, then
    ratio framework_overhead = 1.01                    # ours / bare (goal <= 1.02)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from argparse import Namespace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
warnings.simplefilter("ignore")

from megatron_prealign.arguments import parse_args  # noqa: E402


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--rounds", type=int, default=6)
    cli.add_argument("--steps-per-block", type=int, default=5)
    cli.add_argument("--threads", type=int, default=2)
    opts = cli.parse_args()

    import torch

    torch.set_num_threads(opts.threads)
    total = opts.rounds * opts.steps_per_block * 2 + 2
    args = parse_args(["--mock-data", "--vocab-size", "4000", "--num-layers", "4", "--hidden-size", "256",
                       "--num-attention-heads", "8", "--seq-length", "256", "--micro-batch-size", "4",
                       "--global-batch-size", "8", "--lr", "3e-4", "--train-iters", str(total),
                       "--log-interval", "1000000"], world_size=1)

    from megatron_prealign.training import loop
    from megatron_prealign.training.data import build_datasets, make_loader
    from megatron_prealign.training.step import lm_forward_step, run_schedule

    state = loop.setup(args)
    args = state.args  # the finished flags (padded vocabulary) the loop reads
    train_ds, _ = build_datasets(args, state.tokenizer)
    iterator = iter(make_loader(train_ds, 0, args))

    def bare_block(steps: int) -> None:
        for _ in range(steps):
            for chunk in state.model:
                chunk.zero_grad_buffer()
            state.optimizer.zero_grad()
            run_schedule(lm_forward_step, iterator, state.model, args, forward_only=False)
            state.optimizer.step()
            state.scheduler.step(increment=args.global_batch_size)
            state.iteration += 1

    def ours_block(steps: int) -> None:
        state.args = Namespace(**{**vars(state.args), "train_iters": state.iteration + steps})
        loop.train(state, lm_forward_step, iterator)

    bare_block(1)  # warm-up both paths
    ours_block(1)
    bare, ours = [], []
    for _ in range(opts.rounds):
        for block, times in ((bare_block, bare), (ours_block, ours)):
            start = time.perf_counter()
            block(opts.steps_per_block)
            times.append((time.perf_counter() - start) / opts.steps_per_block)
    bare_s, ours_s = statistics.median(bare), statistics.median(ours)
    tokens = args.global_batch_size * args.seq_length
    print(f"model: 4 layers x 256 hidden, seq 256, global batch 8 ({tokens} tokens/step), fp32 CPU, "
          f"{opts.threads} threads, {opts.rounds} rounds x {opts.steps_per_block} steps each")
    print(f"bare Megatron-Core loop : {bare_s * 1000:8.1f} ms/step  ({tokens / bare_s:,.0f} tokens/s)")
    print(f"pretrain_prealign loop  : {ours_s * 1000:8.1f} ms/step  ({tokens / ours_s:,.0f} tokens/s)")
    print(f"ratio framework_overhead = {ours_s / bare_s:.3f}")


if __name__ == "__main__":
    main()
