"""Single-process tests of the contrastive loss and the pooling (the multi-rank ones are in
test_distributed.py)."""

import pytest
import torch

from megatron_prealign.alignment import (
    AlignmentLossConfig,
    alignment_loss,
    masked_mean_pool,
    pool_output_embedding,
)
from tests.alignment.reference import reference_alignment_loss, reference_mean_pool

# Groups of 3, 2, 1, 3, 1 words: several positives per anchor, and two words without a positive.
CONCEPTS = torch.tensor([7, 7, 7, 2, 2, 5, 9, 9, 9, 4])


NUM_CONCEPT_WORDS = len(CONCEPTS)


def _random_levels(num_levels=2, num_words=NUM_CONCEPT_WORDS, hidden=6, offset=0.0, seed=0,
                   dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(num_words, hidden, generator=gen, dtype=torch.float64) + offset)
            .to(dtype).requires_grad_() for _ in range(num_levels)]


def _grads(loss, tensors):
    return torch.autograd.grad(loss, tensors)


@pytest.mark.parametrize("anti_collapse_weight", [0.0, 0.5])
def test_loss_and_gradients_match_reference(anti_collapse_weight):
    # The offset makes the mean off-diagonal cosine positive, so the anti-collapse term is active.
    levels = _random_levels(offset=0.8)
    assert (torch.nn.functional.normalize(levels[0], dim=-1).sum(0).norm() ** 2
            > len(CONCEPTS)), "test data must have a positive mean cosine"
    out = alignment_loss(levels, CONCEPTS, temperature=0.1,
                         anti_collapse_weight=anti_collapse_weight)
    ref = reference_alignment_loss(levels, CONCEPTS.tolist(), 0.1, anti_collapse_weight)
    torch.testing.assert_close(out.loss, ref, rtol=1e-12, atol=1e-12)
    for got, want in zip(_grads(out.loss, levels), _grads(ref, levels)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    assert int(out.num_anchors) == 8


def test_levels_are_averaged_and_named():
    levels = _random_levels(num_levels=3)
    as_list = alignment_loss(levels, CONCEPTS)
    as_dict = alignment_loss(dict(zip(["embedding", "layer_1", "output"], levels)), CONCEPTS)
    assert list(as_dict.per_level) == ["embedding", "layer_1", "output"]
    assert list(as_list.per_level) == ["0", "1", "2"]
    torch.testing.assert_close(as_dict.loss, as_list.loss, rtol=0, atol=0)
    torch.testing.assert_close(as_dict.loss, torch.stack(list(as_dict.per_level.values())).mean())
    for name, rep in zip(as_list.per_level, levels):
        torch.testing.assert_close(as_list.per_level[name],
                                   reference_alignment_loss([rep], CONCEPTS.tolist(), 0.1))


def test_temperature_is_applied():
    levels = _random_levels(num_levels=1)
    for tau in (0.05, 1.0):
        torch.testing.assert_close(alignment_loss(levels, CONCEPTS, temperature=tau).loss,
                                   reference_alignment_loss(levels, CONCEPTS.tolist(), tau))


def test_anti_collapse_is_zero_when_vectors_point_apart():
    # Two opposite vectors per concept: the mean off-diagonal cosine is negative, max(0, .) is 0.
    rep = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], dtype=torch.float64)
    ids = torch.tensor([0, 0, 1, 1])
    with_term = alignment_loss([rep], ids, anti_collapse_weight=10.0).loss
    torch.testing.assert_close(with_term, alignment_loss([rep], ids).loss, rtol=0, atol=0)


def test_words_without_positive_are_negatives_but_not_anchors():
    levels = _random_levels(num_levels=1)
    out = alignment_loss(levels, CONCEPTS)
    assert int(out.num_anchors) == 8  # words 5 and 9 have no positive
    (grad,) = _grads(out.loss, levels)
    # ... yet they sit in every anchor's denominator, so they are pushed away (nonzero gradient).
    assert grad[5].abs().sum() > 1e-3 and grad[9].abs().sum() > 1e-3


@pytest.mark.parametrize("concepts, anti_collapse_weight", [([3], 0.5), ([1, 2, 3, 4], 0.0)],
                         ids=["one-word", "all-singletons"])
def test_batches_without_anchors_give_zero_loss_and_zero_grads(concepts, anti_collapse_weight):
    # Documented behaviour: no anchor -> loss 0, gradients exactly zero (and finite), no error.
    # One word has no pair either, so its anti-collapse term is 0 too.
    ids = torch.tensor(concepts)
    levels = _random_levels(num_words=len(concepts), dtype=torch.float32)
    out = alignment_loss(levels, ids, anti_collapse_weight=anti_collapse_weight)
    assert out.loss.item() == 0.0 and int(out.num_anchors) == 0
    for grad in _grads(out.loss, levels):
        assert torch.isfinite(grad).all() and (grad == 0).all()


def test_bf16_inputs_are_computed_in_fp32():
    levels = _random_levels(num_words=len(CONCEPTS), hidden=64, dtype=torch.bfloat16, offset=0.3)
    out = alignment_loss(levels, CONCEPTS, temperature=0.05, anti_collapse_weight=0.5)
    assert out.loss.dtype == torch.float32
    # Reference on exactly the bf16 values, in fp64: the only difference left is arithmetic. A
    # bf16 computation is off by ~1e-2 relative here; fp32 accumulation by ~1e-6.
    exact = [rep.detach().double().requires_grad_() for rep in levels]
    ref = reference_alignment_loss(exact, CONCEPTS.tolist(), 0.05, 0.5)
    torch.testing.assert_close(out.loss.double(), ref, rtol=2e-6, atol=1e-6)
    for got, want in zip(_grads(out.loss, levels), _grads(ref, exact)):
        assert got.dtype == torch.bfloat16
        # The gradient is handed back in bf16: compare within bf16 rounding of the exact one.
        torch.testing.assert_close(got.double(), want.to(torch.bfloat16).double(),
                                   rtol=1.6e-2, atol=1e-5)


def test_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="level '0' has shape"):
        alignment_loss([torch.randn(3, 4)], torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="at least one level"):
        alignment_loss([], torch.tensor([0, 0]))


@pytest.mark.parametrize("seq_first", [True, False])
def test_mean_pool_excludes_padding(seq_first):
    gen = torch.Generator().manual_seed(1)
    b, s, h = 4, 5, 3
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 0, 0]])
    hidden_bsh = torch.randn(b, s, h, generator=gen, dtype=torch.float64)
    layout = (lambda x: x.transpose(0, 1)) if seq_first else (lambda x: x)
    hidden = layout(hidden_bsh).clone().requires_grad_()  # [s, b, h] or [b, s, h]
    pooled = masked_mean_pool(hidden, mask, seq_first=seq_first)
    torch.testing.assert_close(pooled, reference_mean_pool(hidden_bsh, mask))
    torch.testing.assert_close(pooled.norm(dim=-1), torch.ones(b, dtype=torch.float64))

    # Garbage (even inf) at padded positions changes neither the vectors nor the loss.
    garbage_bsh = hidden_bsh.clone()
    garbage_bsh[~mask.bool()] = float("inf")
    garbage_bsh[1, 3] = -1e6
    torch.testing.assert_close(masked_mean_pool(layout(garbage_bsh), mask, seq_first=seq_first),
                               pooled)
    loss = alignment_loss([pooled], torch.tensor([0, 0, 1, 1])).loss
    (grad,) = _grads(loss, [hidden])
    grad_bsh = grad.transpose(0, 1) if seq_first else grad
    assert (grad_bsh[~mask.bool()] == 0).all() and (grad_bsh[mask.bool()] != 0).any()


def test_mean_pool_bf16_accumulates_in_fp32():
    hidden = torch.randn(30, 2, 16, dtype=torch.float64).to(torch.bfloat16)  # [s, b, h]
    mask = torch.ones(2, 30)
    pooled = masked_mean_pool(hidden, mask)
    assert pooled.dtype == torch.float32
    torch.testing.assert_close(pooled.double(),
                               reference_mean_pool(hidden.double().transpose(0, 1), mask),
                               rtol=1e-6, atol=1e-6)


def test_output_embedding_pool_is_mean_of_rows():
    gen = torch.Generator().manual_seed(2)
    weight = torch.randn(11, 4, generator=gen, dtype=torch.float64)  # [V, h]
    ids = torch.tensor([[3, 5, 0], [10, 10, 2], [7, 1, 1]])  # [b, s]
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0]])
    expected = reference_mean_pool(weight[ids], mask)
    torch.testing.assert_close(pool_output_embedding(ids, mask, weight), expected)


def test_config_defaults_validation_and_combine():
    config = AlignmentLossConfig()
    assert (config.alignment_alpha, config.alignment_lm_weight, config.alignment_temperature,
            config.alignment_anti_collapse_weight) == (0.1, 1.0, 0.1, 0.0)
    total = config.combine(torch.tensor(2.0), torch.tensor(3.0))
    torch.testing.assert_close(total, torch.tensor(0.1 * 2.0 + 3.0))
    with pytest.raises(ValueError, match="alignment_temperature"):
        AlignmentLossConfig(alignment_temperature=0.0)
    with pytest.raises(ValueError, match="alignment_alpha"):
        AlignmentLossConfig(alignment_alpha=-1.0)
    with pytest.raises(ValueError, match="alignment_anti_collapse_weight"):
        AlignmentLossConfig(alignment_anti_collapse_weight=float("nan"))
    with pytest.raises(ValueError, match="alignment_alpha and alignment_lm_weight"):
        AlignmentLossConfig(alignment_alpha=0.0, alignment_lm_weight=0.0)
