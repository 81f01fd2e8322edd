"""Tiny Hugging Face Llama models built in-test (random or trained here; nothing downloaded)."""

import torch


def tiny_llama(vocab_size: int, *, hidden: int = 32, layers: int = 1, heads: int = 2,
               seed: int = 0, max_positions: int = 64):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=heads,
                         num_key_value_heads=heads, max_position_embeddings=max_positions,
                         tie_word_embeddings=False)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


@torch.no_grad()
def make_clone_identical(model, base_vocab: int) -> None:
    """English-Clone with a perfect alignment: clone rows [V, 2V) copy English rows [0, V) in the
    embedding and the output layer, so a clone text has exactly the states of its English twin."""
    for weight in (model.model.embed_tokens.weight, model.lm_head.weight):
        weight[base_vocab:2 * base_vocab] = weight[:base_vocab]
