"""What the training-data checks cost: per-sample vocabulary check and start-up shard check.

Two measurements on one synthetic shard (``--documents`` documents of 20-2000 random ids):

- ``sample_vocab_check``: ``PreAlignGPTDataset.__getitem__`` (which checks every sample's ids against
  the run's vocabulary) against the same dataset with the check switched off; blocks of samples
  alternate between the two so machine noise hits both alike; median time per sample compared.
- ``shard_check_vs_dataset_build``: ``shard_check.check_shard`` (the whole .idx validated, the .bin
  size checked) against building the Megatron-Core dataset over the same shard (index building, no
  cache), the work every training start does anyway.

    python benchmarks/data_checks.py            # prints the times, then
    ratio sample_vocab_check = 1.01             # with / without the check (goal <= 1.05)
    ratio shard_check_vs_dataset_build = 0.05   # check / dataset build (goal well below 1)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
warnings.simplefilter("ignore")


def make_shard(prefix: str, documents: int, vocab: int) -> None:
    import numpy as np
    import torch

    from megatron_prealign.shards.writer import indexed_dataset_module

    rng = np.random.RandomState(0)
    builder = indexed_dataset_module().IndexedDatasetBuilder(prefix + ".bin", dtype=np.uint16)
    for _ in range(documents):
        builder.add_item(torch.from_numpy(rng.randint(0, vocab, size=rng.randint(20, 2000))))
        builder.end_document()
    builder.finalize(prefix + ".idx")


def build_dataset(prefix: str, tokenizer, seq_length: int, samples: int):
    from megatron.core.datasets.blended_megatron_dataset_builder import (
        BlendedMegatronDatasetBuilder,
    )

    from megatron_prealign.datasets.gpt import PreAlignDatasetConfig, PreAlignGPTDataset

    config = PreAlignDatasetConfig(random_seed=1, sequence_length=seq_length, blend=([prefix], None),
                                   split="100,0,0", tokenizer=tokenizer, reset_position_ids=False,
                                   reset_attention_mask=False, eod_mask_loss=False)
    return BlendedMegatronDatasetBuilder(PreAlignGPTDataset, [samples, 0, 0], lambda: True,
                                         config).build()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--documents", type=int, default=20000)
    parser.add_argument("--seq-length", type=int, default=2048)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()

    from megatron_prealign.datasets.gpt import PreAlignGPTDataset
    from megatron_prealign.shards.check import check_shard
    from megatron_prealign.text.tokenizers import build_tokenizer

    vocab = 32000
    tokenizer = build_tokenizer("NullTokenizer", None, vocab_size=vocab)
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, "bench_text_document")
        make_shard(prefix, args.documents, vocab)

        check_times, build_times = [], []
        for _ in range(3):
            start = time.perf_counter()
            check_shard(prefix)
            check_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            dataset = build_dataset(prefix, tokenizer, args.seq_length, args.samples)
            build_times.append(time.perf_counter() - start)

        checked = PreAlignGPTDataset._check_ids
        block = max(1, len(dataset) // (2 * args.rounds))
        times = {"with check": [], "without check": []}
        for r in range(args.rounds):
            for name in ("with check", "without check") if r % 2 == 0 else ("without check", "with check"):
                PreAlignGPTDataset._check_ids = checked if name == "with check" else (lambda *a, **k: None)
                indices = range(r * block, (r + 1) * block)
                start = time.perf_counter()
                for i in indices:
                    dataset[i]
                times[name].append((time.perf_counter() - start) / block)
        PreAlignGPTDataset._check_ids = checked

    with_check = statistics.median(times["with check"])
    without = statistics.median(times["without check"])
    check = statistics.median(check_times)
    build = statistics.median(build_times)
    print(f"shard: {args.documents} documents, seq {args.seq_length}, {block} samples x {args.rounds} rounds")
    print(f"sample with vocabulary check    : {with_check * 1e6:8.1f} us")
    print(f"sample without vocabulary check : {without * 1e6:8.1f} us")
    print(f"shard check (.idx + .bin size)  : {check * 1e3:8.2f} ms")
    print(f"dataset build (Megatron-Core)   : {build * 1e3:8.2f} ms")
    print(f"ratio sample_vocab_check = {with_check / without:.3f}")
    print(f"ratio shard_check_vs_dataset_build = {check / build:.3f}")


if __name__ == "__main__":
    main()
