"""The alignment report on hand-made cases: a perfectly aligned clone and an unaligned one."""

import random

import pytest

from megatron_prealign.evaluation.alignment import evaluate_alignment
from megatron_prealign.evaluation.models import HFEvalModel
from tests.evaluation.helpers import make_clone_identical, tiny_llama

V = 40  # English ids [0, 40), clone ids [40, 80)


def clone_entries(num_words=30, seed=0):
    rng = random.Random(seed)
    words = set()
    while len(words) < num_words:
        words.add(tuple(rng.randrange(V) for _ in range(rng.randint(1, 3))))
    return [(c, [w, tuple(i + V for i in w)]) for c, w in enumerate(sorted(words))]


def test_identical_representations_give_p_at_1_of_one_at_every_level():
    model = tiny_llama(2 * V, layers=2)
    make_clone_identical(model, V)
    report = evaluate_alignment(HFEvalModel(model), clone_entries())
    assert list(report) == ["embedding", "layer1", "layer2", "final_norm", "output_embedding"]
    for level, m in report.items():
        assert m.p_at_1 == 1.0, level
        assert m.aligned_cosine == pytest.approx(1.0, abs=1e-5), level
        assert m.random_cosine < 0.9, level
        assert m.num_queries == 30 and m.num_aligned_pairs == 30


def test_unaligned_clone_is_near_chance():
    report = evaluate_alignment(HFEvalModel(tiny_llama(2 * V, layers=2)), clone_entries())
    for level, m in report.items():
        assert m.p_at_1 < 0.3, (level, m.p_at_1)  # chance is 1/30
        assert m.aligned_cosine - m.random_cosine < 0.3, level
