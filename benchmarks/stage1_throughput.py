"""Stage-1 throughput and its cost relative to a stage-2 step of the same model, side by side.

One process builds one model (Megatron-Core GPTModel, the paper's synthetic shape by default:
4 layers x 256 hidden x 1024 ffn x 8 heads) and alternates blocks of
  - stage-1 steps: ``--entries`` dictionary entries (English word + its clone) per step, every level
    aligned (contrastive + LM loss), and
  - stage-2 steps: ``--stage2-batch`` sequences of ``--seq-length`` tokens of LM pretraining,
so machine noise hits both alike. Prints the median step times, entries/s, and

    ratio stage1_step_vs_stage2_step = ...   (stage-1 step time / stage-2 step time)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import string
import sys
import tempfile
import time
import warnings
from argparse import Namespace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
warnings.simplefilter("ignore")


def make_language(workdir: str, num_words: int, seed: int = 0):
    """A synthetic word list, a SentencePiece model over it, and its English<->Clone dictionary."""
    import sentencepiece as spm

    rng = random.Random(seed)
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    words = sorted({"".join(rng.choice(syllables) for _ in range(rng.randint(1, 4)))
                    for _ in range(num_words * 2)})[:num_words]
    text = os.path.join(workdir, "text.txt")
    with open(text, "w") as f:
        for _ in range(20000):
            f.write(" ".join(rng.choice(words) for _ in range(16)) + "\n")
        for _ in range(20):
            f.write(" ".join(string.ascii_lowercase) + "\n")
    spm.SentencePieceTrainer.train(input=text, model_prefix=os.path.join(workdir, "spm"),
                                   vocab_size=2000, model_type="bpe", num_threads=2, minloglevel=2)
    dictionary = os.path.join(workdir, "dict.jsonl")
    with open(dictionary, "w") as f:
        for word in words:
            f.write(json.dumps({"words": f"{word} $ <clone>{word}"}) + "\n")
    return os.path.join(workdir, "spm.model"), dictionary


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--entries", type=int, default=256, help="Dictionary entries per stage-1 step.")
    cli.add_argument("--stage2-batch", type=int, default=8)
    cli.add_argument("--seq-length", type=int, default=512)
    cli.add_argument("--rounds", type=int, default=4)
    cli.add_argument("--steps-per-block", type=int, default=3)
    cli.add_argument("--threads", type=int, default=2)
    opts = cli.parse_args()

    import torch

    torch.set_num_threads(opts.threads)
    workdir = tempfile.mkdtemp(prefix="stage1_bench_")
    spm_model, dictionary = make_language(workdir, num_words=4000)

    from functools import partial

    from megatron_prealign.alignment.loss import AlignmentLossConfig
    from megatron_prealign.arguments import parse_args
    from megatron_prealign.training import loop
    from megatron_prealign.training.align import _words_loader, alignment_forward_step, load_entries
    from megatron_prealign.training.data import build_datasets, make_loader
    from megatron_prealign.training.step import lm_forward_step, train_step

    shape = ["--num-layers", "4", "--hidden-size", "256", "--ffn-hidden-size", "1024",
             "--num-attention-heads", "8", "--seq-length", str(opts.seq_length), "--lr", "5e-4",
             "--log-interval", "1000000", "--train-iters", "1000"]
    align_args = parse_args(shape + ["--stage", "align", "--alignment-dictionary", dictionary,
                                     "--tokenizer-type", "SentencePieceTokenizer",
                                     "--tokenizer-model", spm_model, "--english-clone",
                                     "--micro-batch-size", str(opts.entries)], world_size=1)
    state = loop.setup(align_args)
    align_args = state.args  # the finished flags
    entries = load_entries(dictionary, state.tokenizer, 30, log=lambda *a: None)
    align_iter = iter(_words_loader(entries, align_args, 0, 1000 * opts.entries, seed=1))
    config = AlignmentLossConfig()
    align_step = partial(alignment_forward_step, config, align_args.alignment_level_names)

    # Stage 2 with the same model and vocabulary (mock tokens of the doubled vocabulary).
    lm_args = parse_args(shape + ["--mock-data", "--vocab-size", str(state.tokenizer.vocab_size),
                                  "--micro-batch-size", str(opts.stage2_batch)], world_size=1)
    lm_args = Namespace(**{**vars(lm_args), "padded_vocab_size": state.args.padded_vocab_size})
    train_ds, _ = build_datasets(lm_args, state.tokenizer)
    lm_iter = iter(make_loader(train_ds, 0, lm_args))

    def block(kind: str) -> float:
        start = time.perf_counter()
        for i in range(opts.steps_per_block):
            if kind == "stage1":
                train_step(align_step, align_iter, state.model, state.optimizer, state.scheduler,
                           align_args, i + 1)
            else:
                train_step(lm_forward_step, lm_iter, state.model, state.optimizer, state.scheduler,
                           lm_args, i + 1)
        return (time.perf_counter() - start) / opts.steps_per_block

    block("stage1"), block("stage2")  # warm-up
    times = {"stage1": [], "stage2": []}
    for _ in range(opts.rounds):
        for kind in times:
            times[kind].append(block(kind))
    s1, s2 = statistics.median(times["stage1"]), statistics.median(times["stage2"])
    words = sum(len(e[1]) for e in entries) / len(entries) * opts.entries
    print(f"model: 4 layers x 256 hidden x 1024 ffn x 8 heads, vocab {state.tokenizer.vocab_size} "
          f"(English-Clone), fp32 CPU, {opts.threads} threads")
    print(f"stage 1: {opts.entries} entries (~{words:.0f} words) per step: {s1 * 1000:.0f} ms/step, "
          f"{opts.entries / s1:,.0f} entries/s")
    print(f"stage 2: {opts.stage2_batch} x {opts.seq_length} tokens per step: {s2 * 1000:.0f} ms/step, "
          f"{opts.stage2_batch * opts.seq_length / s2:,.0f} tokens/s")
    print(f"ratio stage1_entries_per_s = {opts.entries / s1:.1f}")
    print(f"ratio stage1_step_vs_stage2_step = {s1 / s2:.3f}")


if __name__ == "__main__":
    main()
