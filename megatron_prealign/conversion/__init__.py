"""Megatron-Core <-> Hugging Face Llama conversion.

``mapping``      the name table and its named special cases (fused QKV per query group, gated MLP,
                 vocabulary padding, tied output), used in both directions
``megatron_io``  read a dist checkpoint of any TP/PP into one process; write one back
``hf``           what a Llama can represent, its config and files
``tokenizer``    tokenizer files that ``AutoTokenizer`` loads offline (SentencePiece, HF,
                 English-Clone)
``convert``      both conversions end to end, and the logits parity check

Entry point: ``tools/convert_to_hf.py``. Importing the package (or ``hf``, ``mapping``) does not
import Megatron-Core, which takes seconds: evaluating a Hugging Face directory never needs it.
``convert``'s functions are loaded on first use.
"""

from megatron_prealign.conversion.mapping import (
    TABLE,
    ConversionError,
    LlamaShape,
    hf_to_megatron,
    megatron_to_hf,
)

_CONVERT = ("compare_logits", "convert_hf_to_megatron", "convert_megatron_to_hf")


def __getattr__(name):
    if name in _CONVERT:
        # lazy: ``convert`` imports Megatron-Core (seconds); the package's other users do not need it
        from megatron_prealign.conversion import convert
        return getattr(convert, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["TABLE", "ConversionError", "LlamaShape", "compare_logits", "convert_hf_to_megatron",
           "convert_megatron_to_hf", "hf_to_megatron", "megatron_to_hf"]
