"""The Hugging Face side: what a Llama can represent, its config, and its files.

A converted directory holds what ``AutoModelForCausalLM.from_pretrained(dir)`` and
``AutoTokenizer.from_pretrained(dir)`` read offline::

    config.json               LlamaConfig (plus a top-level ``rope_theta`` for transformers 4.x)
    generation_config.json    bos/eos/pad ids
    model.safetensors         weights under LlamaForCausalLM names (no lm_head when tied)
    tokenizer.json, tokenizer_config.json [, tokenizer.model]   see ``conversion.tokenizer``
    prealign_conversion.json  ours: source checkpoint, iteration, vocabulary sizes (real, padded,
                              English-Clone base V), tokenizer kind, and the parity check result

Megatron-Core features a Llama cannot hold are refused by ``check_llama_representable`` with the
flag that selected them, before any weight is read.
"""

from __future__ import annotations

import json
import os
from argparse import Namespace
from typing import Dict, Optional, Tuple

import torch

from megatron_prealign.conversion.mapping import ConversionError, LlamaShape

CONVERSION_META = "prealign_conversion.json"
CONVERSION_FORMAT = "megatron-prealign/hf-conversion/v1"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_llama_representable(args: Namespace) -> None:
    """Raise ``ConversionError`` naming the flag if the run's model is not a Llama.

    Hugging Face ``LlamaForCausalLM`` is: rotary positions over the whole head (rotate-half, which
    is Megatron's default, non-interleaved RoPE), RMSNorm, a SwiGLU MLP, no biases here, and a
    hidden size divisible by the number of heads (its config validation requires it).
    """
    problems = []
    if getattr(args, "position_embedding_type", "rope") != "rope":
        problems.append(f"--position-embedding-type {args.position_embedding_type}: Llama has "
                        "rotary position embeddings only (--position-embedding-type rope)")
    if float(getattr(args, "rotary_percent", 1.0)) != 1.0:
        problems.append(f"--rotary-percent {args.rotary_percent}: Llama rotates the whole head "
                        "(--rotary-percent 1.0)")
    if getattr(args, "normalization", "RMSNorm") != "RMSNorm":
        problems.append(f"--normalization {args.normalization}: Llama uses RMSNorm")
    if not getattr(args, "swiglu", True):
        problems.append("--no-swiglu (GeLU MLP): Llama's MLP is SwiGLU (--swiglu)")
    if not getattr(args, "disable_bias_linear", True):
        problems.append("--no-disable-bias-linear (linear biases): this converter writes bias-free "
                        "Llama weights (--disable-bias-linear)")
    if args.hidden_size % args.num_attention_heads:
        problems.append(f"--hidden-size {args.hidden_size} is not divisible by "
                        f"--num-attention-heads {args.num_attention_heads}: transformers' "
                        "LlamaConfig refuses that")
    if problems:
        raise ConversionError("this checkpoint cannot be written as a Hugging Face "
                              "LlamaForCausalLM:\n  " + "\n  ".join(problems))


def llama_config(shape: LlamaShape, dtype: torch.dtype, special_ids: Dict[str, Optional[int]]):
    """The ``transformers.LlamaConfig`` of ``shape``."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=shape.vocab_size,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.ffn_hidden_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_query_groups,
        head_dim=shape.head_dim,
        hidden_act="silu",
        max_position_embeddings=shape.max_position_embeddings,
        rms_norm_eps=shape.norm_epsilon,
        rope_theta=shape.rotary_base,
        tie_word_embeddings=shape.tied_embeddings,
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=special_ids.get("bos"),
        eos_token_id=special_ids.get("eos"),
        pad_token_id=special_ids.get("pad"),
        dtype={torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[dtype],
        architectures=["LlamaForCausalLM"],
    )


def write_hf_model(weights: Dict[str, torch.Tensor], shape: LlamaShape, out_dir: str,
                   dtype: torch.dtype, special_ids: Dict[str, Optional[int]]) -> None:
    """Write ``config.json``, ``generation_config.json`` and ``model.safetensors``."""
    from safetensors.torch import save_file
    from transformers import GenerationConfig

    os.makedirs(out_dir, exist_ok=True)
    config = llama_config(shape, dtype, special_ids)
    config.save_pretrained(out_dir)
    # transformers 4.x reads rope_theta / torch_dtype at the top level; 5.x reads rope_parameters.
    path = os.path.join(out_dir, "config.json")
    with open(path) as f:
        data = json.load(f)
    data.setdefault("rope_theta", shape.rotary_base)
    data.setdefault("torch_dtype", data.get("dtype"))
    with open(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    GenerationConfig(bos_token_id=special_ids.get("bos"), eos_token_id=special_ids.get("eos"),
                     pad_token_id=special_ids.get("pad")).save_pretrained(out_dir)
    tensors = {k: v.detach().to(dtype).contiguous() for k, v in weights.items()}
    save_file(tensors, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})


def read_hf_weights(hf_dir: str) -> Dict[str, torch.Tensor]:
    """All tensors of a local Hugging Face directory (one or several safetensors files)."""
    from safetensors.torch import load_file

    files = sorted(f for f in os.listdir(hf_dir) if f.endswith(".safetensors"))
    if not files:
        raise ConversionError(f"{hf_dir}: no *.safetensors weights (PyTorch .bin files are not read: "
                              "re-save the model with save_pretrained(safe_serialization=True))")
    weights: Dict[str, torch.Tensor] = {}
    for name in files:
        weights.update(load_file(os.path.join(hf_dir, name)))
    return weights


def shape_from_hf_config(hf_dir: str, vocab_size: int, padded_vocab_size: int) -> Tuple[LlamaShape, object]:
    """(shape, config) of a local ``LlamaForCausalLM`` directory; refuses what Megatron cannot hold.

    Args:
        hf_dir: the directory (``config.json``).
        vocab_size: the rows the Hugging Face embedding holds (``config.vocab_size``).
        padded_vocab_size: Megatron's padded rows.
    """
    from transformers import AutoConfig

    if not os.path.isfile(os.path.join(hf_dir, "config.json")):
        raise ConversionError(f"{hf_dir}: no config.json (not a Hugging Face model directory)")
    config = AutoConfig.from_pretrained(hf_dir, local_files_only=True)
    problems = []
    if config.model_type != "llama":
        problems.append(f"model_type {config.model_type!r}: only LlamaForCausalLM converts")
    if getattr(config, "hidden_act", "silu") != "silu":
        problems.append(f"hidden_act {config.hidden_act!r}: Megatron's --swiglu uses silu")
    for flag in ("attention_bias", "mlp_bias"):
        if getattr(config, flag, False):
            problems.append(f"{flag}=true: biases are not converted")
    rope = dict(getattr(config, "rope_parameters", None) or {})
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        problems.append(f"rope type {rope_type!r} (RoPE scaling): Megatron's --rotary-base RoPE is "
                        "the default type only")
    theta = float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0)))
    if theta != int(theta):
        problems.append(f"rope_theta {theta} is not an integer (--rotary-base takes integers)")
    if getattr(config, "pretraining_tp", 1) not in (None, 1):
        problems.append(f"pretraining_tp {config.pretraining_tp}: not supported")
    if problems:
        raise ConversionError(f"{hf_dir} cannot be converted to a Megatron checkpoint:\n  " +
                              "\n  ".join(problems))
    heads = config.num_attention_heads
    shape = LlamaShape(
        num_layers=config.num_hidden_layers,
        hidden_size=config.hidden_size,
        ffn_hidden_size=config.intermediate_size,
        num_attention_heads=heads,
        num_query_groups=config.num_key_value_heads or heads,
        head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
        vocab_size=vocab_size,
        padded_vocab_size=padded_vocab_size,
        tied_embeddings=bool(config.tie_word_embeddings),
        norm_epsilon=float(config.rms_norm_eps),
        rotary_base=theta,
        max_position_embeddings=config.max_position_embeddings,
    )
    return shape, config


def load_hf_model(hf_dir: str, dtype: torch.dtype = torch.float32):
    """``AutoModelForCausalLM.from_pretrained(hf_dir)`` offline, eval mode."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf_dir, local_files_only=True, dtype=dtype)
    return model.eval()


def read_conversion_meta(hf_dir: str) -> Optional[dict]:
    """Our ``prealign_conversion.json`` of a converted directory, or None for other models."""
    path = os.path.join(hf_dir, CONVERSION_META)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)
