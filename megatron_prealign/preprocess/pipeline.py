"""The offline preprocessor behind ``tools/preprocess_data.py``: text -> Megatron shards.

Pipeline: ``inputs.read_chunks`` cuts the input into ~1 MiB runs of whole lines (in the main
process, in input order); workers parse them (``inputs.parse_chunk``), split sentences, tokenize in
batches, append EOD and shift ids for ``--write-clone``; the main process code-switches their ids
(``text/codeswitch.py``, vectorised, a few percent of the tokenization cost: one main process keeps
up with dozens of workers, and the dictionary compiles while the first chunks are tokenized),
writes them in input order (``shards.writer.ShardWriter``) and publishes every output atomically
with a stats report (``shards.writer.commit_outputs``). ``--partitions P`` runs P such pipelines
on P contiguous, line-aligned parts of the input (each with ``--workers / P`` workers and its own main process)
and concatenates their shards in order, as Megatron-LM does.

Nothing in the output depends on ``--workers``, ``--partitions`` or chunk sizes: documents keep
their input order and code-switching draws its randomness from each document's position in the
input (file index, byte offset), not from a shared generator.

With code-switching off and neither ``--english-clone`` nor ``--write-clone``, the shards are
byte-identical to Megatron-LM's ``tools/preprocess_data.py`` (core_v0.16.1, default tokenizer path)
for the same input, tokenizer and flags; with ``--partitions > 1`` that holds for Megatron's
``--keep-sequential-samples`` (which keeps input order), since ours always keeps input order.
An empty input gives Megatron's empty shard too, with a warning.

Where Megatron-LM would silently write wrong data or crash, this module does not: a run holds
``<output-prefix>.lock`` throughout (a second run on the prefix is refused), NullTokenizer ids
outside the vocabulary are input problems with file:line (never wrapped into uint16), an input
whose every line is bad publishes nothing, and a write that fails (a full disk) names the file.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import multiprocessing
import os
import sys
import time
from collections import Counter, deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

import numpy as np

from megatron_prealign.errors import PreAlignError
from megatron_prealign.files import check_output_parent, output_lock
from megatron_prealign.preprocess import inputs, table_cache
from megatron_prealign.preprocess.sentences import make_splitter, resolve_punkt, save_punkt_params, split_text
from megatron_prealign.preprocess.table_cache import default_cache_dir
from megatron_prealign.shards.writer import (
    ShardWriter,
    commit_outputs,
    companion_prefix,
    optimal_token_dtype,
    remove_dataset,
    targets_to_disk,
)
from megatron_prealign.text.codeswitch import CodeSwitchTable, codeswitch_batch, document_keys
from megatron_prealign.text.dictionary import compile_switch_table, load_dictionary
from megatron_prealign.text.tokenizers import build_tokenizer
from megatron_prealign.text.tokenizers.base import TextRejected, TextTokenizer, TokenizerError

if TYPE_CHECKING:
    import argparse

MAX_PROBLEM_EXAMPLES = 200


class PreprocessError(PreAlignError, RuntimeError):
    """The run cannot proceed or was aborted; the message says why and what to do."""


@dataclass(frozen=True)
class PreprocessConfig:
    """Everything ``tools/preprocess_data.py`` is told (Megatron-LM's flags plus PreAlign's).

    Frozen: the derived values (the default cache directory, ``english_clone`` implied by
    ``write_clone``, a single ``input`` string made a list) are filled in once, at construction,
    and every field keeps its value for the whole run (workers and partitions see the same one).
    """

    input: List[str]
    """Input files or globs (JSONL, plain text, optionally .gz)."""
    output_prefix: str
    """Output path prefix; shards are {prefix}_{key}_{document|sentence}.bin/.idx."""
    tokenizer_type: str
    """Megatron tokenizer type (``tokenizer.SUPPORTED_TYPES``), e.g. SentencePieceTokenizer."""
    tokenizer_model: Optional[str] = None
    """SentencePiece .model file or Hugging Face tokenizer directory."""
    vocab_size: Optional[int] = None
    """NullTokenizer's vocabulary size (ids 0..V-1, EOD V); a check for other tokenizers."""
    json_keys: List[str] = field(default_factory=lambda: ["text"])
    """JSON fields to extract; each gets its own shard."""
    split_sentences: bool = False
    """One sequence per sentence (nltk Punkt) instead of per document."""
    keep_newlines: bool = False
    """Keep newlines between sentences when splitting."""
    lang: str = "english"
    """Punkt language (for installed nltk data)."""
    punkt_model: Optional[str] = None
    """Directory of Punkt parameters in punkt_tab format; default: installed data, else train on the input."""
    punkt_train_bytes: int = 2_000_000
    """Bytes of input text to train Punkt on when no parameters are installed."""
    append_eod: bool = False
    """Append the EOD id to every document that produced at least one token."""
    workers: int = 1
    """Worker processes (tokenization scales with them; use about the number of cores)."""
    partitions: int = 1
    """Independent pipelines over contiguous parts of the input, merged in order at the end."""
    log_interval: int = 1000
    """Documents between progress lines when stderr is not a terminal."""
    input_format: str = "auto"
    """auto (by file name), jsonl or text."""
    text_unit: str = "line"
    """Plain-text documents: line, paragraph (blank-line separated) or file."""
    dictionary: Optional[str] = None
    """Dictionary for code-switching (pair file or multi-way JSONL)."""
    dictionary_format: str = "auto"
    """auto (by extension), pairs or multiway."""
    codeswitch_ratio: float = 0.0
    """Probability p of switching a dictionary word (paper: 0.05); 0 turns switching off."""
    codeswitch_seed: int = 1234
    """Seed of the switch decisions and translation choices."""
    english_clone: bool = False
    """Use the doubled English/English-Clone vocabulary (dtype for 2|V|, <clone> dictionary words)."""
    write_clone: bool = False
    """Write the documents as English-Clone text (every id + |V|); implies english_clone."""
    max_errors: Optional[int] = None
    """Fail (exit 1, no output published) when more problems than this are found; None: no limit."""
    max_line_bytes: int = 128 << 20
    """Longer lines (documents) are skipped and reported."""
    chunk_bytes: int = 1 << 20
    """Bytes of input per work item (does not change the output)."""
    progress: str = "auto"
    """auto (bar on a terminal, lines otherwise), bar, log or none."""
    dictionary_cache_dir: Optional[str] = None
    """Where compiled dictionaries are cached (default: ``table_cache.default_cache_dir()``)."""
    no_dictionary_cache: bool = False
    """Always compile the dictionary, never read or write the cache."""
    keep_sequential_samples: bool = False
    """Accepted for Megatron compatibility; our output always keeps input order."""

    def __post_init__(self) -> None:
        self._derive()
        self._validate()

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "PreprocessConfig":
        """The config of parsed flags: every field from the flag of the same name (its ``dest``).

        Raises:
            TypeError: a field without a flag (a bug of the command line, not of its user).
        """
        values = vars(args)
        missing = [f.name for f in fields(cls) if f.name not in values]
        if missing:
            flags = ", ".join("--" + name.replace("_", "-") for name in missing)
            raise TypeError(f"the command line has no flag for PreprocessConfig's {flags}")
        return cls(**{f.name: values[f.name] for f in fields(cls)})

    def _derive(self) -> None:
        """Fill in what follows from other fields, once: the config is frozen afterwards."""
        if self.dictionary_cache_dir is None:
            object.__setattr__(self, "dictionary_cache_dir", default_cache_dir())
        if isinstance(self.input, str):
            object.__setattr__(self, "input", [self.input])
        if self.write_clone:
            object.__setattr__(self, "english_clone", True)

    def _validate(self) -> None:
        """Refuse flags that cannot work together, naming them (every message says the fix)."""
        if not self.json_keys:
            raise PreprocessError("--json-keys needs at least one key")
        if len(set(self.json_keys)) != len(self.json_keys):
            raise PreprocessError(f"--json-keys {self.json_keys} repeats a key")
        if self.workers < 1:
            raise PreprocessError(f"--workers must be >= 1, got {self.workers}")
        if self.partitions < 1:
            raise PreprocessError(f"--partitions must be >= 1, got {self.partitions}")
        if self.partitions > self.workers:
            raise PreprocessError(
                f"--partitions {self.partitions} needs at least as many --workers (got "
                f"{self.workers}): each partition runs workers/partitions workers."
            )
        if not 0.0 <= self.codeswitch_ratio <= 1.0:
            raise PreprocessError(f"--codeswitch-ratio must be in [0, 1], got {self.codeswitch_ratio}")
        if self.codeswitch_ratio > 0 and not self.dictionary:
            raise PreprocessError(
                f"--codeswitch-ratio {self.codeswitch_ratio} needs --dictionary (the words to switch)"
            )
        if self.keep_newlines and not self.split_sentences:
            raise PreprocessError("--keep-newlines only applies with --split-sentences")
        if self.text_unit not in ("line", "paragraph", "file"):
            raise PreprocessError(f"--text-unit must be line, paragraph or file, not {self.text_unit!r}")
        if self.progress not in ("auto", "bar", "log", "none"):
            raise PreprocessError(f"--progress must be auto, bar, log or none, not {self.progress!r}")
        if self.max_errors is not None and self.max_errors < 0:
            raise PreprocessError(f"--max-errors must be >= 0, got {self.max_errors}")
        if self.chunk_bytes < 1 or self.max_line_bytes < 1:
            raise PreprocessError("--chunk-bytes and --max-line-bytes must be positive")

    @property
    def level(self) -> str:
        return "sentence" if self.split_sentences else "document"

    def output_prefixes(self) -> List[str]:
        """The data prefix of every key: ``{output_prefix}_{key}_{level}``."""
        return [f"{self.output_prefix}_{key}_{self.level}" for key in self.json_keys]

    @property
    def stats_path(self) -> str:
        return f"{self.output_prefix}_preprocess_stats.json"


# ----------------------------------------------------------------------------------------------
# Worker side
# ----------------------------------------------------------------------------------------------


@dataclass
class WorkerState:
    """What every worker needs; inherited on fork, pickled on spawn."""

    config: PreprocessConfig
    files: List[inputs.InputFile]
    tokenizer: TextTokenizer
    dtype: type
    table: Optional[CodeSwitchTable]
    """The compiled dictionary; None until compiled (workers never need it)."""
    count_words: bool
    switch_in_main: bool = False
    """A dictionary is given: workers leave coverage and switching to the main process."""
    punkt_params: object = None
    splitter: object = field(default=None, repr=False)

    def __getstate__(self):
        d = dict(self.__dict__)
        d["splitter"] = None
        return d

    def prepare(self) -> None:
        if self.config.split_sentences and self.splitter is None:
            self.splitter = make_splitter(self.punkt_params, self.config.keep_newlines)
        if self.count_words:
            _ = self.tokenizer.word_boundaries


@dataclass
class KeyCounts:
    """Counts for one output (one JSON key), summed over chunks."""

    documents: int = 0
    """Documents written (empty ones included, as Megatron does)."""
    empty_documents: int = 0
    """Documents that produced no token."""
    sequences: int = 0
    """Sequences written (sentences, or one per non-empty document text)."""
    tokens: int = 0
    """Tokens written (after switching, EOD included)."""
    tokens_before_switching: int = 0
    """Tokens before code-switching."""
    words: int = 0
    """Words seen (word-initial runs with a letter or digit)."""
    dictionary_words: int = 0
    """Words that are dictionary keys."""
    switched_words: int = 0
    """Words replaced by a translation."""

    def add(self, other: "KeyCounts") -> None:
        for k, v in asdict(other).items():
            setattr(self, k, getattr(self, k) + v)


@dataclass
class SwitchJob:
    """What the main process needs to code-switch one key of a chunk (``_Switcher``)."""

    file_index: int
    key_index: int
    seq_docs: np.ndarray
    """Document (index into ``doc_offsets``) of every sequence."""
    doc_offsets: np.ndarray
    """Byte offset of every document's line in its file (the documents' identities)."""


@dataclass
class KeyResult:
    tokens: bytes
    seq_lengths: np.ndarray
    doc_counts: np.ndarray
    targets: Optional[bytes]
    counts: KeyCounts
    switch: Optional[SwitchJob] = None
    """Set when the tokens still have to be code-switched (by the main process)."""


@dataclass
class ChunkResult:
    keys: List[KeyResult]
    problems: List[inputs.Problem]
    lines: int
    nbytes: int
    documents_read: int
    blank_text_lines: int


_STATE: Optional[WorkerState] = None


def _exit_with_parent() -> None:
    """Ask Linux to SIGTERM this worker when its parent dies (e.g. ``kill -9`` of the run), so a
    killed preprocessor leaves no orphaned workers behind. A no-op elsewhere."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _init_worker(state: WorkerState) -> None:
    global _STATE
    _exit_with_parent()
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    state.prepare()
    _STATE = state


def _tokenize_all(tokenizer: TextTokenizer, texts: List[str]
                  ) -> Tuple[List[Optional[List[int]]], Dict[int, Exception]]:
    """The ids of every text (None where the tokenizer rejected it) and why each was rejected."""
    if not texts:
        return [], {}
    try:
        return list(tokenizer.tokenize_batch(texts)), {}
    except Exception:
        out: List[Optional[List[int]]] = []
        rejected: Dict[int, Exception] = {}
        for j, t in enumerate(texts):
            try:
                out.append(list(tokenizer.tokenize(t)))
            except Exception as err:
                out.append(None)
                rejected[j] = err
        return out, rejected


def _rejection(err: Exception) -> Tuple[str, str]:
    """(problem reason, detail) of a text the tokenizer rejected."""
    if isinstance(err, TextRejected):
        return err.reason, str(err)
    detail = "the tokenizer rejected the text (e.g. characters it cannot encode)"
    return "tokenizer_error", f"{detail}: {err}" if str(err) else detail


def _check_id_range(tokens: np.ndarray, vocab_size: int, path: str) -> None:
    """Refuse ids outside the vocabulary before they are cast to the shard's dtype, where they
    would wrap silently (70000 -> 4464 in uint16). Tokenizers reject such text first (with the
    line); reaching this is a bug."""
    if tokens.size and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab_size):
        raise RuntimeError(
            f"internal error: {path}: token ids {int(tokens.min())}..{int(tokens.max())} fall "
            f"outside the vocabulary of {vocab_size} ids")


def process_chunk(chunk: inputs.Chunk, state: Optional[WorkerState] = None) -> ChunkResult:
    """Turn one chunk of input lines into shard arrays (runs in a worker).

    Parse the lines into documents, split them into sentences (``--split-sentences``), tokenize
    every text in one batch, drop the documents the tokenizer rejected, then pack each key's
    sequences into flat arrays (EOD appended, ids shifted for ``--write-clone``).
    """
    state = state if state is not None else _STATE
    config = state.config
    file = state.files[chunk.file_index]
    keys = config.json_keys if file.format == "jsonl" else config.json_keys[:1]
    docs, problems, blank = inputs.parse_chunk(chunk, file, keys, config.text_unit, config.max_line_bytes)
    texts, layout = _texts_to_tokenize(docs, state)
    ids, rejected = _tokenize_all(state.tokenizer, texts)
    accepted = _accepted_documents(docs, layout, ids, rejected, file.path, problems)
    eod = state.tokenizer.eod if config.append_eod else None
    results = []
    for key_index, key in enumerate(config.json_keys):
        sequences = _key_sequences(docs, layout, accepted, ids, key_index, eod)
        problems.extend(
            inputs.Problem("empty_document", file.path, docs[d].line,
                           f"{key!r} produced no tokens; kept as an empty document", skipped=False)
            for d in sequences.empty_documents
        )
        results.append(_pack_key(state, chunk.file_index, key_index, file.path, sequences))
    problems.sort(key=lambda p: p.line)  # stable: input order within a line
    return ChunkResult(results, problems, chunk.lines, len(chunk.data), len(docs), blank)


def _texts_to_tokenize(docs: List[inputs.Document], state: WorkerState
                       ) -> Tuple[List[str], List[List[Tuple[int, int]]]]:
    """Every text to tokenize, in order: per document and key, its sentences (or list elements).

    Returns:
        (texts, layout): ``layout[d][k]`` is (first index into ``texts``, number of texts) of
        document ``d``'s key ``k``.
    """
    split = state.config.split_sentences
    texts: List[str] = []
    layout: List[List[Tuple[int, int]]] = []
    for doc in docs:
        spans = []
        for values in doc.values:
            start = len(texts)
            for value in values:
                if split:
                    texts.extend(split_text(state.splitter, value))
                else:
                    texts.append(value)
            spans.append((start, len(texts) - start))
        layout.append(spans)
    return texts, layout


def _accepted_documents(docs: List[inputs.Document], layout, ids: List[Optional[List[int]]],
                        rejected: Dict[int, Exception], path: str, problems: List[inputs.Problem]
                        ) -> List[int]:
    """Indices of the documents whose every text was tokenized; a problem for each other one."""
    accepted: List[int] = []
    for d, spans in enumerate(layout):
        bad = [j for start, n in spans for j in range(start, start + n) if ids[j] is None]
        if bad:
            reason, detail = _rejection(rejected.get(bad[0], Exception()))
            problems.append(inputs.Problem(reason, path, docs[d].line, detail))
        else:
            accepted.append(d)
    return accepted


@dataclass
class _KeySequences:
    """One key's non-empty sequences in a chunk, still as Python lists (``_key_sequences``)."""

    token_lists: List[List[int]] = field(default_factory=list)
    """The ids of every sequence, and ``[eod]`` after each document's last one."""
    seq_lengths: List[int] = field(default_factory=list)
    """Tokens per sequence (a document's EOD counted in its last sequence)."""
    doc_counts: List[int] = field(default_factory=list)
    """Sequences per accepted document (0 for an empty one, kept as Megatron keeps it)."""
    seq_docs: List[int] = field(default_factory=list)
    """Of every sequence, its document's position among the accepted documents."""
    doc_offsets: List[int] = field(default_factory=list)
    """Byte offset of every accepted document (its identity for code-switching)."""
    empty_documents: List[int] = field(default_factory=list)
    """Indices (into the chunk's documents) of the accepted documents without a token."""


def _key_sequences(docs: List[inputs.Document], layout, accepted: List[int],
                   ids: List[Optional[List[int]]], key_index: int, eod: Optional[int]) -> _KeySequences:
    """Collect key ``key_index``'s sequences of the accepted documents, EOD appended per document."""
    out = _KeySequences()
    # Local names for the lists: this loop runs once per sequence of the whole input.
    token_lists, seq_lengths, seq_docs = out.token_lists, out.seq_lengths, out.seq_docs
    for position, d in enumerate(accepted):
        start, n = layout[d][key_index]
        nseq = 0
        for j in range(start, start + n):
            t = ids[j]
            if t:
                token_lists.append(t)
                seq_lengths.append(len(t))
                seq_docs.append(position)
                nseq += 1
        if nseq and eod is not None:
            token_lists.append([eod])
            seq_lengths[-1] += 1
        if nseq == 0:
            out.empty_documents.append(d)
        out.doc_counts.append(nseq)
        out.doc_offsets.append(docs[d].offset)
    return out


def _pack_key(state: WorkerState, file_index: int, key_index: int, path: str,
              sequences: _KeySequences) -> KeyResult:
    """One key's sequences as shard arrays, clone-shifted and range-checked.

    With a dictionary the tokens go to the main process to be switched (``SwitchJob``);
    otherwise their words are counted here, for the report.
    """
    total = int(sum(sequences.seq_lengths))
    tokens = np.fromiter(itertools.chain.from_iterable(sequences.token_lists), dtype=np.int64, count=total)
    lengths = np.asarray(sequences.seq_lengths, dtype=np.int64)
    if state.config.write_clone:
        tokens = tokens + state.tokenizer.base_vocab_size  # English-Clone: every id + |V|
    _check_id_range(tokens, state.tokenizer.vocab_size, path)
    counts = KeyCounts(documents=len(sequences.doc_counts), empty_documents=len(sequences.empty_documents),
                       sequences=len(sequences.seq_lengths), tokens_before_switching=total)
    seq_docs = np.asarray(sequences.seq_docs, dtype=np.int64)
    switch = None
    if state.switch_in_main:
        switch = SwitchJob(file_index, key_index, seq_docs, np.asarray(sequences.doc_offsets, dtype=np.uint64))
    else:
        if state.count_words:
            counts.words = _count_words(tokens, lengths, seq_docs, state.tokenizer)
        counts.tokens = int(len(tokens))
    return KeyResult(
        tokens=tokens.astype(state.dtype).tobytes(),
        seq_lengths=lengths.astype(np.int32),
        doc_counts=np.asarray(sequences.doc_counts, dtype=np.int32),
        targets=None,
        counts=counts,
        switch=switch,
    )


def _count_words(tokens: np.ndarray, lengths: np.ndarray, seq_docs: np.ndarray,
                 tokenizer: TextTokenizer) -> int:
    """Words in ``tokens`` (the code-switching pass with nothing to switch counts them)."""
    result = codeswitch_batch(tokens, lengths, seq_docs, np.zeros(0, np.uint64), None,
                              tokenizer.word_boundaries, 0.0)
    return result.stats.words


# ----------------------------------------------------------------------------------------------
# Main side
# ----------------------------------------------------------------------------------------------


class Progress:
    """A one-line progress bar on a terminal, Megatron-style log lines otherwise."""

    def __init__(self, mode: str, total_bytes: int, log_interval: int, label: str = "") -> None:
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "log"
        self.mode = mode
        self.total = max(total_bytes, 1)
        self.log_interval = max(log_interval, 1)
        self.label = label
        self.start = time.time()
        self.docs = self.nbytes = self.tokens = self.problems = 0
        self._next_log = self.log_interval
        self._last_draw = 0.0

    def rates(self) -> Tuple[float, float]:
        elapsed = max(time.time() - self.start, 1e-9)
        return self.docs / elapsed, self.nbytes / elapsed / 1e6

    def update(self, docs: int, nbytes: int, tokens: int, problems: int) -> None:
        self.docs += docs
        self.nbytes += nbytes
        self.tokens += tokens
        self.problems += problems
        if self.mode == "bar":
            now = time.time()
            if now - self._last_draw >= 0.2:
                self._last_draw = now
                self._draw()
        elif self.mode == "log" and self.docs >= self._next_log:
            while self._next_log <= self.docs:
                self._next_log += self.log_interval
            dps, mbs = self.rates()
            print(
                f"{self.label}Processed {self.docs} documents ({dps:.1f} docs/s, {mbs:.3g} MB/s), "
                f"{self.tokens} tokens, {self.problems} problems.",
                file=sys.stderr, flush=True,
            )

    def _draw(self) -> None:
        dps, mbs = self.rates()
        frac = min(self.nbytes / self.total, 1.0)
        width = 24
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        print(
            f"\r{self.label}[{bar}] {100 * frac:5.1f}% {self.docs} docs {dps:,.0f} docs/s "
            f"{mbs:.3g} MB/s {self.tokens} tokens {self.problems} problems",
            end="", file=sys.stderr, flush=True,
        )

    def close(self) -> None:
        if self.mode == "bar":
            self._draw()
            print(file=sys.stderr, flush=True)


class _Switcher:
    """Code-switching in the main process, on each chunk's tokens in input order.

    Switching costs a few percent of tokenization (vectorised numpy), so one process keeps up
    with dozens of tokenizing workers; doing it here lets the dictionary compile while the
    workers already tokenize. Results do not depend on where it runs.
    """

    def __init__(self, state: "WorkerState") -> None:
        self.state = state

    def apply(self, kr: KeyResult) -> KeyResult:
        state, job = self.state, kr.switch
        config = state.config
        tokens = np.frombuffer(kr.tokens, dtype=state.dtype).astype(np.int64)
        ratio = config.codeswitch_ratio
        keys = (document_keys(config.codeswitch_seed, job.file_index, job.doc_offsets, job.key_index)
                if ratio > 0 else np.zeros(0, np.uint64))
        res = codeswitch_batch(tokens, kr.seq_lengths.astype(np.int64), job.seq_docs, keys,
                               state.table, state.tokenizer.word_boundaries, ratio)
        counts = kr.counts
        counts.words = res.stats.words
        counts.dictionary_words = res.stats.dictionary_words
        counts.switched_words = res.stats.switched_words
        counts.tokens = int(len(res.tokens))
        targets = res.targets if res.targets is not None else (res.tokens if ratio > 0 else None)
        return KeyResult(
            tokens=res.tokens.astype(state.dtype).tobytes(),
            seq_lengths=res.seq_lengths.astype(np.int32),
            doc_counts=kr.doc_counts,
            targets=None if targets is None else targets_to_disk(targets, state.dtype).tobytes(),
            counts=counts,
        )


class _Sink:
    """Receives chunk results in input order, code-switches them if asked, and writes them."""

    def __init__(self, config: PreprocessConfig, writers, companions, progress: Progress,
                 max_errors: Optional[int], switcher: Optional[_Switcher] = None) -> None:
        self.config = config
        self.switcher = switcher
        self.writers = writers
        self.companions = companions
        self.progress = progress
        self.max_errors = max_errors
        self.counts = [KeyCounts() for _ in config.json_keys]
        self.problem_counts: Counter = Counter()
        self.examples: List[dict] = []
        self.problems_total = 0
        self.documents_skipped = 0
        self.lines = 0
        self.nbytes = 0
        self.documents_read = 0
        self.blank_text_lines = 0

    def problem(self, p: inputs.Problem) -> None:
        self.problem_counts[p.reason] += 1
        self.problems_total += 1
        if p.skipped:
            self.documents_skipped += 1
        if len(self.examples) < MAX_PROBLEM_EXAMPLES:
            self.examples.append(p.as_dict())
        if self.max_errors is not None and self.problems_total > self.max_errors:
            raise PreprocessError(
                f"more than --max-errors {self.max_errors} input problems; the last: {p}. Nothing "
                "was published. Fix the input or raise --max-errors."
            )

    def skipped_line(self, p: inputs.Problem) -> None:
        self.lines += 1
        self.problem(p)

    def add(self, r: ChunkResult) -> None:
        for p in r.problems:
            self.problem(p)
        for k, kr in enumerate(r.keys):
            if kr.switch is not None:
                kr = r.keys[k] = self.switcher.apply(kr)
            self.writers[k].append(np.frombuffer(kr.tokens, dtype=self.writers[k].dtype),
                                   kr.seq_lengths, kr.doc_counts)
            if self.companions[k] is not None:
                self.companions[k].append(np.frombuffer(kr.targets, dtype=self.companions[k].dtype),
                                          kr.seq_lengths, kr.doc_counts)
            self.counts[k].add(kr.counts)
        self.lines += r.lines
        self.nbytes += r.nbytes
        self.documents_read += r.documents_read
        self.blank_text_lines += r.blank_text_lines
        self.progress.update(r.documents_read, r.nbytes, sum(kr.counts.tokens for kr in r.keys),
                             len(r.problems))

    def summary(self) -> dict:
        return {
            "counts": [asdict(c) for c in self.counts],
            "problem_counts": dict(self.problem_counts),
            "examples": self.examples,
            "problems_total": self.problems_total,
            "documents_skipped": self.documents_skipped,
            "lines": self.lines,
            "bytes": self.nbytes,
            "documents_read": self.documents_read,
            "blank_text_lines": self.blank_text_lines,
        }


def _mp_context():
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _run_pipeline(state: WorkerState, segments: List[inputs.Segment], workers: int, sink: _Sink,
                  prepare=None) -> None:
    """Read, process (in ``workers`` processes) and write ``segments`` in input order.

    Args:
        prepare: called once before the first result is written, after the workers have been
            given their first chunks (so that it overlaps with tokenization); compiles the
            dictionary when code-switching.
    """
    config = state.config
    reader = inputs.read_chunks(segments, chunk_bytes=config.chunk_bytes,
                                max_line_bytes=config.max_line_bytes, text_unit=config.text_unit)
    if workers <= 1:
        _run_in_this_process(state, reader, sink, prepare)
    else:
        _run_in_worker_pool(state, reader, workers, sink, prepare)


def _run_in_this_process(state: WorkerState, reader, sink: _Sink, prepare) -> None:
    """``--workers 1``: parse and tokenize here, chunk by chunk (no pool to start)."""
    if prepare is not None:
        prepare()
    _init_worker(state)
    for item in reader:
        if isinstance(item, inputs.Problem):
            sink.skipped_line(item)
        else:
            sink.add(process_chunk(item, state))


def _run_in_worker_pool(state: WorkerState, reader, workers: int, sink: _Sink, prepare) -> None:
    """Submit every chunk to a pool of ``workers`` processes; write results in input order.

    At most about ``2 * workers`` chunks are in flight; with ``prepare``, ``8 * workers`` chunks
    are queued first so that the workers tokenize while it runs.
    """
    # Move the long-lived objects (dictionary, tokenizer caches) out of the cyclic GC's reach
    # until the workers are forked (at the first submit), so that workers neither scan them nor
    # copy their pages on write.
    gc.freeze()
    # A process pool that notices dead workers (multiprocessing.Pool would wait forever).
    pool = ProcessPoolExecutor(workers, mp_context=_mp_context(), initializer=_init_worker,
                               initargs=(state,))
    window: deque = deque()  # ("problem", Problem) or ("chunk", Future), in input order
    try:
        head = 8 * workers if prepare is not None else 0  # work queued before preparing
        for item in reader:
            if isinstance(item, inputs.Problem):
                window.append(("problem", item))
            else:
                window.append(("chunk", pool.submit(process_chunk, item)))
            if head and len(window) < head:
                continue
            if prepare is not None:
                prepare()
                prepare, head = None, 0
            _write_ready(window, 2 * workers, sink)
        if prepare is not None:
            prepare()
        _write_ready(window, 0, sink)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        gc.unfreeze()


def _write_ready(window: deque, limit: int, sink: _Sink) -> None:
    """Hand the window's leading results to ``sink``: all that are done, and more (waiting for
    them) until at most ``limit`` are left in flight."""
    while window and (len(window) > limit or window[0][0] == "problem" or window[0][1].done()):
        kind, item = window.popleft()
        if kind == "problem":
            sink.skipped_line(item)
            continue
        try:
            result = item.result()
        except BrokenProcessPool:
            raise PreprocessError(
                "a worker process died (killed, or out of memory?) while tokenizing; nothing "
                "was published. Rerun, with fewer --workers if memory is short."
            ) from None
        sink.add(result)


def _partition_main(state: WorkerState, segments, workers: int, prefixes, companion_prefixes,
                    index: int, conn) -> None:
    """Entry of a partition process: run a pipeline into part shards, send back the summary."""
    _exit_with_parent()
    writers, companions = [], []
    try:
        for p, cp in zip(prefixes, companion_prefixes):
            writers.append(ShardWriter(p, state.dtype))
            companions.append(None if cp is None else ShardWriter(cp, state.dtype))
        progress = Progress("log" if state.config.progress != "none" else "none", 1,
                            state.config.log_interval, label=f"[partition {index}] ")
        sink = _Sink(state.config, writers, companions, progress, state.config.max_errors,
                     _Switcher(state) if state.switch_in_main else None)
        _run_pipeline(state, segments, workers, sink)
        ordered = [c for c in companions if c is not None] + writers
        commit_outputs(ordered)
        conn.send(("ok", sink.summary()))
    except BaseException as err:  # report everything to the parent, which cleans up
        for w in writers + [c for c in companions if c is not None]:
            w.abort()
        conn.send(("error", str(err) if isinstance(err, PreAlignError) else f"{type(err).__name__}: {err}"))
    finally:
        conn.close()


def _sample_texts(files, config: PreprocessConfig, limit: int):
    """The first ``limit`` bytes of document text of the input, in input order (for Punkt)."""
    got = 0
    for item in inputs.read_chunks([inputs.Segment(f) for f in files], chunk_bytes=min(config.chunk_bytes, limit + 1),
                                max_line_bytes=config.max_line_bytes, text_unit=config.text_unit):
        if isinstance(item, inputs.Problem):
            continue
        f = files[item.file_index]
        keys = config.json_keys if f.format == "jsonl" else config.json_keys[:1]
        docs, _, _ = inputs.parse_chunk(item, f, keys, config.text_unit)
        for doc in docs:
            for values in doc.values:
                for v in values:
                    yield v
                    got += len(v)
                    if got >= limit:
                        return


def load_codeswitch_table(config: PreprocessConfig, tokenizer: TextTokenizer):
    """Load, tokenize and compile ``--dictionary`` (None when not given), through the cache."""
    if not config.dictionary:
        return None, None

    word_rules = dict(max_tokens=30, max_unknown_share=0.2)  # part of the cache key

    def compile_table():
        dictionary = load_dictionary(config.dictionary, config.dictionary_format)
        table, report = compile_switch_table(dictionary, tokenizer, **word_rules)
        report.update(format=dictionary.format, dropped_concepts_while_loading=dictionary.dropped)
        return table, report

    table, report, cache = table_cache.load_or_compile(
        config.dictionary, config.dictionary_format, tokenizer, compile_table,
        None if config.no_dictionary_cache else config.dictionary_cache_dir, **word_rules)
    table.check_vocab(tokenizer.vocab_size, config.dictionary)
    report = dict(report, path=config.dictionary, compiled_cache=cache)
    if len(table) == 0:
        raise PreprocessError(
            f"{config.dictionary}: no dictionary word can be matched with {tokenizer.describe()} "
            f"({report['dropped_words']}); check that the dictionary fits the tokenizer."
        )
    return table, report


def _rate(num: int, den: int) -> Optional[float]:
    return None if den == 0 else num / den


def run_preprocess(config: PreprocessConfig, argv: Optional[Sequence[str]] = None) -> dict:
    """Run the whole preprocessing job and return the stats report (also written to disk).

    The run holds ``<output-prefix>.lock`` and each output shard's ``<shard prefix>.lock`` from
    start to end (``files.output_lock``): a second run on the same prefix or shard fails at once,
    naming the first one's pid, instead of writing into the same ``.partial`` files and publishing
    a mix of both.

    Raises:
        PreprocessError: bad configuration, too many input problems (``max_errors``), input
            problems that leave no token, or a worker failure; nothing is published then.
        TokenizerError, DictionaryError, InputError: unusable tokenizer, dictionary or input.
        files.OutputError: the outputs cannot be written there (a regular file in the path, a
            read-only directory, a full disk) or another run is writing them.
    """
    check_output_parent(config.output_prefix, "--output-prefix")
    with contextlib.ExitStack() as locks:
        locks.enter_context(output_lock(config.output_prefix + ".lock",
                                        f"--output-prefix {config.output_prefix}"))
        # Each shard's own lock too, the one every shard writer takes (make_english_clone.py
        # locks its output shard the same way), so two tools never write one shard together.
        for prefix in config.output_prefixes():
            locks.enter_context(output_lock(prefix + ".lock", f"the shard {prefix}"))
        return _run_locked(config, argv)


def _run_locked(config: PreprocessConfig, argv: Optional[Sequence[str]]) -> dict:
    """Plan the run (inputs, tokenizer, splitter, dictionary, writers), run it, publish it."""
    started = time.time()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    files = _expand_inputs(config)
    tokenizer = _build_tokenizer(config)
    dtype = optimal_token_dtype(tokenizer.vocab_size)
    timing = {"setup_s": time.time() - started}
    count_words = _can_count_words(tokenizer, config)
    punkt_params, punkt_info = _sentence_splitter(config, files)
    state = WorkerState(config=config, files=files, tokenizer=tokenizer, dtype=dtype, table=None,
                        count_words=count_words, switch_in_main=bool(config.dictionary),
                        punkt_params=punkt_params)
    dictionary = _DictionaryCompiler(config, state, timing)
    # With one pipeline of several workers the dictionary compiles while workers tokenize;
    # otherwise (one process, or partitions that each need the table) it compiles first.
    overlap = bool(config.dictionary) and config.partitions == 1 and config.workers > 1
    if config.dictionary and not overlap:
        dictionary.compile()
    outputs = _Outputs.open(config, dtype)
    # Created after the writers (their first use imports megatron.core, ~5 s) so rates are honest.
    progress = Progress(config.progress if config.partitions == 1 else "none",
                        sum(f.size for f in files), config.log_interval)
    sink = _Sink(config, outputs.writers, outputs.companions, progress, config.max_errors,
                 _Switcher(state) if config.dictionary else None)
    part_prefixes: List[List[str]] = []
    try:
        pipeline_started = time.time()
        groups = inputs.split_segments(files, config.partitions, config.text_unit)
        if config.partitions == 1:
            _run_pipeline(state, groups[0], config.workers, sink,
                          prepare=dictionary.compile if overlap else None)
        else:
            _run_partitions(state, groups, outputs.prefixes, outputs.with_companion, sink, part_prefixes)
        progress.close()
        warnings = _tokenless_outputs(config, files, sink)
        outputs.finalize()
        timing["pipeline_s"] = time.time() - pipeline_started
        report = _report(config, argv, files, tokenizer, dtype, sink, dictionary.report or None, punkt_info,
                         outputs.prefixes, outputs.with_companion, time.time() - started, timing, warnings)
        outputs.publish(config.stats_path, report)
    except BaseException:
        outputs.abort()
        raise
    finally:
        for group in part_prefixes:
            for prefix in group:
                remove_dataset(prefix)
    return report


def _expand_inputs(config: PreprocessConfig) -> List[inputs.InputFile]:
    """The input files; plain text only with a single ``--json-keys`` name."""
    files = inputs.expand_inputs(config.input, config.input_format)
    if any(f.format == "text" for f in files) and len(config.json_keys) > 1:
        raise PreprocessError(
            f"plain-text inputs have one text field, but --json-keys names {config.json_keys}; "
            "pass a single key (its name is used for the output file names)."
        )
    return files


def _build_tokenizer(config: PreprocessConfig) -> TextTokenizer:
    tokenizer = build_tokenizer(config.tokenizer_type, config.tokenizer_model,
                                vocab_size=config.vocab_size, english_clone=config.english_clone)
    if config.append_eod:
        _ = tokenizer.eod  # raises for tokenizers without one
    return tokenizer


def _can_count_words(tokenizer: TextTokenizer, config: PreprocessConfig) -> bool:
    """Whether the tokenizer knows its word boundaries (needed by a dictionary, else optional)."""
    try:
        _ = tokenizer.word_boundaries
        return True
    except TokenizerError:
        if config.dictionary:
            raise
        return False


def _sentence_splitter(config: PreprocessConfig, files: List[inputs.InputFile]):
    """(Punkt parameters, their provenance for the report) for ``--split-sentences``, else Nones.

    Without installed or given parameters Punkt is trained on the input's first
    ``--punkt-train-bytes`` and saved next to the outputs, so that the run can be repeated.
    """
    if not config.split_sentences:
        return None, None
    punkt_params, source = resolve_punkt(
        config.punkt_model, config.lang, _sample_texts(files, config, config.punkt_train_bytes)
    )
    if source.kind == "trained-on-input":
        source.path = save_punkt_params(punkt_params, f"{config.output_prefix}_punkt")
        print(
            f"No Punkt sentence-splitter parameters for {config.lang!r} are installed: trained "
            f"Punkt on the first {source.train_bytes} bytes of the input and saved them to "
            f"{source.path} (reuse with --punkt-model).", file=sys.stderr,
        )
    return punkt_params, asdict(source)


class _DictionaryCompiler:
    """Compiles ``--dictionary`` into ``state.table`` when asked (at once, or while workers
    tokenize), keeping its report and the time it took."""

    def __init__(self, config: PreprocessConfig, state: WorkerState, timing: dict) -> None:
        self.config = config
        self.state = state
        self.timing = timing
        self.report: dict = {}

    def compile(self) -> None:
        started = time.time()
        self.state.table, report = load_codeswitch_table(self.config, self.state.tokenizer)
        self.report.update(report or {})
        self.timing["dictionary_s"] = time.time() - started


@dataclass
class _Outputs:
    """The shard writers of a run: one per ``--json-keys`` key, each with its targets companion
    when code-switching."""

    prefixes: List[str]
    writers: List[ShardWriter]
    companions: List[Optional[ShardWriter]]
    with_companion: bool

    @classmethod
    def open(cls, config: PreprocessConfig, dtype) -> "_Outputs":
        prefixes = config.output_prefixes()
        with_companion = config.codeswitch_ratio > 0
        opened: List[ShardWriter] = []

        def open_writer(prefix: str) -> ShardWriter:
            opened.append(ShardWriter(prefix, dtype))
            return opened[-1]

        try:
            writers = [open_writer(p) for p in prefixes]
            companions = [open_writer(companion_prefix(p)) if with_companion else None for p in prefixes]
        except BaseException:  # one that cannot be opened: the ones already open leave no .partial behind
            for writer in opened:
                writer.abort()
            raise
        return cls(prefixes, writers, companions, with_companion)

    def all_writers(self) -> List[ShardWriter]:
        return self.writers + [c for c in self.companions if c is not None]

    def finalize(self) -> None:
        for writer in self.all_writers():
            writer.finalize()

    def abort(self) -> None:
        for writer in self.all_writers():
            writer.abort()

    def publish(self, stats_path: str, report: dict) -> None:
        """Publish every shard and the stats report atomically; remove companions left over from
        an earlier run with code-switching when this one has none."""
        stale = [] if self.with_companion else [companion_prefix(p) for p in self.prefixes]
        # Commit companions first and each token .idx last (shards/writer.py explains why).
        ordered = [w for pair in zip(self.companions, self.writers) for w in pair if w is not None]
        commit_outputs(ordered, json_files=[(stats_path, report)], stale_prefixes=stale)


def _tokenless_outputs(config: PreprocessConfig, files, sink: _Sink) -> List[str]:
    """Warnings for outputs without a single token; an error when bad lines are the cause.

    Such a shard cannot be trained on. An empty input (or one of empty documents only) still gets
    its shard, byte-identical to Megatron-LM's, with a warning: a pipeline over many files may
    meet an empty one. When input problems removed every document, the input or the flags
    (``--json-keys``, ``--input-format``) are wrong, and Megatron-LM would have crashed on them:
    ``PreprocessError``, nothing published.
    """
    empty = [(key, prefix) for key, prefix, c in zip(config.json_keys, config.output_prefixes(),
                                                      sink.counts) if c.tokens == 0]
    if not empty:
        return []
    names = ", ".join(f.path for f in files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
    keys = " ".join(key for key, _ in empty)
    if sink.documents_skipped:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(sink.problem_counts.items()))
        first = sink.examples[0] if sink.examples else None
        example = f"; first: {first['file']}:{first['line']}: {first['detail']}" if first else ""
        raise PreprocessError(
            f"{names}: no line of the input gave a token for --json-keys {keys} ({sink.lines} lines, "
            f"{sink.problems_total} problems: {reasons}{example}). A shard without tokens cannot be "
            "trained on, so nothing was published; check the input, --json-keys and --input-format."
        )
    why = "the input is empty" if sink.lines == 0 else f"all {sink.documents_read} documents are empty"
    return [f"{prefix}.bin/.idx holds no token: {why} ({names}); written as Megatron-LM writes it, "
            "but a shard without tokens cannot be trained on" for _, prefix in empty]


def _run_partitions(state, groups, prefixes, with_companion, sink: _Sink, part_prefixes) -> None:
    config = state.config
    per = max(1, config.workers // config.partitions)
    ctx = _mp_context()
    procs = []
    for i, segs in enumerate(groups):
        pp = [f"{p}.partial-part{i}" for p in prefixes]
        cp = [companion_prefix(p) if with_companion else None for p in pp]
        part_prefixes.append(pp + [c for c in cp if c is not None])
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_partition_main, args=(state, segs, per, pp, cp, i, child))
        proc.start()
        child.close()
        procs.append((proc, parent, pp, cp))
    summaries = []
    errors = []
    for proc, parent, _, _ in procs:
        try:
            status, payload = parent.recv()
        except EOFError:
            status, payload = "error", f"partition process exited with code {proc.exitcode}"
        proc.join()
        if status != "ok":
            errors.append(payload)
        summaries.append(payload)
    if errors:
        raise PreprocessError("a partition failed: " + "; ".join(errors))
    for (_, _, pp, cp), summary in zip(procs, summaries):
        for k, p in enumerate(pp):
            sink.writers[k].append_shard(p)
            if cp[k] is not None:
                sink.companions[k].append_shard(cp[k])
            sink.counts[k].add(KeyCounts(**summary["counts"][k]))
        for reason, n in summary["problem_counts"].items():
            sink.problem_counts[reason] += n
        sink.problems_total += summary["problems_total"]
        room = MAX_PROBLEM_EXAMPLES - len(sink.examples)
        sink.examples.extend(summary["examples"][:max(room, 0)])
        sink.documents_skipped += summary["documents_skipped"]
        sink.lines += summary["lines"]
        sink.nbytes += summary["bytes"]
        sink.documents_read += summary["documents_read"]
        sink.blank_text_lines += summary["blank_text_lines"]
    if config.max_errors is not None and sink.problems_total > config.max_errors:
        raise PreprocessError(
            f"{sink.problems_total} input problems, more than --max-errors {config.max_errors}; "
            f"first: {sink.examples[:1]}. Nothing was published."
        )


def _report(config, argv, files, tokenizer, dtype, sink: _Sink, dict_report, punkt_info, prefixes,
            with_companion, elapsed, timing, warnings) -> dict:
    outputs = {}
    for key, prefix, c in zip(config.json_keys, prefixes, sink.counts):
        outputs[key] = {
            "prefix": prefix,
            "companion": companion_prefix(prefix) if with_companion else None,
            "dtype": np.dtype(dtype).name,
            **asdict(c),
            "dictionary_coverage": _rate(c.dictionary_words, c.words),
            "switched_rate": _rate(c.switched_words, c.dictionary_words),
            "switched_share_of_words": _rate(c.switched_words, c.words),
        }
    return {
        "format_version": 1,
        "status": "complete",
        "command": list(argv) if argv is not None else None,
        "config": {k: v for k, v in asdict(config).items()},
        "tokenizer": dict(tokenizer.fingerprint()),
        "inputs": [{"path": f.path, "format": f.format, "bytes": f.size} for f in files],
        "lines_read": sink.lines,
        "bytes_read": sink.nbytes,
        "documents_read": sink.documents_read,
        "documents_skipped": sink.documents_skipped,
        "blank_text_lines": sink.blank_text_lines,
        "problems": {
            "total": sink.problems_total,
            "by_reason": dict(sorted(sink.problem_counts.items())),
            "examples": sink.examples,
        },
        "warnings": warnings,
        "sentence_splitter": punkt_info,
        "dictionary": dict_report,
        "codeswitch": {"ratio": config.codeswitch_ratio, "seed": config.codeswitch_seed},
        "outputs": outputs,
        "elapsed_s": round(elapsed, 3),
        "mb_per_s": round(sink.nbytes / max(elapsed, 1e-9) / 1e6, 3),
        "timing": {k: round(v, 3) for k, v in timing.items()},
    }
