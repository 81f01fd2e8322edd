"""Build Megatron-Core's ``GPTModel`` (Llama-style by default) from parsed flags.

Model construction lives behind ``build_model`` alone: upstream Megatron-Core is moving from
``GPTModel`` to ``HybridModel``, and the rest of the package never calls either directly.

Layer spec:
- ``--transformer-impl transformer_engine``: Megatron-Core's Transformer Engine spec (fused
  kernels, FP8). Refused with a clear error when ``transformer_engine`` cannot be imported.
- ``--transformer-impl local`` (the default here): Megatron-Core's local spec with two swaps made
  through the spec, not by editing upstream files: ``SDPAttention`` as the core attention, and
  ``LocalNorm`` (torch norms flagged for sequence parallelism) as the norm.

Initialization: with ``use_cpu_initialization`` (forced on CPU), every rank builds the full weight on
the CPU and keeps its slice, so weights do not depend on the tensor-parallel size. ``SeededLayer``
also reseeds the generator before each transformer layer from (seed, global layer number), so the
weights do not depend on the pipeline-parallel layout either: a TP=2/PP=2 run starts from exactly the
weights of a TP=1/PP=1 run with the same ``--seed``.
"""

from __future__ import annotations

import dataclasses
from argparse import Namespace
from typing import Optional

import torch
import torch.nn.functional as F
from megatron.core import parallel_state
from megatron.core.models.gpt import GPTModel
from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
from megatron.core.transformer.spec_utils import ModuleSpec
from megatron.core.transformer.transformer_block import (
    TransformerBlockSubmodules,
    get_num_layers_to_build,
)
from megatron.core.transformer.transformer_config import TransformerConfig
from megatron.core.transformer.transformer_layer import TransformerLayer, get_transformer_layer_offset

from megatron_prealign.model.attention import SDPAttention
from megatron_prealign.model.backends import have_transformer_engine
from megatron_prealign.model.norm import LocalNorm


@dataclasses.dataclass
class PreAlignTransformerConfig(TransformerConfig):
    """Megatron-Core's ``TransformerConfig`` plus the seed used for layout-invariant init."""

    init_seed: int = 1234
    """Seed of the weight initialization (``--seed``); each layer reseeds from (seed, layer)."""


class SeededLayer(TransformerLayer):
    """``TransformerLayer`` that reseeds the CPU generator from (seed, global layer number).

    Only the random draws of initialization are affected; the layer itself is Megatron-Core's.
    """

    def __init__(self, config, submodules, layer_number: int = 1, vp_stage=None, **kwargs):
        if config.perform_initialization and config.use_cpu_initialization:
            pp_rank = parallel_state.get_pipeline_model_parallel_rank()
            global_layer = layer_number + get_transformer_layer_offset(config, vp_stage, pp_rank)
            torch.manual_seed(config.init_seed * 1009 + global_layer)
        super().__init__(config, submodules, layer_number=layer_number, vp_stage=vp_stage, **kwargs)


def transformer_config_from_args(args: Namespace) -> PreAlignTransformerConfig:
    """Translate Megatron-LM flag values into Megatron-Core's transformer config."""
    on_cpu = not torch.cuda.is_available()
    params_dtype = torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else torch.float32
    return PreAlignTransformerConfig(
        num_layers=args.num_layers,
        hidden_size=args.hidden_size,
        ffn_hidden_size=args.ffn_hidden_size,
        num_attention_heads=args.num_attention_heads,
        num_query_groups=args.num_query_groups if args.group_query_attention else None,
        kv_channels=args.kv_channels,
        normalization=args.normalization,
        layernorm_epsilon=args.norm_epsilon,
        gated_linear_unit=args.swiglu,
        activation_func=F.silu if args.swiglu else F.gelu,
        add_bias_linear=not args.disable_bias_linear,
        attention_dropout=args.attention_dropout,
        hidden_dropout=args.hidden_dropout,
        init_method_std=args.init_method_std,
        tensor_model_parallel_size=args.tensor_model_parallel_size,
        pipeline_model_parallel_size=args.pipeline_model_parallel_size,
        sequence_parallel=args.sequence_parallel,
        pipeline_dtype=params_dtype,
        params_dtype=params_dtype,
        bf16=args.bf16,
        fp16=args.fp16,
        fp8=args.fp8_format,
        fp8_recipe=args.fp8_recipe,
        use_cpu_initialization=on_cpu or args.use_cpu_initialization,
        perform_initialization=True,
        init_seed=args.seed,
        # Fused kernels exist only with CUDA (and Apex/TE); the local path keeps them off.
        gradient_accumulation_fusion=False,
        bias_activation_fusion=not on_cpu and args.transformer_impl == "transformer_engine",
        bias_dropout_fusion=False,
        masked_softmax_fusion=False,
        persist_layer_norm=False,
        apply_rope_fusion=False,
        recompute_granularity=args.recompute_granularity,
        recompute_method=args.recompute_method,
        recompute_num_layers=args.recompute_num_layers,
    )


def layer_spec(args: Namespace, config: TransformerConfig, vp_stage: Optional[int] = None):
    """The decoder block spec for ``--transformer-impl``."""
    if args.transformer_impl == "transformer_engine":
        if not have_transformer_engine():
            raise RuntimeError("--transformer-impl transformer_engine: transformer_engine is not "
                               "importable; install transformer-engine[pytorch] (NGC containers "
                               "ship it) or use --transformer-impl local")
        from megatron.core.models.gpt.gpt_layer_specs import (
            get_gpt_layer_with_transformer_engine_spec,
        )

        return get_gpt_layer_with_transformer_engine_spec()
    layer: ModuleSpec = get_gpt_layer_local_spec(normalization=args.normalization)
    layer.module = SeededLayer
    layer.submodules.input_layernorm = LocalNorm
    layer.submodules.pre_mlp_layernorm = LocalNorm
    layer.submodules.self_attention.submodules.core_attention = SDPAttention
    num_layers = get_num_layers_to_build(config, vp_stage=vp_stage)
    return TransformerBlockSubmodules(layer_specs=[layer] * num_layers, layer_norm=LocalNorm)


def build_model(
    args: Namespace,
    config: Optional[TransformerConfig] = None,
    pre_process: Optional[bool] = None,
    post_process: Optional[bool] = None,
    vp_stage: Optional[int] = None,
) -> GPTModel:
    """Build this rank's ``GPTModel`` chunk (the pipeline stage and tensor slice it owns).

    Args:
        args: parsed flags (``megatron_prealign.arguments``) with ``padded_vocab_size`` set.
        config: the transformer config; derived from ``args`` when omitted.
        pre_process / post_process: whether this chunk holds the embedding / output layer;
            derived from the pipeline rank when omitted.
    """
    config = config or transformer_config_from_args(args)
    if pre_process is None:
        pre_process = parallel_state.is_pipeline_first_stage(ignore_virtual=True)
    if post_process is None:
        post_process = parallel_state.is_pipeline_last_stage(ignore_virtual=True)
    if config.perform_initialization and config.use_cpu_initialization:
        torch.manual_seed(config.init_seed)
    model = GPTModel(
        config=config,
        transformer_layer_spec=layer_spec(args, config, vp_stage),
        vocab_size=args.padded_vocab_size,
        max_sequence_length=args.max_position_embeddings,
        pre_process=pre_process,
        post_process=post_process,
        parallel_output=True,
        share_embeddings_and_output_weights=not args.untie_embeddings_and_output_weights,
        position_embedding_type=args.position_embedding_type,
        rotary_percent=args.rotary_percent,
        rotary_base=args.rotary_base,
        vp_stage=vp_stage,
    )
    if torch.cuda.is_available():
        model.cuda(torch.cuda.current_device())
    return model
