"""The Megatron-Core <-> Hugging Face Llama name table, used in both directions.

One row per weight: a Megatron-Core name (``{layer}`` stands for the 0-based layer number, the same
in both models), the Hugging Face name(s) it becomes, and how the tensor is rearranged. Everything
else is a *named special case*, each one a small invertible function:

``COPY``
    Same tensor under another name (norm weights, ``linear_proj`` -> ``o_proj``, ``linear_fc2`` ->
    ``down_proj``).
``FUSED_QKV``
    Megatron's ``linear_qkv.weight`` is ``[ng * (nq/ng + 2) * d, h]`` with its rows laid out per
    query group ``g`` as ``[q heads of group g (nq/ng * d rows), k_g (d rows), v_g (d rows)]``
    (``nq`` query heads, ``ng`` query groups = key/value heads, ``d`` head dim). Hugging Face keeps
    ``q_proj [nq * d, h]``, ``k_proj [ng * d, h]``, ``v_proj [ng * d, h]``, with query head ``i``
    attending with key/value head ``i // (nq/ng)``, which is exactly the group-major order. Without
    GQA, ``ng == nq`` and every group holds one query head.
``GATED_MLP``
    Megatron's ``linear_fc1.weight`` is ``[2f, h]`` = ``[gate; up]`` (its GLU applies the
    activation to the first half); Hugging Face keeps ``gate_proj`` and ``up_proj`` ``[f, h]``.
``VOCAB_ROWS``
    Megatron pads the vocabulary to a multiple of ``--make-vocab-size-divisible-by`` x TP; the rows
    past the real vocabulary never receive a token. Hugging Face keeps the real vocabulary only:
    padding rows are dropped on export and zero-filled on import.
Tied output
    With tied embeddings (``--no-untie-embeddings-and-output-weights``) Megatron has no
    ``output_layer.weight`` (it reuses the embedding) and Hugging Face sets
    ``tie_word_embeddings`` and stores no ``lm_head.weight``; the ``output_layer`` row of the table
    applies only to untied models.

Both directions check that every source tensor is consumed by exactly one row and that every
produced tensor has the shape the target model expects (``expected_megatron_shapes`` /
``expected_hf_shapes``), so a layout mistake fails loudly instead of converting silently wrong.
"""

from __future__ import annotations

import dataclasses
import re
from argparse import Namespace
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from megatron_prealign.errors import PreAlignError


class ConversionError(PreAlignError, ValueError):
    """A checkpoint that cannot be converted; the message names the flag, key or shape."""


@dataclasses.dataclass(frozen=True)
class LlamaShape:
    """The architecture numbers both sides agree on."""

    num_layers: int
    """Transformer layers (``--num-layers`` / ``num_hidden_layers``)."""
    hidden_size: int
    """Model width ``h``."""
    ffn_hidden_size: int
    """SwiGLU inner width ``f`` (``--ffn-hidden-size`` / ``intermediate_size``)."""
    num_attention_heads: int
    """Query heads ``nq``."""
    num_query_groups: int
    """Key/value heads ``ng`` (``--num-query-groups`` with GQA, else ``nq``)."""
    head_dim: int
    """Per-head width ``d`` (``--kv-channels`` / ``head_dim``)."""
    vocab_size: int
    """Real vocabulary (the tokenizer's; ``2V`` for English-Clone): what Hugging Face keeps."""
    padded_vocab_size: int
    """Megatron's embedding rows, ``>= vocab_size``."""
    tied_embeddings: bool
    """Output layer shares the input embedding."""
    norm_epsilon: float = 1e-5
    """RMSNorm epsilon."""
    rotary_base: float = 10000.0
    """RoPE base (``--rotary-base`` / ``rope_theta``)."""
    max_position_embeddings: int = 2048
    """Longest sequence the model was built for."""

    def __post_init__(self):
        if self.num_attention_heads % self.num_query_groups:
            raise ConversionError(f"{self.num_attention_heads} attention heads are not divisible "
                                  f"by {self.num_query_groups} query groups")
        if self.padded_vocab_size < self.vocab_size:
            raise ConversionError(f"padded vocabulary {self.padded_vocab_size} is smaller than the "
                                  f"vocabulary {self.vocab_size}")

    @property
    def heads_per_group(self) -> int:
        return self.num_attention_heads // self.num_query_groups


# --- the named special cases: (megatron tensor) <-> (hf tensors) ------------------------------

def _copy_to_hf(t: torch.Tensor, shape: LlamaShape) -> List[torch.Tensor]:
    return [t]


def _copy_to_megatron(ts: Sequence[torch.Tensor], shape: LlamaShape) -> torch.Tensor:
    return ts[0]


def _qkv_to_hf(t: torch.Tensor, shape: LlamaShape) -> List[torch.Tensor]:
    ng, qpg, d = shape.num_query_groups, shape.heads_per_group, shape.head_dim
    grouped = t.reshape(ng, qpg + 2, d, t.shape[-1])  # [ng, q heads + k + v, d, h]
    q = grouped[:, :qpg].reshape(ng * qpg * d, -1)  # [nq*d, h], head i = g*qpg + j
    k = grouped[:, qpg].reshape(ng * d, -1)  # [ng*d, h]
    v = grouped[:, qpg + 1].reshape(ng * d, -1)  # [ng*d, h]
    return [q, k, v]


def _qkv_to_megatron(ts: Sequence[torch.Tensor], shape: LlamaShape) -> torch.Tensor:
    q, k, v = ts
    ng, qpg, d = shape.num_query_groups, shape.heads_per_group, shape.head_dim
    h = q.shape[-1]
    grouped = torch.cat([q.reshape(ng, qpg, d, h), k.reshape(ng, 1, d, h), v.reshape(ng, 1, d, h)],
                        dim=1)  # [ng, qpg + 2, d, h]
    return grouped.reshape(ng * (qpg + 2) * d, h)


def _gated_to_hf(t: torch.Tensor, shape: LlamaShape) -> List[torch.Tensor]:
    gate, up = torch.chunk(t, 2, dim=0)  # [f, h] each; Megatron's GLU: act(first) * second
    return [gate, up]


def _gated_to_megatron(ts: Sequence[torch.Tensor], shape: LlamaShape) -> torch.Tensor:
    return torch.cat(list(ts), dim=0)  # [2f, h]


def _vocab_to_hf(t: torch.Tensor, shape: LlamaShape) -> List[torch.Tensor]:
    return [t[: shape.vocab_size]]  # drop Megatron's padding rows


def _vocab_to_megatron(ts: Sequence[torch.Tensor], shape: LlamaShape) -> torch.Tensor:
    t = ts[0]
    padded = t.new_zeros(shape.padded_vocab_size, t.shape[1])  # [V_pad, h]
    padded[: t.shape[0]] = t
    return padded


@dataclasses.dataclass(frozen=True)
class Transform:
    name: str
    to_hf: Callable[[torch.Tensor, LlamaShape], List[torch.Tensor]]
    to_megatron: Callable[[Sequence[torch.Tensor], LlamaShape], torch.Tensor]


COPY = Transform("copy", _copy_to_hf, _copy_to_megatron)
FUSED_QKV = Transform("fused_qkv", _qkv_to_hf, _qkv_to_megatron)
GATED_MLP = Transform("gated_mlp", _gated_to_hf, _gated_to_megatron)
VOCAB_ROWS = Transform("vocab_rows", _vocab_to_hf, _vocab_to_megatron)


@dataclasses.dataclass(frozen=True)
class Rule:
    megatron: str
    hf: Tuple[str, ...]
    transform: Transform
    untied_only: bool = False


_L = "decoder.layers.{layer}."
_H = "model.layers.{layer}."

TABLE: Tuple[Rule, ...] = (
    Rule("embedding.word_embeddings.weight", ("model.embed_tokens.weight",), VOCAB_ROWS),
    Rule(_L + "input_layernorm.weight", (_H + "input_layernorm.weight",), COPY),
    Rule(_L + "self_attention.linear_qkv.weight",
         (_H + "self_attn.q_proj.weight", _H + "self_attn.k_proj.weight",
          _H + "self_attn.v_proj.weight"), FUSED_QKV),
    Rule(_L + "self_attention.linear_proj.weight", (_H + "self_attn.o_proj.weight",), COPY),
    Rule(_L + "pre_mlp_layernorm.weight", (_H + "post_attention_layernorm.weight",), COPY),
    Rule(_L + "mlp.linear_fc1.weight", (_H + "mlp.gate_proj.weight", _H + "mlp.up_proj.weight"),
         GATED_MLP),
    Rule(_L + "mlp.linear_fc2.weight", (_H + "mlp.down_proj.weight",), COPY),
    Rule("decoder.final_layernorm.weight", ("model.norm.weight",), COPY),
    Rule("output_layer.weight", ("lm_head.weight",), VOCAB_ROWS, untied_only=True),
)
"""Megatron-Core (local or Transformer Engine spec, loaded at TP=1/PP=1) <-> ``LlamaForCausalLM``."""


def _expand(pattern: str, layer: Optional[int]) -> str:
    return pattern.replace("{layer}", str(layer)) if layer is not None else pattern


def _instances(rule: Rule, shape: LlamaShape):
    """(megatron name, hf names) for every layer the rule covers."""
    if rule.untied_only and shape.tied_embeddings:
        return []
    layers = range(shape.num_layers) if "{layer}" in rule.megatron else [None]
    return [(_expand(rule.megatron, i), tuple(_expand(n, i) for n in rule.hf)) for i in layers]


def expected_megatron_shapes(shape: LlamaShape) -> Dict[str, Tuple[int, ...]]:
    """Every Megatron-Core weight of this architecture (TP=1/PP=1 names) and its shape."""
    h, f, d = shape.hidden_size, shape.ffn_hidden_size, shape.head_dim
    nq, ng = shape.num_attention_heads, shape.num_query_groups
    per_rule = {
        "embedding.word_embeddings.weight": (shape.padded_vocab_size, h),
        "input_layernorm.weight": (h,),
        "linear_qkv.weight": ((nq + 2 * ng) * d, h),
        "linear_proj.weight": (h, nq * d),
        "pre_mlp_layernorm.weight": (h,),
        "linear_fc1.weight": (2 * f, h),
        "linear_fc2.weight": (h, f),
        "decoder.final_layernorm.weight": (h,),
        "output_layer.weight": (shape.padded_vocab_size, h),
    }
    out = {}
    for rule in TABLE:
        for name, _ in _instances(rule, shape):
            out[name] = next(v for k, v in per_rule.items() if name.endswith(k))
    return out


def expected_hf_shapes(shape: LlamaShape) -> Dict[str, Tuple[int, ...]]:
    """Every ``LlamaForCausalLM`` weight of this architecture and its shape."""
    h, f, d = shape.hidden_size, shape.ffn_hidden_size, shape.head_dim
    nq, ng, v = shape.num_attention_heads, shape.num_query_groups, shape.vocab_size
    per_suffix = {
        "embed_tokens.weight": (v, h), "input_layernorm.weight": (h,), "q_proj.weight": (nq * d, h),
        "k_proj.weight": (ng * d, h), "v_proj.weight": (ng * d, h), "o_proj.weight": (h, nq * d),
        "post_attention_layernorm.weight": (h,), "gate_proj.weight": (f, h),
        "up_proj.weight": (f, h), "down_proj.weight": (h, f), "model.norm.weight": (h,),
        "lm_head.weight": (v, h),
    }
    out = {}
    for rule in TABLE:
        for _, names in _instances(rule, shape):
            for name in names:
                out[name] = next(s for k, s in per_suffix.items() if name.endswith(k))
    return out


def _check_shapes(produced: Mapping[str, torch.Tensor], expected: Mapping[str, Tuple[int, ...]],
                  side: str) -> None:
    missing = [name for name in expected if name not in produced]
    if missing:
        patterns = sorted({layer_pattern(n) for n in missing})
        raise ConversionError(f"{side} weights are missing {len(missing)} tensor(s): "
                              f"{', '.join(patterns[:8])}; the checkpoint does not match the "
                              "architecture it declares")
    for name, want in expected.items():
        got = tuple(produced[name].shape)
        if got != want:
            raise ConversionError(f"{side} tensor {name} has shape {got}, expected {want} for this "
                                  "architecture")


def _unknown(names, side: str, hint: str) -> ConversionError:
    patterns = sorted({layer_pattern(n) for n in names})
    listed = ", ".join(patterns[:8])
    return ConversionError(f"{len(names)} {side} tensor(s) have no row in the conversion table: "
                           f"{listed}{' ...' if len(patterns) > 8 else ''}. {hint}")


def megatron_to_hf(state: Mapping[str, torch.Tensor], shape: LlamaShape) -> Dict[str, torch.Tensor]:
    """Convert a full (TP=1/PP=1) Megatron-Core state dict to ``LlamaForCausalLM`` names.

    Args:
        state: Megatron-Core weights; ``_extra_state`` entries are ignored.
        shape: the architecture.

    Returns:
        The Hugging Face state dict (contiguous tensors, no ``lm_head.weight`` when tied).

    Raises:
        ConversionError: unknown, missing or misshapen tensors.
    """
    weights = {k: v for k, v in state.items() if not k.endswith("._extra_state")}
    _check_shapes(weights, expected_megatron_shapes(shape), "Megatron")
    out: Dict[str, torch.Tensor] = {}
    used = set()
    for rule in TABLE:
        for mname, hnames in _instances(rule, shape):
            for hname, tensor in zip(hnames, rule.transform.to_hf(weights[mname], shape)):
                out[hname] = tensor.contiguous()
            used.add(mname)
    leftover = set(weights) - used
    if leftover:
        raise _unknown(leftover, "Megatron", "Biases, QK-norm or other extras cannot be written as "
                       "a Llama model.")
    _check_shapes(out, expected_hf_shapes(shape), "Hugging Face")
    return out


def hf_to_megatron(state: Mapping[str, torch.Tensor], shape: LlamaShape) -> Dict[str, torch.Tensor]:
    """Convert ``LlamaForCausalLM`` weights to full (TP=1/PP=1) Megatron-Core names.

    With tied embeddings a stored ``lm_head.weight`` must equal the embedding and is dropped;
    rotary ``inv_freq`` buffers are ignored (recomputed from ``rotary_base``).
    """
    weights = {k: v for k, v in state.items() if not k.endswith("rotary_emb.inv_freq")}
    if shape.tied_embeddings and "lm_head.weight" in weights:
        if not torch.equal(weights["lm_head.weight"], weights["model.embed_tokens.weight"]):
            raise ConversionError("tie_word_embeddings is set but lm_head.weight differs from "
                                  "model.embed_tokens.weight")
        weights.pop("lm_head.weight")
    _check_shapes(weights, expected_hf_shapes(shape), "Hugging Face")
    out: Dict[str, torch.Tensor] = {}
    used = set()
    for rule in TABLE:
        for mname, hnames in _instances(rule, shape):
            out[mname] = rule.transform.to_megatron([weights[n] for n in hnames], shape).contiguous()
            used.update(hnames)
    leftover = set(weights) - used
    if leftover:
        raise _unknown(leftover, "Hugging Face", "Only bias-free LlamaForCausalLM models convert.")
    _check_shapes(out, expected_megatron_shapes(shape), "Megatron")
    return out


def layer_pattern(name: str) -> str:
    """A table-style name for messages: ``decoder.layers.3.x`` -> ``decoder.layers.{layer}.x``."""
    return re.sub(r"layers\.\d+\.", "layers.{layer}.", name)


def llama_shape(args: Namespace, vocab_size: int) -> LlamaShape:
    """The architecture numbers of a run (its flags) for the conversion table."""
    return LlamaShape(
        num_layers=args.num_layers,
        hidden_size=args.hidden_size,
        ffn_hidden_size=args.ffn_hidden_size,
        num_attention_heads=args.num_attention_heads,
        num_query_groups=args.num_query_groups if args.group_query_attention
        else args.num_attention_heads,
        head_dim=args.kv_channels,
        vocab_size=vocab_size,
        padded_vocab_size=args.padded_vocab_size,
        tied_embeddings=not args.untie_embeddings_and_output_weights,
        norm_epsilon=args.norm_epsilon,
        rotary_base=float(args.rotary_base),
        max_position_embeddings=args.max_position_embeddings,
    )
