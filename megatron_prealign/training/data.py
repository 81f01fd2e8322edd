"""Datasets and iterators for pretraining: Megatron-Core's GPTDataset machinery, resumable.

Samples come from ``BlendedMegatronDatasetBuilder`` over ``PreAlignGPTDataset`` (a ``GPTDataset``
that also reads code-switching companions when a shard has one) or ``MockGPTDataset``. The sampler is
Megatron-LM's pretraining sampler in spirit: the global sample stream is cut into global batches and
data-parallel rank r takes micro-batches ``[r*mbs, (r+1)*mbs)`` of each ``mbs*dp`` block, starting at
``consumed_samples``. Resuming therefore continues the exact data stream, whatever DP size.

Validation restarts from its first sample at every evaluation, so every evaluation of a run (and of
every run with the same data) scores the same held-out batches: curves are comparable across time.
"""

from __future__ import annotations

import os
from argparse import Namespace
from typing import Iterator, List, Optional

import torch
from megatron.core import parallel_state
from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
from megatron.core.datasets.gpt_dataset import GPTDatasetConfig, MockGPTDataset
from megatron.core.datasets.utils import get_blend_from_list


class PretrainingSampler:
    """Yields this DP rank's micro-batch indices from ``consumed_samples`` to ``total_samples``."""

    def __init__(self, total_samples: int, consumed_samples: int, micro_batch_size: int,
                 dp_rank: int, dp_size: int):
        if consumed_samples > total_samples:
            raise ValueError(f"consumed samples {consumed_samples} exceed the dataset "
                             f"({total_samples} samples)")
        self.total_samples = total_samples
        self.consumed_samples = consumed_samples
        self.micro_batch_size = micro_batch_size
        self.dp_rank = dp_rank
        self.block = micro_batch_size * dp_size

    def __len__(self) -> int:
        return (self.total_samples - self.consumed_samples) // self.block

    def __iter__(self) -> Iterator[List[int]]:
        start = self.dp_rank * self.micro_batch_size
        for first in range(self.consumed_samples, self.total_samples - self.block + 1, self.block):
            yield list(range(first + start, first + start + self.micro_batch_size))


def dataset_config(args: Namespace, tokenizer, blend_per_split=None) -> GPTDatasetConfig:
    if blend_per_split is not None:
        blend, split = None, None
    else:
        blend = get_blend_from_list(args.data_path) if args.data_path else None
        split = args.split if blend else None
    return GPTDatasetConfig(
        random_seed=args.seed,
        sequence_length=args.seq_length,
        blend=blend,
        blend_per_split=blend_per_split,
        split=split,
        tokenizer=tokenizer,
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=args.eod_mask_loss,
        create_attention_mask=False,  # causal attention is implied by the attention module
        path_to_cache=args.data_cache_path,
        mid_level_dataset_surplus=0.005,
    )


def _set_name(prefix: str) -> str:
    return os.path.basename(prefix).removesuffix("_text_document")


def build_datasets(args: Namespace, tokenizer):
    """Train dataset and validation datasets (``{name: dataset}``) sized for the whole run.

    Validation comes from the validation share of ``--split``, or from ``--valid-data-path``
    (one blended set, or one set per prefix with ``--multiple-validation-sets``). The single set is
    named ``""`` so its loss is logged as plain ``lm loss``.
    """
    if args.mock_data:
        cls = MockGPTDataset
    else:
        from megatron_prealign.data.datasets import PreAlignGPTDataset as cls
    train_samples = args.train_iters * args.global_batch_size
    valid_samples = args.eval_iters * args.global_batch_size if args.eval_interval else 0

    def build(sizes, blend_per_split=None):
        # Every rank builds (rank 0 first writes the index cache, the others then read it).
        config = dataset_config(args, tokenizer, blend_per_split)
        return BlendedMegatronDatasetBuilder(cls, sizes, lambda: True, config).build()

    if not args.valid_data_path:
        train, valid, _ = build([train_samples, valid_samples, 0])
        if args.eval_interval and valid is None:
            raise ValueError(f"--eval-interval is set but --split {args.split} gives no validation "
                             "data; give the validation part a weight, e.g. --split 98,2,0, or "
                             "pass --valid-data-path")
        return train, ({"": valid} if valid is not None else {})
    train = build([train_samples, 0, 0], [get_blend_from_list(args.data_path), None, None])[0]
    if not args.eval_interval:
        return train, {}
    if args.multiple_validation_sets:
        prefixes = [p for p in args.valid_data_path if not _is_number(p)]
        return train, {_set_name(p): build([0, valid_samples, 0], [None, ([p], None), None])[1]
                       for p in prefixes}
    valid = build([0, valid_samples, 0], [None, get_blend_from_list(args.valid_data_path), None])[1]
    return train, {"": valid}


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def make_loader(dataset, consumed_samples: int, args: Namespace) -> Optional[torch.utils.data.DataLoader]:
    """A DataLoader over this rank's share of ``dataset`` from ``consumed_samples`` on."""
    if dataset is None:
        return None
    sampler = PretrainingSampler(
        total_samples=len(dataset),
        consumed_samples=consumed_samples,
        micro_batch_size=args.micro_batch_size,
        dp_rank=parallel_state.get_data_parallel_rank(),
        dp_size=parallel_state.get_data_parallel_world_size(),
    )
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=args.num_workers, pin_memory=False,
        persistent_workers=False,
    )
