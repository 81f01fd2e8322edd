"""The model: Megatron-Core ``GPTModel`` built from a layer spec chosen by flags."""

from megatron_prealign.model.gpt import build_model, transformer_config_from_args

__all__ = ["build_model", "transformer_config_from_args"]
