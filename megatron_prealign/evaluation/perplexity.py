"""Perplexity per language on held-out text or Megatron shards.

Inputs, one per language:

* a JSONL file: one document per line, text under ``"text"`` (a list value gives one sequence per
  element), tokenized with the run's tokenizer (English-Clone text carries the ``<clone>`` tag,
  see ``text.tokenizers.english_clone``); the tokenizer's EOD is appended to each document, as the
  preprocessor does with ``--append-eod``;
* a Megatron shard prefix (``PREFIX.bin``/``PREFIX.idx``, ``tools/preprocess_data.py``): every
  sequence as stored. Code-switched shards (with a ``_targets`` companion) are refused: their
  input stream is not plain text of one language.

Each sequence is cut into consecutive windows of ``seq_length`` tokens (non-overlapping; the first
token of a window is context only). The loss is the mean negative log-likelihood, natural log, of
every predicted token, with the softmax over the real vocabulary (Megatron's padding ids are left
out, so Megatron checkpoints and their Hugging Face conversions give the same number);
``perplexity = exp(nll)``. At most ``max_tokens`` tokens are read per language, from the start.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Iterable, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from megatron_prealign.evaluation.inputs import (
    EvalDataError,
    check_token_ids,
    iter_jsonl,
)
from megatron_prealign.evaluation.models import EvalModel
from megatron_prealign.shards.check import read_index
from megatron_prealign.shards.writer import companion_prefix, indexed_dataset_module
from megatron_prealign.text.tokenizers.base import TokenizerError
from megatron_prealign.text.tokenizers.english_clone import CLONE_TAG


@dataclasses.dataclass(frozen=True)
class PerplexityResult:
    """Perplexity of one language."""

    nll: float
    """Mean negative log-likelihood per predicted token (nats)."""
    perplexity: float
    """exp(nll)."""
    tokens: int
    """Predicted tokens."""
    sequences: int
    """Sequences read."""


def read_jsonl_sequences(path: str, tokenizer, *, key: str = "text", append_eod: bool = True,
                         max_tokens: Optional[int] = None,
                         vocab_size: Optional[int] = None) -> List[List[int]]:
    """Tokenize the documents of a JSONL file (see the module docstring).

    Raises ``EvalDataError`` naming the file (and line) when a line is malformed, when an id is not
    below ``vocab_size`` (if given) or when the file holds no text at all.
    """
    sequences: List[List[int]] = []
    total = 0
    for line_number, record in iter_jsonl(path):
        if key not in record:
            raise EvalDataError(f"{path}:{line_number}: no {key!r} field")
        texts = record[key] if isinstance(record[key], list) else [record[key]]
        for text in texts:
            if not isinstance(text, str):
                raise EvalDataError(f"{path}:{line_number}: {key!r} must be a string or a list of "
                                    f"strings, got {type(text).__name__}")
            try:
                ids = list(tokenizer.tokenize(text))
            except TokenizerError as err:  # e.g. a NullTokenizer id outside its vocabulary
                raise EvalDataError(f"{path}:{line_number}: {err}") from err
            if append_eod and ids:
                ids.append(_eod_for(tokenizer, text))
            if ids:
                if vocab_size is not None:
                    check_token_ids(ids, vocab_size, f"{path}:{line_number}")
                sequences.append(ids)
                total += len(ids)
        if max_tokens is not None and total >= max_tokens:
            break
    if not sequences:
        raise EvalDataError(f"{path}: no text to score: the file is empty or every {key!r} is empty")
    return sequences


def _eod_for(tokenizer, text: str) -> int:
    if getattr(tokenizer, "english_clone", False) and text.startswith(CLONE_TAG):
        return tokenizer.clone_eod
    return tokenizer.eod


def check_shard_input(prefix: str) -> None:
    """Fail, naming the file, unless ``prefix`` is a whole, plain (not code-switched) shard with at
    least one document. Reads the ``.idx`` only, so it is cheap enough to run before any model loads.
    """
    for suffix in (".bin", ".idx"):
        if not os.path.isfile(prefix + suffix):
            raise EvalDataError(f"{prefix}{suffix} does not exist (give the shard prefix without "
                                ".bin/.idx, or a .jsonl file)")
    if os.path.isfile(companion_prefix(prefix) + ".idx"):
        raise EvalDataError(f"{prefix} is code-switched (it has {companion_prefix(prefix)}.idx): "
                            "perplexity needs plain held-out text; preprocess it with "
                            "--codeswitch-ratio 0")
    index = read_index(prefix)  # a damaged or cut-short shard is named here, not by an mmap error
    if index.num_sequences == 0:
        raise EvalDataError(f"{prefix}: the shard holds no document, so there is no text to score")


def read_shard_sequences(prefix: str, *, max_tokens: Optional[int] = None,
                         vocab_size: Optional[int] = None) -> List[List[int]]:
    """The sequences of a Megatron ``IndexedDataset`` shard (``PREFIX.bin``/``.idx``).

    Raises ``EvalDataError`` (or ``ShardError``) naming the shard when it is damaged, code-switched
    or empty or, with ``vocab_size``, when a document has an id not below it.
    """
    check_shard_input(prefix)
    # Reading a shard imports all of Megatron-Core: quietly and without TorchDynamo (an evaluation
    # of a Hugging Face model has no other use for it).
    data = indexed_dataset_module().IndexedDataset(prefix)
    sequences, total = [], 0
    for i in range(len(data)):
        ids = np.asarray(data[i], dtype=np.int64).tolist()
        if vocab_size is not None:
            check_token_ids(ids, vocab_size, f"{prefix}.bin: document {i}")
        if ids:
            sequences.append(ids)
            total += len(ids)
        if max_tokens is not None and total >= max_tokens:
            break
    return sequences


def load_sequences(path: str, tokenizer, *, max_tokens: Optional[int] = None,
                   vocab_size: Optional[int] = None) -> List[List[int]]:
    """A JSONL file (``.jsonl``/``.json``) or a shard prefix -> token id sequences.

    With ``vocab_size`` (the model's), every id is checked against it, naming the file and line.
    """
    if path.endswith((".jsonl", ".json")) and os.path.isfile(path):
        if tokenizer is None:
            raise EvalDataError(f"{path}: text needs a tokenizer, and the model has none (give a "
                                "shard prefix instead)")
        return read_jsonl_sequences(path, tokenizer, max_tokens=max_tokens, vocab_size=vocab_size)
    return read_shard_sequences(path, max_tokens=max_tokens, vocab_size=vocab_size)


def _windows(sequences: Iterable[Sequence[int]], seq_length: int, max_tokens: Optional[int]):
    budget = max_tokens
    for seq in sequences:
        for start in range(0, len(seq), seq_length):
            window = list(seq[start:start + seq_length])
            if budget is not None:
                window = window[:budget]
                budget -= len(window)
            if len(window) >= 2:
                yield window
            if budget is not None and budget <= 0:
                return


@torch.no_grad()
def perplexity(model: EvalModel, sequences: Sequence[Sequence[int]], *, seq_length: Optional[int] = None,
               batch_size: int = 8, max_tokens: Optional[int] = None) -> PerplexityResult:
    """Mean NLL and perplexity of ``model`` on token sequences (module docstring for the rules).

    Args:
        model: an ``EvalModel``.
        sequences: token id sequences (ids must be < ``model.vocab_size``).
        seq_length: window length (default and maximum: the model's ``max_length``).
        batch_size: windows per forward pass.
        max_tokens: read at most this many tokens.
    """
    seq_length = min(seq_length or model.max_length, model.max_length)
    total_nll, total_tokens = 0.0, 0
    batch: List[List[int]] = []

    def flush():
        nonlocal total_nll, total_tokens
        length = max(len(w) for w in batch)
        tokens = torch.zeros(len(batch), length, dtype=torch.long)  # [b, s], right-padded
        mask = torch.zeros(len(batch), length, dtype=torch.bool)
        for row, window in enumerate(batch):
            tokens[row, :len(window)] = torch.tensor(window)
            mask[row, :len(window)] = True
        if int(tokens.max()) >= model.vocab_size:
            raise EvalDataError(f"token id {int(tokens.max())} is outside the model's vocabulary of "
                                f"{model.vocab_size}: the data was made with another tokenizer")
        logp = F.log_softmax(model.logits(tokens)[:, :-1], dim=-1)  # [b, s-1, V]
        target = tokens[:, 1:]  # [b, s-1]
        nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)  # [b, s-1]
        keep = mask[:, 1:]
        total_nll += float(nll[keep].double().sum())
        total_tokens += int(keep.sum())
        batch.clear()

    for window in _windows(sequences, seq_length, max_tokens):
        batch.append(window)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    if total_tokens == 0:
        raise EvalDataError("no token to predict: every sequence is shorter than two tokens")
    nll = total_nll / total_tokens
    return PerplexityResult(nll=nll, perplexity=math.exp(nll), tokens=total_tokens,
                            sequences=len(sequences))
