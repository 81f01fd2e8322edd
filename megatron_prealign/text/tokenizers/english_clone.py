"""English-Clone: a synthetic second language made by shifting every token id by |V|.

Id mapping
----------
For a base tokenizer with vocabulary size ``V`` (``base_vocab_size``), the English-Clone vocabulary
has ``2V`` ids: ids ``0..V-1`` are English, ids ``V..2V-1`` are the clone, and clone id ``i + V``
means exactly what English id ``i`` means. Special tokens are cloned too, so English uses EOD
``eod`` and the clone uses its own EOD ``eod + V``: the two languages share no token. Embedding and
output tables are doubled (``EnglishCloneTokenizer.vocab_size == 2V``) and shard dtypes follow
``2V`` (uint16 below 65500 ids, else int32).

Clone text
----------
Clone words and texts are written with the tag ``<clone>`` in front: ``"<clone>bank"`` is the clone
of ``"bank"``. ``EnglishCloneTokenizer.tokenize`` tokenizes a text that starts with the tag as
English and shifts it (an optional closing ``</clone>`` is dropped); ``detokenize`` renders every
run of clone ids as ``<clone>...</clone>``. This is what lets one plain dictionary file hold both
languages.

Clone shards and the English<->Clone dictionary are made by ``preprocess.english_clone``.
"""

from __future__ import annotations

from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np

from megatron_prealign.text.tokenizers.base import TextTokenizer, TokenizerError
from megatron_prealign.text.words import TokenKind, WordBoundaries

CLONE_TAG = "<clone>"


CLONE_END_TAG = "</clone>"


def is_clone_word(word: str) -> bool:
    """True for a word written in the clone language (``<clone>...``)."""
    return word.startswith(CLONE_TAG)


def clone_word(word: str) -> str:
    """The clone spelling of an English word: ``bank`` -> ``<clone>bank``."""
    return CLONE_TAG + word


def to_clone_ids(ids: np.ndarray, base_vocab_size: int) -> np.ndarray:
    """English ids -> clone ids (``id + V``). Raises on ids that are not English."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= base_vocab_size):
        raise ValueError(
            f"ids in [{int(ids.min())}, {int(ids.max())}] are not English ids of a vocabulary of "
            f"{base_vocab_size}; only English text can be cloned."
        )
    return ids + base_vocab_size


def from_clone_ids(ids: np.ndarray, base_vocab_size: int) -> np.ndarray:
    """Clone ids -> English ids (English ids pass through unchanged)."""
    ids = np.asarray(ids, dtype=np.int64)
    return np.where(ids >= base_vocab_size, ids - base_vocab_size, ids)


class EnglishCloneTokenizer(TextTokenizer):
    """A tokenizer whose vocabulary is English followed by its clone (see the module docstring).

    Attributes:
        base: the English tokenizer.
        clone_eod: the clone language's end-of-document id, ``eod + V``.
    """

    english_clone = True

    def __init__(self, base: TextTokenizer) -> None:
        super().__init__()
        if base.english_clone:
            raise TokenizerError("the tokenizer is already an English-Clone tokenizer")
        self.base = base
        self.tokenizer_type = base.tokenizer_type
        self.tokenizer_model = base.tokenizer_model

    @property
    def vocab_size(self) -> int:
        return 2 * self.base.vocab_size

    @property
    def base_vocab_size(self) -> int:
        return self.base.vocab_size

    @property
    def eod(self) -> int:
        return self.base.eod

    @property
    def clone_eod(self) -> int:
        return self.base.eod + self.base.vocab_size

    @property
    def pad(self) -> int:
        return self.base.pad

    @property
    def unk(self) -> Optional[int]:
        return self.base.unk

    def _split_tag(self, text: str) -> Tuple[bool, str]:
        if isinstance(text, str) and text.startswith(CLONE_TAG):
            body = text[len(CLONE_TAG):]
            if body.endswith(CLONE_END_TAG):
                body = body[: -len(CLONE_END_TAG)]
            return True, body
        return False, text

    def tokenize(self, text: str) -> List[int]:
        clone, body = self._split_tag(text)
        ids = self.base.tokenize(body)
        return [i + self.base.vocab_size for i in ids] if clone else ids

    def tokenize_batch(self, texts: Sequence[str]) -> List[List[int]]:
        split = [self._split_tag(t) for t in texts]
        out = self.base.tokenize_batch([body for _, body in split])
        v = self.base.vocab_size
        return [[i + v for i in ids] if clone else ids for (clone, _), ids in zip(split, out)]

    def detokenize(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in ids]
        v = self.base.vocab_size
        parts: List[str] = []
        i = 0
        kinds = self.base.word_boundaries.kinds if self.base.tokenizer_type != "NullTokenizer" else None
        while i < len(ids):
            clone = ids[i] >= v
            j = i
            while j < len(ids) and (ids[j] >= v) == clone:
                j += 1
            run = [t - v for t in ids[i:j]] if clone else ids[i:j]
            text = self.base.detokenize(run)
            if clone:
                text = CLONE_TAG + text + CLONE_END_TAG
            if parts and kinds is not None and kinds[run[0]] == TokenKind.START:
                text = " " + text
            parts.append(text)
            i = j
        return "".join(parts)

    def token_strings(self) -> List[str]:
        base = self.base.token_strings()
        return base + [CLONE_TAG + s for s in base]

    def special_ids(self) -> np.ndarray:
        s = self.base.special_ids()
        return np.concatenate([s, s])

    @property
    def word_boundaries(self) -> WordBoundaries:
        if self._boundaries is None:
            self._boundaries = self.base.word_boundaries.doubled()
        return self._boundaries

    def word_initial_ids_batch(self, words: Sequence[str]) -> List[Tuple[int, ...]]:
        v = self.base.vocab_size
        clone = [is_clone_word(w) for w in words]
        bodies = [w[len(CLONE_TAG):] if c else w for w, c in zip(words, clone)]
        ids = self.base.word_initial_ids_batch(bodies)
        shift = v.__add__
        return [tuple(map(shift, t)) if c else t for t, c in zip(ids, clone)]

    def _unknown_ids(self) -> List[int]:
        unk = self.base.unk
        return [] if unk is None else [unk, unk + self.base.vocab_size]

    def _extra_word_problems(self, flat, starts, lengths) -> Optional[np.ndarray]:
        clone = flat >= self.base.vocab_size
        c = np.zeros(len(flat) + 1, dtype=np.int64)
        np.cumsum(clone, out=c[1:])
        n_clone = c[starts + lengths] - c[starts]
        return (n_clone > 0) & (n_clone < lengths)  # mixes English and clone ids

    def _model_digest(self) -> Optional[str]:
        return self.base._model_digest()

    def describe(self) -> str:
        return f"English-Clone of {self.base.describe()}"

    def __getstate__(self):
        return {"base": self.base}

    def __setstate__(self, state):
        self.__init__(state["base"])
