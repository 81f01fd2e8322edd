"""Word representations for stage 1: one mean-pooled, L2-normalized vector per word and level.

Stage 1 encodes every dictionary word on its own as a short token sequence. A *level* is one place
in the model where a word gets a vector: the embedding output, the output of each transformer layer,
and the output-embedding (unembedding) rows of the word's tokens. Each level is mean-pooled over the
word's real tokens (padding excluded) and L2-normalized; this module does the pooling, ``loss.py``
and ``metrics.py`` consume the pooled ``[n, h]`` vectors.

Layouts: Megatron-Core is sequence-first, so hidden states arrive as ``[s, b, h]`` (the default
here); pass ``seq_first=False`` for batch-first ``[b, s, h]``. Masks and token ids are always
batch-first ``[b, s]``, as in Megatron's loss masks. With sequence parallelism the hidden states
are split along ``s`` across the tensor-parallel group: gather them (for example with
``megatron.core.tensor_parallel.gather_from_sequence_parallel_region``) before pooling.

Pooling accumulates in fp32 (fp64 stays fp64) whatever the input dtype, and returns that dtype.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F

# Below this norm a pooled vector is treated as zero instead of being blown up by the division.
NORM_EPS = 1e-12


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp32 for half types, the input dtype when it is already fp32 or fp64."""
    return torch.promote_types(dtype, torch.float32)


def _mean_and_normalize(summed: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Divide per-word sums ``[b, h]`` by their token counts (``keep`` is ``[b, s]`` bool) and
    L2-normalize.

    A word whose mask is all zero gets the zero vector (its sum is zero and the count is clamped
    to 1), which has cosine 0 with everything rather than NaN.
    """
    counts = keep.sum(dim=1).clamp(min=1).to(summed.dtype).unsqueeze(-1)  # [b, 1]
    return F.normalize(summed / counts, dim=-1, eps=NORM_EPS)  # [b, h]


def masked_mean_pool(
    hidden: torch.Tensor, mask: torch.Tensor, seq_first: bool = True
) -> torch.Tensor:
    """Mean over each word's real tokens, then L2-normalize.

    Args:
        hidden: hidden states, ``[s, b, h]`` when ``seq_first`` (Megatron's layout), else
            ``[b, s, h]``; any float dtype.
        mask: ``[b, s]``, nonzero (or True) at the word's real tokens, zero at padding.
        seq_first: layout of ``hidden``, see above.

    Returns:
        ``[b, h]`` unit vectors in fp32 (fp64 for fp64 input); padding positions get no gradient.
    """
    keep = mask.bool()  # [b, s]
    keep_h = (keep.t() if seq_first else keep).unsqueeze(-1)  # [s, b, 1] or [b, s, 1]
    # masked_fill rather than a multiply: padded positions contribute exactly zero and get zero
    # gradient even if they hold inf/NaN.
    masked = hidden.to(_accumulation_dtype(hidden.dtype)).masked_fill(~keep_h, 0)  # like hidden
    summed = masked.sum(dim=0 if seq_first else 1)  # [b, h]
    return _mean_and_normalize(summed, keep)


def pool_output_embedding(
    token_ids: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    group: Optional[dist.ProcessGroup] = None,
) -> torch.Tensor:
    """Mean of the output-embedding rows of each word's tokens, then L2-normalize.

    Under tensor parallelism the output embedding is vocab-parallel: tensor-parallel rank ``r``
    holds rows ``[r * V_local, (r + 1) * V_local)`` of the (padded) vocabulary, as in Megatron's
    ``VocabParallelEmbedding`` and the ``ColumnParallelLinear`` output layer. Each rank sums the
    rows it owns, the partial sums are all-reduced over ``group``, and the result equals the
    unsharded computation. The all-reduce is Megatron's ``reduce_from_tensor_model_parallel_region``
    (identity backward), which gives exact gradients here because the loss downstream is computed
    identically on every tensor-parallel rank: each rank's slice then receives the full upstream
    gradient, and only through its own rows, which is the slice of the unsharded gradient.

    Args:
        token_ids: ``[b, s]`` vocabulary ids; padding positions may hold any valid id.
        mask: ``[b, s]``, nonzero at the word's real tokens.
        weight: the local rows ``[V_local, h]`` (the whole table ``[V, h]`` when ``group`` is None
            or has one rank), e.g. ``model.output_layer.weight`` or, with tied embeddings,
            ``model.shared_embedding_or_output_weight()``.
        group: the tensor-parallel group (``parallel_state.get_tensor_model_parallel_group()``);
            None means the table is not sharded.

    Returns:
        ``[b, h]`` unit vectors in fp32 (fp64 for an fp64 table).
    """
    dtype = _accumulation_dtype(weight.dtype)
    keep = mask.bool()  # [b, s]
    tp_size = 1 if group is None else dist.get_world_size(group)
    if tp_size == 1:
        rows = F.embedding(token_ids, weight).to(dtype)  # [b, s, h]
        summed = rows.masked_fill(~keep.unsqueeze(-1), 0).sum(dim=1)  # [b, h]
        return _mean_and_normalize(summed, keep)

    # Imported here so that this module stays importable (and cheap) without Megatron, and so the
    # runtime can apply megatron_prealign.cpu_compat before megatron.core is first imported.
    from megatron.core.tensor_parallel.mappings import reduce_from_tensor_model_parallel_region

    vocab_start = dist.get_rank(group) * weight.shape[0]
    local_ids = token_ids - vocab_start  # [b, s]
    owned = (local_ids >= 0) & (local_ids < weight.shape[0])  # [b, s]
    # Ids owned by other ranks look up row 0 and are then zeroed, as upstream's vocab-parallel
    # embedding does.
    rows = F.embedding(local_ids.masked_fill(~owned, 0), weight).to(dtype)  # [b, s, h]
    partial = rows.masked_fill(~(owned & keep).unsqueeze(-1), 0).sum(dim=1)  # [b, h]
    summed = reduce_from_tensor_model_parallel_region(partial, group)  # [b, h]
    return _mean_and_normalize(summed, keep)
