"""Checks that a Megatron ``.bin``/``.idx`` shard is whole before training reads it.

Megatron-Core trusts its shards: a ``.bin`` cut short trains on whatever the page cache holds (or dies
mid-run with a buffer error), garbage in an ``.idx`` trains for a while and then raises an
IndexError, a ``.idx`` cut short or an empty ``.bin`` fails with an ``mmap`` error that names no
file. ``check_shard`` finds all of these at start, naming the file and what is wrong.

The ``.idx`` layout (``megatron.core.datasets.indexed_dataset``, ``_IndexWriter``), little-endian:

    9 bytes   magic ``MMIDIDX\\x00\\x00``
    uint64    version (1)
    uint8     dtype code of the token ids (``DTYPE_CODES``)
    uint64    S, the number of sequences
    uint64    D + 1, the length of the document index
    int32[S]  sequence lengths (tokens)
    int64[S]  sequence pointers (byte offset of each sequence in the ``.bin``)
    int64[D+1] document index (first sequence of each document; 0 first, S last)
    int8[S]   sequence modes (multimodal datasets only)

The ``.bin`` holds the sequences back to back, so it has exactly ``sum(lengths) * itemsize`` bytes,
and each pointer is the sum of the lengths before it times the itemsize. The checks read the
``.idx`` in chunks with numpy (O(S) time, bounded memory) and only ``stat`` the ``.bin``: on a shard
of a billion sequences they take seconds, on a TB ``.bin`` no more than on a small one.

Token ids are not checked here (that would mean reading the whole ``.bin``): the vocabulary a shard
was made with is read from the preprocessor's stats file (``preprocess_vocabulary``), and the
dataset checks the ids of every sample it serves (``datasets.PreAlignGPTDataset``).
"""

from __future__ import annotations

import glob
import json
import os
import struct
from dataclasses import dataclass
from typing import Optional

import numpy as np

from megatron_prealign.errors import PreAlignError
from megatron_prealign.shards.writer import companion_prefix

MAGIC = b"MMIDIDX\x00\x00"
HEADER_BYTES = len(MAGIC) + 8 + 1 + 8 + 8  # 34
# Megatron-Core's ``indexed_dataset.DType`` codes (tests compare them with Megatron's enum).
DTYPE_CODES = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 6: np.float64,
               7: np.float32, 8: np.uint16}
CHUNK = 1 << 22  # sequences per numpy pass: ~50 MB of temporaries whatever the shard's size
REBUILD = "re-run tools/preprocess_data.py to rebuild the shard"


class ShardError(PreAlignError, ValueError):
    """A shard training cannot use (damaged, empty, mismatched) or a split that gets no data."""


@dataclass(frozen=True)
class ShardIndex:
    """The validated index of one shard (arrays are read-only views of the ``.idx`` file)."""

    prefix: str
    dtype: type
    sequence_lengths: np.ndarray  # int32[S]
    document_indices: np.ndarray  # int64[D+1]

    @property
    def num_sequences(self) -> int:
        return len(self.sequence_lengths)

    @property
    def num_documents(self) -> int:
        return len(self.document_indices) - 1

    def tokens(self, begin: int = 0, end: Optional[int] = None) -> int:
        """Tokens of sequences ``[begin, end)``."""
        return int(np.sum(self.sequence_lengths[begin:end], dtype=np.int64))


def _fail(path: str, what: str) -> None:
    raise ShardError(f"{path}: {what}; {REBUILD}.")


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _read_header(idx_path: str, size: int):
    if size < HEADER_BYTES:
        _fail(idx_path, f"cut short: {size} bytes, less than the {HEADER_BYTES}-byte header")
    with open(idx_path, "rb") as f:
        header = f.read(HEADER_BYTES)
    if header[:len(MAGIC)] != MAGIC:
        _fail(idx_path, f"not a Megatron index (starts with {header[:len(MAGIC)]!r}, not {MAGIC!r})")
    version, code, num_sequences, doc_index_len = struct.unpack("<QBQQ", header[len(MAGIC):])
    if version != 1:
        _fail(idx_path, f"index version {version}, expected 1")
    if code not in DTYPE_CODES:
        _fail(idx_path, f"unknown token dtype code {code} (Megatron's codes are 1..8)")
    return DTYPE_CODES[code], num_sequences, doc_index_len


def _check_size(idx_path: str, size: int, num_sequences: int, doc_index_len: int) -> None:
    expected = HEADER_BYTES + 12 * num_sequences + 8 * doc_index_len
    if doc_index_len == 0:
        _fail(idx_path, "the document index is empty (it always starts with a 0)")
    if size in (expected, expected + num_sequences):  # the second: with multimodal sequence modes
        return
    counts = f"its header gives {num_sequences} sequences and {doc_index_len - 1} documents"
    if size < expected:
        _fail(idx_path, f"cut short: {counts}, which need {expected} bytes, but the file has {size}")
    _fail(idx_path, f"{size - expected} bytes more than the {expected} that {counts} need "
                    "(the header's counts are damaged, or the file is not a Megatron index)")


def _check_pointers(idx_path: str, lengths: np.ndarray, pointers: np.ndarray, itemsize: int) -> int:
    """Check lengths >= 0 and pointers == cumulative sizes; returns the ``.bin`` size they describe."""
    offset = 0
    for start in range(0, len(lengths), CHUNK):
        part = lengths[start:start + CHUNK].astype(np.int64)
        if part.min() < 0:
            i = start + _first(part < 0)
            _fail(idx_path, f"sequence {i} has a negative length {int(lengths[i])}")
        ends = offset + np.cumsum(part) * itemsize
        expected = ends - part * itemsize
        bad = pointers[start:start + CHUNK] != expected
        if bad.any():
            i = _first(bad)
            _fail(idx_path, f"sequence {start + i} points to byte {int(pointers[start + i])} of the "
                            f".bin, but the sequences before it end at byte {int(expected[i])}")
        offset = int(ends[-1])
    return offset


def _check_documents(idx_path: str, documents: np.ndarray, num_sequences: int) -> None:
    if documents[0] != 0 or documents[-1] != num_sequences:
        _fail(idx_path, f"the document index runs from {int(documents[0])} to {int(documents[-1])}, "
                        f"not from 0 to the {num_sequences} sequences")
    for start in range(0, len(documents) - 1, CHUNK):
        part = documents[start:start + CHUNK + 1]
        falling = np.diff(part) < 0
        if falling.any():
            i = start + _first(falling)
            _fail(idx_path, f"document {i + 1} starts at sequence {int(documents[i + 1])}, before "
                            f"document {i} (sequence {int(documents[i])}): the index is not monotone")


def read_index(prefix: str) -> ShardIndex:
    """Read and validate ``prefix.idx`` against itself and the size of ``prefix.bin``.

    Raises:
        ShardError: a missing file, a damaged header or index, or a ``.bin`` whose size differs from
            what the index describes; the message names the file and what is wrong.
    """
    idx_path, bin_path = prefix + ".idx", prefix + ".bin"
    for path in (idx_path, bin_path):
        if not os.path.isfile(path):
            raise ShardError(f"{path}: no such file (a shard is a .bin and an .idx with one prefix, "
                             "written by tools/preprocess_data.py)")
    size = os.path.getsize(idx_path)
    dtype, num_sequences, doc_index_len = _read_header(idx_path, size)
    _check_size(idx_path, size, num_sequences, doc_index_len)
    data = np.memmap(idx_path, dtype=np.uint8, mode="r")
    lengths = np.frombuffer(data, dtype=np.int32, count=num_sequences, offset=HEADER_BYTES)
    pointers = np.frombuffer(data, dtype=np.int64, count=num_sequences,
                             offset=HEADER_BYTES + 4 * num_sequences)
    documents = np.frombuffer(data, dtype=np.int64, count=doc_index_len,
                              offset=HEADER_BYTES + 12 * num_sequences)
    itemsize = np.dtype(dtype).itemsize
    bin_bytes = _check_pointers(idx_path, lengths, pointers, itemsize)
    _check_documents(idx_path, documents, num_sequences)
    actual = os.path.getsize(bin_path)
    if actual != bin_bytes:
        state = "is cut short" if actual < bin_bytes else f"has {actual - bin_bytes} bytes too many"
        raise ShardError(
            f"{bin_path}: {actual} bytes, but {idx_path} describes {bin_bytes // itemsize} tokens of "
            f"{np.dtype(dtype).name} = {bin_bytes} bytes: the .bin {state} (an interrupted copy?) or "
            f"the two files come from different runs; {REBUILD}.")
    return ShardIndex(prefix, dtype, lengths, documents)


def companion_files(prefix: str) -> Optional[str]:
    """The code-switching companion prefix of ``prefix`` when its files exist, else None.

    Raises:
        ShardError: only one of the companion's two files exists (a companion half copied would
            otherwise be ignored, and the run would train without its labels).
    """
    companion = companion_prefix(prefix)
    present = [os.path.isfile(companion + s) for s in (".idx", ".bin")]
    if all(present):
        return companion
    if any(present):
        have, lack = (".idx", ".bin") if present[0] else (".bin", ".idx")
        raise ShardError(f"{companion}{lack}: missing, but {companion}{have} exists (the "
                         f"code-switching companion of {prefix} is incomplete); {REBUILD}.")
    return None


def check_shard(prefix: str) -> ShardIndex:
    """``read_index`` for a shard and its code-switching companion, which must match it.

    Returns the token shard's index.
    """
    index = read_index(prefix)
    companion = companion_files(prefix)
    if companion is not None:
        targets = read_index(companion)
        same = (targets.dtype == index.dtype
                and np.array_equal(targets.sequence_lengths, index.sequence_lengths)
                and np.array_equal(targets.document_indices, index.document_indices))
        if not same:
            raise ShardError(
                f"{companion}.idx does not match {prefix}.idx (different sequence lengths, "
                f"documents or dtype): the companion belongs to another run; {REBUILD}.")
    return index


def preprocess_vocabulary(prefix: str) -> Optional[dict]:
    """The tokenizer a shard was made with, from ``tools/preprocess_data.py``'s stats file.

    The stats file is ``{output_prefix}_preprocess_stats.json`` beside the shard
    ``{output_prefix}_{key}_{document|sentence}``; its ``tokenizer`` entry holds the type, sizes and
    model digest, and its ``outputs`` list the shard prefixes it wrote. Returns that entry plus
    ``"stats_path"``, or None when no stats file of this shard is found (shards from other tools).
    """
    directory, name = os.path.split(prefix)
    for path in sorted(glob.glob(os.path.join(glob.escape(directory or "."), "*_preprocess_stats.json"))):
        stem = os.path.basename(path)[:-len("_preprocess_stats.json")]
        if not name.startswith(stem + "_"):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                stats = json.load(f)
            outputs = [o.get("prefix", "") for o in stats.get("outputs", {}).values()]
            tokenizer = dict(stats["tokenizer"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # not ours or damaged: the per-sample check still guards the ids
        if any(os.path.basename(o) == name for o in outputs):
            return dict(tokenizer, stats_path=path)
    return None
