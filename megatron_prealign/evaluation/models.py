"""One interface over the two kinds of model the evaluation reads.

``EvalModel`` is what every metric uses: logits over the *real* vocabulary (Megatron's padding
columns are dropped, so both kinds normalize over the same ids), the hidden states of named
levels, and the output-embedding matrix. Levels use the names of ``alignment.levels``:

    embedding         output of the token embedding
    layer1..layerN    output of each transformer layer
    final_norm        output of the final norm (the last layer's output, normalized)
    output_embedding  the unembedding matrix rows (pooled per word by the caller)

Both adapters read levels with forward hooks on the same modules. Hugging Face's
``output_hidden_states`` is *not* used: its last entry already has the final norm applied, so it
would silently make ``layerN`` equal ``final_norm``.

Inputs are batch-first ``[b, s]`` token ids, right-padded; attention is causal, so padding after a
sequence never changes the states of its real tokens. Everything runs without gradients, fp32.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from megatron_prealign.alignment.levels import all_level_names
from megatron_prealign.conversion.hf import load_hf_model, read_conversion_meta
from megatron_prealign.evaluation.inputs import EvalDataError
from megatron_prealign.text.tokenizers import build_tokenizer


class EvalModel:
    """A causal LM seen through the evaluation's interface (see the module docstring)."""

    name: str = "model"
    kind: str = "abstract"
    vocab_size: int
    num_layers: int
    max_length: int

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[b, s]`` ids -> ``[b, s, vocab_size]`` fp32 logits."""
        raise NotImplementedError

    def hidden_levels(self, tokens: torch.Tensor, levels: Sequence[str]) -> Dict[str, torch.Tensor]:
        """``[b, s]`` ids -> ``{level: [b, s, h]}`` for hidden levels (not ``output_embedding``)."""
        raise NotImplementedError

    def output_embedding(self) -> torch.Tensor:
        """``[vocab_size, h]`` unembedding rows (the input embedding when tied)."""
        raise NotImplementedError

    def level_names(self) -> List[str]:
        return all_level_names(self.num_layers)


def _first(output):
    return output[0] if isinstance(output, tuple) else output


class HFEvalModel(EvalModel):
    """A Hugging Face decoder (``LlamaForCausalLM`` or any model with ``model.embed_tokens``,
    ``model.layers`` and ``model.norm``)."""

    kind = "huggingface"

    def __init__(self, model: torch.nn.Module, name: str = "model", vocab_size: Optional[int] = None):
        self.model = model.eval().float()
        self.name = name
        config = model.config
        self.vocab_size = int(vocab_size or config.vocab_size)
        self.num_layers = int(config.num_hidden_layers)
        self.max_length = int(getattr(config, "max_position_embeddings", 2048))
        decoder = model.model
        self._level_modules = {"embedding": decoder.embed_tokens, "final_norm": decoder.norm}
        for i, layer in enumerate(decoder.layers):
            self._level_modules[f"layer{i + 1}"] = layer

    @torch.no_grad()
    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=tokens).logits[..., : self.vocab_size].float()

    @torch.no_grad()
    def hidden_levels(self, tokens: torch.Tensor, levels: Sequence[str]) -> Dict[str, torch.Tensor]:
        captured: Dict[str, torch.Tensor] = {}
        handles = []
        for name in levels:
            if name not in self._level_modules:
                raise KeyError(f"unknown level {name!r}; have {list(self._level_modules)}")
            handles.append(self._level_modules[name].register_forward_hook(
                lambda module, inputs, output, name=name: captured.__setitem__(name, _first(output))))
        try:
            self.model.model(input_ids=tokens)  # the decoder only: no logits needed
        finally:
            for handle in handles:
                handle.remove()
        return {name: captured[name].float() for name in levels}  # [b, s, h]

    def output_embedding(self) -> torch.Tensor:
        return self.model.get_output_embeddings().weight[: self.vocab_size].float()


class MegatronEvalModel(EvalModel):
    """A TP=1/PP=1 Megatron-Core ``GPTModel`` (``conversion.megatron_io.load_megatron_checkpoint``).

    Levels come from ``alignment.representations.LevelRecorder``, the hooks stage 1 trains with.
    """

    kind = "megatron"

    def __init__(self, model: torch.nn.Module, vocab_size: int, max_length: int, name: str = "model"):
        self.model = model.eval()
        self.name = name
        self.vocab_size = int(vocab_size)
        self.num_layers = int(model.config.num_layers)
        self.max_length = int(max_length)

    @staticmethod
    def _positions(tokens: torch.Tensor) -> torch.Tensor:
        return torch.arange(tokens.shape[1], device=tokens.device).unsqueeze(0).expand_as(tokens)

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens.to(self._device())
        out = self.model(tokens, self._positions(tokens), None)  # [b, s, V_padded], batch-first
        return out[..., : self.vocab_size].float().cpu()

    @torch.no_grad()
    def hidden_levels(self, tokens: torch.Tensor, levels: Sequence[str]) -> Dict[str, torch.Tensor]:
        # lazy: imports Megatron-Core (seconds), which a Hugging Face evaluation never needs
        from megatron_prealign.alignment.representations import LevelRecorder

        tokens = tokens.to(self._device())
        with LevelRecorder(self.model, levels) as recorder:
            self.model(tokens, self._positions(tokens), None)
        return {name: recorder.captured[name].transpose(0, 1).float().cpu()  # [s, b, h] -> [b, s, h]
                for name in levels}

    def output_embedding(self) -> torch.Tensor:
        gpt = self.model
        weight = gpt.shared_embedding_or_output_weight() if gpt.share_embeddings_and_output_weights \
            else gpt.output_layer.weight
        return weight[: self.vocab_size].float().cpu()


def _tokenizer_for_hf_dir(path: str):
    """Our ``TextTokenizer`` for a Hugging Face directory (exact ids for our own exports)."""
    meta = read_conversion_meta(path)
    if meta is not None:
        kind = meta.get("tokenizer", {}).get("kind", "none")
        clone = bool(meta.get("english_clone"))
        if kind.startswith("sentencepiece"):
            return build_tokenizer("SentencePieceTokenizer", os.path.join(path, "tokenizer.model"),
                                   english_clone=clone)
        if kind.startswith("huggingface"):
            base = os.path.join(path, "prealign_base_tokenizer") if clone else path
            return build_tokenizer("HuggingFaceTokenizer", base, english_clone=clone)
        if kind == "none":
            return build_tokenizer("NullTokenizer", None, vocab_size=meta["base_vocab_size"] - 1,
                                   english_clone=clone)
    if os.path.isfile(os.path.join(path, "tokenizer.json")):
        return build_tokenizer("HuggingFaceTokenizer", path)
    return None


def is_hf_directory(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "config.json"))


def load_eval_model(path: str, name: Optional[str] = None,
                    tokenizer_model: Optional[str] = None) -> Tuple[EvalModel, Optional[object]]:
    """Load a Hugging Face directory or a Megatron checkpoint (any TP/PP) for evaluation.

    Args:
        path: a directory with ``config.json`` (Hugging Face) or a megatron-prealign checkpoint.
        name: the run name used in reports (default: the directory name).
        tokenizer_model: Megatron checkpoints only: overrides the stored ``--tokenizer-model``.

    Returns:
        (model, tokenizer); the tokenizer is a ``text.tokenizers.TextTokenizer`` (None when the
        directory has none), the same ids the model was trained on.
    """
    name = name or os.path.basename(os.path.normpath(path))
    if is_hf_directory(path):
        try:
            meta = read_conversion_meta(path) or {}
            hf_model = load_hf_model(path)
        except (OSError, ValueError) as err:  # transformers' words for a broken or foreign directory
            raise EvalDataError(f"{path}: cannot load this Hugging Face model directory ({err})") from err
        model = HFEvalModel(hf_model, name, meta.get("vocab_size"))
        return model, _tokenizer_for_hf_dir(path)

    # Megatron-Core takes seconds to import: only a Megatron checkpoint pays for it, not every
    # evaluation of a Hugging Face directory (the experiment evaluates its HF exports).
    # lazy: Megatron-Core only for Megatron checkpoints
    from megatron_prealign.checkpointing.offline import load_megatron_checkpoint

    loaded = load_megatron_checkpoint(path, tokenizer_model)
    model = MegatronEvalModel(loaded.model, loaded.vocab_size, loaded.args.max_position_embeddings,
                              name)
    return model, loaded.tokenizer
