"""Tokenizer files for a converted Hugging Face directory (loads offline with ``AutoTokenizer``).

What is written, by the checkpoint's ``--tokenizer-type``:

* ``SentencePieceTokenizer`` (and the GPT/Llama2 SentencePiece names): a ``tokenizer.json`` built
  with the ``tokenizers`` library straight from the ``.model`` protobuf, plus the ``.model`` itself
  as ``tokenizer.model``. The pipeline reproduces SentencePiece's encoder: its precompiled
  normalization table (``Precompiled``), its whitespace rules (strip, collapse runs of spaces,
  dummy ``▁`` prefix, spaces escaped as ``▁``), the same model (``Unigram`` with the piece scores,
  or ``BPE`` with merges derived from the piece ranks), byte fallback, and no BOS/EOS added, since
  Megatron shards carry none. ``AutoTokenizer(dir)(text, add_special_tokens=False).input_ids``
  then equals ``build_tokenizer(...).tokenize(text)``; ``check_tokenizer_parity`` measures it.
  Known difference: a text that literally contains a control piece (``</s>``) gets that piece's id
  in Hugging Face (special tokens are matched in text there) and plain characters in SentencePiece.
* ``HuggingFaceTokenizer``: the original ``tokenizer.json`` and special tokens, re-saved.
* ``NullTokenizer``: nothing (the model has no text vocabulary); the conversion says so.

English-Clone (``--english-clone``, vocabulary ``2V``): the base vocabulary is written as above
(ids ``0..V-1`` tokenize exactly as before), and the clone half is appended as ``V`` *added
tokens* whose strings are ``<clone>`` + the base token string (id ``V + i`` is ``"<clone>" +
token_string(i)``, e.g. ``<clone>▁bank``), special when the base token is special. So
``AutoTokenizer`` loads a ``2V`` vocabulary, ``convert_ids_to_tokens`` names every clone id, decoding
clone ids gives readable ``<clone>``-marked text, and a clone token written literally in its piece
form encodes to its clone id. Tokenizing clone *text* is done as in ``text.tokenizers.english_clone``: tokenize
the English text and add ``V`` to every id (``prealign_conversion.json`` records ``V``). A
tokenizer.json cannot express "shift every id after a tag" with its pipeline stages, which is why
the clone half is not reachable from running text. When the base is a Hugging Face tokenizer, its
files are also kept in ``prealign_base_tokenizer/`` so that the evaluation rebuilds the exact
English-Clone tokenizer.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Dict, List, Optional, Sequence, Tuple

from megatron_prealign.errors import PreAlignError
from megatron_prealign.text.tokenizers import HUGGINGFACE_TYPES, NULL_TYPES, SENTENCEPIECE_TYPES
from megatron_prealign.text.tokenizers.base import TextTokenizer
from megatron_prealign.text.tokenizers.english_clone import CLONE_TAG

# SentencePiece piece types (sentencepiece_model.proto).
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6
_UNIGRAM, _BPE = 1, 2

BASE_TOKENIZER_DIR = "prealign_base_tokenizer"
"""Subdirectory holding the base Hugging Face tokenizer of an English-Clone export."""

SAMPLE_TEXTS = (
    "Hello world, this is a test.",
    "  leading and trailing spaces   and   runs  ",
    "tabs\tand\nnew lines\r\n",
    "Numbers 12345 and punctuation!? (yes) -- \"quotes\" 'single'",
    "Unicode: caf\u00e9 na\u00efve \u00c5ngstr\u00f6m \uff21\uff22\uff23 \u4e2d\u6587 \U0001f600",
    "",
    "a",
)


class TokenizerExportError(PreAlignError, ValueError):
    """The tokenizer cannot be written in Hugging Face form; the message says why."""


def _load_sentencepiece_proto(path: str):
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    with open(path, "rb") as f:
        proto.ParseFromString(f.read())
    return proto


def _bpe_merges(pieces: Sequence[str], usable: Sequence[bool]) -> List[Tuple[str, str]]:
    """Merges that rebuild every usable piece, ranked like SentencePiece BPE ranks its pieces.

    SentencePiece BPE merges, at each step, the adjacent pair whose concatenation is the
    highest-scoring piece (lower id = higher score). The equivalent ranked merge list has, for each
    piece in id order, every split of it into two pieces of the vocabulary.
    """
    rank = {p: i for i, p in enumerate(pieces) if usable[i]}
    merges: List[Tuple[int, int, int, str, str]] = []
    for piece, r in rank.items():
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in rank and right in rank:
                merges.append((r, rank[left], rank[right], left, right))
    merges.sort()
    return [(left, right) for _, _, _, left, right in merges]


def sentencepiece_to_tokenizers(model_path: str):
    """A ``tokenizers.Tokenizer`` that encodes like the SentencePiece model at ``model_path``.

    Returns:
        (tokenizer, special): the tokenizer and the special-token strings
        (``bos_token``/``eos_token``/``unk_token``/``pad_token``) defined by the model.
    """
    from tokenizers import AddedToken, Tokenizer

    proto = _load_sentencepiece_proto(model_path)
    trainer = proto.trainer_spec
    pieces = [p.piece for p in proto.pieces]
    types = [p.type for p in proto.pieces]
    if trainer.treat_whitespace_as_suffix:
        raise TokenizerExportError(f"{model_path}: treat_whitespace_as_suffix=true SentencePiece "
                                   "models are not supported by the Hugging Face export")
    tok = Tokenizer(_sentencepiece_model(proto, model_path))
    normalizer = _sentencepiece_normalizer(proto.normalizer_spec)
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.decoder = _sentencepiece_decoder(trainer, proto.normalizer_spec)
    # SentencePiece matches user-defined symbols before segmenting; control symbols are special.
    tok.add_tokens([AddedToken(p, normalized=False, special=False)
                    for p, t in zip(pieces, types) if t == _USER_DEFINED])
    special = {}
    for key, index in (("unk_token", trainer.unk_id), ("bos_token", trainer.bos_id),
                       ("eos_token", trainer.eos_id), ("pad_token", trainer.pad_id)):
        if 0 <= index < len(pieces):
            special[key] = pieces[index]
    return tok, special


def _sentencepiece_model(proto, model_path: str):
    """The ``tokenizers`` model (``Unigram`` with the piece scores, or ``BPE`` with merges from the
    piece ranks) of a SentencePiece model proto."""
    from tokenizers.models import BPE, Unigram

    trainer = proto.trainer_spec
    pieces = [p.piece for p in proto.pieces]
    types = [p.type for p in proto.pieces]
    normal_scores = [p.score for p in proto.pieces if p.type in (_NORMAL, _USER_DEFINED)]
    floor = min(normal_scores) if normal_scores else 0.0
    if trainer.model_type == _UNIGRAM:
        # Control/unknown/byte pieces never come out of SentencePiece's lattice; giving them the
        # lowest normal score keeps them out of ours without moving the unknown-token penalty
        # (which tokenizers derives from the minimum score).
        vocab = [(p.piece, p.score if p.type in (_NORMAL, _USER_DEFINED) else floor)
                 for p in proto.pieces]
        return Unigram(vocab, unk_id=trainer.unk_id, byte_fallback=trainer.byte_fallback)
    if trainer.model_type == _BPE:
        usable = [t in (_NORMAL, _USER_DEFINED) for t in types]
        return BPE({p: i for i, p in enumerate(pieces)}, _bpe_merges(pieces, usable),
                   unk_token=pieces[trainer.unk_id] if trainer.unk_id >= 0 else None,
                   fuse_unk=True, byte_fallback=trainer.byte_fallback)
    raise TokenizerExportError(f"{model_path}: SentencePiece model type {trainer.model_type} "
                               "(only unigram and bpe are supported)")


def _sentencepiece_normalizer(norm):
    """SentencePiece's normalization (its precompiled table, then its whitespace rules) as a
    ``tokenizers`` normalizer; None when the model normalizes nothing."""
    from tokenizers import Regex, normalizers

    steps = []
    if norm.precompiled_charsmap:
        steps.append(normalizers.Precompiled(norm.precompiled_charsmap))
    if norm.remove_extra_whitespaces:
        steps += [normalizers.Replace(Regex("^ +| +$"), ""), normalizers.Replace(Regex(" {2,}"), " ")]
    if norm.add_dummy_prefix:
        steps.append(normalizers.Prepend("\u2581"))
    if norm.escape_whitespaces:
        steps.append(normalizers.Replace(" ", "\u2581"))
    return normalizers.Sequence(steps) if steps else None


def _sentencepiece_decoder(trainer, norm):
    """The decoder that undoes the normalizer: ``▁`` back to spaces, byte pieces fused, the dummy
    prefix stripped."""
    from tokenizers import decoders

    decode = [decoders.Replace("\u2581", " ")]
    if trainer.byte_fallback:
        decode += [decoders.ByteFallback(), decoders.Fuse()]
    if norm.add_dummy_prefix:
        decode.append(decoders.Strip(content=" ", left=1, right=0))
    return decoders.Sequence(decode)


def _huggingface_base(tokenizer_dir: str):
    """The backend tokenizer and special tokens of a local Hugging Face tokenizer directory."""
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    backend = getattr(hf, "backend_tokenizer", None)
    if backend is None:
        raise TokenizerExportError(f"{tokenizer_dir}: a slow tokenizer; convert it to a fast one "
                                   "(with a tokenizer.json) first")
    special = {key: str(getattr(hf, key)) for key in ("bos_token", "eos_token", "unk_token", "pad_token")
               if getattr(hf, key, None) is not None}
    return backend, special


def add_clone_tokens(tok, special_ids: Sequence[bool]) -> None:
    """Append the English-Clone half: id ``V + i`` is the added token ``<clone>`` + token ``i``."""
    from tokenizers import AddedToken

    base_size = tok.get_vocab_size(with_added_tokens=True)
    strings = [tok.id_to_token(i) for i in range(base_size)]
    if any(s is None for s in strings):
        raise TokenizerExportError("the base vocabulary has holes (ids without a token); cannot "
                                   "append the English-Clone half")
    tok.add_tokens([AddedToken(CLONE_TAG + s, normalized=False, special=bool(special_ids[i]))
                    for i, s in enumerate(strings)])
    for i in (0, base_size - 1):
        got = tok.token_to_id(CLONE_TAG + strings[i])
        if got != base_size + i:
            raise TokenizerExportError(f"clone token {CLONE_TAG + strings[i]!r} got id {got}, "
                                       f"expected {base_size + i}")


def write_hf_tokenizer(tokenizer: TextTokenizer, out_dir: str,
                       model_max_length: Optional[int] = None) -> Dict[str, object]:
    """Write the Hugging Face tokenizer files for ``tokenizer`` into ``out_dir``.

    Args:
        tokenizer: the checkpoint's tokenizer (``text.tokenizers.build_tokenizer``), possibly an
            ``EnglishCloneTokenizer``.
        out_dir: the converted model directory.
        model_max_length: recorded in ``tokenizer_config.json`` (the model's positions).

    Returns:
        What was written: ``{"kind": ..., "special_tokens": {...}, "vocab_size": ...}``;
        ``kind`` is ``"none"`` for NullTokenizer.
    """
    base = getattr(tokenizer, "base", tokenizer)
    if base.tokenizer_type in NULL_TYPES:
        return {"kind": "none", "special_tokens": {}, "vocab_size": tokenizer.vocab_size}
    if base.tokenizer_type in SENTENCEPIECE_TYPES:
        tok, special = sentencepiece_to_tokenizers(base.tokenizer_model)
        shutil.copyfile(base.tokenizer_model, os.path.join(out_dir, "tokenizer.model"))
        kind = "sentencepiece"
    elif base.tokenizer_type in HUGGINGFACE_TYPES:
        tok, special = _huggingface_base(base.tokenizer_model)
        kind = "huggingface"
    else:
        raise TokenizerExportError(f"--tokenizer-type {base.tokenizer_type}: no Hugging Face export")
    size = tok.get_vocab_size(with_added_tokens=True)
    if size != base.vocab_size:
        raise TokenizerExportError(f"{base.describe()}: the exported vocabulary has {size} tokens but "
                                   f"the checkpoint's tokenizer has {base.vocab_size}")
    if tokenizer.english_clone:
        if kind == "huggingface":  # keep the base for exact clone ids (evaluation rebuilds it)
            from transformers import AutoTokenizer

            AutoTokenizer.from_pretrained(base.tokenizer_model, local_files_only=True).save_pretrained(
                os.path.join(out_dir, BASE_TOKENIZER_DIR))
        add_clone_tokens(tok, base.special_ids())
        kind += "+english_clone"

    from transformers import PreTrainedTokenizerFast

    extra = {"model_max_length": model_max_length} if model_max_length else {}
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, clean_up_tokenization_spaces=False,
                                 add_bos_token=False, add_eos_token=False, **special, **extra)
    hf.save_pretrained(out_dir)
    _name_generic_fast_class(out_dir)
    return {"kind": kind, "special_tokens": special, "vocab_size": len(hf)}


def _name_generic_fast_class(out_dir: str) -> None:
    """``PreTrainedTokenizerFast``: transformers 4.x knows it, 5.x aliases it to its backend."""
    path = os.path.join(out_dir, "tokenizer_config.json")
    with open(path) as f:
        config = json.load(f)
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    with open(path, "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")


def check_tokenizer_parity(tokenizer: TextTokenizer, hf_dir: str,
                           texts: Optional[Sequence[str]] = None) -> Dict[str, object]:
    """Compare ``AutoTokenizer(hf_dir)`` with our tokenizer on sample texts.

    English-Clone: the base half is compared on the texts as they are, the clone half through the
    documented rule (our clone ids == Hugging Face ids + V, and the clone ids' token strings are
    ``<clone>`` + the base strings).

    Returns:
        ``{"texts": n, "mismatches": [{"text", "ours", "hf"}, ...]}``.
    """
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(hf_dir, local_files_only=True)
    texts = list(SAMPLE_TEXTS if texts is None else texts)
    mismatches = []
    for text in texts:
        ours = list(tokenizer.tokenize(text))
        theirs = hf(text, add_special_tokens=False)["input_ids"]
        if ours != theirs:
            mismatches.append({"text": text, "ours": ours, "hf": theirs})
    if tokenizer.english_clone:
        v = tokenizer.base_vocab_size
        for text in texts[:3]:
            ours = list(tokenizer.tokenize(CLONE_TAG + text))
            theirs = [i + v for i in hf(text, add_special_tokens=False)["input_ids"]]
            names = hf.convert_ids_to_tokens(theirs)
            base_names = hf.convert_ids_to_tokens([i - v for i in theirs])
            if ours != theirs or names != [CLONE_TAG + n for n in base_names]:
                mismatches.append({"text": CLONE_TAG + text, "ours": ours, "hf": theirs})
    return {"texts": len(texts), "mismatches": mismatches}
