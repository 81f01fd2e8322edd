"""SentencePiece tokenizers (``SentencePieceTokenizer``, ``GPTSentencePieceTokenizer``, ``Llama2Tokenizer``).

Ids come from ``encode_as_ids(text)`` with no text rewriting (``</s>`` inside text is plain text).
EOD is ``eos_id()``; the vocabulary size is ``get_piece_size()``.
"""

from __future__ import annotations

import os
from typing import Iterable, List, Optional, Sequence

import numpy as np

from megatron_prealign.files import sha256_file
from megatron_prealign.text.tokenizers.base import TextTokenizer, TokenizerError


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
