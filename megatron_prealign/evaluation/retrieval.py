"""Sentence retrieval between parallel texts: P@1 per level, in both directions.

The paper's real-world alignment measure. The input is ``n`` parallel pairs (a text and its
translation; the *source* and the *target* side). Every text is encoded on its own, as its
tokenizer ids (no BOS, no EOS/EOD, no language tag beyond what the text itself carries, e.g.
``<clone>``), and gets one vector per level: the mean of the level's hidden states over all of the
text's tokens (padding excluded), L2-normalized. That is the pooling of the dictionary alignment
report with a text in place of a word: ``evaluation.alignment.word_representations`` over
``alignment.pooling.masked_mean_pool``, whose level extraction (``EvalModel.hidden_levels``) this
module reuses. Levels are the hidden levels: ``embedding``, ``layer1..layerN``, ``final_norm``.

At each level, with the cosine similarity of every source to every target:

* ``source_to_target``: the share of sources whose most similar target is their own partner;
* ``target_to_source``: the share of targets whose most similar source is their own partner;
* ``p_at_1``: the mean of the two.

Each direction is ``alignment.metrics.level_alignment``'s P@1 with one concept per pair, so ties
go to the lowest row, as in the dictionary report. Chance is ``1/n``. At the ``embedding`` level a
vector depends only on the text's multiset of tokens: two reorderings of one text tie there.

A text longer than ``max_tokens`` (default and at most the model's positions) is cut to its first
``max_tokens`` tokens; the result counts the texts cut. Two texts of one side with the same tokens
(after the cut) get the same vector and P@1 is ill-defined among them: they are refused.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from megatron_prealign.alignment.metrics import level_alignment
from megatron_prealign.evaluation.alignment import word_representations
from megatron_prealign.evaluation.models import EvalModel

Ids = Tuple[int, ...]
SOURCE, TARGET = "source", "target"


@dataclasses.dataclass(frozen=True)
class LevelRetrieval:
    """Retrieval P@1 of one level."""

    source_to_target: float
    """Share of sources whose nearest target (cosine) is their partner."""
    target_to_source: float
    """Share of targets whose nearest source (cosine) is their partner."""
    p_at_1: float
    """Mean of the two directions."""


@dataclasses.dataclass(frozen=True)
class RetrievalResult:
    """Retrieval on one set of pairs (``evaluate_retrieval``)."""

    pairs: int
    """Number of (source, target) pairs."""
    truncated: int
    """Texts (sources and targets together) cut to the token limit."""
    levels: Dict[str, LevelRetrieval]
    """``{level: LevelRetrieval}`` in model order."""


@torch.no_grad()
def retrieval_p_at_1(source: torch.Tensor, target: torch.Tensor) -> LevelRetrieval:
    """P@1 in both directions for ``[n, h]`` vectors whose row ``i`` on each side is a pair.

    Vectors need not be normalized (cosines are taken). Ties go to the lowest row.
    """
    if source.dim() != 2 or source.shape != target.shape or source.shape[0] < 2:
        raise ValueError(f"expected source and target [n, h] of the same shape with n >= 2; got "
                         f"{tuple(source.shape)} and {tuple(target.shape)}")
    n = source.shape[0]
    reps = torch.cat([source, target])  # [2n, h]
    pair_ids = torch.arange(n, device=reps.device).repeat(2)  # [2n]: pair i is concept i
    sides = [SOURCE] * n + [TARGET] * n
    forward = level_alignment(reps, pair_ids, sides, SOURCE, TARGET).p_at_1
    backward = level_alignment(reps, pair_ids, sides, TARGET, SOURCE).p_at_1
    return LevelRetrieval(source_to_target=forward, target_to_source=backward,
                          p_at_1=(forward + backward) / 2)


def token_limit(model: EvalModel, max_tokens: Optional[int] = None) -> int:
    """The length texts are cut to: ``max_tokens``, at most the model's positions (its default)."""
    return model.max_length if max_tokens is None else min(max_tokens, model.max_length)


def truncate_texts(token_ids: Sequence[Sequence[int]], max_tokens: int) -> Tuple[List[Ids], int]:
    """Every text cut to its first ``max_tokens`` ids, and how many were cut."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    cut = [tuple(ids[:max_tokens]) for ids in token_ids]
    return cut, sum(len(ids) > max_tokens for ids in token_ids)


def first_duplicate(token_ids: Sequence[Sequence[int]]) -> Optional[Tuple[int, int]]:
    """``(i, j)``, ``i < j``, of the first text ``j`` whose ids equal an earlier text ``i``'s; None
    when all differ."""
    seen: Dict[Ids, int] = {}
    for j, ids in enumerate(token_ids):
        key = tuple(ids)
        if key in seen:
            return seen[key], j
        seen[key] = j
    return None


def hidden_level_names(model: EvalModel) -> List[str]:
    """The levels a text is embedded at: every level but ``output_embedding``, in model order."""
    return [level for level in model.level_names() if level != "output_embedding"]


@torch.no_grad()
def embed_texts(model: EvalModel, token_ids: Sequence[Sequence[int]],
                levels: Optional[Sequence[str]] = None, batch_size: int = 32) -> Dict[str, torch.Tensor]:
    """``{level: [n, h]}`` unit vectors: each text's hidden states at the level, mean-pooled over
    all of its tokens (padding excluded) and L2-normalized (module docstring).

    Texts are batched in length order (less padding), right-padded; causal attention keeps padding
    from changing a text's states, so a vector does not depend on its batch. Rows follow the input.

    Args:
        model: the model.
        token_ids: one non-empty id sequence per text, already within the model's positions.
        levels: default ``hidden_level_names(model)``.
        batch_size: texts per forward pass.
    """
    levels = list(levels or hidden_level_names(model))
    lengths = [len(ids) for ids in token_ids]
    if not lengths or min(lengths) == 0 or max(lengths) > model.max_length:
        raise ValueError(f"expected texts of 1..{model.max_length} tokens; got "
                         f"{len(lengths)} texts of lengths {min(lengths, default=0)}.."
                         f"{max(lengths, default=0)}")
    order = sorted(range(len(token_ids)), key=lengths.__getitem__)
    entries = [(i, [tuple(token_ids[i])]) for i in order]  # one "word" per entry: the whole text
    reps, _, _ = word_representations(model, entries, levels, batch_words=batch_size)
    back = torch.empty(len(order), dtype=torch.long)
    back[torch.tensor(order)] = torch.arange(len(order))  # row of text i in ``reps``
    return {name: rep[back] for name, rep in reps.items()}


def evaluate_retrieval(model: EvalModel, sources: Sequence[Sequence[int]],
                       targets: Sequence[Sequence[int]], *, levels: Optional[Sequence[str]] = None,
                       max_tokens: Optional[int] = None, batch_size: int = 32) -> RetrievalResult:
    """Sentence retrieval P@1 per level between ``sources[i]`` and its translation ``targets[i]``.

    Args:
        model: the model.
        sources, targets: token ids of each pair's texts (``n >= 2`` pairs, none empty).
        levels: default ``hidden_level_names(model)``.
        max_tokens: texts are cut to ``token_limit(model, max_tokens)`` tokens.
        batch_size: texts per forward pass.

    Raises:
        ValueError: fewer than two pairs, an empty text, or two texts of one side with the same ids
            after the cut (P@1 would be ill-defined).
    """
    if len(sources) != len(targets) or len(sources) < 2:
        raise ValueError(f"expected n >= 2 pairs; got {len(sources)} sources and {len(targets)} targets")
    limit = token_limit(model, max_tokens)
    sources_cut, sources_truncated = truncate_texts(sources, limit)
    targets_cut, targets_truncated = truncate_texts(targets, limit)
    for side, texts in ((SOURCE, sources_cut), (TARGET, targets_cut)):
        duplicate = first_duplicate(texts)
        if duplicate is not None:
            raise ValueError(f"{side} texts {duplicate[0]} and {duplicate[1]} have the same ids "
                             f"(first {limit} tokens): P@1 is ill-defined between them")
    reps = embed_texts(model, sources_cut + targets_cut, levels, batch_size)
    n = len(sources_cut)
    return RetrievalResult(
        pairs=n, truncated=sources_truncated + targets_truncated,
        levels={name: retrieval_p_at_1(rep[:n], rep[n:]) for name, rep in reps.items()})
