"""Hugging Face tokenizers (``HuggingFaceTokenizer``): a local directory holding ``tokenizer.json``.

Ids are those of ``convert_tokens_to_ids(tokenize(text))``, with no BOS/EOS added; a literal added
token such as ``<|endoftext|>`` becomes its id. EOD is the id of ``eos_token``; the vocabulary size is
``len(tokenizer)`` (added tokens count). Nothing is ever downloaded: a hub name that is not a local
directory is an error.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

from megatron_prealign.text.tokenizers.base import TextTokenizer, TokenizerError


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
