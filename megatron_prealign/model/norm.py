"""Normalization for the local layer spec that also works with sequence parallelism.

Megatron-Core's ``WrappedTorchNorm`` (its norm when Apex is absent) refuses
``sequence_parallel=True``. Under sequence parallelism each tensor-parallel rank normalizes its own
slice of the sequence, so the norm weight receives only a partial gradient; Megatron-Core's
``finalize_model_grads`` all-reduces exactly the parameters flagged ``sequence_parallel``. This
module is torch's own LayerNorm/RMSNorm with that flag set, so sequence parallelism runs with the
local spec (and on CPU).
"""

from __future__ import annotations

import torch
from megatron.core.transformer.transformer_config import TransformerConfig


class LocalNorm:
    """Factory with Megatron's norm signature returning ``torch.nn.RMSNorm`` or ``LayerNorm``."""

    def __new__(cls, config: TransformerConfig, hidden_size: int, eps: float = 1e-5, **unused):
        if config.normalization == "RMSNorm":
            norm = torch.nn.RMSNorm(hidden_size, eps=eps, dtype=config.params_dtype)
        elif config.normalization == "LayerNorm":
            norm = torch.nn.LayerNorm(hidden_size, eps=eps, dtype=config.params_dtype)
        else:
            raise ValueError(f"--normalization {config.normalization} is not supported by the "
                             "local spec; use RMSNorm or LayerNorm")
        for param in norm.parameters():
            param.sequence_parallel = config.sequence_parallel
        return norm
