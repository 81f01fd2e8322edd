"""The name table and its special cases, on hand-made tensors (no Megatron, no files)."""

import pytest
import torch

from megatron_prealign.conversion.mapping import (
    ConversionError,
    LlamaShape,
    expected_megatron_shapes,
    hf_to_megatron,
    megatron_to_hf,
)


def shape(**overrides):
    base = dict(num_layers=2, hidden_size=16, ffn_hidden_size=24, num_attention_heads=4,
                num_query_groups=2, head_dim=4, vocab_size=37, padded_vocab_size=64,
                tied_embeddings=False)
    base.update(overrides)
    return LlamaShape(**base)


def random_megatron(s: LlamaShape, seed=0):
    g = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(v, generator=g) for k, v in expected_megatron_shapes(s).items()}
    for key in ("embedding.word_embeddings.weight", "output_layer.weight"):
        if key in state:
            state[key][s.vocab_size:] = 0  # padding rows are never trained away from their init
    return state


@pytest.mark.parametrize("s", [shape(), shape(num_query_groups=4), shape(num_query_groups=1),
                               shape(tied_embeddings=True), shape(vocab_size=64)],
                         ids=["gqa", "mha", "mqa", "tied", "unpadded"])
def test_round_trip_is_exact(s):
    state = random_megatron(s)
    state["decoder.layers.0.mlp.linear_fc1._extra_state"] = None  # Megatron's extra state: ignored
    hf = megatron_to_hf(state, s)
    assert ("lm_head.weight" in hf) == (not s.tied_embeddings)
    assert hf["model.embed_tokens.weight"].shape == (s.vocab_size, s.hidden_size)  # padding stripped
    back = hf_to_megatron(hf, s)
    state.pop("decoder.layers.0.mlp.linear_fc1._extra_state")
    assert back.keys() == state.keys()
    for key in state:
        assert torch.equal(back[key], state[key]), key


def test_fused_qkv_is_laid_out_per_query_group():
    """Row (group g, slot j, dim d) of linear_qkv holds 100*g + 10*j + d: q head g*qpg+j must read
    it, k/v head g must read slots qpg and qpg+1 (Megatron's [q..., k, v] per group)."""
    s = shape(num_attention_heads=6, num_query_groups=2, head_dim=3, hidden_size=18)
    qpg, d, h = 3, 3, 18
    code = torch.tensor([[100.0 * g + 10 * j + k for j in range(qpg + 2) for k in range(d)]
                         for g in range(2)]).reshape(-1, 1).expand(-1, h)  # [(nq+2ng)*d, h]
    state = random_megatron(s)
    state["decoder.layers.1.self_attention.linear_qkv.weight"] = code.clone()
    hf = megatron_to_hf(state, s)
    q = hf["model.layers.1.self_attn.q_proj.weight"][:, 0].reshape(6, d)
    k = hf["model.layers.1.self_attn.k_proj.weight"][:, 0].reshape(2, d)
    v = hf["model.layers.1.self_attn.v_proj.weight"][:, 0].reshape(2, d)
    for head in range(6):
        g, j = divmod(head, qpg)
        assert q[head].tolist() == [100 * g + 10 * j + k for k in range(d)]
    for g in range(2):
        assert k[g].tolist() == [100 * g + 10 * qpg + x for x in range(d)]
        assert v[g].tolist() == [100 * g + 10 * (qpg + 1) + x for x in range(d)]


def test_gated_mlp_first_half_is_the_gate():
    s = shape()
    state = random_megatron(s)
    fc1 = state["decoder.layers.0.mlp.linear_fc1.weight"]
    hf = megatron_to_hf(state, s)
    assert torch.equal(hf["model.layers.0.mlp.gate_proj.weight"], fc1[:24])
    assert torch.equal(hf["model.layers.0.mlp.up_proj.weight"], fc1[24:])


def test_import_zero_fills_the_padding_rows():
    s = shape()
    hf = megatron_to_hf(random_megatron(s), s)
    back = hf_to_megatron(hf, s)
    assert back["output_layer.weight"].shape == (64, 16)
    assert back["output_layer.weight"][37:].abs().sum() == 0


def test_unknown_tensor_is_refused_with_its_name():
    s = shape()
    state = random_megatron(s)
    state["decoder.layers.0.self_attention.linear_qkv.bias"] = torch.zeros(32)
    state["decoder.layers.1.self_attention.linear_qkv.bias"] = torch.zeros(32)
    with pytest.raises(ConversionError, match=r"decoder\.layers\.\{layer\}\.self_attention\.linear_qkv\.bias"):
        megatron_to_hf(state, s)


def test_missing_and_misshapen_tensors_are_refused():
    s = shape()
    state = random_megatron(s)
    del state["decoder.layers.1.mlp.linear_fc2.weight"]
    with pytest.raises(ConversionError, match="missing .*linear_fc2"):
        megatron_to_hf(state, s)
    state = random_megatron(s)
    state["decoder.layers.0.self_attention.linear_qkv.weight"] = torch.zeros(48, 16)  # MHA-sized
    with pytest.raises(ConversionError, match=r"linear_qkv.weight has shape \(48, 16\), expected \(32, 16\)"):
        megatron_to_hf(state, s)


def test_tied_import_checks_that_lm_head_is_the_embedding():
    s = shape(tied_embeddings=True)
    hf = megatron_to_hf(random_megatron(s), s)
    hf["lm_head.weight"] = hf["model.embed_tokens.weight"].clone()
    hf_to_megatron(hf, s)  # equal copy: accepted and dropped
    hf["lm_head.weight"][0, 0] += 1
    with pytest.raises(ConversionError, match="tie_word_embeddings"):
        hf_to_megatron(hf, s)
