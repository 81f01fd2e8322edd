"""Datasets and iterators for pretraining: Megatron-Core's GPTDataset machinery, resumable.

Samples come from ``BlendedMegatronDatasetBuilder`` over ``PreAlignGPTDataset`` (a ``GPTDataset``
that also reads code-switching companions when a shard has one) or ``MockGPTDataset``. The sampler is
Megatron-LM's pretraining sampler in spirit: the global sample stream is cut into global batches and
data-parallel rank r takes micro-batches ``[r*mbs, (r+1)*mbs)`` of each ``mbs*dp`` block, starting at
``consumed_samples``. Resuming therefore continues the exact data stream, whatever DP size.

Validation restarts from its first sample at every evaluation, so every evaluation of a run (and of
every run with the same data) scores the same held-out batches: curves are comparable across time.

``check_training_data`` runs before any of this is built: Megatron-Core trusts its shards and its
split, and a shard cut short, a damaged index, a vocabulary larger than the run's or a split share
that rounds to no document would crash mid-run or hang it for ever (``GPTDataset._get_num_epochs``
loops while a split with no token is asked for samples). Each is found at start, in O(sequences)
numpy passes over the ``.idx`` files (``data.shard_check``), and named with its fix.
"""

from __future__ import annotations

import os
import re
from argparse import Namespace
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from megatron.core import parallel_state
from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
from megatron.core.datasets.blended_megatron_dataset_config import (
    convert_split_vector_to_split_matrix,
    parse_and_normalize_split,
)
from megatron.core.datasets.gpt_dataset import MockGPTDataset
from megatron.core.datasets.utils import get_blend_from_list

from megatron_prealign.datasets.gpt import PreAlignDatasetConfig, PreAlignGPTDataset
from megatron_prealign.shards.check import ShardError, ShardIndex, check_shard, preprocess_vocabulary

SPLIT_NAMES = ("train", "validation", "test")


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


def dataset_config(args: Namespace, tokenizer, blend_per_split=None) -> PreAlignDatasetConfig:
    if blend_per_split is not None:
        blend, split = None, None
    else:
        blend = get_blend_from_list(args.data_path) if args.data_path else None
        split = args.split if blend else None
    return PreAlignDatasetConfig(
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
        padded_vocab_size=getattr(args, "padded_vocab_size", None),
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
        cls = PreAlignGPTDataset
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


def check_training_data(args: Namespace, tokenizer) -> None:
    """Validate every shard the run reads and what every split gets from it; build nothing.

    Every ``--data-path``/``--valid-data-path`` shard (and its code-switching companion) must be
    whole (``shard_check.check_shard``) and made with a vocabulary that fits the run's; every split
    Megatron-Core will build (a non-zero ``--split`` weight, or a whole prefix with
    ``--valid-data-path``) must get at least one token from each prefix.

    Raises:
        ShardError: naming the shard (or the ``--split``), what is wrong and what to pass instead.
    """
    if args.mock_data:
        return
    train = get_blend_from_list(args.data_path)[0]
    valid = get_blend_from_list(args.valid_data_path)[0] if args.valid_data_path else []
    indexes: Dict[str, ShardIndex] = {}
    for prefix in dict.fromkeys(train + valid):
        indexes[prefix] = check_shard(prefix)
        _check_vocabulary(prefix, tokenizer, getattr(args, "padded_vocab_size", None))
    if valid:  # --data-path is used whole for training, each validation prefix whole
        used = train + (valid if args.eval_interval else [])
        for prefix in used:
            _require_tokens(indexes[prefix], "--valid-data-path" if prefix not in train else "--data-path")
        return
    for prefix in train:
        _require_tokens(indexes[prefix], "--data-path")
        _check_split(args.split, indexes[prefix], needed=(True, bool(args.eval_interval), False))


def _check_vocabulary(prefix: str, tokenizer, padded: Optional[int]) -> None:
    """Refuse a shard whose preprocessing stats record a larger vocabulary than the run's.

    Reading the stats file costs nothing, where scanning a TB ``.bin`` for its largest id would take
    an hour; shards without stats are still guarded sample by sample (``PreAlignGPTDataset``).
    """
    made = preprocess_vocabulary(prefix)
    size = made.get("vocab_size") if made else None
    if not isinstance(size, int) or size <= tokenizer.vocab_size:
        return
    kind = made.get("tokenizer_type")
    flags = (f"--tokenizer-type NullTokenizer --vocab-size {size - 1}" if kind == "NullTokenizer"
             else f"--tokenizer-type {kind} with its model")
    ours = f"{tokenizer.vocab_size} ids" + (f", padded to {padded}" if padded else "")
    raise ShardError(
        f"{prefix}: made with a vocabulary of {size} ids ({kind}, see {made['stats_path']}), larger "
        f"than this run's ({ours}): its ids up to {size - 1} would index past the embedding. Train "
        f"with the tokenizer it was made with ({flags}), or re-run tools/preprocess_data.py with "
        "this run's tokenizer.")


def _require_tokens(index: ShardIndex, flag: str) -> None:
    if index.tokens() == 0:
        raise ShardError(
            f"{flag} {index.prefix}: the shard holds no token ({index.num_documents} documents, "
            f"{index.num_sequences} sequences): nothing to train or validate on (tools/preprocess_data.py "
            "writes such a shard from empty input). Give a shard with data.")


def split_ranges(split: str, num_sequences: int) -> List[Optional[Tuple[int, int]]]:
    """``[begin, end)`` of each split's sequences, as Megatron-Core cuts a shard; None: not built.

    The same arithmetic as ``BlendedMegatronDatasetBuilder._build_megatron_dataset_splits`` (GPT
    shards are split by sequence, which is by document unless sentences were split).
    """
    try:
        weights = [float(n) for n in re.findall(r"[.0-9]+", split)]  # Megatron-Core's parsing
    except ValueError:
        weights = []
    if not 0 < len(weights) <= len(SPLIT_NAMES) or sum(weights) <= 0:
        raise ShardError(f"--split {split}: expected up to three non-negative weights "
                         "'train,validation,test' with a positive sum, e.g. 969,30,1")
    matrix = convert_split_vector_to_split_matrix(parse_and_normalize_split(split))
    return [None if m is None else (int(round(m[0] * float(num_sequences))),
                                    int(round(m[1] * float(num_sequences)))) for m in matrix]


def _empty_splits(split: str, index: ShardIndex) -> List[int]:
    """The splits that Megatron-Core builds but that get no token of ``index``."""
    return [i for i, r in enumerate(split_ranges(split, index.num_sequences))
            if r is not None and index.tokens(*r) == 0]


def _check_split(split: str, index: ShardIndex, needed: Sequence[bool]) -> None:
    """Raise when a split gets no token of the shard (Megatron-Core would hang building it)."""
    ranges = split_ranges(split, index.num_sequences)
    if ranges[0] is None:
        raise ShardError(f"--split {split} gives the train split no share; give it a weight, "
                         "e.g. --split 98,2,0")
    empty = _empty_splits(split, index)
    if not empty:
        return
    i = empty[0]
    begin, end = ranges[i]
    unit = "documents" if index.num_sequences == index.num_documents else "sequences (sentences)"
    share = 100.0 * parse_and_normalize_split(split)[i]
    raise ShardError(
        f"--split {split} gives the {SPLIT_NAMES[i]} split of {index.prefix} no token: the shard has "
        f"{index.num_sequences} {unit}, and the {SPLIT_NAMES[i]} share ({share:.3g}%) rounds to "
        f"{unit.split()[0]} [{begin}, {end}), which hold {index.tokens(begin, end)} tokens; "
        f"Megatron-Core would wait for ever for samples of that split. "
        f"{_suggest_split(split, index, needed)}")


def _suggest_split(split: str, index: ShardIndex, needed: Sequence[bool]) -> str:
    """A ``--split`` under which every split that is built gets tokens of this shard."""
    weights = [float(w) for w in re.findall(r"[.0-9]+", split)]
    weights += [0.0] * (len(SPLIT_NAMES) - len(weights))
    empty = _empty_splits(split, index)
    candidates = []
    if not any(needed[i] for i in empty):  # a weight of 0 builds no such split
        candidates.append([0.0 if i in empty else w for i, w in enumerate(weights)])
    candidates += [[100 - v, v if needed[1] else 0, 0] for v in (1, 2, 5, 10, 20, 50)]
    for candidate in candidates:
        text = ",".join(f"{w:g}" for w in candidate)
        if not _empty_splits(text, index):
            alternative = " or give --valid-data-path" if needed[1] else ""
            return f"Pass --split {text}{alternative}."
    return (f"The shard is too small to split ({index.num_sequences} sequences, {index.tokens()} "
            "tokens): add data, or pass --split 100,0,0 with --valid-data-path for validation.")


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
