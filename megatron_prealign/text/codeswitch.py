"""Input-only code-switching on token ids (PreAlign stage 2), pure and deterministic per seed.

Words
-----
A *word* is a run of tokens that starts at a word-initial token (``TokenKind.START``: SentencePiece
``▁``, byte-level BPE ``Ġ``) and extends over the continuation tokens after it, up to the next
word-initial token, special token (EOD, BOS, ...) or sequence end. Trailing continuation tokens
without letters or digits (``TokenKind.PUNCT``: ``.``, ``,``, ``!``) are *not* part of the word, so
``▁world .`` is the word ``▁world`` followed by ``.``. Runs without any letter or digit (``▁,``)
are not words. A word is a dictionary word when its exact id sequence is a key of the
``CodeSwitchTable``.

Switching rule
--------------
Each dictionary word is switched independently with probability ``p`` to a translation chosen
uniformly among the distinct translations of its key. Given ``a b [c1 c2] d`` where ``c1 c2`` is
replaced by ``x1 x2 x3``, the *input* stream is ``a b x1 x2 x3 d`` and the *target* stream is
``a b c1 IGN IGN d``: the usual Megatron shift ``tokens = x[:-1], labels = y[1:]`` then gives

============  ====  ====  ====  ====  ====
input         b     x1    x2    x3    d
label         c1    --    --    d     ...
============  ====  ====  ====  ====  ====

i.e. the position before the span predicts the original word's first token, positions inside the
translated span are ignored (``IGN``, loss mask 0) and the span's last position predicts the token
after the original word. Translations may be longer or shorter than the original.

Randomness
----------
Decisions never use a stateful generator: the uniform number for a word is a 64-bit hash of
(seed, document key, token offset of the word in its document), where the document key hashes the
input file's index, the byte offset of the document's line in that file and the JSON key's index.
The output therefore does not depend on how documents are batched, on ``--workers`` or on
``--partitions``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from megatron_prealign.errors import PreAlignError
from megatron_prealign.text.words import WordBoundaries, find_words


class TableVocabularyError(PreAlignError, ValueError):
    """A compiled dictionary whose ids do not fit the tokenizer's vocabulary (compiled with another
    tokenizer); the message names the dictionary and says to re-tokenize it."""


IGNORE = -1
"""Target-stream value for positions whose label is masked (in memory; ``shards.writer`` on disk)."""


_M1 = np.uint64(0xBF58476D1CE4E5B9)


_M2 = np.uint64(0x94D049BB133111EB)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


_MASK64 = (1 << 64) - 1


_HASH_BASE = 0x100000001B3  # odd, so it is invertible modulo 2**64


_TWO_POW_53 = float(1 << 53)


def mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on a uint64 array (wrapping arithmetic)."""
    z = np.asarray(z, dtype=np.uint64)
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def mix64_int(z: int) -> int:
    """Scalar twin of ``mix64`` on Python ints (used by the reference implementation)."""
    z &= _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def document_keys(seed: int, file_index: int, line_offsets: np.ndarray, key_index: int) -> np.ndarray:
    """Per-document RNG keys from stable coordinates of the documents in the input.

    Args:
        seed: ``--codeswitch-seed``.
        file_index: index of the input file in the sorted, expanded ``--input`` list.
        line_offsets: byte offset of each document's line in its (decompressed) file.
        key_index: index of the JSON key in ``--json-keys``.
    """
    with np.errstate(over="ignore"):
        base = mix64_int(mix64_int(seed & _MASK64) ^ ((file_index * 0x9E3779B97F4A7C15) & _MASK64))
        base = mix64_int(base + key_index + 1)
        offs = np.asarray(line_offsets, dtype=np.uint64)
        return mix64(np.uint64(base) ^ mix64(offs + _GOLDEN))


def document_key_int(seed: int, file_index: int, line_offset: int, key_index: int) -> int:
    """Scalar twin of ``document_keys`` for one document."""
    base = mix64_int(mix64_int(seed & _MASK64) ^ ((file_index * 0x9E3779B97F4A7C15) & _MASK64))
    base = mix64_int(base + key_index + 1)
    return mix64_int(base ^ mix64_int(line_offset + 0x9E3779B97F4A7C15))


def _word_draws(doc_keys: np.ndarray, offsets: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(uniform for the switch decision, uniform for the translation choice) per word."""
    with np.errstate(over="ignore"):
        h = mix64(doc_keys + (offsets.astype(np.uint64) + np.uint64(1)) * _GOLDEN)
        h2 = mix64(h ^ _M1)
    u = (h >> np.uint64(11)).astype(np.float64) / _TWO_POW_53
    v = (h2 >> np.uint64(11)).astype(np.float64) / _TWO_POW_53
    return u, v


def word_draws_int(doc_key: int, offset: int) -> Tuple[float, float]:
    """Scalar twin of ``_word_draws``."""
    h = mix64_int(doc_key + (offset + 1) * 0x9E3779B97F4A7C15)
    h2 = mix64_int(h ^ 0xBF58476D1CE4E5B9)
    return (h >> 11) / _TWO_POW_53, (h2 >> 11) / _TWO_POW_53


class _Powers:
    """Cached powers of the hash base and of its inverse modulo 2**64."""

    def __init__(self) -> None:
        self.pow = np.ones(1, dtype=np.uint64)
        self.inv = np.ones(1, dtype=np.uint64)

    def get(self, n: int) -> Tuple[np.ndarray, np.ndarray]:
        if len(self.pow) < n:
            size = max(n, 2 * len(self.pow))
            inv_base = pow(_HASH_BASE, -1, 1 << 64)
            pw = np.full(size, _HASH_BASE, dtype=np.uint64)
            iv = np.full(size, inv_base, dtype=np.uint64)
            pw[0] = iv[0] = 1
            with np.errstate(over="ignore"):
                self.pow = np.cumprod(pw, dtype=np.uint64)
                self.inv = np.cumprod(iv, dtype=np.uint64)
        return self.pow[:n], self.inv[:n]


_POWERS = _Powers()


def hash_key(ids: Sequence[int]) -> int:
    """The 64-bit hash of a token-id sequence, as ``_run_hashes`` computes it for runs in text."""
    h = 0
    b = 1
    for t in ids:
        h = (h + (int(t) + 1) * b) & _MASK64
        b = (b * _HASH_BASE) & _MASK64
    return mix64_int(h ^ ((len(ids) * 0x9E3779B97F4A7C15) & _MASK64))


def hash_keys(keys: Sequence[Sequence[int]]) -> np.ndarray:
    """``hash_key`` of many id sequences at once (uint64 array)."""
    lengths = np.fromiter((len(k) for k in keys), dtype=np.int64, count=len(keys))
    flat = np.fromiter(itertools.chain.from_iterable(keys), dtype=np.int64, count=int(lengths.sum()))
    ends = np.cumsum(lengths)
    return _run_hashes(flat, ends - lengths, ends)


def _run_hashes(tokens: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """``hash_key(tokens[s:e])`` for every (s, e), vectorised with prefix sums."""
    n = len(tokens)
    pw, inv = _POWERS.get(n + 1)
    with np.errstate(over="ignore"):
        vals = (tokens.astype(np.uint64) + np.uint64(1)) * pw[:n]
        prefix = np.zeros(n + 1, dtype=np.uint64)
        np.cumsum(vals, out=prefix[1:])
        h = (prefix[ends] - prefix[starts]) * inv[starts]
        lengths = (ends - starts).astype(np.uint64) * _GOLDEN
        return mix64(h ^ lengths)


def _ragged(lengths: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(owner, offset) for every element of ragged rows of the given lengths."""
    total = int(lengths.sum())
    owner = np.repeat(np.arange(len(lengths)), lengths)
    starts = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    return owner, np.arange(total, dtype=np.int64) - starts[owner]


def _flatten(seqs: Sequence[Sequence[int]]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flat ids, start of each sequence, length of each sequence)."""
    lengths = np.fromiter((len(x) for x in seqs), dtype=np.int64, count=len(seqs))
    flat = np.fromiter(itertools.chain.from_iterable(seqs), dtype=np.int64, count=int(lengths.sum()))
    starts = np.zeros(len(seqs), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    return flat, starts, lengths


class CodeSwitchTable:
    """A compiled token-level dictionary: word id sequence -> its translations.

    Build it with ``dictionary.compile_switch_table`` (a dictionary and a tokenizer) or
    ``from_concepts`` (concepts as lists of id tuples). Every word of a concept translates to every
    other distinct word of that concept; a word in several concepts gets the union. Compilation and
    lookups are vectorised: words live in one flat id array, keys sit in an open-addressing table of
    their 64-bit hashes, and every hit is verified token by token before a word is switched.

    Args:
        keys: key id tuples.
        translations: for each key, its translation id tuples; the choice among them is uniform,
            so their order only fixes which draw picks which translation. Tables built by
            ``from_concepts``/``compile_switch_table`` list keys and translations in hash order, which
            depends only on the dictionary's content.
    """

    def __init__(self, keys: List[Tuple[int, ...]], translations: List[List[Tuple[int, ...]]]) -> None:
        if len(keys) != len(translations):
            raise ValueError("keys and translations differ in length")
        if any(len(ts) == 0 for ts in translations):
            raise ValueError("every key needs at least one translation")
        n_options = np.fromiter(map(len, translations), dtype=np.int64, count=len(translations))
        flat, starts, lengths = _flatten(list(keys) + [t for ts in translations for t in ts])
        key_word = np.arange(len(keys), dtype=np.int64)
        option_word = len(keys) + np.arange(int(n_options.sum()), dtype=np.int64)
        self._set(flat, starts, lengths, key_word, n_options, option_word)

    @classmethod
    def _from_arrays(cls, *arrays) -> "CodeSwitchTable":
        table = cls.__new__(cls)
        table._set(*arrays)
        return table

    def state_arrays(self) -> List[np.ndarray]:
        """Everything that defines the table, as arrays (for ``table_cache``)."""
        return [*self._arrays, self._slot_entry, np.array([self._max_probe], dtype=np.int64)]

    @classmethod
    def from_state_arrays(cls, arrays: Sequence[np.ndarray]) -> "CodeSwitchTable":
        """Inverse of ``state_arrays``; validates the shapes so a damaged file cannot load."""
        if len(arrays) != 8:
            raise ValueError(f"expected 8 arrays, got {len(arrays)}")
        *base, slot_entry, max_probe = (np.asarray(a, dtype=np.int64) for a in arrays)
        flat, starts, lengths, key_word, n_options, option_word = base
        n = len(key_word)
        ok = (len(starts) == len(lengths) and len(n_options) == n
              and len(option_word) == int(n_options.sum()) and max_probe.shape == (1,)
              and len(slot_entry) == 1 << max(4, int(2 * n).bit_length())
              and int((starts + lengths).max(initial=0)) <= len(flat)
              and int(slot_entry.max(initial=-1)) < n)
        if not ok:
            raise ValueError("inconsistent compiled-dictionary arrays")
        table = cls.__new__(cls)
        table._set(*base, placed=(slot_entry, int(max_probe[0])))
        return table

    def _set(self, flat, starts, lengths, key_word, n_options, option_word, placed=None) -> None:
        """Install the word store (``flat``/``starts``/``lengths``) and the key -> options map.

        ``placed``: a saved (slot -> entry, longest probe) placement, skipping the rebuild.
        """
        self._arrays = (flat, starts, lengths, key_word, n_options, option_word)
        n = len(key_word)
        self._key_flat = self._tr_flat = flat
        self._key_start, self._key_len = starts[key_word], lengths[key_word]
        self._tr_start, self._tr_len = starts[option_word], lengths[option_word]
        self._n_options = n_options
        self._first_option = np.zeros(n, dtype=np.int64)
        np.cumsum(n_options[:-1], out=self._first_option[1:])
        hashes = _run_hashes(flat, self._key_start, self._key_start + self._key_len)
        size = 1 << max(4, int(2 * n).bit_length())
        self._mask = np.uint64(size - 1)
        self._slot_entry, self._max_probe = placed if placed is not None else _place(hashes, size)
        self._slot_hash = np.zeros(size, dtype=np.uint64)
        used = self._slot_entry >= 0
        self._slot_hash[used] = hashes[self._slot_entry[used]]
        self._lists: Optional[Tuple[list, list]] = None
        self._index: Optional[Dict[Tuple[int, ...], int]] = None

    @classmethod
    def from_word_arrays(cls, flat: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
                         concept: np.ndarray) -> "CodeSwitchTable":
        """Compile from words given as flat arrays plus each word's concept id (vectorised).

        Args:
            flat: all words' ids back to back (int64).
            starts, lengths: each word's place in ``flat``.
            concept: each word's concept id; only usable words should be passed.
        """
        flat = np.asarray(flat, dtype=np.int64)
        starts = np.asarray(starts, dtype=np.int64)
        lengths = np.asarray(lengths, dtype=np.int64)
        concept = np.asarray(concept, dtype=np.int64)
        empty = np.zeros(0, dtype=np.int64)
        keep = lengths > 0
        starts, lengths, concept = starts[keep], lengths[keep], concept[keep]
        if len(starts) == 0:
            return cls._from_arrays(flat, starts, lengths, empty, empty, empty)
        # Distinct words by (length-salted 64-bit) hash; first occurrence represents each.
        _, first, uid = np.unique(_run_hashes(flat, starts, starts + lengths),
                                  return_index=True, return_inverse=True)
        u = len(first)
        members = np.unique(concept * u + uid)  # distinct words per concept, sorted
        m_concept, m_uid = members // u, members % u
        _, c_first, c_size = np.unique(m_concept, return_index=True, return_counts=True)
        size_of_member = np.repeat(c_size, c_size)
        first_of_member = np.repeat(c_first, c_size)
        owner, j = _ragged(size_of_member)  # every member against every member of its concept
        partner = first_of_member[owner] + j
        other = partner != owner
        pairs = np.unique(m_uid[owner[other]] * u + m_uid[partner[other]])
        a, b = pairs // u, pairs % u
        key_uid, n_options = np.unique(a, return_counts=True)
        return cls._from_arrays(flat, starts, lengths, first[key_uid], n_options, first[b])

    @classmethod
    def from_concepts(cls, concepts: Iterable[Sequence[Tuple[int, ...]]]) -> "CodeSwitchTable":
        """Compile from concepts given as lists of word id tuples (``TokenizedDictionary``)."""
        concepts = list(concepts)
        words = [tuple(w) for c in concepts for w in c]
        flat, starts, lengths = _flatten(words)
        concept = np.repeat(np.arange(len(concepts)), [len(c) for c in concepts])
        return cls.from_word_arrays(flat, starts, lengths, concept)

    def __len__(self) -> int:
        return len(self._key_len)

    @property
    def keys(self) -> List[Tuple[int, ...]]:
        """The key id tuples (built on first use)."""
        return self._as_lists()[0]

    @property
    def translations(self) -> List[List[Tuple[int, ...]]]:
        """Each key's translation id tuples, in choice order (built on first use)."""
        return self._as_lists()[1]

    def _as_lists(self) -> Tuple[list, list]:
        if self._lists is None:
            flat = self._key_flat.tolist()
            keys = [tuple(flat[s:s + n]) for s, n in zip(self._key_start.tolist(), self._key_len.tolist())]
            options = [tuple(flat[s:s + n]) for s, n in zip(self._tr_start.tolist(), self._tr_len.tolist())]
            firsts, counts = self._first_option.tolist(), self._n_options.tolist()
            self._lists = (keys, [options[f:f + c] for f, c in zip(firsts, counts)])
        return self._lists

    def __getstate__(self):
        return {"arrays": self._arrays}

    def __setstate__(self, state):
        self._set(*state["arrays"])

    def lookup(self, ids: Sequence[int]) -> Optional[List[Tuple[int, ...]]]:
        """Translations of a key, or None."""
        if self._index is None:
            self._index = {k: i for i, k in enumerate(self.keys)}
        i = self._index.get(tuple(int(t) for t in ids))
        return None if i is None else self.translations[i]

    def find(self, hashes: np.ndarray) -> np.ndarray:
        """Entry index per hash (``hash_key`` values), -1 when absent (hash match only)."""
        out = np.full(len(hashes), -1, dtype=np.int64)
        if len(self) == 0 or len(hashes) == 0:
            return out
        todo = np.arange(len(hashes))
        pos = (hashes & self._mask).astype(np.int64)
        for _ in range(self._max_probe + 1):
            entry = self._slot_entry[pos]
            hit = (entry >= 0) & (self._slot_hash[pos] == hashes[todo])
            out[todo[hit]] = entry[hit]
            more = (entry >= 0) & ~hit
            if not more.any():
                break
            todo = todo[more]
            pos = (pos[more] + 1) & int(self._mask)
        return out

    def matches(self, tokens: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                entries: np.ndarray) -> np.ndarray:
        """bool per word: ``tokens[s:e]`` equals the key of its entry, token by token."""
        lengths = ends - starts
        ok = self._key_len[entries] == lengths
        if not ok.any():
            return ok
        idx = np.flatnonzero(ok)
        owner, offset = _ragged(lengths[idx])
        a = tokens[starts[idx][owner] + offset]
        b = self._key_flat[self._key_start[entries[idx]][owner] + offset]
        wrong = np.bincount(owner, weights=(a != b), minlength=len(idx)) > 0
        ok[idx[wrong]] = False
        return ok

    @property
    def word_ids(self) -> np.ndarray:
        """All words' ids back to back (int64); keys and translations are slices of it."""
        return self._tr_flat

    def choose_translations(self, entries: np.ndarray, draws: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """The translation a uniform draw in [0, 1) picks for each entry, uniformly among its options.

        Returns:
            (starts, lengths): where each chosen translation is in ``word_ids``.
        """
        n_options = self._n_options[entries]
        option = self._first_option[entries] + np.minimum((draws * n_options).astype(np.int64), n_options - 1)
        return self._tr_start[option], self._tr_len[option]

    def check_vocab(self, vocab_size: int, where: str) -> None:
        """Raise ``TableVocabularyError`` if any id is outside the vocabulary (a dictionary compiled
        for another tokenizer); ``where`` names the dictionary file in the message."""
        top = int(self._key_flat.max(initial=-1))
        if top >= vocab_size:
            raise TableVocabularyError(
                f"{where}: dictionary token id {top} does not fit vocabulary size {vocab_size}; it "
                "was compiled with another tokenizer. Re-tokenize the dictionary with this one."
            )


def _place(hashes: np.ndarray, size: int) -> Tuple[np.ndarray, int]:
    """Linear-probing placement of hashes into ``size`` slots, vectorised by probe rounds.

    Returns:
        (slot -> entry index or -1, the longest probe distance).
    """
    mask = size - 1
    slot_entry = np.full(size, -1, dtype=np.int64)
    pending = np.arange(len(hashes), dtype=np.int64)
    pos = (hashes & np.uint64(mask)).astype(np.int64)
    rounds = 0
    while len(pending):
        free = slot_entry[pos] < 0
        taken_pos, first = np.unique(pos[free], return_index=True)  # one winner per free slot
        winners = pending[free][first]
        slot_entry[taken_pos] = winners
        placed = np.zeros(len(hashes), dtype=bool)
        placed[winners] = True
        left = ~placed[pending]
        pending, pos = pending[left], (pos[left] + 1) & mask
        rounds += 1
    return slot_entry, max(rounds - 1, 0)


@dataclass
class SwitchStats:
    """Word counts of one batch (summed by the preprocessor into the stats report)."""

    words: int = 0
    """Word runs seen (runs with a letter or digit)."""
    dictionary_words: int = 0
    """Words whose exact id sequence is a dictionary key."""
    switched_words: int = 0
    """Dictionary words that were replaced by a translation."""
    tokens_in: int = 0
    """Tokens before switching."""
    tokens_out: int = 0
    """Tokens after switching."""

    def add(self, other: "SwitchStats") -> None:
        self.words += other.words
        self.dictionary_words += other.dictionary_words
        self.switched_words += other.switched_words
        self.tokens_in += other.tokens_in
        self.tokens_out += other.tokens_out


@dataclass
class SwitchResult:
    """Output of ``codeswitch_batch``.

    Attributes:
        tokens: the input stream after switching (int64, flat over all sequences).
        targets: the target stream (int64, ``IGNORE`` inside translated spans), or None when
            nothing could be switched (then targets == tokens).
        seq_lengths: the new length of every sequence.
        stats: word counts.
    """

    tokens: np.ndarray
    targets: Optional[np.ndarray]
    seq_lengths: np.ndarray
    stats: SwitchStats


@dataclass
class _DictionaryWords:
    """Dictionary words of a batch, as parallel arrays (``[n]`` each, one element per word).

    Attributes:
        starts, ends: the word's tokens are ``tokens[start:end]``.
        entries: its ``CodeSwitchTable`` entry (whose key has the word's hash; ``_draw_switches``
            checks the drawn words token by token).
        choice_draws: the uniform number that picks its translation (``_word_draws``); None until
            drawn.
    """

    starts: np.ndarray
    ends: np.ndarray
    entries: np.ndarray
    choice_draws: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.starts)

    def subset(self, which: np.ndarray) -> "_DictionaryWords":
        """The words picked by an index or mask array."""
        draws = None if self.choice_draws is None else self.choice_draws[which]
        return _DictionaryWords(self.starts[which], self.ends[which], self.entries[which], draws)


def codeswitch_batch(
    tokens: np.ndarray,
    seq_lengths: np.ndarray,
    seq_docs: np.ndarray,
    doc_keys: np.ndarray,
    table: Optional[CodeSwitchTable],
    boundaries: WordBoundaries,
    ratio: float,
) -> SwitchResult:
    """Apply input-only code-switching to a flat batch of sequences.

    Four steps, one helper each: find the words, look them up in the dictionary, draw which
    dictionary words switch (and to which translation), build the input and target streams.

    Args:
        tokens: int64 ids of all sequences back to back.
        seq_lengths: int64 length of every sequence.
        seq_docs: index (into ``doc_keys``) of the document each sequence belongs to; the
            sequences of a document are contiguous.
        doc_keys: uint64 RNG key per document (``document_keys``).
        table: the dictionary, or None to only count words.
        boundaries: the tokenizer's word boundaries.
        ratio: switch probability p of a dictionary word.

    Returns:
        A ``SwitchResult``; ``targets`` is None when ``ratio`` is 0 (then targets == tokens).
    """
    tokens = np.asarray(tokens, dtype=np.int64)  # [n_tokens]
    seq_lengths = np.asarray(seq_lengths, dtype=np.int64)  # [n_seqs]
    stats = SwitchStats(tokens_in=len(tokens), tokens_out=len(tokens))
    word_starts, word_ends = find_words(tokens, seq_lengths, boundaries)  # [n_words]
    stats.words = len(word_starts)
    if table is None or len(table) == 0 or len(word_starts) == 0:
        targets = tokens.copy() if ratio > 0 else None
        return SwitchResult(tokens, targets, seq_lengths.copy(), stats)

    dictionary_words = _look_up(tokens, word_starts, word_ends, table)  # [n_dictionary_words]
    stats.dictionary_words = len(dictionary_words)
    if ratio <= 0:
        return SwitchResult(tokens, None, seq_lengths.copy(), stats)

    seq_offsets = np.zeros(len(seq_lengths) + 1, dtype=np.int64)  # [n_seqs + 1]
    np.cumsum(seq_lengths, out=seq_offsets[1:])
    switched, collided = _draw_switches(tokens, dictionary_words, seq_offsets, seq_docs, doc_keys,
                                        table, ratio)  # [n_switched]
    stats.dictionary_words -= collided
    stats.switched_words = len(switched)
    if len(switched) == 0:
        return SwitchResult(tokens, tokens.copy(), seq_lengths.copy(), stats)

    inputs, targets, growth = _switched_streams(tokens, switched, table)  # [n_out], [n_out], [n_switched]
    new_lengths = seq_lengths.copy()
    np.add.at(new_lengths, np.searchsorted(seq_offsets, switched.starts, side="right") - 1, growth)
    stats.tokens_out = len(inputs)
    return SwitchResult(inputs, targets, new_lengths, stats)


def _look_up(tokens: np.ndarray, word_starts: np.ndarray, word_ends: np.ndarray,
             table: CodeSwitchTable) -> _DictionaryWords:
    """The words whose hash is a dictionary key's (verified token by token only when drawn)."""
    entries = table.find(_run_hashes(tokens, word_starts, word_ends))  # [n_words], -1: not a key
    hits = np.flatnonzero(entries >= 0)  # [n_dictionary_words]
    return _DictionaryWords(word_starts[hits], word_ends[hits], entries[hits])


def _draw_switches(tokens: np.ndarray, words: _DictionaryWords, seq_offsets: np.ndarray, seq_docs: np.ndarray,
                   doc_keys: np.ndarray, table: CodeSwitchTable, ratio: float) -> Tuple[_DictionaryWords, int]:
    """The dictionary words that switch, each with its translation draw, and the hash collisions.

    A word switches when its draw is below ``ratio``; the draws are counter-based, from (document
    key, offset of the word in its document), so they do not depend on batching.

    Returns:
        (switched, collided): the switching words; how many drawn words only shared a key's
        hash (they are not dictionary words after all, and do not switch).
    """
    doc_of_seq = np.asarray(seq_docs, dtype=np.int64)  # [n_seqs]
    word_seq = np.searchsorted(seq_offsets, words.starts, side="right") - 1  # [n_dictionary_words]
    # The sequences of a document are contiguous, so its first token starts its first sequence.
    doc_ids, first_seq = np.unique(doc_of_seq, return_index=True)
    doc_first_token = np.zeros(int(doc_ids[-1]) + 1 if len(doc_ids) else 0, dtype=np.int64)  # [n_docs]
    doc_first_token[doc_ids] = seq_offsets[first_seq]
    word_docs = doc_of_seq[word_seq]  # [n_dictionary_words]
    switch_draws, choice_draws = _word_draws(np.asarray(doc_keys, dtype=np.uint64)[word_docs],
                                             words.starts - doc_first_token[word_docs])
    drawn = _DictionaryWords(words.starts, words.ends, words.entries, choice_draws).subset(
        np.flatnonzero(switch_draws < ratio))  # [n_drawn]
    # Guard against 64-bit hash collisions: a drawn word must equal its key token by token.
    equal = table.matches(tokens, drawn.starts, drawn.ends, drawn.entries)  # [n_drawn]
    if equal.all():
        return drawn, 0
    return drawn.subset(equal), int(len(equal) - np.count_nonzero(equal))


def _switched_streams(tokens: np.ndarray, switched: _DictionaryWords,
                      table: CodeSwitchTable) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The input and target streams with every switched word replaced by its drawn translation.

    Returns:
        (inputs, targets, growth): ``inputs`` holds the translations; ``targets`` holds, at each
        translation's first position, the original word's first token and ``IGNORE`` at its other
        positions (see the module docstring); ``growth`` is each switched word's change in length
        (translation minus original, ``[n_switched]``).
    """
    n = len(tokens)
    starts, ends = switched.starts, switched.ends  # [n_switched]
    translation_starts, translation_lengths = table.choose_translations(switched.entries,
                                                                        switched.choice_draws)
    growth = translation_lengths - (ends - starts)  # [n_switched]
    # shift[i]: how far original position i moves (the growth of the words ending at or before i).
    shift = np.zeros(n + 1, dtype=np.int64)  # [n_tokens + 1]
    shift[ends] = growth
    np.cumsum(shift, out=shift)
    # Original positions outside every switched word keep their token, shifted.
    depth = np.zeros(n + 1, dtype=np.int64)  # [n_tokens + 1], +1 at a word's start, -1 at its end
    depth[starts] += 1
    depth[ends] -= 1
    kept = np.flatnonzero(np.cumsum(depth[:n]) == 0)  # [n_kept]
    inputs = np.empty(n + int(growth.sum()), dtype=np.int64)  # [n_out]
    inputs[kept + shift[kept]] = tokens[kept]
    translation_at = starts + shift[starts]  # [n_switched], where each translation starts in inputs
    owner, offset = _ragged(translation_lengths)  # [n_translation_tokens]: its word, its place in it
    inputs[translation_at[owner] + offset] = table.word_ids[translation_starts[owner] + offset]
    targets = inputs.copy()  # [n_out]
    targets[translation_at] = tokens[starts]
    inner = offset > 0
    targets[translation_at[owner[inner]] + offset[inner]] = IGNORE
    return inputs, targets, growth
