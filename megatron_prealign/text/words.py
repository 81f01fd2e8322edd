"""Words in token ids: how a vocabulary marks word starts, and the runs of ids that form words.

Word boundaries (used by code-switching and by dictionaries) are derived from the tokenizer itself,
never hard-coded per model: the tokenizer encodes ``"a b"`` and the characters between ``a`` and
``b`` in its token strings are its word-initial marker (``▁`` for SentencePiece and Metaspace, ``Ġ``
for byte-level BPE). WordPiece vocabularies, which mark continuations (``##``) instead, are
recognised too. Every id then gets one ``TokenKind``:

* ``START``: a word-initial token (begins with the marker);
* ``CONT``: a continuation token that carries letters or digits;
* ``PUNCT``: a continuation token with no letter or digit (``.``, ``,``, a bare marker); trailing
  ``PUNCT`` tokens are not part of the word before them, so ``world.`` is the word ``world``
  followed by ``.``;
* ``SPECIAL``: control and special tokens (EOD, BOS, PAD, special added tokens); they end words.

A *word* is a run that starts at a ``START`` token and extends over the ``CONT``/``PUNCT`` tokens
after it, minus its trailing ``PUNCT`` tokens (``find_words``). A dictionary word that can never be
matched in text has a ``WordProblem``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np


class WordProblem(IntEnum):
    """Why a dictionary word can never be matched in text; ``USABLE`` when it can.

    The value is the per-word code ``TextTokenizer.word_problem_codes`` returns (an ``int8`` array,
    so whole dictionaries are judged at once); ``message`` is the text reports and the preprocess
    stats count the word under. When a word has several problems, the most basic one is reported
    (``word_problem_codes`` says which wins).
    """

    # The message rides on the member: ``WordProblem.SEVERAL_WORDS.message``.
    def __new__(cls, code: int, message: Optional[str]) -> "WordProblem":
        member = int.__new__(cls, code)
        member._value_ = code
        member.message = message
        return member

    USABLE = 0, None
    NO_TOKENS = 1, "no tokens"
    NOT_WORD_INITIAL = 2, "does not start with a word-initial token"
    SEVERAL_WORDS = 3, "tokenizes as several words"
    ENDS_IN_PUNCTUATION = 4, "ends in punctuation (stripped from words in text)"
    UNKNOWN_TOKEN = 5, "contains the unknown token (out of vocabulary)"
    MIXES_ENGLISH_AND_CLONE = 6, "mixes English and clone ids"
    TOO_LONG = 7, "longer than the token cap"


WORD_PROBLEM_MESSAGES: Tuple[Optional[str], ...] = tuple(problem.message for problem in WordProblem)
"""``WordProblem.message`` indexed by code, to turn a code array into messages without an enum
lookup per word."""


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


def find_words(
    tokens: np.ndarray, seq_lengths: np.ndarray, boundaries: WordBoundaries
) -> Tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) of every word in a flat batch of sequences.

    Args:
        tokens: int64 ids, the sequences back to back.
        seq_lengths: length of every sequence (words never cross sequences).
        boundaries: the tokenizer's word boundaries (``tokenizer.word_boundaries``).

    Returns:
        (starts, ends): int64 arrays; only runs that contain a letter or digit are returned.
    """
    n = len(tokens)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    kinds = boundaries.kinds[tokens]
    is_start = kinds == TokenKind.START
    brk = is_start | (kinds == TokenKind.SPECIAL)
    seq_starts = np.cumsum(seq_lengths)[:-1]
    brk[seq_starts[seq_starts < n]] = True
    brk[0] = True
    break_pos = np.flatnonzero(brk)
    starts = np.flatnonzero(is_start)
    nxt = np.searchsorted(break_pos, starts, side="right")
    ends = np.where(nxt < len(break_pos), break_pos[np.minimum(nxt, len(break_pos) - 1)], n)
    # Strip trailing punctuation: the end moves back to just after the last non-PUNCT token.
    idx = np.arange(n)
    last_keep = np.maximum.accumulate(np.where(kinds != TokenKind.PUNCT, idx, -1))
    ends = last_keep[ends - 1] + 1
    letters = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(boundaries.letters[tokens], out=letters[1:])
    has_letters = letters[ends] > letters[starts]
    return starts[has_letters].astype(np.int64), ends[has_letters].astype(np.int64)
