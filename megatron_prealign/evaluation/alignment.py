"""Alignment report of a trained model: per level, aligned vs random cosine and translation P@1.

The same measurement as the training-time evaluator (``training.align.AlignmentEvaluator``), on
any ``EvalModel``: every dictionary word is encoded on its own (word-initial form, no context, as
in stage 1), mean-pooled over its tokens and L2-normalized at each level
(``alignment.pooling``), and ``alignment.metrics.alignment_report`` compares the first word of
every entry (source language) with the other words (target language). Levels are named as in
stage 1: ``embedding``, ``layer1..layerN``, ``final_norm``, ``output_embedding``.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch

from megatron_prealign.alignment.metrics import LevelAlignment, alignment_report
from megatron_prealign.alignment.pooling import masked_mean_pool, pool_output_embedding
from megatron_prealign.evaluation.models import EvalModel
from megatron_prealign.text.dictionary import load_dictionary, tokenize_dictionary

SOURCE, TARGET = "source", "target"  # first word of an entry vs the others

Entry = Tuple[int, List[Tuple[int, ...]]]  # (concept id, words as token-id tuples)


def load_dictionary_entries(path: str, tokenizer, *, max_tokens: int = 30,
                            max_words: Optional[int] = None) -> List[Entry]:
    """A dictionary file (pairs or multi-way JSONL, ``text.dictionary``) -> entries of token ids.

    Whole entries are kept until ``max_words`` words are reached.
    """
    tokenized = tokenize_dictionary(load_dictionary(path), tokenizer, max_tokens=max_tokens)
    entries: List[Entry] = []
    words = 0
    for concept, ids in enumerate(tokenized.id_concepts()):
        if max_words is not None and words + len(ids) > max_words:
            break
        entries.append((concept, [tuple(w) for w in ids]))
        words += len(ids)
    return entries


@torch.no_grad()
def word_representations(model: EvalModel, entries: Sequence[Entry],
                         levels: Optional[Sequence[str]] = None, batch_words: int = 256):
    """Pooled unit vectors of every dictionary word at every level.

    Returns:
        (reps, concept_ids, languages): ``{level: [n_words, h]}``, ``[n_words]`` concept ids, and
        ``SOURCE``/``TARGET`` per word.
    """
    levels = list(levels or model.level_names())
    hidden = [name for name in levels if name != "output_embedding"]
    words = [(concept, position, ids) for concept, entry in entries
             for position, ids in enumerate(entry)]
    if not words:
        raise ValueError("no dictionary word to represent")
    per_level: Dict[str, List[torch.Tensor]] = {name: [] for name in levels}
    for start in range(0, len(words), batch_words):
        chunk = words[start:start + batch_words]
        length = max(len(ids) for _, _, ids in chunk)
        tokens = torch.zeros(len(chunk), length, dtype=torch.long)  # [n, s], right-padded
        mask = torch.zeros(len(chunk), length)
        for row, (_, _, ids) in enumerate(chunk):
            tokens[row, :len(ids)] = torch.tensor(ids)
            mask[row, :len(ids)] = 1.0
        states = model.hidden_levels(tokens, hidden) if hidden else {}
        for name in hidden:
            per_level[name].append(masked_mean_pool(states[name], mask, seq_first=False))  # [n, h]
        if "output_embedding" in levels:
            per_level["output_embedding"].append(
                pool_output_embedding(tokens, mask, model.output_embedding()))  # [n, h]
    reps = {name: torch.cat(chunks) for name, chunks in per_level.items()}
    concept_ids = torch.tensor([c for c, _, _ in words], dtype=torch.long)
    languages = [SOURCE if position == 0 else TARGET for _, position, _ in words]
    return reps, concept_ids, languages


def evaluate_alignment(model: EvalModel, entries: Sequence[Entry],
                       levels: Optional[Sequence[str]] = None) -> Dict[str, LevelAlignment]:
    """``{level: LevelAlignment}`` (aligned/random cosine, P@1 source -> target), in model order."""
    reps, concept_ids, languages = word_representations(model, entries, levels)
    return alignment_report(reps, concept_ids, languages, SOURCE, TARGET)
