"""Stage 1 of PreAlign, model-independent: word vectors per level, contrastive loss, metrics.

``pooling`` turns hidden states / output-embedding rows into one unit vector per word and level,
``loss`` is the multi-positive InfoNCE over the global (data-parallel) batch, ``metrics`` measures
how well two languages are aligned. Nothing here imports the model or the training loop.
"""

from megatron_prealign.alignment.loss import (
    AlignmentLossConfig,
    AlignmentLossOutput,
    alignment_loss,
    all_gather_rows,
)
from megatron_prealign.alignment.metrics import LevelAlignment, alignment_report, level_alignment
from megatron_prealign.alignment.pooling import masked_mean_pool, pool_output_embedding

__all__ = [
    "AlignmentLossConfig",
    "AlignmentLossOutput",
    "LevelAlignment",
    "alignment_loss",
    "alignment_report",
    "all_gather_rows",
    "level_alignment",
    "masked_mean_pool",
    "pool_output_embedding",
]
