"""Tokenizers for preprocessing and training: SentencePiece, Hugging Face, Null, English-Clone.

``build_tokenizer`` accepts Megatron-LM's ``--tokenizer-type`` names and returns a ``TextTokenizer``
(``base.py``) that tokenizes exactly like Megatron-Core 0.16.1's default (non-legacy) tokenizers, so
shards written with it are byte-identical to Megatron-LM's ``tools/preprocess_data.py``. One module
per backend: ``sentencepiece.py``, ``huggingface.py``, ``null.py``; ``english_clone.py`` doubles any of
them into the English/English-Clone vocabulary.
"""

from __future__ import annotations

import os
from typing import Optional

from megatron_prealign.text.tokenizers.base import TextRejected, TextTokenizer, TokenizerError
from megatron_prealign.text.tokenizers.english_clone import CLONE_TAG, EnglishCloneTokenizer
from megatron_prealign.text.tokenizers.huggingface import HuggingFaceTextTokenizer
from megatron_prealign.text.tokenizers.null import NullTextTokenizer
from megatron_prealign.text.tokenizers.sentencepiece import SentencePieceTextTokenizer

__all__ = ["CLONE_TAG", "SUPPORTED_TYPES", "EnglishCloneTokenizer", "TextRejected", "TextTokenizer",
           "TokenizerError", "build_tokenizer"]

SENTENCEPIECE_TYPES = ("SentencePieceTokenizer", "GPTSentencePieceTokenizer", "Llama2Tokenizer")
HUGGINGFACE_TYPES = ("HuggingFaceTokenizer",)
NULL_TYPES = ("NullTokenizer",)
SUPPORTED_TYPES = SENTENCEPIECE_TYPES + HUGGINGFACE_TYPES + NULL_TYPES


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
        english_clone: double the vocabulary into English + English-Clone (``text.tokenizers.english_clone``).

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
        tok = _from_model(tokenizer_type, tokenizer_model)
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
        return EnglishCloneTokenizer(tok)
    return tok


def _from_model(tokenizer_type: str, tokenizer_model: Optional[str]) -> TextTokenizer:
    """A SentencePiece or Hugging Face tokenizer from its model file or directory, checked first."""
    if not tokenizer_model:
        raise TokenizerError(f"--tokenizer-type {tokenizer_type} needs --tokenizer-model.")
    if not os.path.exists(tokenizer_model):
        raise TokenizerError(
            f"--tokenizer-model {tokenizer_model!r} does not exist (tokenizer type "
            f"{tokenizer_type}); pass the path of the model file or directory."
        )
    if tokenizer_type in HUGGINGFACE_TYPES:
        return HuggingFaceTextTokenizer(tokenizer_model)
    if os.path.isdir(tokenizer_model):
        raise TokenizerError(
            f"--tokenizer-model {tokenizer_model!r} is a directory; {tokenizer_type} needs "
            "a SentencePiece .model file (use HuggingFaceTokenizer for directories)."
        )
    return SentencePieceTextTokenizer(tokenizer_model, tokenizer_type)
