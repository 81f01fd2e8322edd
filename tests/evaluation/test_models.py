"""Level names mean the same thing for Hugging Face and Megatron models."""

import torch

from megatron_prealign.evaluation.models import HFEvalModel
from tests.evaluation.helpers import tiny_llama


def test_hf_levels_are_layer_outputs_not_hidden_states_shifted():
    """HF's last ``hidden_states`` entry already has the final norm: our ``layerN`` must be the raw
    layer output and ``final_norm`` the normalized one."""
    model = tiny_llama(50, layers=3)
    wrapped = HFEvalModel(model)
    tokens = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(0))
    levels = wrapped.hidden_levels(tokens, wrapped.level_names()[:-1])
    assert list(levels) == ["embedding", "layer1", "layer2", "layer3", "final_norm"]
    with torch.no_grad():
        hidden = model(input_ids=tokens, output_hidden_states=True).hidden_states
    assert torch.equal(levels["embedding"], hidden[0])
    assert torch.equal(levels["layer1"], hidden[1]) and torch.equal(levels["layer2"], hidden[2])
    assert torch.equal(levels["final_norm"], hidden[3])  # normalized last layer
    assert not torch.allclose(levels["layer3"], hidden[3])
    assert torch.allclose(levels["final_norm"], model.model.norm(levels["layer3"]))


def test_logits_cover_the_real_vocabulary_only():
    model = tiny_llama(64)
    wrapped = HFEvalModel(model, vocab_size=50)  # e.g. an embedding padded past the tokenizer
    tokens = torch.randint(0, 50, (1, 5))
    assert wrapped.logits(tokens).shape == (1, 5, 50)
    assert wrapped.output_embedding().shape == (50, 32)
