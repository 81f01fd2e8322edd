"""Per-level word representations read off a Megatron-Core ``GPTModel`` through forward hooks.

Megatron-Core 0.16.1 has no hook for intermediate outputs, so ``LevelRecorder`` registers PyTorch
forward hooks on the embedding, on every transformer layer and on the final norm while it is active,
then pools what they saw (``pooling.masked_mean_pool``). The levels, in model order:

    embedding         output of the embedding layer
    layer1..layerN    output of each transformer layer (global 1-based numbers)
    final_norm        the last layer's output after the final norm
    output_embedding  mean of the output-embedding (unembedding) rows of the word's tokens

Tensor parallelism: without sequence parallelism, hidden states are replicated on the TP ranks and
pooled as they are; with it they are split along the sequence and gathered first (the gather's
backward keeps only this rank's slice, because every TP rank computes the same loss from the full
tensor). The output embedding is vocab-parallel; ``pool_output_embedding`` sums the local rows over
the TP group. Pipeline parallelism: a stage sees only its own layers, so stage 1 runs at PP=1 (its
checkpoint loads into stage 2 at any TP/PP).
"""

from __future__ import annotations

from typing import Dict, Sequence

import torch
from megatron.core import parallel_state
from megatron.core.tensor_parallel import gather_from_sequence_parallel_region

from megatron_prealign.alignment.pooling import masked_mean_pool, pool_output_embedding


def _unwrap(model):
    while hasattr(model, "module"):
        model = model.module
    return model


class LevelRecorder:
    """Context manager that records hidden states of the chosen levels during one forward pass.

    Usage::

        with LevelRecorder(model, levels) as recorder:
            output = model(tokens, position_ids, None, labels=labels)
        reps = recorder.pooled(word_mask, tokens)   # {level: [n_words, h] unit vectors}
    """

    def __init__(self, model, levels: Sequence[str]):
        self.gpt = _unwrap(model)
        self.levels = list(levels)
        self.captured: Dict[str, torch.Tensor] = {}
        self._handles = []
        if parallel_state.get_pipeline_model_parallel_world_size() > 1:
            raise ValueError("alignment representations need every layer on one stage: run stage 1 "
                             "and alignment metrics with --pipeline-model-parallel-size 1 (the "
                             "checkpoint then loads at any TP/PP)")

    def _hook(self, name: str):
        def record(module, inputs, output):
            self.captured[name] = output[0] if isinstance(output, tuple) else output
        return record

    def __enter__(self) -> "LevelRecorder":
        self.captured.clear()
        wanted = set(self.levels)
        if "embedding" in wanted:
            self._handles.append(self.gpt.embedding.register_forward_hook(self._hook("embedding")))
        for layer in self.gpt.decoder.layers:
            name = f"layer{layer.layer_number}"
            if name in wanted:
                self._handles.append(layer.register_forward_hook(self._hook(name)))
        if "final_norm" in wanted:
            self._handles.append(
                self.gpt.decoder.final_layernorm.register_forward_hook(self._hook("final_norm")))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def output_embedding_weight(self) -> torch.Tensor:
        """This TP rank's slice of the unembedding matrix ``[V/tp, h]`` (tied or not)."""
        if self.gpt.share_embeddings_and_output_weights:
            return self.gpt.shared_embedding_or_output_weight()
        return self.gpt.output_layer.weight

    def pooled(self, word_mask: torch.Tensor, tokens: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Pooled, L2-normalized vectors per level: ``{level: [n_words, h]}``.

        Args:
            word_mask: ``[n_words, s]`` 1 at the word's real tokens.
            tokens: ``[n_words, s]`` the word's token ids (for the output-embedding level).
        """
        sequence_parallel = self.gpt.config.sequence_parallel
        tp_group = parallel_state.get_tensor_model_parallel_group()
        reps = {}
        for name in self.levels:
            if name == "output_embedding":
                reps[name] = pool_output_embedding(
                    tokens, word_mask, self.output_embedding_weight(),
                    group=tp_group if parallel_state.get_tensor_model_parallel_world_size() > 1
                    else None)
                continue
            if name not in self.captured:
                raise RuntimeError(f"level {name} was not recorded: was the model run inside "
                                   "the recorder?")
            hidden = self.captured[name]  # [s(/tp), b, h]
            if sequence_parallel:
                hidden = gather_from_sequence_parallel_region(hidden, tensor_parallel_output_grad=False)
            reps[name] = masked_mean_pool(hidden, word_mask, seq_first=True)  # [b, h]
        return reps

