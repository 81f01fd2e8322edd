"""The interface every tokenizer of this package implements (``TextTokenizer``) and its errors.

A ``TextTokenizer`` tokenizes exactly like Megatron-Core 0.16.1's default tokenizer of its kind, and
knows its word boundaries (``text.words``), its identity (``fingerprint``) and how to check ids.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from megatron_prealign.errors import PreAlignError
from megatron_prealign.text.words import (
    WORD_PROBLEM_MESSAGES,
    TokenKind,
    WordBoundaries,
    WordProblem,
    _classify,
    _derive_marker,
)


class TokenizerError(PreAlignError, ValueError):
    """A tokenizer cannot be built or does not fit the data it is used with."""


class TextRejected(TokenizerError):
    """One text that a tokenizer cannot turn into ids: an input problem, which the preprocessor
    reports with file:line under ``reason`` (other callers should add where the text came from).

    Attributes:
        reason: the problem code the preprocessor counts it under (e.g. ``id_out_of_vocab``).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class TextTokenizer:
    """Common interface of every tokenizer this package builds.

    Megatron-Core's ``GPTDataset`` uses it as ``config.tokenizer``: it reads ``eod``, ``pad``,
    ``vocab_size`` and ``unique_identifiers``.

    Attributes:
        tokenizer_type: the Megatron ``--tokenizer-type`` name.
        tokenizer_model: the model path (None for NullTokenizer).
        vocab_size: the full vocabulary size, the one embedding tables and shard dtypes use.
        base_vocab_size: the size of the underlying single-language vocabulary (== vocab_size
            except for English-Clone, where vocab_size == 2 * base_vocab_size).
    """

    tokenizer_type: str
    tokenizer_model: Optional[str]
    english_clone: bool = False

    def __init__(self) -> None:
        self._boundaries: Optional[WordBoundaries] = None
        self._word_cache: Dict[str, Tuple[int, ...]] = {}

    # --- sizes and special ids -------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    @property
    def base_vocab_size(self) -> int:
        return self.vocab_size

    @property
    def eod(self) -> int:
        raise NotImplementedError

    @property
    def eos(self) -> int:
        return self.eod

    @property
    def pad(self) -> int:
        """The padding id, or -1 when the vocabulary has none (Megatron's convention)."""
        return -1

    @property
    def unk(self) -> Optional[int]:
        return None

    # --- text <-> ids ------------------------------------------------------------------------
    def tokenize(self, text: str) -> List[int]:
        """Token ids of ``text``, exactly as Megatron's preprocessor would produce them."""
        raise NotImplementedError

    def tokenize_batch(self, texts: Sequence[str]) -> List[List[int]]:
        """``[tokenize(t) for t in texts]``, faster. Single-threaded (workers give parallelism)."""
        return [self.tokenize(t) for t in texts]

    def detokenize(self, ids: Iterable[int]) -> str:
        raise NotImplementedError

    def token_strings(self) -> List[str]:
        """The raw token string of every id (``▁the``, ``Ġthe``, ``##ing``)."""
        raise NotImplementedError

    def special_ids(self) -> np.ndarray:
        """bool per id: control/special tokens."""
        raise NotImplementedError

    def opaque_ids(self) -> Optional[np.ndarray]:
        """bool per id: tokens whose surface cannot be judged (byte pieces, unk); or None."""
        return None

    def _probe_pieces(self, text: str) -> List[str]:
        strings = self.token_strings()
        return [strings[i] for i in self.tokenize(text)]

    # --- words -------------------------------------------------------------------------------
    @property
    def word_boundaries(self) -> WordBoundaries:
        """The word-boundary description of this vocabulary (computed once)."""
        if self._boundaries is None:
            self._boundaries = self._derive_boundaries()
        return self._boundaries

    def _derive_boundaries(self) -> WordBoundaries:
        marker = _derive_marker(self._probe_pieces("a b"))
        strings = self.token_strings()
        if marker:
            kinds, letters = _classify(strings, self.special_ids(), marker, None, self.opaque_ids())
            return WordBoundaries(kinds=kinds, letters=letters, marker=marker)
        prefix = self._continuation_prefix()
        if prefix:
            kinds, letters = _classify(strings, self.special_ids(), None, prefix, self.opaque_ids())
            return WordBoundaries(
                kinds=kinds, letters=letters, marker=None, continuation_prefix=prefix
            )
        raise TokenizerError(
            f"cannot find word boundaries in {self.describe()}: encoding 'a b' gave pieces "
            f"{self._probe_pieces('a b')} with neither a word-initial marker (like '▁' or 'Ġ') "
            "nor a WordPiece continuation prefix. Code-switching and dictionaries need one; "
            "use a SentencePiece or byte-level BPE tokenizer."
        )

    def _continuation_prefix(self) -> Optional[str]:
        return None

    def word_initial_ids(self, word: str) -> Tuple[int, ...]:
        """The ids of ``word`` in word-initial form, i.e. as it appears after a space in text.

        The result may still be unusable as a code-switching key (several words, unknown
        characters); ``word_problem`` says why.
        """
        cached = self._word_cache.get(word)
        if cached is None:
            cached = self.word_initial_ids_batch([word])[0]
        return cached

    def word_initial_ids_batch(self, words: Sequence[str]) -> List[Tuple[int, ...]]:
        """``word_initial_ids`` for many words at once (one tokenizer call per form tried).

        The word is tokenized after a space (``" bank"``); when that does not give one word-initial
        token followed by continuations (e.g. a tokenizer that keeps the space as its own piece),
        the bare word is tried, which covers SentencePiece's dummy prefix.
        """
        todo = [w for w in dict.fromkeys(words) if w not in self._word_cache]
        if todo:
            first = self.tokenize_batch([" " + w for w in todo])
            found: List[Tuple[int, ...]] = [tuple(ids) for ids in first]
            ok = self._single_words(first)
            retry = [i for i in range(len(todo)) if not ok[i]]
            if retry:
                second = self.tokenize_batch([todo[i] for i in retry])
                for i, ids, good in zip(retry, second, self._single_words(second)):
                    if good:
                        found[i] = tuple(ids)
            self._word_cache.update(zip(todo, found))
        return [self._word_cache[w] for w in words]

    def _single_words(self, words_ids: Sequence[Sequence[int]]) -> np.ndarray:
        """bool per id sequence: one word-initial token followed only by continuations."""
        n = len(words_ids)
        lengths = np.fromiter((len(w) for w in words_ids), dtype=np.int64, count=n)
        flat = np.fromiter(itertools.chain.from_iterable(words_ids), dtype=np.int64,
                           count=int(lengths.sum()))
        if len(flat) == 0:
            return np.zeros(n, dtype=bool)
        kinds = self.word_boundaries.kinds[flat]
        starts = np.zeros(n, dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        breaks = (kinds == TokenKind.START) | (kinds == TokenKind.SPECIAL)
        cb = np.zeros(len(flat) + 1, dtype=np.int64)
        np.cumsum(breaks, out=cb[1:])
        first_start = kinds[np.minimum(starts, len(flat) - 1)] == TokenKind.START
        return (lengths > 0) & first_start & ((cb[starts + lengths] - cb[starts]) == 1)

    def _unknown_ids(self) -> List[int]:
        return [] if self.unk is None else [self.unk]

    def word_problem_codes(self, flat: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Vectorised ``word_problem``: a ``WordProblem`` code per word (``USABLE``: 0).

        Args:
            flat: the words' ids back to back (int64).
            starts, lengths: where each word is in ``flat``.
        """
        n = len(lengths)
        codes = np.full(n, WordProblem.USABLE, dtype=np.int8)
        if n == 0:
            return codes
        if len(flat) == 0:
            codes[:] = WordProblem.NO_TOKENS
            return codes
        kinds = self.word_boundaries.kinds[flat]
        nonempty = lengths > 0
        ends = starts + lengths
        first = kinds[np.minimum(starts, len(flat) - 1)]
        last = kinds[np.clip(ends - 1, 0, len(flat) - 1)]
        inner = (kinds == TokenKind.START) | (kinds == TokenKind.SPECIAL)
        inner[starts[nonempty]] = False
        seg = np.zeros(len(flat) + 1, dtype=np.int64)
        np.cumsum(inner, out=seg[1:])
        several = (seg[ends] - seg[starts]) > 0
        unknown = np.zeros(n, dtype=bool)
        unk_ids = self._unknown_ids()
        if unk_ids:
            cu = np.zeros(len(flat) + 1, dtype=np.int64)
            np.cumsum(np.isin(flat, unk_ids), out=cu[1:])
            unknown = (cu[ends] - cu[starts]) > 0
        extra = self._extra_word_problems(flat, starts, lengths)
        # Later assignments win: the order gives each word its most basic problem.
        codes[unknown] = WordProblem.UNKNOWN_TOKEN
        codes[(lengths > 1) & (last == TokenKind.PUNCT)] = WordProblem.ENDS_IN_PUNCTUATION
        codes[several] = WordProblem.SEVERAL_WORDS
        codes[first != TokenKind.START] = WordProblem.NOT_WORD_INITIAL
        if extra is not None:
            codes[extra] = WordProblem.MIXES_ENGLISH_AND_CLONE
        codes[~nonempty] = WordProblem.NO_TOKENS
        return codes

    def word_problems(self, words_ids: Sequence[Sequence[int]]) -> List[Optional[str]]:
        """``word_problem`` for many words."""
        n = len(words_ids)
        lengths = np.fromiter((len(w) for w in words_ids), dtype=np.int64, count=n)
        flat = np.fromiter(itertools.chain.from_iterable(words_ids), dtype=np.int64,
                           count=int(lengths.sum()))
        starts = np.zeros(n, dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        return [WORD_PROBLEM_MESSAGES[c] for c in self.word_problem_codes(flat, starts, lengths).tolist()]

    def _extra_word_problems(self, flat, starts, lengths) -> Optional[np.ndarray]:
        return None

    def word_problem(self, ids: Sequence[int]) -> Optional[str]:
        """Why ``ids`` (a word's word-initial ids) can never be matched in text, or None."""
        return self.word_problems([ids])[0]

    # --- identity ----------------------------------------------------------------------------
    def fingerprint(self) -> Dict[str, object]:
        """What identifies the vocabulary: type, model digest, sizes, clone flag."""
        return OrderedDict(
            tokenizer_type=self.tokenizer_type,
            model_sha256=self._model_digest(),
            vocab_size=self.vocab_size,
            base_vocab_size=self.base_vocab_size,
            english_clone=self.english_clone,
            eod=self.eod,
        )

    def _model_digest(self) -> Optional[str]:
        return None

    @property
    def unique_identifiers(self) -> "OrderedDict[str, object]":
        """Used by Megatron-Core's dataset cache descriptions (must be JSON-serialisable)."""
        ident = OrderedDict()
        ident["class"] = f"{type(self).__module__}.{type(self).__qualname__}"
        ident.update(self.fingerprint())
        return ident

    def describe(self) -> str:
        model = f" ({self.tokenizer_model})" if self.tokenizer_model else ""
        return f"{self.tokenizer_type}{model}"

    def check_ids(self, ids: np.ndarray, where: str) -> None:
        """Raise if any id is outside ``[0, vocab_size)``; ``where`` names the data for the message."""
        if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise TokenizerError(
                f"{where}: token ids in [{int(ids.min())}, {int(ids.max())}] do not fit "
                f"{self.describe()} with vocabulary size {self.vocab_size}; the data was made "
                "with another tokenizer. Re-run tools/preprocess_data.py with this tokenizer."
            )
