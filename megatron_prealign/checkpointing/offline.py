"""Read and write Megatron-Core dist checkpoints in one process, whatever their TP/PP.

Reading: a checkpoint saved at any tensor/pipeline-parallel layout is loaded into a single-process
(TP=1/PP=1) model. We start a gloo world of size 1 (an in-memory store, no port), rebuild the run's
flags from the JSON stored beside the checkpoint (``prealign_checkpoint.json``) with the layout
set to 1/1, build the model with ``model.build_model`` and load it with
``checkpointing.store.load_checkpoint``, i.e. Megatron-Core ``dist_checkpointing``, which
reshards every tensor to the new layout. The model is always built in fp32 on the CPU (bf16/fp16
checkpoints are cast exactly on load); the Transformer Engine spec is swapped for the local one,
whose ``sharded_state_dict_keys_map`` gives the same checkpoint names.

Writing (Hugging Face import): the same single-process model is filled with converted weights
and saved with ``checkpointing.store.save_checkpoint`` (no optimizer state), so the result
is an ordinary checkpoint that ``--pretrained-checkpoint`` or ``--load --finetune`` reads at any
TP/PP.

Call these from a script guarded by ``if __name__ == "__main__":``: Megatron-Core's checkpoint
writer starts helper processes with the ``spawn`` method, which re-imports the main module.
"""

from __future__ import annotations

import dataclasses
import os
from argparse import Namespace
from typing import Dict, Optional

import torch

from megatron_prealign.checkpointing.store import (
    CheckpointError,
    find_checkpoint,
    load_checkpoint,
    read_meta,
    save_checkpoint,
)
from megatron_prealign.distributed import initialize_distributed
from megatron_prealign.model import build_model, transformer_config_from_args
from megatron_prealign.text.tokenizers import build_tokenizer
from megatron_prealign.text.tokenizers.base import TokenizerError

# Flags that only describe how a run was parallelized or executed; reset for a 1-process load.
_SINGLE_PROCESS = dict(
    tensor_model_parallel_size=1, pipeline_model_parallel_size=1, world_size=1,
    data_parallel_size=1, sequence_parallel=False, transformer_impl="local", bf16=False,
    fp16=False, fp8_format=None, use_distributed_optimizer=False, overlap_grad_reduce=False,
    overlap_param_gather=False, recompute_granularity=None, recompute_method=None,
    recompute_num_layers=None, distributed_backend="gloo", num_microbatches=1,
    micro_batch_size=1, global_batch_size=1, use_cpu_initialization=True,
)


@dataclasses.dataclass
class LoadedMegatron:
    """A checkpoint loaded into one process."""

    model: torch.nn.Module
    """The TP=1/PP=1 ``GPTModel`` in eval mode, fp32, on the CPU."""
    args: Namespace
    """The run's flags (from the checkpoint), with the layout reset to one process."""
    meta: dict
    """``prealign_checkpoint.json`` of the loaded iteration."""
    path: str
    """The iteration directory that was loaded."""
    tokenizer: Optional[object]
    """The run's tokenizer (``text.tokenizers``), or None when it could not be rebuilt."""
    vocab_size: int
    """Real vocabulary: the tokenizer's (``2V`` for English-Clone); padding rows come after it."""

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """Full weights under Megatron-Core's TP=1/PP=1 names (no ``_extra_state``)."""
        return {k: v.detach().cpu() for k, v in self.model.state_dict().items()
                if not k.endswith("._extra_state") and isinstance(v, torch.Tensor)}


def single_process_args(stored: dict, **overrides) -> Namespace:
    """The stored run flags with the layout and execution flags reset for one CPU process.

    ``overrides`` come last (after the one-process reset). Flags that an older checkpoint may lack
    or hold empty get the defaults a one-process world needs (a 10-minute timeout, seed 1234).
    """
    flags = {**stored, **_SINGLE_PROCESS, **overrides}
    flags["distributed_timeout_minutes"] = flags.get("distributed_timeout_minutes", 10) or 10
    flags.setdefault("seed", 1234)
    return Namespace(**flags)


def ensure_single_process_world(args: Namespace) -> None:
    """A gloo world of size 1 (in-memory store: no port) and Megatron's model-parallel groups."""
    if torch.distributed.is_initialized():
        if torch.distributed.get_world_size() != 1:
            raise CheckpointError("conversion and evaluation run in one process; do not start them "
                                  "under torchrun (they reshard any TP/PP checkpoint themselves)")
    else:
        torch.distributed.init_process_group("gloo", store=torch.distributed.HashStore(), rank=0,
                                             world_size=1)

    initialize_distributed(args)


def real_vocab_size(args: Namespace, tokenizer_model: Optional[str] = None):
    """(tokenizer or None, real vocabulary size) of a run, from its stored flags.

    Raises:
        CheckpointError: the tokenizer file is gone (pass ``tokenizer_model``).
    """
    kind = getattr(args, "tokenizer_type", None) or "NullTokenizer"
    model_path = tokenizer_model or getattr(args, "tokenizer_model", None)
    if kind != "NullTokenizer" and (not model_path or not os.path.exists(model_path)):
        raise CheckpointError(
            f"the checkpoint was trained with --tokenizer-type {kind} --tokenizer-model "
            f"{model_path}, which does not exist here; pass --tokenizer-model PATH (the same "
            "tokenizer) so that the real vocabulary and the tokenizer files are known")
    try:
        tokenizer = build_tokenizer(kind, model_path, vocab_size=getattr(args, "vocab_size", None)
                                    if kind == "NullTokenizer" else None,
                                    english_clone=bool(getattr(args, "english_clone", False)))
    except TokenizerError as err:
        raise CheckpointError(f"cannot rebuild the checkpoint's tokenizer: {err}") from err
    if tokenizer.vocab_size > args.padded_vocab_size:
        raise CheckpointError(f"tokenizer {tokenizer.describe()} has {tokenizer.vocab_size} ids but "
                              f"the checkpoint's embedding has {args.padded_vocab_size} rows: "
                              "--tokenizer-model names a different tokenizer")
    return tokenizer, tokenizer.vocab_size


def build_single_process_model(args: Namespace, initialize: bool = False) -> torch.nn.Module:
    """This run's model at TP=1/PP=1, fp32, eval mode (random init only if ``initialize``)."""
    ensure_single_process_world(args)
    config = transformer_config_from_args(args)
    config.perform_initialization = initialize  # weights come from the checkpoint
    model = build_model(args, config)
    return model.eval()


def find_iteration(path: str) -> str:
    """The iteration directory to read under ``path`` (``find_checkpoint``), never an interrupted save.

    ``iter_XXXXXXX.incomplete`` is what a save writes before every rank has finished; it may hold
    all its files and still be a torn checkpoint, so it is refused by name, with the complete
    checkpoint beside it when there is one.

    Raises:
        CheckpointError: an interrupted save, or not a (complete) megatron-prealign checkpoint.
    """
    for name in (os.path.normpath(path), os.path.realpath(path)):
        if os.path.basename(name).endswith(".incomplete"):
            raise CheckpointError(f"{path}: an interrupted save (.incomplete), never loadable: "
                                  f"{_complete_neighbour(os.path.dirname(os.path.abspath(name)))}")
    return find_checkpoint(path)


def _complete_neighbour(root: str) -> str:
    """Where the complete checkpoint of ``root`` is, in words, for the ``.incomplete`` refusal."""
    try:
        return f"load {root} (its newest complete checkpoint is {find_checkpoint(root)})"
    except (CheckpointError, OSError):
        return f"{root} holds no complete checkpoint to load instead"


def load_megatron_checkpoint(path: str, tokenizer_model: Optional[str] = None) -> LoadedMegatron:
    """Load the newest checkpoint under ``path`` (or the iteration directory ``path``) at TP=1/PP=1.

    Args:
        path: a ``--save`` directory or one ``iter_XXXXXXX`` directory, saved at any TP/PP.
        tokenizer_model: overrides the stored ``--tokenizer-model`` (when the file moved).

    Raises:
        CheckpointError: not a (complete) megatron-prealign checkpoint, or an interrupted save.
        CheckpointError (also): the tokenizer cannot be rebuilt.
    """
    iteration_dir = find_iteration(path)
    meta = read_meta(iteration_dir)
    args = single_process_args(meta["args"])
    tokenizer, vocab_size = real_vocab_size(args, tokenizer_model)
    model = build_single_process_model(args)
    load_checkpoint(iteration_dir, [model], None, None, args, load_optimizer=False, load_rng=False)
    return LoadedMegatron(model=model, args=args, meta=meta, path=iteration_dir,
                          tokenizer=tokenizer, vocab_size=vocab_size)


def save_megatron_checkpoint(weights: Dict[str, torch.Tensor], args: Namespace, root: str,
                             iteration: int = 0, extra_meta: Optional[dict] = None) -> str:
    """Save full TP=1/PP=1 weights as a model-only dist checkpoint under ``root``.

    Args:
        weights: Megatron-Core names -> tensors (``conversion.mapping.hf_to_megatron``).
        args: the run flags the checkpoint declares (``padded_vocab_size`` set).
        root: the ``--save``-style directory to create.
        iteration: the iteration number to record.

    Returns:
        The iteration directory written.
    """
    args = Namespace(**{**vars(args), "no_save_optim": True})  # model only; the caller's flags stay as given
    model = build_single_process_model(args)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not k.endswith("._extra_state")]
    if missing or unexpected:
        raise CheckpointError(f"converted weights do not fit the Megatron model: missing {missing}, "
                              f"unexpected {unexpected}")
    return save_checkpoint(root, iteration, 0, [model], None, None, args, extra_meta=extra_meta)
