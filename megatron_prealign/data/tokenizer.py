"""Tokenizers for preprocessing and training: SentencePiece, Hugging Face, Null, English-Clone.

``build_tokenizer`` accepts Megatron-LM's ``--tokenizer-type`` names and returns an object that
tokenizes exactly like Megatron-Core 0.16.1's default (non-legacy) tokenizers, so shards written
with it are byte-identical to Megatron-LM's ``tools/preprocess_data.py``:

* ``SentencePieceTokenizer``, ``GPTSentencePieceTokenizer``, ``Llama2Tokenizer``: a SentencePiece
  ``.model`` file. Ids come from ``encode_as_ids(text)`` with no text rewriting (``</s>`` inside
  text is plain text). EOD is ``eos_id()``; the vocabulary size is ``get_piece_size()``.
* ``HuggingFaceTokenizer``: a local directory holding ``tokenizer.json`` (and usually
  ``tokenizer_config.json``). Ids are those of ``convert_tokens_to_ids(tokenize(text))``, with no
  BOS/EOS added; a literal added token such as ``<|endoftext|>`` becomes its id. EOD is the id of
  ``eos_token``; the vocabulary size is ``len(tokenizer)`` (added tokens count). Nothing is ever
  downloaded: a hub name that is not a local directory is an error.
* ``NullTokenizer``: text is integer ids separated by single spaces. ``vocab_size=V`` gives ids
  ``0..V`` with EOD ``V`` (so ``.vocab_size == V + 1`` and ``.eod == .vocab_size - 1``), as in
  Megatron. Unlike Megatron, a text with an id outside ``0..V`` or a piece that is not an integer
  is rejected (``TextRejected``) instead of being wrapped into the shard's dtype; an empty text is
  an empty document.

Word boundaries (used by code-switching and by stage-1 dictionaries) are derived from the tokenizer
itself, never hard-coded per model: the tokenizer encodes ``"a b"`` and the characters between
``a`` and ``b`` in its token strings are its word-initial marker (``▁`` for SentencePiece and
Metaspace, ``Ġ`` for byte-level BPE). WordPiece vocabularies, which mark continuations (``##``)
instead, are recognised too. Every id then gets one ``TokenKind``:

* ``START``: a word-initial token (begins with the marker);
* ``CONT``: a continuation token that carries letters or digits;
* ``PUNCT``: a continuation token with no letter or digit (``.``, ``,``, a bare marker); trailing
  ``PUNCT`` tokens are not part of the word before them, so ``world.`` is the word ``world``
  followed by ``.``;
* ``SPECIAL``: control and special tokens (EOD, BOS, PAD, special added tokens); they end words.

A *word* is a run that starts at a ``START`` token and extends over the ``CONT``/``PUNCT`` tokens
after it, minus its trailing ``PUNCT`` tokens; see ``codeswitch.py``.

``build_tokenizer(..., english_clone=True)`` wraps the tokenizer into the doubled
English/English-Clone vocabulary described in ``english_clone.py``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from megatron_prealign.errors import PreAlignError

SENTENCEPIECE_TYPES = ("SentencePieceTokenizer", "GPTSentencePieceTokenizer", "Llama2Tokenizer")
HUGGINGFACE_TYPES = ("HuggingFaceTokenizer",)
NULL_TYPES = ("NullTokenizer",)
SUPPORTED_TYPES = SENTENCEPIECE_TYPES + HUGGINGFACE_TYPES + NULL_TYPES


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


WORD_PROBLEMS = (
    None,
    "no tokens",
    "does not start with a word-initial token",
    "tokenizes as several words",
    "ends in punctuation (stripped from words in text)",
    "contains the unknown token (out of vocabulary)",
    "mixes English and clone ids",
    "longer than the token cap",
)
"""Messages of ``TextTokenizer.word_problem_codes`` (index = code; 0 means usable)."""
UNKNOWN_WORD = 5
TOO_LONG_WORD = 7


class TokenKind:
    """Integer codes of the per-id kind table (see the module docstring)."""

    CONT = 0
    START = 1
    PUNCT = 2
    SPECIAL = 3


@dataclass(frozen=True)
class WordBoundaries:
    """How a tokenizer marks words, derived from its vocabulary.

    Attributes:
        kinds: ``uint8[vocab_size]``, the ``TokenKind`` of every id.
        letters: ``bool[vocab_size]``, True for ids whose text has a letter or digit (a run of
            tokens is a word only if one of its tokens has letters).
        marker: the word-initial marker (``"▁"``, ``"Ġ"``), or ``None`` for WordPiece vocabularies.
        continuation_prefix: the WordPiece continuation prefix (``"##"``), or ``None``.
    """

    kinds: np.ndarray
    letters: np.ndarray
    marker: Optional[str]
    continuation_prefix: Optional[str] = None

    def doubled(self) -> "WordBoundaries":
        """The same description for a vocabulary followed by its clone (English-Clone)."""
        return WordBoundaries(
            kinds=np.concatenate([self.kinds, self.kinds]),
            letters=np.concatenate([self.letters, self.letters]),
            marker=self.marker,
            continuation_prefix=self.continuation_prefix,
        )

    def describe(self) -> str:
        """One line for logs and reports."""
        if self.marker is not None:
            return f"word-initial marker {self.marker!r}"
        return f"continuation prefix {self.continuation_prefix!r}"


def _bytelevel_decoder() -> Dict[str, int]:
    """The inverse of GPT-2's byte-to-unicode table (printable stand-ins for raw bytes)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def _surface_has_alnum(surface: str) -> bool:
    return any(ch.isalnum() for ch in surface)


def _classify(
    token_strings: Sequence[str],
    special: np.ndarray,
    marker: Optional[str],
    continuation_prefix: Optional[str],
    opaque: Optional[np.ndarray] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Build the ``TokenKind`` table from raw token strings.

    Args:
        token_strings: the token string of every id.
        special: bool per id, True for control/special tokens.
        marker: word-initial marker or None.
        continuation_prefix: WordPiece continuation prefix or None.
        opaque: bool per id, True for tokens whose text cannot be judged (byte pieces, unk); they
            count as letters so that they never end a word early.

    Returns:
        (kinds, letters): see ``WordBoundaries``.
    """
    byte_map = _bytelevel_decoder() if marker == "\u0120" else None
    kinds = np.empty(len(token_strings), dtype=np.uint8)
    has_letters = np.zeros(len(token_strings), dtype=bool)
    for i, tok in enumerate(token_strings):
        if special[i]:
            kinds[i] = TokenKind.SPECIAL
            continue
        if marker is not None:
            start = tok.startswith(marker)
            body = tok[len(marker):] if start else tok
        else:
            start = not tok.startswith(continuation_prefix)
            body = tok if start else tok[len(continuation_prefix):]
        if opaque is not None and opaque[i]:
            letters = True
        elif byte_map is not None:
            raw = bytes(byte_map.get(ch, 0x41) for ch in body)
            try:
                letters = _surface_has_alnum(raw.decode("utf-8"))
            except UnicodeDecodeError:
                letters = True  # a partial multi-byte character: part of some word
        else:
            letters = _surface_has_alnum(body)
        has_letters[i] = letters
        if start:
            kinds[i] = TokenKind.START
        else:
            kinds[i] = TokenKind.CONT if letters else TokenKind.PUNCT
    return kinds, has_letters


def _derive_marker(pieces: List[str]) -> str:
    """The characters between ``a`` and ``b`` in the token strings of ``"a b"``."""
    joined = "".join(pieces)
    ia, ib = joined.find("a"), joined.rfind("b")
    if ia < 0 or ib <= ia:
        return ""
    return joined[ia + 1 : ib]


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
        """Vectorised ``word_problem``: an index into ``WORD_PROBLEMS`` per word (0: usable).

        Args:
            flat: the words' ids back to back (int64).
            starts, lengths: where each word is in ``flat``.
        """
        n = len(lengths)
        codes = np.zeros(n, dtype=np.int8)
        if n == 0:
            return codes
        if len(flat) == 0:
            codes[:] = 1
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
        codes[unknown] = 5
        codes[(lengths > 1) & (last == TokenKind.PUNCT)] = 4
        codes[several] = 3
        codes[first != TokenKind.START] = 2
        if extra is not None:
            codes[extra] = 6
        codes[~nonempty] = 1
        return codes

    def word_problems(self, words_ids: Sequence[Sequence[int]]) -> List[Optional[str]]:
        """``word_problem`` for many words."""
        n = len(words_ids)
        lengths = np.fromiter((len(w) for w in words_ids), dtype=np.int64, count=n)
        flat = np.fromiter(itertools.chain.from_iterable(words_ids), dtype=np.int64,
                           count=int(lengths.sum()))
        starts = np.zeros(n, dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        return [WORD_PROBLEMS[c] for c in self.word_problem_codes(flat, starts, lengths).tolist()]

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


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _not_a_sentencepiece_model(path: str, tokenizer_type: str, err: Exception) -> str:
    """Why ``path`` did not load as a SentencePiece model, and which flags fit it instead."""
    message = f"--tokenizer-model {path}: not a SentencePiece model, which {tokenizer_type} needs"
    try:
        with open(path, "rb") as f:
            head = f.read(64).lstrip()
    except OSError:
        head = b""
    if head.startswith(b"{"):  # SentencePiece models are protobuf; JSON is a Hugging Face file
        return (f"{message}: it is JSON (a Hugging Face tokenizer.json?); use --tokenizer-type "
                f"HuggingFaceTokenizer --tokenizer-model {os.path.dirname(os.path.abspath(path))}")
    return f"{message} ({str(err).strip()}); pass the tokenizer's .model file"


class SentencePieceTextTokenizer(TextTokenizer):
    """A SentencePiece model, tokenized like Megatron-Core's default ``SentencePieceTokenizer``."""

    def __init__(self, tokenizer_model: str, tokenizer_type: str = "SentencePieceTokenizer") -> None:
        super().__init__()
        import sentencepiece

        self.tokenizer_type = tokenizer_type
        self.tokenizer_model = tokenizer_model
        try:
            self._sp = sentencepiece.SentencePieceProcessor(model_file=tokenizer_model)
        except (RuntimeError, OSError) as err:
            raise TokenizerError(_not_a_sentencepiece_model(tokenizer_model, tokenizer_type, err)) from None
        self._size = self._sp.get_piece_size()
        self._digest: Optional[str] = None

    @property
    def vocab_size(self) -> int:
        return self._size

    @property
    def eod(self) -> int:
        return self._sp.eos_id()

    @property
    def pad(self) -> int:
        return self._sp.pad_id()

    @property
    def unk(self) -> Optional[int]:
        return self._sp.unk_id()

    def tokenize(self, text: str) -> List[int]:
        if not isinstance(text, str):
            raise TypeError(f"expected str, got {type(text).__name__}")
        return self._sp.encode_as_ids(text)

    def tokenize_batch(self, texts: Sequence[str]) -> List[List[int]]:
        return self._sp.encode(list(texts), out_type=int, num_threads=1)

    def detokenize(self, ids: Iterable[int]) -> str:
        return self._sp.decode([int(i) for i in ids])

    def token_strings(self) -> List[str]:
        return [self._sp.id_to_piece(i) for i in range(self._size)]

    def special_ids(self) -> np.ndarray:
        return np.array([self._sp.is_control(i) for i in range(self._size)], dtype=bool)

    def opaque_ids(self) -> np.ndarray:
        return np.array(
            [self._sp.is_byte(i) or self._sp.is_unknown(i) for i in range(self._size)], dtype=bool
        )

    def _model_digest(self) -> str:
        if self._digest is None:
            self._digest = sha256_file(self.tokenizer_model)
        return self._digest

    def __getstate__(self):
        return {"tokenizer_model": self.tokenizer_model, "tokenizer_type": self.tokenizer_type}

    def __setstate__(self, state):
        self.__init__(state["tokenizer_model"], state["tokenizer_type"])


def _special_token_content(value) -> Optional[str]:
    if isinstance(value, dict):
        return value.get("content")
    return value


class HuggingFaceTextTokenizer(TextTokenizer):
    """A local Hugging Face tokenizer directory, tokenized like Megatron-Core's default path.

    When ``transformers`` is installed it loads the directory with ``AutoTokenizer`` (so that the
    configuration tweaks transformers applies are the same as Megatron's) and encodes batches with
    its Rust backend; a start-up self-check compares that batch path with
    ``convert_tokens_to_ids(tokenize(text))`` on probe texts and falls back to the latter if they
    ever differ. Without ``transformers`` it reads ``tokenizer.json`` with the ``tokenizers``
    library and takes ``eos_token`` from ``tokenizer_config.json`` / ``special_tokens_map.json``.
    """

    _PROBES = (
        "Hello world, this is a test.",
        "  double  spaces\tand\nnewlines ",
        "Unicode: caf\u00e9 na\u00efve \u4e2d\u6587 \U0001f600",
    )

    def __init__(self, tokenizer_model: str) -> None:
        super().__init__()
        self.tokenizer_type = "HuggingFaceTokenizer"
        self.tokenizer_model = tokenizer_model
        if os.path.isfile(tokenizer_model):
            raise TokenizerError(
                f"--tokenizer-model {tokenizer_model!r} is a file; HuggingFaceTokenizer needs the "
                f"directory that holds tokenizer.json ({os.path.dirname(os.path.abspath(tokenizer_model))}?)."
            )
        if not os.path.isdir(tokenizer_model):
            raise TokenizerError(
                f"--tokenizer-model {tokenizer_model!r} is not a local directory. This project never "
                "downloads tokenizers: save the tokenizer with save_pretrained(DIR) on a machine "
                "with network access and pass DIR."
            )
        self._hf = None
        try:
            from transformers import AutoTokenizer  # noqa: WPS433 (optional dependency)
        except ImportError:
            AutoTokenizer = None
        if AutoTokenizer is not None:
            self._hf = AutoTokenizer.from_pretrained(tokenizer_model, local_files_only=True)
            self._backend = getattr(self._hf, "backend_tokenizer", None)
            if self._backend is None:
                raise TokenizerError(
                    f"{tokenizer_model} loads as a slow (pure-Python) tokenizer; convert it to a "
                    "fast one (AutoTokenizer.from_pretrained(..., use_fast=True).save_pretrained) "
                    "so that it has a tokenizer.json."
                )
            self._size = len(self._hf)
            eos = self._hf.eos_token
            self._eod = None if eos is None else self._hf.convert_tokens_to_ids(eos)
            pad = self._hf.pad_token
            self._pad = -1 if pad is None else self._hf.convert_tokens_to_ids(pad)
            unk = self._hf.unk_token
            self._unk = None if unk is None else self._hf.convert_tokens_to_ids(unk)
        else:
            self._load_with_tokenizers()
        self._fast = self._backend is not None and self._self_check()

    def _load_with_tokenizers(self) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise TokenizerError(
                "HuggingFaceTokenizer needs the 'tokenizers' (or 'transformers') package: "
                "pip install -e .[hf]"
            ) from None

        path = os.path.join(self.tokenizer_model, "tokenizer.json")
        if not os.path.exists(path):
            raise TokenizerError(
                f"{self.tokenizer_model} has no tokenizer.json; install transformers to load "
                "slow (vocab/merges) tokenizers."
            )
        self._backend = Tokenizer.from_file(path)
        self._size = self._backend.get_vocab_size(with_added_tokens=True)
        config: Dict[str, object] = {}
        for name in ("special_tokens_map.json", "tokenizer_config.json"):
            p = os.path.join(self.tokenizer_model, name)
            if os.path.exists(p):
                with open(p, encoding="utf-8") as f:
                    config.update(json.load(f))

        def token_id(key: str) -> Optional[int]:
            content = _special_token_content(config.get(key))
            return None if content is None else self._backend.token_to_id(content)

        self._eod = token_id("eos_token")
        pad = token_id("pad_token")
        self._pad = -1 if pad is None else pad
        self._unk = token_id("unk_token")

    def _slow_ids(self, text: str) -> List[int]:
        if self._hf is not None:
            return self._hf.convert_tokens_to_ids(self._hf.tokenize(text))
        return self._backend.encode(text, add_special_tokens=False).ids

    def _self_check(self) -> bool:
        if self._hf is None:
            return True
        probes = list(self._PROBES)
        for tok in self._backend.get_added_tokens_decoder().values():
            probes.append(f"x {tok.content} y{tok.content}z")
        # Single encodes: a batch call here would start the Rust thread pool in this process,
        # which tokenizers then has to disable (with a warning) in every forked worker.
        fast = [self._backend.encode(p, add_special_tokens=False).ids for p in probes]
        return fast == [self._slow_ids(p) for p in probes]

    @property
    def vocab_size(self) -> int:
        return self._size

    @property
    def eod(self) -> int:
        if self._eod is None:
            raise TokenizerError(
                f"{self.tokenizer_model} defines no eos_token, so it has no end-of-document id; "
                "set eos_token in tokenizer_config.json or drop --append-eod."
            )
        return self._eod

    @property
    def pad(self) -> int:
        return self._pad

    @property
    def unk(self) -> Optional[int]:
        return self._unk

    def tokenize(self, text: str) -> List[int]:
        if not isinstance(text, str):
            raise TypeError(f"expected str, got {type(text).__name__}")
        if self._fast:
            return self._backend.encode(text, add_special_tokens=False).ids
        return self._slow_ids(text)

    def tokenize_batch(self, texts: Sequence[str]) -> List[List[int]]:
        if self._fast:
            return [e.ids for e in self._backend.encode_batch(list(texts), add_special_tokens=False)]
        return [self._slow_ids(t) for t in texts]

    def detokenize(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in ids]
        if self._hf is not None:
            return self._hf.decode(ids)
        return self._backend.decode(ids)

    def token_strings(self) -> List[str]:
        strings = []
        for i in range(self._size):
            tok = self._backend.id_to_token(i)
            strings.append("" if tok is None else tok)
        return strings

    def special_ids(self) -> np.ndarray:
        special = np.zeros(self._size, dtype=bool)
        for i in self._backend.get_added_tokens_decoder():
            if i < self._size:
                special[i] = True  # added tokens never belong to a word
        for i in (self._eod, self._pad, self._unk):
            if i is not None and 0 <= i < self._size:
                special[i] = True
        return special

    def opaque_ids(self) -> np.ndarray:
        opaque = np.zeros(self._size, dtype=bool)
        if self._unk is not None and 0 <= self._unk < self._size:
            opaque[self._unk] = True
        return opaque

    def _probe_pieces(self, text: str) -> List[str]:
        return list(self._backend.encode(text, add_special_tokens=False).tokens)

    def _continuation_prefix(self) -> Optional[str]:
        model = json.loads(self._backend.to_str()).get("model", {})
        return model.get("continuing_subword_prefix")

    def _model_digest(self) -> str:
        return hashlib.sha256(self._backend.to_str().encode("utf-8")).hexdigest()

    def __getstate__(self):
        return {"tokenizer_model": self.tokenizer_model}

    def __setstate__(self, state):
        self.__init__(state["tokenizer_model"])


class NullTextTokenizer(TextTokenizer):
    """Megatron's NullTokenizer: text is space-separated integer ids; EOD is the last id."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.tokenizer_type = "NullTokenizer"
        self.tokenizer_model = None
        self._without_eod = int(vocab_size)

    @property
    def vocab_size(self) -> int:
        return self._without_eod + 1

    @property
    def eod(self) -> int:
        return self._without_eod

    def tokenize(self, text: str) -> List[int]:
        """Megatron's ``[int(x) for x in text.split(" ")]``, but every id checked against the
        vocabulary: a shard stores ids in uint16/int32, so an unchecked 70000 would be written as
        4464 and an id >= the vocabulary would index past the embedding in training."""
        if not isinstance(text, str):
            raise TypeError(f"expected str, got {type(text).__name__}")
        if not text:
            return []
        pieces = text.split(" ")
        try:
            ids = [int(x) for x in pieces]
        except ValueError:
            bad = next(x for x in pieces if not _is_int(x))
            raise TextRejected(
                "not_an_id", f"{bad[:40]!r} is not an integer id (NullTokenizer text is ids "
                "separated by single spaces)") from None
        top = self._without_eod
        if ids and (min(ids) < 0 or max(ids) > top):
            bad = next(i for i in ids if not 0 <= i <= top)
            raise TextRejected(
                "id_out_of_vocab", f"id {bad} is outside the vocabulary: --vocab-size {top} allows "
                f"ids 0..{top - 1} and EOD {top}")
        return ids

    def detokenize(self, ids: Iterable[int]) -> str:
        return " ".join(str(int(i)) for i in ids)

    def _derive_boundaries(self) -> WordBoundaries:
        raise TokenizerError(
            "NullTokenizer has no words, so it cannot be used with a dictionary or code-switching; "
            "use a SentencePiece or Hugging Face tokenizer."
        )


def _is_int(piece: str) -> bool:
    try:
        int(piece)
        return True
    except ValueError:
        return False


def build_tokenizer(
    tokenizer_type: str,
    tokenizer_model: Optional[str],
    *,
    vocab_size: Optional[int] = None,
    english_clone: bool = False,
) -> TextTokenizer:
    """Build a tokenizer from Megatron-LM's ``--tokenizer-type`` / ``--tokenizer-model`` values.

    Args:
        tokenizer_type: ``SentencePieceTokenizer``, ``GPTSentencePieceTokenizer``,
            ``Llama2Tokenizer``, ``HuggingFaceTokenizer`` or ``NullTokenizer``.
        tokenizer_model: the ``.model`` file (SentencePiece) or tokenizer directory (Hugging Face);
            unused for NullTokenizer.
        vocab_size: required for NullTokenizer (ids ``0..vocab_size``, EOD ``vocab_size``); for the
            others, when given, it must equal the model's vocabulary size (a check, not a setting).
        english_clone: double the vocabulary into English + English-Clone (``english_clone.py``).

    Returns:
        A ``TextTokenizer``; an ``EnglishCloneTokenizer`` when ``english_clone``.

    Raises:
        TokenizerError: unknown type, missing file, or a vocabulary size that does not match.
    """
    if tokenizer_type in NULL_TYPES:
        if vocab_size is None:
            raise TokenizerError("NullTokenizer needs --vocab-size (ids 0..V-1, EOD = V).")
        tok: TextTokenizer = NullTextTokenizer(vocab_size)
    elif tokenizer_type in SENTENCEPIECE_TYPES or tokenizer_type in HUGGINGFACE_TYPES:
        if not tokenizer_model:
            raise TokenizerError(f"--tokenizer-type {tokenizer_type} needs --tokenizer-model.")
        if not os.path.exists(tokenizer_model):
            raise TokenizerError(
                f"--tokenizer-model {tokenizer_model!r} does not exist (tokenizer type "
                f"{tokenizer_type}); pass the path of the model file or directory."
            )
        if tokenizer_type in SENTENCEPIECE_TYPES:
            if os.path.isdir(tokenizer_model):
                raise TokenizerError(
                    f"--tokenizer-model {tokenizer_model!r} is a directory; {tokenizer_type} needs "
                    "a SentencePiece .model file (use HuggingFaceTokenizer for directories)."
                )
            tok = SentencePieceTextTokenizer(tokenizer_model, tokenizer_type)
        else:
            tok = HuggingFaceTextTokenizer(tokenizer_model)
        if vocab_size is not None and vocab_size != tok.vocab_size:
            raise TokenizerError(
                f"--vocab-size {vocab_size} does not match {tok.describe()}, whose vocabulary has "
                f"{tok.vocab_size} entries; drop --vocab-size or fix the model path."
            )
    else:
        raise TokenizerError(
            f"unknown --tokenizer-type {tokenizer_type!r}; supported: {', '.join(SUPPORTED_TYPES)}."
        )
    if english_clone:
        from megatron_prealign.data.english_clone import EnglishCloneTokenizer

        return EnglishCloneTokenizer(tok)
    return tok


def optimal_token_dtype(vocab_size: int) -> type:
    """The shard dtype Megatron picks for a vocabulary: uint16 below 65500 ids, else int32."""
    return np.uint16 if vocab_size < 65500 else np.int32

