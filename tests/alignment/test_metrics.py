"""Alignment metrics on hand-made cases whose answers are known."""

import math

import pytest
import torch

from megatron_prealign.alignment import alignment_report, level_alignment

NUM_CONCEPTS = 200


def _en_clone(src: torch.Tensor, tgt: torch.Tensor):
    """Stack English rows (concept k = row k) and clone rows (concept k = row k)."""
    reps = torch.cat([src, tgt])  # [2 n, h]
    concepts = torch.arange(src.shape[0]).repeat(2)  # [2 n]
    languages = ["en"] * src.shape[0] + ["clone"] * tgt.shape[0]
    return reps, concepts, languages


def _random(n=NUM_CONCEPTS, h=32, seed=0):
    return torch.randn(n, h, generator=torch.Generator().manual_seed(seed))


def test_identical_representations_are_perfectly_aligned():
    src = _random()
    result = level_alignment(*_en_clone(src, 3.0 * src))  # scale does not matter for cosines
    assert result.p_at_1 == 1.0
    assert result.aligned_cosine == pytest.approx(1.0, abs=1e-6)
    assert result.num_queries == result.num_aligned_pairs == NUM_CONCEPTS
    # Random pairs of independent Gaussian vectors: mean cosine near 0.
    assert abs(result.random_cosine) < 0.02


def test_random_representations_retrieve_at_chance():
    result = level_alignment(*_en_clone(_random(seed=0), _random(seed=1)))
    assert result.p_at_1 < 5.0 / NUM_CONCEPTS  # chance is 1 / 200
    assert abs(result.aligned_cosine) < 0.05


def test_permuted_mapping_gives_zero_precision():
    src = _random()
    derangement = torch.roll(torch.arange(NUM_CONCEPTS), 1)  # concept k's clone sits at k - 1
    result = level_alignment(*_en_clone(src, src[derangement]))
    assert result.p_at_1 == 0.0
    assert result.aligned_cosine < 0.5


def test_exact_cosine_means_on_a_tiny_case():
    # en: a=(1,0), b=(0,1); clone: a'=(1,1), b'=(-1,0). Aligned: a.a'=1/sqrt2, b.b'=0.
    # Non-aligned: a.b'=-1, b.a'=1/sqrt2. Nearest clone word: a -> a' (right), b -> a' (wrong).
    reps = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    result = level_alignment(reps, torch.tensor([0, 1, 0, 1]), ["en", "en", "clone", "clone"])
    assert result.aligned_cosine == pytest.approx(0.5 / math.sqrt(2))
    assert result.random_cosine == pytest.approx((-1 + 1 / math.sqrt(2)) / 2)
    assert result.p_at_1 == 0.5
    # Direction matters: clone -> en retrieves a' -> a (a tie with b, broken towards the lower
    # row: right) and b' -> b (cosine 0 beats -1: right).
    reverse = level_alignment(reps, torch.tensor([0, 1, 0, 1]), ["en", "en", "clone", "clone"],
                              source="clone", target="en")
    assert reverse.p_at_1 == 1.0


def test_multiway_entries_and_words_without_translation():
    # Concept 0 has two clone words; either counts as a hit. Concept 2 has no clone word: not a
    # query. A word of a third language is ignored entirely.
    reps = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7],
                         [0.9, 0.1], [0.1, 0.9], [0.0, 1.0], [1.0, 0.0]])
    concepts = torch.tensor([0, 1, 2, 0, 0, 1, 1])
    languages = ["en", "en", "en", "clone", "clone", "clone", "de"]
    result = level_alignment(reps, concepts, languages)
    assert result.num_queries == 2
    assert result.num_aligned_pairs == 3  # (en0, clone0a), (en0, clone0b), (en1, clone1)
    # en0 -> (0.9, 0.1) right; en1 -> (0, 1) right.
    assert result.p_at_1 == 1.0


def test_report_over_levels_and_empty_quantities():
    src = _random(n=10)
    reps, concepts, languages = _en_clone(src, src)
    report = alignment_report({"embedding": reps, "output": -reps}, concepts, languages)
    assert list(report) == ["embedding", "output"]
    assert report["output"].p_at_1 == 1.0  # negating both languages keeps every cosine
    listed = alignment_report([reps], concepts, languages)
    assert listed["0"] == report["embedding"]
    # No target words at all: nothing to average, NaN rather than a made-up number.
    none = level_alignment(src, torch.arange(10), ["en"] * 10)
    assert math.isnan(none.p_at_1) and math.isnan(none.aligned_cosine)
    assert none.num_queries == 0


def test_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="language"):
        level_alignment(torch.randn(4, 2), torch.arange(4), ["en"] * 3)
