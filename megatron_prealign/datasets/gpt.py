"""The training dataset: Megatron's GPTDataset plus code-switched labels from companion shards.

``PreAlignGPTDataset`` is a ``megatron.core.datasets.gpt_dataset.GPTDataset`` and is built the same
way (``BlendedMegatronDatasetBuilder(PreAlignGPTDataset, sizes, is_built_on_rank, config)`` with an
ordinary ``GPTDatasetConfig``), so blends such as
``--data-path 0.7 en_text_document 0.3 clone_cs_text_document`` work with ordinary weights.

Per data prefix:

* **no companion** (no ``{prefix}_targets.idx``): exactly GPTDataset. ``tokens = x[:-1]``,
  ``labels = x[1:]``, Megatron's own loss mask (EOD with ``eod_mask_loss``, padding).
* **with a companion** (written by ``tools/preprocess_data.py --codeswitch-ratio p``): ``tokens``
  come from the token shard (the switched input), ``labels = y[1:]`` from the companion's target
  stream (the original words, see ``shards.writer``), and the loss mask is Megatron's mask with 0 where
  the label is the ignore value (positions inside a translated span). Ignored labels are set to 0
  so that they index the embedding safely.

With the English-Clone tokenizer and ``eod_mask_loss``, the clone EOD (``eod + |V|``) is masked like
the English EOD. ``reset_position_ids`` / ``reset_attention_mask`` only know Megatron's single
``tokenizer.eod``.

How it plugs in: GPTDataset draws every sample through its low-level dataset's
``get(doc, offset, length)``. For prefixes with a companion the low-level dataset is a
``CodeSwitchedIndexedDataset`` whose ``get`` returns each position's input id and target id packed
into one int64 (``pack_pair``), so Megatron's own sample/shuffle/padding logic runs unchanged; the
sample is unpacked right after. The packing maps padding (Megatron's pad id, e.g. -1) to itself.

Every sample's input and label ids are checked against the run's vocabulary (a vectorized min/max over
one sample, nearly free): a shard made with a larger vocabulary would otherwise fail deep in the
embedding with an IndexError (a device assert on GPU), or train the padding rows silently. The
error names the shard, the document, the id and the vocabulary (``PreAlignDatasetConfig`` carries
the padded size for the message). ``training.data`` checks the preprocessor's stats at start, so
this per-sample check is the last guard, for shards without a stats file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy
import torch
from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
from megatron.core.datasets.indexed_dataset import IndexedDataset

from megatron_prealign.shards.check import REBUILD, ShardError
from megatron_prealign.shards.writer import companion_prefix, ignore_value
from megatron_prealign.text.codeswitch import IGNORE

__all__ = [
    "PreAlignDatasetConfig",
    "PreAlignGPTDataset",
    "CodeSwitchedIndexedDataset",
    "has_companion",
    "pack_pair",
    "unpack_pair",
]


def pack_pair(tokens: numpy.ndarray, targets: numpy.ndarray) -> numpy.ndarray:
    """Pack (input id, target id) per position into one int64: ``t + ((y - t) << 32)``.

    Ids must be in ``[0, 2**31)``; targets may also be ``IGNORE`` (-1). A value ``v`` that was not
    packed (a pad id appended by Megatron) unpacks to ``(v, v)`` when ``-2**31 <= v < 2**31``.
    """
    t = numpy.asarray(tokens, dtype=numpy.int64)
    y = numpy.asarray(targets, dtype=numpy.int64)
    return t + ((y - t) << 32)


def unpack_pair(packed: numpy.ndarray) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Inverse of ``pack_pair``: (input ids, target ids)."""
    p = numpy.asarray(packed, dtype=numpy.int64)
    tokens = (p << 32) >> 32  # the low 32 bits, sign-extended
    targets = tokens + ((p - tokens) >> 32)
    return tokens, targets


def has_companion(dataset_path: str) -> bool:
    """True when ``dataset_path`` has a code-switching companion (``{path}_targets.bin/.idx``)."""
    return IndexedDataset.exists(companion_prefix(dataset_path))


class CodeSwitchedIndexedDataset(IndexedDataset):
    """A token shard plus its companion target stream; ``get`` returns packed pairs.

    ``__getitem__`` and every other IndexedDataset method still see the token shard alone.

    Args:
        path_prefix: the token shard prefix.
        **kwargs: passed to ``IndexedDataset`` for both files.

    Raises:
        ShardError: the companion does not have the token shard's sequence lengths and documents.
    """

    def __init__(self, path_prefix: str, **kwargs) -> None:
        super().__init__(path_prefix, **kwargs)
        self._kwargs = kwargs
        self._open_targets()

    def _open_targets(self) -> None:
        prefix = companion_prefix(self.path_prefix)
        self.targets = IndexedDataset(prefix, mmap=self.mmap)
        same = (
            numpy.array_equal(self.targets.sequence_lengths, self.sequence_lengths)
            and numpy.array_equal(self.targets.document_indices, self.document_indices)
            and self.targets.index.dtype == self.index.dtype
        )
        if not same:
            raise ShardError(
                f"{prefix}.idx does not match {self.path_prefix}.idx (different sequence lengths, "
                f"documents or dtype): the companion belongs to another run; {REBUILD}."
            )
        self._ignore = ignore_value(self.targets.index.dtype)

    def get(self, idx: int, offset: int = 0, length: Optional[int] = None) -> numpy.ndarray:
        tokens = super().get(idx, offset=offset, length=length)
        targets = numpy.asarray(self.targets.get(idx, offset=offset, length=length), dtype=numpy.int64)
        targets[targets == self._ignore] = IGNORE
        return pack_pair(tokens, targets)

    def __getstate__(self):
        return (super().__getstate__(), self._kwargs)

    def __setstate__(self, state):
        base, kwargs = state
        super().__setstate__(base)
        self._kwargs = kwargs
        self._open_targets()


@dataclass
class PreAlignDatasetConfig(GPTDatasetConfig):
    """A ``GPTDatasetConfig`` that also knows the run's padded vocabulary (for error messages)."""

    padded_vocab_size: Optional[int] = None


class PreAlignGPTDataset(GPTDataset):
    """GPTDataset that also serves code-switched samples (see the module docstring).

    Args: as ``GPTDataset``; an ordinary ``GPTDatasetConfig`` or a ``PreAlignDatasetConfig``.

    Raises (from ``__getitem__``):
        ShardError: a sample holds an id outside ``[0, tokenizer.vocab_size)``.
    """

    def __init__(self, indexed_dataset, dataset_path, indexed_indices, num_samples, index_split,
                 config: GPTDatasetConfig) -> None:
        super().__init__(indexed_dataset, dataset_path, indexed_indices, num_samples, index_split,
                         config)
        self.code_switched = isinstance(self.dataset, CodeSwitchedIndexedDataset)
        self._sample_targets: Optional[numpy.ndarray] = None
        self._sample_documents: Optional[numpy.ndarray] = None
        self._clone_eod = getattr(config.tokenizer, "clone_eod", None)
        self._vocab_size = getattr(config.tokenizer, "vocab_size", None)

    @staticmethod
    def build_low_level_dataset(dataset_path: str, config: GPTDatasetConfig) -> IndexedDataset:
        """A ``CodeSwitchedIndexedDataset`` when the prefix has a companion, else GPTDataset's."""
        if has_companion(dataset_path):
            sequences = None
            if config.sequences_per_dataset:
                sequences = config.sequences_per_dataset[dataset_path]
            return CodeSwitchedIndexedDataset(
                dataset_path,
                multimodal=False,
                mmap=config.mmap_bin_files,
                fast_cache_load=config.fast_cache_load,
                sequences_per_dataset=sequences,
                dtype_code=config.token_dtype_code,
            )
        return GPTDataset.build_low_level_dataset(dataset_path, config)

    def _query_document_sample_shuffle_indices(self, idx: int) -> Tuple[numpy.ndarray, numpy.ndarray]:
        sample, document_ids = super()._query_document_sample_shuffle_indices(idx)
        self._sample_documents = document_ids
        if self.code_switched:
            sample, self._sample_targets = unpack_pair(sample)
            self._check_ids(self._sample_targets, "label")
        # The raw sample holds the inputs and (without a companion) the labels: one check for both.
        self._check_ids(sample, "input")
        return sample, document_ids

    def __getitem__(self, idx: Optional[int]) -> Dict[str, torch.Tensor]:
        self._sample_targets = None
        item = super().__getitem__(idx)
        targets, self._sample_targets = self._sample_targets, None
        if targets is None and not (self._clone_eod is not None and self.config.eod_mask_loss):
            return item
        loss_mask = item["loss_mask"].clone()  # never modify Megatron's cached mask in place
        if targets is not None:
            y = torch.from_numpy(targets)
            if self.config.add_extra_token_to_sequence:
                labels = y[1:].clone()
            else:
                labels = torch.roll(y, shifts=-1, dims=0)
                labels[-1] = self._pad_token_id
            masked = (labels == self._pad_token_id) | (labels == IGNORE)
            loss_mask[masked] = 0.0
            labels[masked] = 0
            item["labels"] = labels
        if self._clone_eod is not None and self.config.eod_mask_loss:
            loss_mask[item["tokens"] == self._clone_eod] = 0.0
        if idx is None:
            loss_mask = torch.zeros_like(loss_mask)
        item["loss_mask"] = loss_mask
        return item

    def _check_ids(self, ids: numpy.ndarray, kind: str) -> None:
        """Raise ``ShardError`` if the raw ids of a sample leave the vocabulary (Megatron's padding
        and the companion's ignore marker excepted). A min and a max on the fast path."""
        if self._vocab_size is None or ids.size == 0:
            return
        low, high = int(ids.min()), int(ids.max())
        if 0 <= low and high < self._vocab_size:
            return
        real = ids[(ids != self._pad_token_id) & (ids != IGNORE)]
        if real.size == 0 or (0 <= int(real.min()) and int(real.max()) < self._vocab_size):
            return
        bad = int(real.min()) if int(real.min()) < 0 else int(real.max())
        documents = sorted({int(d) for d in numpy.atleast_1d(self._sample_documents)})
        padded = getattr(self.config, "padded_vocab_size", None)
        vocabulary = f"{self._vocab_size} ids" + (f", padded to {padded}" if padded else "")
        raise ShardError(
            f"{self.dataset_path}: {kind} id {bad} in a sample of document{'s' * (len(documents) > 1)} "
            f"{', '.join(map(str, documents[:3]))}{', ...' * (len(documents) > 3)} "
            f"is outside this run's vocabulary ({vocabulary}): the shard was made with another "
            "tokenizer or --vocab-size. Train with the tokenizer flags the shard was made with, or "
            "re-run tools/preprocess_data.py with this run's tokenizer."
        )
