"""Alignment metrics per level: cosine of aligned vs non-aligned pairs, and translation P@1.

Inputs are the pooled vectors of a set of (held-out) words, one row per word, with each word's
concept id and language tag; two words are *aligned* (translations) when they share a concept id
and one is in the source language, the other in the target language. In the English /
English-Clone experiment the languages are ``"en"`` and ``"clone"`` and every concept has exactly
one word per language; multi-way dictionaries (several words or senses per concept) work as is.

- ``aligned_cosine``: mean cosine over all aligned (source, target) pairs.
- ``random_cosine``: mean cosine over all *non-aligned* (source, target) pairs. It is the exact
  mean over every such pair, computed in ``O(n h)`` from vector sums, rather than an estimate from
  sampled pairs: no seed, no sampling noise, and the same cost.
- ``p_at_1``: word-translation retrieval, source -> target. For each source word with at least one
  translation among the target words, the nearest target word by cosine (over all target words);
  correct if it is a translation. Ties go to the lowest row index.

Everything runs without gradients, in fp32 (fp64 for fp64 input), on the vectors' device.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Hashable, Mapping, Sequence, Union

import torch
import torch.nn.functional as F

# Source words scored per matrix product in P@1: bounds memory at chunk * n_target floats.
_QUERY_CHUNK = 1024


@dataclasses.dataclass(frozen=True)
class LevelAlignment:
    """Alignment metrics of one level (NaN where a quantity has no pairs or queries)."""

    aligned_cosine: float
    """Mean cosine of aligned (source, target) pairs."""
    random_cosine: float
    """Mean cosine of non-aligned (source, target) pairs."""
    p_at_1: float
    """Fraction of queries whose nearest target word is one of their translations."""
    num_aligned_pairs: int
    """Number of aligned (source, target) pairs."""
    num_queries: int
    """Source words with at least one translation among the target words."""


@torch.no_grad()
def level_alignment(
    reps: torch.Tensor,
    concept_ids: torch.Tensor,
    languages: Sequence[Hashable],
    source: Hashable = "en",
    target: Hashable = "clone",
) -> LevelAlignment:
    """Alignment metrics of one level, source -> target.

    Args:
        reps: ``[n, h]`` word vectors, normalized or not (cosines are taken).
        concept_ids: ``[n]`` integer concept id per word.
        languages: ``n`` language tags, one per word (e.g. ``"en"`` / ``"clone"``); words of other
            languages are ignored.
        source: tag of the query language.
        target: tag of the candidate language.

    Returns:
        ``LevelAlignment`` for this level.
    """
    if reps.dim() != 2 or len(languages) != reps.shape[0] or concept_ids.shape != reps.shape[:1]:
        raise ValueError(f"expected reps [n, h] with n concept ids and n language tags; got reps "
                         f"{tuple(reps.shape)}, concept_ids {tuple(concept_ids.shape)}, "
                         f"{len(languages)} languages.")
    z = F.normalize(reps.to(torch.promote_types(reps.dtype, torch.float32)), dim=-1)  # [n, h]
    is_source = torch.tensor([tag == source for tag in languages], device=z.device)  # [n]
    is_target = torch.tensor([tag == target for tag in languages], device=z.device)  # [n]
    src, tgt = z[is_source], z[is_target]  # [n_s, h], [n_t, h]
    src_ids, tgt_ids = concept_ids[is_source], concept_ids[is_target]  # [n_s], [n_t]

    aligned_sum = torch.zeros((), dtype=z.dtype, device=z.device)
    num_aligned = 0
    num_queries = correct = 0
    for begin in range(0, src.shape[0], _QUERY_CHUNK):
        cosine = src[begin : begin + _QUERY_CHUNK] @ tgt.t()  # [chunk, n_t]
        aligned = src_ids[begin : begin + _QUERY_CHUNK].unsqueeze(1) == tgt_ids.unsqueeze(0)
        aligned_sum += (cosine * aligned).sum()
        num_aligned += int(aligned.sum())
        has_translation = aligned.any(dim=1)  # [chunk]
        if tgt.shape[0]:
            nearest = cosine.argmax(dim=1)  # [chunk]
            hit = aligned.gather(1, nearest.unsqueeze(1)).squeeze(1)  # [chunk]
            correct += int((hit & has_translation).sum())
        num_queries += int(has_translation.sum())

    # sum over all (source, target) pairs of z_s . z_t = (sum_s z_s) . (sum_t z_t)
    all_pairs_sum = src.sum(dim=0) @ tgt.sum(dim=0)
    num_random = src.shape[0] * tgt.shape[0] - num_aligned
    return LevelAlignment(
        aligned_cosine=_ratio(float(aligned_sum), num_aligned),
        random_cosine=_ratio(float(all_pairs_sum - aligned_sum), num_random),
        p_at_1=_ratio(correct, num_queries),
        num_aligned_pairs=num_aligned,
        num_queries=num_queries,
    )


def alignment_report(
    levels: Union[Mapping[str, torch.Tensor], Sequence[torch.Tensor]],
    concept_ids: torch.Tensor,
    languages: Sequence[Hashable],
    source: Hashable = "en",
    target: Hashable = "clone",
) -> Dict[str, LevelAlignment]:
    """``level_alignment`` for every level: ``{name: [n, h]}`` or a list (names "0", "1", ...)."""
    named = levels.items() if isinstance(levels, Mapping) else (
        (str(k), rep) for k, rep in enumerate(levels))
    return {name: level_alignment(rep, concept_ids, languages, source, target)
            for name, rep in named}


def _ratio(total: float, count: int) -> float:
    return total / count if count else float("nan")
