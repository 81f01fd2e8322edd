"""The offline preprocessor behind ``tools/preprocess_data.py``: text -> Megatron shards.

Pipeline: ``inputs.read_chunks`` cuts the input into ~1 MiB runs of whole lines (in the main
process, in input order); workers parse them (``inputs.parse_chunk``), split sentences, tokenize in
batches, append EOD and shift ids for ``--write-clone``; the main process code-switches their ids
(``codeswitch.py``, vectorised, a few percent of the tokenization cost: one main process keeps up
with dozens of workers, and the dictionary compiles while the first chunks are tokenized), writes
them in input order (``shards.ShardWriter``) and publishes every output atomically with a stats
report (``shards.commit_outputs``). ``--partitions P`` runs P such pipelines on P contiguous,
line-aligned parts of the input (each with ``--workers / P`` workers and its own main process)
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
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from megatron_prealign.errors import PreAlignError
from megatron_prealign.files import check_output_parent, output_lock
from megatron_prealign.preprocess import inputs as inp
from megatron_prealign.preprocess import table_cache
from megatron_prealign.preprocess.sentences import make_splitter, resolve_punkt, save_punkt_params, split_text
from megatron_prealign.preprocess.table_cache import default_cache_dir
from megatron_prealign.shards import writer as shards
from megatron_prealign.shards.writer import optimal_token_dtype
from megatron_prealign.text import codeswitch as cs
from megatron_prealign.text.dictionary import compile_switch_table, load_dictionary
from megatron_prealign.text.tokenizers import build_tokenizer
from megatron_prealign.text.tokenizers.base import TextRejected, TextTokenizer, TokenizerError

MAX_PROBLEM_EXAMPLES = 200


class PreprocessError(PreAlignError, RuntimeError):
    """The run cannot proceed or was aborted; the message says why and what to do."""


@dataclass
class PreprocessConfig:
    """Everything ``tools/preprocess_data.py`` is told (Megatron-LM's flags plus PreAlign's)."""

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
        if self.dictionary_cache_dir is None:
            self.dictionary_cache_dir = default_cache_dir()
        if isinstance(self.input, str):
            self.input = [self.input]
        if self.write_clone:
            self.english_clone = True
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
    files: List[inp.InputFile]
    tokenizer: TextTokenizer
    dtype: type
    table: Optional[cs.CodeSwitchTable]
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
    problems: List[inp.Problem]
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


def process_chunk(chunk: inp.Chunk, state: Optional[WorkerState] = None) -> ChunkResult:
    """Turn one chunk of input lines into shard arrays (runs in a worker)."""
    st = state if state is not None else _STATE
    cfg = st.config
    file = st.files[chunk.file_index]
    keys = cfg.json_keys if file.format == "jsonl" else cfg.json_keys[:1]
    docs, problems, blank = inp.parse_chunk(chunk, file, keys, cfg.text_unit, cfg.max_line_bytes)
    nkeys = len(cfg.json_keys)

    # 1. Texts to tokenize: per document and key, its sentences (or list elements) in order.
    texts: List[str] = []
    layout: List[List[Tuple[int, int]]] = []
    for doc in docs:
        spans = []
        for values in doc.values:
            start = len(texts)
            for v in values:
                if cfg.split_sentences:
                    texts.extend(split_text(st.splitter, v))
                else:
                    texts.append(v)
            spans.append((start, len(texts) - start))
        layout.append(spans)
    ids, rejected = _tokenize_all(st.tokenizer, texts)

    # 2. Drop documents the tokenizer rejected.
    good: List[int] = []
    for d, spans in enumerate(layout):
        bad = [j for s, n in spans for j in range(s, s + n) if ids[j] is None]
        if bad:
            reason, detail = _rejection(rejected.get(bad[0], Exception()))
            problems.append(inp.Problem(reason, file.path, docs[d].line, detail))
        else:
            good.append(d)

    eod = st.tokenizer.eod if cfg.append_eod else None
    base_v = st.tokenizer.base_vocab_size
    results: List[KeyResult] = []
    for k in range(nkeys):
        counts = KeyCounts()
        lists: List[List[int]] = []
        seq_lengths: List[int] = []
        doc_counts: List[int] = []
        seq_docs: List[int] = []
        doc_offsets: List[int] = []
        for gi, d in enumerate(good):
            start, n = layout[d][k]
            nseq = 0
            for j in range(start, start + n):
                t = ids[j]
                if t:
                    lists.append(t)
                    seq_lengths.append(len(t))
                    seq_docs.append(gi)
                    nseq += 1
            if nseq and eod is not None:
                lists.append([eod])
                seq_lengths[-1] += 1
            if nseq == 0:
                counts.empty_documents += 1
                problems.append(inp.Problem(
                    "empty_document", file.path, docs[d].line,
                    f"{cfg.json_keys[k]!r} produced no tokens; kept as an empty document",
                    skipped=False,
                ))
            doc_counts.append(nseq)
            doc_offsets.append(docs[d].offset)
        total = int(sum(seq_lengths))
        tokens = np.fromiter(itertools.chain.from_iterable(lists), dtype=np.int64, count=total)
        lengths = np.asarray(seq_lengths, dtype=np.int64)
        if cfg.write_clone:
            tokens = tokens + base_v
        _check_id_range(tokens, st.tokenizer.vocab_size, file.path)
        counts.documents = len(doc_counts)
        counts.sequences = len(seq_lengths)
        counts.tokens_before_switching = total
        if st.switch_in_main:
            results.append(KeyResult(
                tokens=tokens.astype(st.dtype).tobytes(), seq_lengths=lengths.astype(np.int32),
                doc_counts=np.asarray(doc_counts, dtype=np.int32), targets=None, counts=counts,
                switch=SwitchJob(chunk.file_index, k, np.asarray(seq_docs, dtype=np.int64),
                                 np.asarray(doc_offsets, dtype=np.uint64)),
            ))
            continue
        if st.count_words:
            res = cs.codeswitch_batch(tokens, lengths, np.asarray(seq_docs, dtype=np.int64),
                                      np.zeros(0, np.uint64), None, st.tokenizer.word_boundaries, 0.0)
            counts.words = res.stats.words
        counts.tokens = int(len(tokens))
        results.append(KeyResult(
            tokens=tokens.astype(st.dtype).tobytes(),
            seq_lengths=lengths.astype(np.int32),
            doc_counts=np.asarray(doc_counts, dtype=np.int32),
            targets=None,
            counts=counts,
        ))
    problems.sort(key=lambda p: p.line)  # stable: input order within a line
    return ChunkResult(results, problems, chunk.lines, len(chunk.data), len(docs), blank)


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
        st, job = self.state, kr.switch
        cfg = st.config
        tokens = np.frombuffer(kr.tokens, dtype=st.dtype).astype(np.int64)
        ratio = cfg.codeswitch_ratio
        keys = (cs.document_keys(cfg.codeswitch_seed, job.file_index, job.doc_offsets, job.key_index)
                if ratio > 0 else np.zeros(0, np.uint64))
        res = cs.codeswitch_batch(tokens, kr.seq_lengths.astype(np.int64), job.seq_docs, keys,
                                  st.table, st.tokenizer.word_boundaries, ratio)
        counts = kr.counts
        counts.words = res.stats.words
        counts.dictionary_words = res.stats.dictionary_words
        counts.switched_words = res.stats.switched_words
        counts.tokens = int(len(res.tokens))
        targets = res.targets if res.targets is not None else (res.tokens if ratio > 0 else None)
        return KeyResult(
            tokens=res.tokens.astype(st.dtype).tobytes(),
            seq_lengths=res.seq_lengths.astype(np.int32),
            doc_counts=kr.doc_counts,
            targets=None if targets is None else shards.targets_to_disk(targets, st.dtype).tobytes(),
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

    def problem(self, p: inp.Problem) -> None:
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

    def skipped_line(self, p: inp.Problem) -> None:
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


def _run_pipeline(state: WorkerState, segments: List[inp.Segment], workers: int, sink: _Sink,
                  prepare=None) -> None:
    """Read, process (in ``workers`` processes) and write ``segments`` in input order.

    Args:
        prepare: called once before the first result is written, after the workers have been
            given their first chunks (so that it overlaps with tokenization); compiles the
            dictionary when code-switching.
    """
    cfg = state.config
    reader = inp.read_chunks(segments, chunk_bytes=cfg.chunk_bytes,
                             max_line_bytes=cfg.max_line_bytes, text_unit=cfg.text_unit)
    if workers <= 1:
        if prepare is not None:
            prepare()
        _init_worker(state)
        for item in reader:
            if isinstance(item, inp.Problem):
                sink.skipped_line(item)
            else:
                sink.add(process_chunk(item, state))
        return
    ctx = _mp_context()
    # Move the long-lived objects (dictionary, tokenizer caches) out of the cyclic GC's reach
    # until the workers are forked (at the first submit), so that workers neither scan them nor
    # copy their pages on write.
    gc.freeze()
    # A process pool that notices dead workers (multiprocessing.Pool would wait forever).
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(state,))
    window: deque = deque()

    def drain(limit: int) -> None:
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

    try:
        head = 8 * workers if prepare is not None else 0  # work queued before preparing
        for item in reader:
            if isinstance(item, inp.Problem):
                window.append(("problem", item))
            else:
                window.append(("chunk", pool.submit(process_chunk, item)))
            if head and len(window) < head:
                continue
            if prepare is not None:
                prepare()
                prepare, head = None, 0
            drain(2 * workers)
        if prepare is not None:
            prepare()
        drain(0)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        gc.unfreeze()


def _partition_main(state: WorkerState, segments, workers: int, prefixes, companion_prefixes,
                    index: int, conn) -> None:
    """Entry of a partition process: run a pipeline into part shards, send back the summary."""
    _exit_with_parent()
    writers, companions = [], []
    try:
        for p, cp in zip(prefixes, companion_prefixes):
            writers.append(shards.ShardWriter(p, state.dtype))
            companions.append(None if cp is None else shards.ShardWriter(cp, state.dtype))
        progress = Progress("log" if state.config.progress != "none" else "none", 1,
                            state.config.log_interval, label=f"[partition {index}] ")
        sink = _Sink(state.config, writers, companions, progress, state.config.max_errors,
                     _Switcher(state) if state.switch_in_main else None)
        _run_pipeline(state, segments, workers, sink)
        ordered = [c for c in companions if c is not None] + writers
        shards.commit_outputs(ordered)
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
    for item in inp.read_chunks([inp.Segment(f) for f in files], chunk_bytes=min(config.chunk_bytes, limit + 1),
                                max_line_bytes=config.max_line_bytes, text_unit=config.text_unit):
        if isinstance(item, inp.Problem):
            continue
        f = files[item.file_index]
        keys = config.json_keys if f.format == "jsonl" else config.json_keys[:1]
        docs, _, _ = inp.parse_chunk(item, f, keys, config.text_unit)
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
    t0 = time.time()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    files = inp.expand_inputs(config.input, config.input_format)
    if any(f.format == "text" for f in files) and len(config.json_keys) > 1:
        raise PreprocessError(
            f"plain-text inputs have one text field, but --json-keys names {config.json_keys}; "
            "pass a single key (its name is used for the output file names)."
        )
    tokenizer = build_tokenizer(config.tokenizer_type, config.tokenizer_model,
                                vocab_size=config.vocab_size, english_clone=config.english_clone)
    if config.append_eod:
        _ = tokenizer.eod  # raises for tokenizers without one
    dtype = optimal_token_dtype(tokenizer.vocab_size)
    timing = {"setup_s": time.time() - t0}
    try:
        _ = tokenizer.word_boundaries
        count_words = True
    except TokenizerError:
        if config.dictionary:
            raise
        count_words = False
    dict_report: dict = {}

    def compile_dictionary() -> None:
        t_dict = time.time()
        state.table, report = load_codeswitch_table(config, tokenizer)
        dict_report.update(report or {})
        timing["dictionary_s"] = time.time() - t_dict

    # With one pipeline of several workers the dictionary compiles while workers tokenize;
    # otherwise (one process, or partitions that each need the table) it compiles first.
    overlap = bool(config.dictionary) and config.partitions == 1 and config.workers > 1

    punkt_params, punkt_info = None, None
    if config.split_sentences:
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
        punkt_info = asdict(source)

    state = WorkerState(config=config, files=files, tokenizer=tokenizer, dtype=dtype, table=None,
                        count_words=count_words, switch_in_main=bool(config.dictionary),
                        punkt_params=punkt_params)
    if config.dictionary and not overlap:
        compile_dictionary()
    prefixes = config.output_prefixes()
    with_companion = config.codeswitch_ratio > 0
    total_bytes = sum(f.size for f in files)
    writers = [shards.ShardWriter(p, dtype) for p in prefixes]
    companions = [shards.ShardWriter(shards.companion_prefix(p), dtype) if with_companion else None
                  for p in prefixes]
    # Created after the writers (their first use imports megatron.core, ~5 s) so rates are honest.
    progress = Progress(config.progress if config.partitions == 1 else "none", total_bytes,
                        config.log_interval)
    sink = _Sink(config, writers, companions, progress, config.max_errors,
                 _Switcher(state) if config.dictionary else None)
    all_writers = writers + [c for c in companions if c is not None]
    part_prefixes: List[List[str]] = []
    try:
        t_pipe = time.time()
        groups = inp.split_segments(files, config.partitions, config.text_unit)
        if config.partitions == 1:
            _run_pipeline(state, groups[0], config.workers, sink,
                          prepare=compile_dictionary if overlap else None)
        else:
            _run_partitions(state, groups, prefixes, with_companion, sink, part_prefixes)
        progress.close()
        warnings = _tokenless_outputs(config, files, sink)
        for w in all_writers:
            w.finalize()
        timing["pipeline_s"] = time.time() - t_pipe
        report = _report(config, argv, files, tokenizer, dtype, sink, dict_report or None, punkt_info,
                         prefixes, with_companion, time.time() - t0, timing, warnings)
        stale = [] if with_companion else [shards.companion_prefix(p) for p in prefixes]
        # Commit companions first and each token .idx last (shards.py explains why).
        ordered = [w for pair in zip(companions, writers) for w in pair if w is not None]
        shards.commit_outputs(ordered, json_files=[(config.stats_path, report)], stale_prefixes=stale)
    except BaseException:
        for w in all_writers:
            w.abort()
        raise
    finally:
        for group in part_prefixes:
            for p in group:
                shards.remove_dataset(p)
    return report


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
    cfg = state.config
    per = max(1, cfg.workers // cfg.partitions)
    ctx = _mp_context()
    procs = []
    for i, segs in enumerate(groups):
        pp = [f"{p}.partial-part{i}" for p in prefixes]
        cp = [shards.companion_prefix(p) if with_companion else None for p in pp]
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
    if cfg.max_errors is not None and sink.problems_total > cfg.max_errors:
        raise PreprocessError(
            f"{sink.problems_total} input problems, more than --max-errors {cfg.max_errors}; "
            f"first: {sink.examples[:1]}. Nothing was published."
        )


def _report(config, argv, files, tokenizer, dtype, sink: _Sink, dict_report, punkt_info, prefixes,
            with_companion, elapsed, timing, warnings) -> dict:
    outputs = {}
    for key, prefix, c in zip(config.json_keys, prefixes, sink.counts):
        outputs[key] = {
            "prefix": prefix,
            "companion": shards.companion_prefix(prefix) if with_companion else None,
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
