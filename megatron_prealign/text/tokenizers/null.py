"""``NullTokenizer``: text is integer ids separated by single spaces.

``vocab_size=V`` gives ids ``0..V`` with EOD ``V`` (so ``.vocab_size == V + 1`` and
``.eod == .vocab_size - 1``), as in Megatron. Unlike Megatron, a text with an id outside ``0..V`` or a
piece that is not an integer is rejected (``TextRejected``) instead of being wrapped into the shard's
dtype; an empty text is an empty document.
"""

from __future__ import annotations

from typing import Iterable, List

from megatron_prealign.text.tokenizers.base import TextRejected, TextTokenizer, TokenizerError
from megatron_prealign.text.words import WordBoundaries


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
