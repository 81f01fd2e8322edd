"""Zero-shot transfer on hand-made cases: an identical clone transfers fully, a random one not."""

import random

import pytest
import torch

from megatron_prealign.evaluation.models import EvalModel, HFEvalModel
from megatron_prealign.evaluation.transfer import (
    FineTuneConfig,
    ProbeConfig,
    fine_tuned_transfer,
    pooled_features,
    train_probe,
    zero_shot_transfer,
)
from tests.evaluation.helpers import make_clone_identical, tiny_llama

V = 40


def task(n, seed, shift=0):
    """Label 1: texts drawn from ids 0-9, label 0: from ids 10-19 (plus shared ids 20-29)."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        pool = list(range(0, 10) if label else range(10, 20)) + list(range(20, 30))
        texts.append([rng.choice(pool) + shift for _ in range(rng.randint(4, 8))])
        labels.append(label)
    return texts, labels


def sets():
    train, source = task(60, 0), task(40, 1)
    target = ([[t + V for t in text] for text in source[0]], source[1])  # the clone of the A test
    return train, source, target


def test_identical_clone_transfers_everything():
    model = tiny_llama(2 * V, layers=2)
    make_clone_identical(model, V)
    result = zero_shot_transfer(HFEvalModel(model), *sets())
    assert result["source_accuracy"] >= 0.9, result
    assert result["target_accuracy"] == result["source_accuracy"]
    assert result["chance"] == 0.5 and result["num_classes"] == 2 and result["level"] == "final_norm"


def test_unaligned_clone_transfers_near_chance_and_is_deterministic():
    model = HFEvalModel(tiny_llama(2 * V, layers=2))
    result = zero_shot_transfer(model, *sets())
    assert result["source_accuracy"] >= 0.9, result
    assert result["target_accuracy"] <= 0.75, result
    assert zero_shot_transfer(model, *sets()) == result


def test_probe_learns_a_separable_problem_and_reads_the_chosen_level():
    features = torch.cat([torch.randn(20, 5) + 3, torch.randn(20, 5) - 3])
    labels = [1] * 20 + [0] * 20
    probe = train_probe(features, labels, 2, ProbeConfig(steps=100))
    assert probe.accuracy(features, labels) == 1.0
    model = HFEvalModel(tiny_llama(2 * V, layers=2))
    texts, _ = task(4, 2)
    emb = pooled_features(model, texts, "embedding")
    first = torch.tensor(texts[0])
    assert torch.allclose(emb[0], model.model.model.embed_tokens.weight[first].mean(0), atol=1e-6)
    assert not torch.allclose(emb, pooled_features(model, texts, "final_norm"))
    with pytest.raises(ValueError):
        ProbeConfig(steps=0)


def test_more_levels_are_probed_from_the_same_pass_and_the_headline_stays_as_it_was():
    model = HFEvalModel(tiny_llama(2 * V, layers=2))
    alone = zero_shot_transfer(model, *sets())
    result = zero_shot_transfer(model, *sets(), more_levels=["layer1", "final_norm", "embedding"])
    assert list(result["levels"]) == ["final_norm", "layer1", "embedding"]
    assert {k: v for k, v in result.items() if k != "levels"} == alone
    assert result["levels"]["final_norm"]["target_accuracy"] == alone["target_accuracy"]
    embedding = zero_shot_transfer(model, *sets(), ProbeConfig(level="embedding"))
    assert result["levels"]["embedding"]["source_accuracy"] == embedding["source_accuracy"]
    # The embedding of an unaligned clone's words is random: nothing transfers there.
    assert result["levels"]["embedding"]["target_accuracy"] <= 0.75


def test_fine_tuning_learns_the_task_in_a_copy_and_is_deterministic():
    model = HFEvalModel(tiny_llama(2 * V, layers=2))
    before = {k: v.clone() for k, v in model.model.state_dict().items()}
    config = FineTuneConfig(steps=60, lr=1e-3, head_lr=1e-2)
    result = fine_tuned_transfer(model, *sets(), config)
    assert result["mode"] == "finetune" and result["level"] == "final_norm"
    assert result["source_accuracy"] >= 0.9, result
    assert result["target_accuracy"] <= 0.75, result  # an unaligned clone: near chance
    assert fine_tuned_transfer(model, *sets(), config) == result
    assert all(torch.equal(before[k], v) for k, v in model.model.state_dict().items())


def test_fine_tuning_with_frozen_embeddings_transfers_an_identical_clone_fully():
    model = tiny_llama(2 * V, layers=2)
    make_clone_identical(model, V)
    config = FineTuneConfig(steps=60, lr=1e-3, head_lr=1e-2, freeze_embeddings=True)
    result = fine_tuned_transfer(HFEvalModel(model), *sets(), config)
    assert result["source_accuracy"] >= 0.9 and result["target_accuracy"] == result["source_accuracy"], result


def test_fine_tuning_needs_a_hugging_face_model():
    class Megatron(EvalModel):
        kind, name = "megatron", "ckpt"

    with pytest.raises(ValueError, match="ckpt is a megatron checkpoint: convert it"):
        fine_tuned_transfer(Megatron(), *sets())
    with pytest.raises(ValueError, match="steps >= 1"):
        FineTuneConfig(steps=0)
