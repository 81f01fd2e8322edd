"""Stage-1 contrastive alignment loss: multi-positive InfoNCE per level, averaged over levels.

Definition (one level). Let ``z_1 .. z_N`` be the L2-normalized word vectors of the *global* batch
(all data-parallel ranks), ``c_k`` their concept ids, ``s_ij = z_i . z_j`` and ``tau`` the
temperature. The positives of word ``i`` are ``P(i) = {p != i : c_p = c_i}``. Following SupCon
("L_out"), each positive is a separate log-likelihood term and the terms are averaged::

    l_i = -1/|P(i)| * sum_{p in P(i)} log( exp(s_ip / tau) / sum_{j != i} exp(s_ij / tau) )
        = logsumexp_{j != i}(s_ij / tau) - mean_{p in P(i)} s_ip / tau

The denominator runs over every other word, positives included. Words without a positive
(``|P(i)| = 0``) are not anchors: they contribute no ``l_i`` but still serve as negatives for
everyone else. The level loss is the mean over the ``A`` anchors of the global batch,
``L = 1/A * sum_i l_i``, and 0 (with zero, finite gradients) when ``A = 0``, e.g. a one-word batch.
Levels are averaged with equal weight.

Optional anti-collapse term (the authors' code has it): ``w * max(0, m)`` per level, where ``m``
is the mean cosine over all ordered pairs ``i != j`` of the global batch; it pushes the batch apart
only while the vectors, on average, point the same way.

Data parallelism. Each rank holds ``n_r`` words; their vectors (and concept ids) are all-gathered
across ``group`` with gradient: the backward of the gather all-reduces the gradient of the gathered
matrix and hands each rank the rows it owns, so every rank's words receive the gradient of every
rank's anchors. Rank ``r`` evaluates only its own anchors against all ``N`` words and returns::

    L_r = D / A * sum_{i anchor on rank r} l_i        (+ the anti-collapse term, replicated)

with ``D`` the data-parallel size and ``A`` the global anchor count (known on every rank from the
gathered concept ids, so ranks holding different numbers of anchors are weighted exactly). Hence
``mean_r L_r = L``, and the gradient rank ``r`` computes for its own parameters' inputs is
``D * dL/dz_r``. Megatron's ``DistributedDataParallel`` (default ``calculate_per_token_loss=False``,
either ``average_in_collective`` setting) *averages* gradients over the data-parallel group, which
divides the ``D`` back out: the optimizer sees exactly the gradient of ``L`` on the concatenated
batch, as with one rank. The same holds for logging: the data-parallel mean of the returned values
is the global loss. ``group`` must therefore be the group DDP averages over
(``parallel_state.get_data_parallel_group()``). Tensor-parallel ranks of one data-parallel replica
hold identical words and compute identical losses, as for Megatron's own cross-entropy. With
``calculate_per_token_loss=True`` DDP sums instead of averaging; divide the returned loss by ``D``
there. Megatron's schedule divides each microbatch's loss by the number of microbatches; every
microbatch is its own contrastive batch (negatives are not shared across microbatches).

The caller assembles the stage-1 objective ``alpha * L_align + lm_weight * L_LM`` with
``AlignmentLossConfig.combine``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.distributed as dist
import torch.nn.functional as F

Levels = Union[Mapping[str, torch.Tensor], Sequence[torch.Tensor]]


@dataclasses.dataclass
class AlignmentLossConfig:
    """Weights of the stage-1 objective; field names are the ``--alignment-*`` flag names."""

    alignment_alpha: float = 0.1
    """Weight of the contrastive loss in the total (paper code 0.1, a later fork 0.5)."""
    alignment_lm_weight: float = 1.0
    """Weight of the LM loss on the dictionary words (paper: 1.0)."""
    alignment_temperature: float = 0.1
    """InfoNCE temperature tau, dividing cosine similarities (paper: 0.1)."""
    alignment_anti_collapse_weight: float = 0.0
    """Weight of max(0, mean off-diagonal cosine) per level; 0 disables it (authors' code: on)."""

    def __post_init__(self):
        for name in ("alignment_alpha", "alignment_lm_weight", "alignment_anti_collapse_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}; "
                                 f"set --{name.replace('_', '-')} accordingly.")
        if not (math.isfinite(self.alignment_temperature) and self.alignment_temperature > 0):
            raise ValueError(f"alignment_temperature must be a finite number > 0, got "
                             f"{self.alignment_temperature!r}; the paper uses 0.1 "
                             "(--alignment-temperature).")
        if self.alignment_alpha == 0 and self.alignment_lm_weight == 0:
            raise ValueError("alignment_alpha and alignment_lm_weight are both 0, so stage 1 would "
                             "train nothing; set at least one of them > 0.")

    def combine(self, align_loss: torch.Tensor, lm_loss: torch.Tensor) -> torch.Tensor:
        """Stage-1 objective: ``alignment_alpha * align_loss + alignment_lm_weight * lm_loss``."""
        return self.alignment_alpha * align_loss + self.alignment_lm_weight * lm_loss


@dataclasses.dataclass
class AlignmentLossOutput:
    """What ``alignment_loss`` returns (all scalars, fp32 or fp64)."""

    loss: torch.Tensor
    """This rank's share ``L_r`` (see the module docstring): backpropagate it."""
    per_level: Dict[str, torch.Tensor]
    """Detached InfoNCE loss per level, scaled like ``loss`` (its data-parallel mean is global)."""
    num_anchors: torch.Tensor
    """Global number of anchors ``A`` (words with at least one positive), identical on all ranks."""


class _AllGatherRows(torch.autograd.Function):
    """Concatenate every rank's rows; backward returns each rank the summed gradient of its rows."""

    @staticmethod
    def forward(ctx, tensor, sizes, group):  # tensor [n_r, d] -> [sum(sizes), d]
        ctx.group = group
        ctx.start = sum(sizes[: dist.get_rank(group)])
        ctx.rows = tensor.shape[0]
        return _gather_padded(tensor, sizes, group)

    @staticmethod
    def backward(ctx, grad):  # grad [N, d] -> [n_r, d]
        # Every rank holds a gradient for every row; rows are owned by one rank, which needs the
        # sum over ranks. all_reduce + slice is a reduce-scatter that also works for uneven row
        # counts and on gloo, which has no reduce_scatter.
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad[ctx.start : ctx.start + ctx.rows], None, None


def _gather_padded(tensor: torch.Tensor, sizes: List[int], group) -> torch.Tensor:
    """all_gather rows of possibly different counts (``sizes[r]`` on rank ``r``) by padding."""
    padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))  # [max_n, d]
    padded[: tensor.shape[0]] = tensor
    buckets = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(buckets, padded, group=group)
    return torch.cat([bucket[:size] for bucket, size in zip(buckets, sizes)])  # [N, d]


def all_gather_rows(
    tensor: torch.Tensor, group: Optional[dist.ProcessGroup] = None
) -> Tuple[torch.Tensor, int]:
    """All-gather along dim 0 across ``group``, differentiably; ranks may hold different counts.

    Args:
        tensor: ``[n_r, ...]`` on rank ``r``.
        group: process group; None (or a one-rank group) gathers nothing.

    Returns:
        ``(gathered, start)``: ``gathered`` is ``[sum_r n_r, ...]`` in rank order, and this rank's
        rows are ``gathered[start : start + n_r]``. Gradients of ``gathered`` flow back to the rank
        that owns each row, summed over all ranks.
    """
    if group is None or dist.get_world_size(group) == 1:
        return tensor, 0
    count = torch.tensor([tensor.shape[0]], dtype=torch.long, device=tensor.device)
    counts = [torch.empty_like(count) for _ in range(dist.get_world_size(group))]
    dist.all_gather(counts, count, group=group)
    sizes = [int(c.item()) for c in counts]
    start = sum(sizes[: dist.get_rank(group)])
    if tensor.requires_grad:
        return _AllGatherRows.apply(tensor, sizes, group), start
    return _gather_padded(tensor, sizes, group), start


def _named_levels(levels: Levels) -> Tuple[List[str], List[torch.Tensor]]:
    if isinstance(levels, Mapping):
        return list(levels.keys()), list(levels.values())
    return [str(k) for k in range(len(levels))], list(levels)


def _anchor_mask(concept_ids: torch.Tensor) -> torch.Tensor:
    """``[N]`` bool: words whose concept id occurs at least twice. Sort-based, no host sync."""
    ids, order = torch.sort(concept_ids)  # [N], [N]
    repeated = ids[1:] == ids[:-1]  # [N - 1]
    no = repeated.new_zeros(1)
    sorted_mask = torch.cat([repeated, no]) | torch.cat([no, repeated])  # [N]
    return torch.empty_like(sorted_mask).scatter_(0, order, sorted_mask)


def alignment_loss(
    levels: Levels,
    concept_ids: torch.Tensor,
    temperature: float = 0.1,
    anti_collapse_weight: float = 0.0,
    group: Optional[dist.ProcessGroup] = None,
) -> AlignmentLossOutput:
    """Multi-positive InfoNCE of this rank's words against the global batch, averaged over levels.

    See the module docstring for the exact definition and the data-parallel contract.

    Args:
        levels: this rank's word vectors per level, ``{name: [n, h_k]}`` or a list (names "0",
            "1", ...); row ``i`` of every level is word ``i``. Normalized here, so pooled or raw
            vectors both work. Any float dtype; computed in fp32 (fp64 for fp64 input).
        concept_ids: ``[n]`` integer concept id per word; equal ids across ranks are positives.
        temperature: tau > 0.
        anti_collapse_weight: weight ``w`` of ``max(0, mean off-diagonal cosine)``; 0 skips it.
        group: the data-parallel group over which negatives are gathered; None for one rank.

    Returns:
        ``AlignmentLossOutput``; ``.loss`` is this rank's share ``L_r`` to backpropagate.
    """
    names, reps = _checked_levels(levels, concept_ids)
    n = concept_ids.shape[0]
    dtype = functools.reduce(torch.promote_types, [rep.dtype for rep in reps], torch.float32)
    widths = [rep.shape[1] for rep in reps]
    # Normalize locally, then one gather for all levels instead of one collective per level.
    local = torch.cat([F.normalize(rep.to(dtype), dim=-1) for rep in reps], dim=-1)  # [n, sum h]
    everything, start = all_gather_rows(local, group)  # [N, sum h]
    all_ids, _ = all_gather_rows(concept_ids.long(), group)  # [N]
    dp_size = 1 if group is None else dist.get_world_size(group)
    num_words = all_ids.shape[0]

    pairs = _pairs(concept_ids, all_ids, start)
    num_anchors = _anchor_mask(all_ids).sum()  # A, global
    # D / A: the data-parallel mean of L_r is then the global mean over anchors (module docstring).
    anchor_scale = dp_size / num_anchors.clamp(min=1).to(dtype)
    # N(N - 1) ordered pairs i != j; clamped so a one-word batch gives m = 0.
    num_pairs = max(num_words * (num_words - 1), 1)

    infonce, total = {}, 0.0
    for name, all_z in zip(names, everything.split(widths, dim=-1)):  # [N, h_k]
        level_loss = _anchor_infonce_sum(all_z[start : start + n], all_z, pairs, temperature) * anchor_scale
        infonce[name] = level_loss.detach()
        total = total + level_loss
        if anti_collapse_weight:
            total = total + anti_collapse_weight * _anti_collapse(all_z, num_pairs)
    return AlignmentLossOutput(loss=total / len(reps), per_level=infonce, num_anchors=num_anchors)


def _checked_levels(levels: Levels, concept_ids: torch.Tensor) -> Tuple[List[str], List[torch.Tensor]]:
    """(names, word vectors) of ``levels``; every level one ``[n, h]`` row per concept id."""
    names, reps = _named_levels(levels)
    if not reps:
        raise ValueError("alignment_loss needs at least one level of word vectors; got none.")
    n = concept_ids.shape[0]
    for name, rep in zip(names, reps):
        if rep.dim() != 2 or rep.shape[0] != n:
            raise ValueError(f"level {name!r} has shape {tuple(rep.shape)}; expected [{n}, h] "
                             f"to match concept_ids of shape {tuple(concept_ids.shape)}.")
    return names, reps


class _Pairs(NamedTuple):
    """Which (local word, global word) pairs count where; the same for every level."""

    is_self: torch.Tensor  # [n, N] bool: the word itself
    positive: torch.Tensor  # [n, N] bool: another word of the same concept
    num_positive: torch.Tensor  # [n]
    is_anchor: torch.Tensor  # [n] bool: has at least one positive


def _pairs(concept_ids: torch.Tensor, all_ids: torch.Tensor, start: int) -> _Pairs:
    """The pair masks of this rank's ``n`` words (global rows ``start ..``) against all ``N``."""
    n = concept_ids.shape[0]
    columns = torch.arange(all_ids.shape[0], device=all_ids.device)  # [N]
    rows = start + torch.arange(n, device=all_ids.device)  # [n], global index of local words
    is_self = rows.unsqueeze(1) == columns.unsqueeze(0)  # [n, N]
    positive = (concept_ids.long().unsqueeze(1) == all_ids.unsqueeze(0)) & ~is_self  # [n, N]
    num_positive = positive.sum(dim=1)  # [n]
    return _Pairs(is_self, positive, num_positive, num_positive > 0)


def _anchor_infonce_sum(anchors: torch.Tensor, all_z: torch.Tensor, pairs: _Pairs,
                        temperature: float) -> torch.Tensor:
    """``sum_i l_i`` over this rank's anchors (``anchors`` [n, h], ``all_z`` [N, h]) at one level."""
    logits = anchors @ all_z.t() / temperature  # [n, N]
    # A finite fill instead of -inf keeps logsumexp and its gradient finite for words with no
    # other word in the batch; such rows are not anchors and get weight 0 below.
    masked = logits.masked_fill(pairs.is_self, torch.finfo(all_z.dtype).min)  # [n, N]
    denominator = torch.logsumexp(masked, dim=1)  # [n]
    positive_mean = (logits * pairs.positive).sum(dim=1) / pairs.num_positive.clamp(min=1)  # [n]
    per_anchor = (denominator - positive_mean) * pairs.is_anchor  # [n]
    return per_anchor.sum()


def _anti_collapse(all_z: torch.Tensor, num_pairs: int) -> torch.Tensor:
    """``max(0, m)``, ``m`` the mean cosine over the ``num_pairs`` ordered pairs ``i != j`` of
    ``all_z`` [N, h].

    sum_{i != j} z_i.z_j = |sum_i z_i|^2 - sum_i |z_i|^2: O(N h) instead of O(N^2 h). Replicated on
    every rank; the gather's backward sums the D copies, and DDP's average removes the factor D
    again, as for the InfoNCE term.
    """
    column_sum = all_z.sum(dim=0)  # [h]
    off_diagonal = column_sum @ column_sum - (all_z * all_z).sum()  # scalar
    return torch.relu(off_diagonal / num_pairs)
