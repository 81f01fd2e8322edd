"""Megatron-Core <-> Hugging Face Llama conversion.

``mapping``      the name table and its named special cases (fused QKV per query group, gated MLP,
                 vocabulary padding, tied output), used in both directions
``megatron_io``  read a dist checkpoint of any TP/PP into one process; write one back
``hf``           what a Llama can represent, its config and files
``tokenizer``    tokenizer files that ``AutoTokenizer`` loads offline (SentencePiece, HF,
                 English-Clone)
``convert``      both conversions end to end, and the logits parity check

Entry point: ``tools/convert_to_hf.py``. Nothing here imports Megatron-Core at import time.
"""

from megatron_prealign.conversion.convert import (
    compare_logits,
    convert_hf_to_megatron,
    convert_megatron_to_hf,
)
from megatron_prealign.conversion.mapping import (
    TABLE,
    ConversionError,
    LlamaShape,
    hf_to_megatron,
    megatron_to_hf,
)

__all__ = ["TABLE", "ConversionError", "LlamaShape", "compare_logits", "convert_hf_to_megatron",
           "convert_megatron_to_hf", "hf_to_megatron", "megatron_to_hf"]
