"""Shard writing: Megatron ``.bin``/``.idx`` pairs, the code-switching companion, atomic commits.

Token shards
------------
``{output_prefix}_{json_key}_{document|sentence}.bin/.idx`` are exactly Megatron-Core's
``IndexedDataset`` format, written through ``megatron.core.datasets.indexed_dataset``'s
``IndexedDatasetBuilder``: the ``.bin`` holds token ids back to back (little-endian ``uint16`` when
the vocabulary has fewer than 65500 ids, else ``int32``); the ``.idx`` holds the magic
``MMIDIDX\\x00\\x00``, version 1, the dtype code, the sequence count S, the document-index length
D+1, ``int32[S]`` sequence lengths, ``int64[S]`` byte pointers and ``int64[D+1]`` document index.
A document is one JSON line (or one text line/paragraph); with ``--split-sentences`` each sentence
is one sequence, otherwise each document is one sequence (a JSON list value gives one sequence per
non-empty element, as in Megatron). A document that produces no token is still a document (its
document-index entry repeats the previous one).

Code-switching companion
------------------------
With ``--codeswitch-ratio p > 0`` the token shard holds the *switched input* ids and a second
indexed dataset ``{data_prefix}_targets.bin/.idx`` (``data_prefix`` being the token shard's prefix,
e.g. ``clone_cs_text_document_targets``) holds the *target stream*: the same dtype, the same
sequence lengths and document index (the ``.idx`` files differ only if the dtype did), and per
position the id the model must predict *one position later*, so that Megatron's usual shift
``tokens = x[:-1], labels = y[1:]`` stays valid. Targets equal the inputs everywhere except in
switched spans: the span's first position holds the original word's first token and its other
positions hold the ignore value (all bits set: ``65535`` for ``uint16``, ``-1`` for ``int32``;
no real id can take it since uint16 vocabularies stop below 65500). ``datasets.PreAlignGPTDataset``
turns the ignore value into loss mask 0. See ``codeswitch.py`` for the rule.

Atomic outputs
--------------
Every file is written under ``<final name>.partial`` and renamed only after all outputs are
complete and flushed to disk. The commit first deletes the old final ``.idx`` files (so an old
``.bin`` can never pair with a new ``.idx`` or vice versa), stale companions of prefixes that no
longer have one, then renames the stats report, the companions, each ``.bin`` and, last, each
``.idx``. A token shard's ``.idx`` is therefore the commit marker: if it exists, its ``.bin``,
companion and stats are complete and belong to it. A run killed with ``kill -9`` leaves only
``.partial`` files, which the next run overwrites. The ``.partial`` names are fixed, not unique per
run, so leftovers never pile up: the preprocessor holds ``<output-prefix>.lock`` for its whole run,
so that no two runs ever write the same ``.partial`` file.

A write that fails (a full disk, a quota, an I/O error) raises ``files.OutputError`` naming the
file; every byte is written before the first old file is removed, so such a failure leaves the
old outputs as they were.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import warnings
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from megatron_prealign.files import OutputError, describe_os_error

TARGETS_SUFFIX = "_targets"
PARTIAL = ".partial"


def indexed_dataset_module():
    """``megatron.core.datasets.indexed_dataset``, imported without Megatron's TE/Apex warnings.

    Importing it imports all of ``megatron.core``, whose optional dependencies warn when absent (a
    data tool has no use for that noise) and whose fused kernels would import TorchDynamo
    (deferred, see ``cpu_compat.deferred_torch_compile``).
    """
    # lazy: cpu_compat imports torch, which a preprocessor that never opens a shard should not pay for
    from megatron_prealign.cpu_compat import deferred_torch_compile

    with warnings.catch_warnings(), deferred_torch_compile():
        warnings.filterwarnings("ignore", message=r".*(Transformer Engine|Apex).*not installed.*")
        from megatron.core.datasets import indexed_dataset
    return indexed_dataset


def companion_prefix(data_prefix: str) -> str:
    """The companion (targets) prefix of a token shard prefix."""
    return data_prefix + TARGETS_SUFFIX


def ignore_value(dtype) -> int:
    """The on-disk ignore value of a target stream of ``dtype`` (all bits set)."""
    return int(np.array(-1).astype(dtype))


def targets_to_disk(targets: np.ndarray, dtype) -> np.ndarray:
    """In-memory targets (``codeswitch.IGNORE`` = -1) -> on-disk values of ``dtype``."""
    return np.asarray(targets, dtype=np.int64).astype(dtype)


@contextlib.contextmanager
def writing(path: str) -> Iterator[None]:
    """Turn an ``OSError`` while writing ``path`` (a full disk, a quota, an I/O error) into an
    ``OutputError`` that names the file; the caller aborts and publishes nothing."""
    try:
        yield
    except OutputError:
        raise
    except OSError as err:
        raise OutputError(
            f"cannot write {describe_os_error(err, path)}; nothing was published (older outputs "
            "are untouched). Free space or choose another --output-prefix, then rerun."
        ) from None


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)) or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class ShardWriter:
    """Writes one indexed dataset under temporary names; ``commit_outputs`` publishes it.

    The ``.bin`` is streamed through ``IndexedDatasetBuilder``'s data file; sequence lengths and
    the document index are kept as numpy arrays (4 + 8 bytes per entry instead of Python ints) and
    handed to the builder only when it writes the ``.idx`` in ``finalize``.

    Args:
        prefix: the final path prefix (``.bin``/``.idx`` are appended).
        dtype: numpy dtype of the ids (``uint16`` or ``int32``).
    """

    def __init__(self, prefix: str, dtype) -> None:
        IndexedDatasetBuilder = indexed_dataset_module().IndexedDatasetBuilder

        self.prefix = prefix
        self.dtype = np.dtype(dtype).type
        directory = os.path.dirname(os.path.abspath(prefix))
        os.makedirs(directory, exist_ok=True)
        self.bin_path = prefix + ".bin"
        self.idx_path = prefix + ".idx"
        self.tmp_bin = self.bin_path + PARTIAL
        self.tmp_idx = self.idx_path + PARTIAL
        with writing(self.tmp_bin):
            self._builder = IndexedDatasetBuilder(self.tmp_bin, dtype=self.dtype)
        self._lengths: List[np.ndarray] = []
        self._doc_counts: List[np.ndarray] = []
        self._index: Optional[Tuple[np.ndarray, np.ndarray]] = None
        self.tokens = 0
        self.finalized = False

    def write_tokens(self, ids: np.ndarray) -> None:
        """Append raw ids to the ``.bin`` (index entries are given separately)."""
        data = np.asarray(ids)
        if data.dtype != self.dtype:
            data = data.astype(self.dtype)
        with writing(self.tmp_bin):
            self._builder.data_file.write(data.tobytes(order="C"))
        self.tokens += int(data.size)

    def append(self, ids: np.ndarray, seq_lengths: np.ndarray, doc_seq_counts: np.ndarray) -> None:
        """Append whole documents.

        Args:
            ids: the ids of all their sequences back to back.
            seq_lengths: length of every sequence (sums to ``len(ids)``).
            doc_seq_counts: number of sequences of every document (0 for an empty document).
        """
        self.write_tokens(ids)
        self._lengths.append(np.asarray(seq_lengths, dtype=np.int32))
        self._doc_counts.append(np.asarray(doc_seq_counts, dtype=np.int64))

    def append_shard(self, prefix: str) -> None:
        """Append a whole existing indexed dataset (used to merge partitions)."""
        part = indexed_dataset_module().IndexedDataset(prefix)
        if part.index.dtype != self.dtype:
            raise ValueError(f"{prefix}: dtype {part.index.dtype} differs from {self.dtype}")
        self._lengths.append(np.array(part.index.sequence_lengths, dtype=np.int32))
        self._doc_counts.append(np.diff(np.asarray(part.index.document_indices, dtype=np.int64)))
        with open(prefix + ".bin", "rb") as f, writing(self.tmp_bin):
            shutil.copyfileobj(f, self._builder.data_file, 1 << 24)
        self.tokens += int(np.sum(part.index.sequence_lengths, dtype=np.int64))
        del part

    def set_index(self, seq_lengths: np.ndarray, document_indices: np.ndarray) -> None:
        """Give the complete index at once (for shards copied token-block by token-block)."""
        self._index = (np.asarray(seq_lengths, dtype=np.int32), np.asarray(document_indices, dtype=np.int64))

    def index_arrays(self) -> Tuple[np.ndarray, np.ndarray]:
        """(sequence lengths, document index) of everything appended so far."""
        if self._index is not None:
            return self._index
        lengths = np.concatenate(self._lengths) if self._lengths else np.zeros(0, np.int32)
        counts = np.concatenate(self._doc_counts) if self._doc_counts else np.zeros(0, np.int64)
        doc_index = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=doc_index[1:])
        return lengths, doc_index

    def finalize(self) -> None:
        """Write the ``.idx`` (still under its temporary name) and flush both files to disk."""
        lengths, doc_index = self.index_arrays()
        if int(np.sum(lengths, dtype=np.int64)) != self.tokens:
            raise RuntimeError(
                f"internal error: {self.prefix}: index covers {int(lengths.sum())} tokens but "
                f"{self.tokens} were written"
            )
        self._builder.sequence_lengths = lengths
        self._builder.document_indices = doc_index
        with writing(self.tmp_bin):
            self._builder.data_file.close()  # a full disk may show only here, at the last flush
            _fsync(self.tmp_bin)
        with writing(self.tmp_idx):
            self._builder.finalize(self.tmp_idx)
            _fsync(self.tmp_idx)
        self.finalized = True

    def abort(self) -> None:
        """Close and delete the temporary files."""
        try:
            self._builder.data_file.close()
        except Exception:
            pass
        for path in (self.tmp_bin, self.tmp_idx):
            if os.path.exists(path):
                os.remove(path)


def _write_json_partial(path: str, obj) -> str:
    """Write JSON to ``path + '.partial'`` (flushed to disk); returns that name."""
    tmp = path + PARTIAL
    try:
        with writing(tmp), open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, sort_keys=False, ensure_ascii=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    return tmp


def write_json_atomic(path: str, obj) -> None:
    """Write JSON to ``path + '.partial'`` and rename it into place."""
    os.replace(_write_json_partial(path, obj), path)


def remove_dataset(prefix: str) -> None:
    """Delete ``prefix.idx`` then ``prefix.bin`` if they exist."""
    for path in (prefix + ".idx", prefix + ".bin"):
        if os.path.exists(path):
            os.remove(path)


def commit_outputs(
    writers: Sequence[ShardWriter],
    *,
    json_files: Iterable[Tuple[str, object]] = (),
    stale_prefixes: Iterable[str] = (),
) -> None:
    """Publish finalized writers atomically (see the module docstring for the order).

    Args:
        writers: finalized writers in commit order: companions before their token shards.
        json_files: (path, object) reports to write before any ``.idx`` is published.
        stale_prefixes: datasets to delete (e.g. companions left by an older run).
    """
    for w in writers:
        if not w.finalized:
            w.finalize()
    # Every byte is written before the first old file goes: a full disk fails the run here and
    # leaves the old outputs as they were.
    json_partials: List[Tuple[str, str]] = []
    try:
        for path, obj in json_files:
            json_partials.append((_write_json_partial(path, obj), path))
    except BaseException:
        for tmp, _ in json_partials:
            os.remove(tmp)
        raise
    for w in writers:
        if os.path.exists(w.idx_path):
            os.remove(w.idx_path)
    for prefix in stale_prefixes:
        remove_dataset(prefix)
    for tmp, path in json_partials:
        os.replace(tmp, path)
    for w in writers:
        os.replace(w.tmp_bin, w.bin_path)
        os.replace(w.tmp_idx, w.idx_path)
    if writers:
        _fsync_dir(writers[0].idx_path)


def optimal_token_dtype(vocab_size: int) -> type:
    """The shard dtype Megatron picks for a vocabulary: uint16 below 65500 ids, else int32."""
    return np.uint16 if vocab_size < 65500 else np.int32
