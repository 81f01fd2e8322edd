"""Tiny Megatron shards for tests, written in-process by Megatron-Core's own ``IndexedDatasetBuilder``
(no tokenizer, no subprocess), and the ways the issue's users damaged them."""

from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch


def make_shard(prefix: Union[str, Path], documents: Sequence[Sequence[int]], dtype=np.uint16) -> str:
    """Write ``prefix.bin/.idx``: one sequence per document; returns the prefix."""
    from megatron_prealign.data.shards import indexed_dataset_module

    prefix = str(prefix)
    builder = indexed_dataset_module().IndexedDatasetBuilder(prefix + ".bin", dtype=dtype)
    for document in documents:
        builder.add_item(torch.tensor(np.asarray(document, dtype=np.int64)))
        builder.end_document()
    builder.finalize(prefix + ".idx")
    return prefix


def random_documents(count: int, vocab: int = 500, low: int = 20, high: int = 200, seed: int = 0):
    """``count`` documents of ``low..high`` random ids below ``vocab`` (like the issue's setup)."""
    rng = np.random.RandomState(seed)
    return [rng.randint(0, vocab, size=rng.randint(low, high)) for _ in range(count)]


def overwrite(path: Union[str, Path], offset: int, data: bytes) -> None:
    """Overwrite bytes of ``path`` in place (the issue's garbage .idx: 200 x 0xff at offset 40)."""
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def truncate(path: Union[str, Path], remove: int) -> None:
    """Cut the last ``remove`` bytes off ``path`` (like ``head -c -N``)."""
    size = Path(path).stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size - remove)
