"""Distributed checkpoints: Megatron-Core ``dist_checkpointing`` in Megatron-LM's directory layout.

Layout of ``--save DIR`` (the same names Megatron-LM uses)::

    DIR/latest_checkpointed_iteration.txt     the iteration of the newest complete checkpoint
    DIR/iter_0000200/                         one dist checkpoint (torch_dist format)
        metadata.json, common.pt, *.distcp    written by megatron.core.dist_checkpointing
        prealign_checkpoint.json              ours, written last: run args (JSON), iteration,
                                              consumed samples, parallel layout, format version

What a checkpoint holds: the model's sharded state dict (resharded on load to any TP/PP), the
optimizer state (also sharded by parameter, so it reshards too), the scheduler state, the iteration
and consumed samples (the data position), and one RNG state per rank (restored only when the
parallel layout is unchanged: a different layout cannot have the same per-rank streams).

Safety: a checkpoint is written to ``iter_XXXXXXX.incomplete`` and renamed once every rank has
finished, then the tracker file is replaced atomically; an interrupted save never looks complete
and never replaces the previous one. Loading refuses, with the path and the reason, a directory
without a tracker, a truncated iteration directory, or one that megatron-prealign did not write.
Run arguments are stored as JSON (never a pickled Namespace) and everything loads with torch's
``weights_only`` unpickler.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from argparse import Namespace
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import torch
from megatron.core import dist_checkpointing, parallel_state, tensor_parallel
from megatron.core.dist_checkpointing.mapping import ShardedObject

from megatron_prealign.arguments import args_to_json
from megatron_prealign.errors import PreAlignError

TRACKER_FILENAME = "latest_checkpointed_iteration.txt"
META_FILENAME = "prealign_checkpoint.json"
FORMAT_VERSION = 1


class CheckpointError(PreAlignError, RuntimeError):
    """A checkpoint directory that cannot be loaded; the message says which and why."""


@dataclass
class LoadedState:
    path: str
    iteration: int
    consumed_samples: int
    meta: dict


def iteration_dir(root: str, iteration: int) -> str:
    return os.path.join(root, f"iter_{iteration:07d}")


def unwrap(model_chunk):
    """The GPTModel inside DDP (or any ``.module`` wrapper)."""
    while hasattr(model_chunk, "module"):
        model_chunk = model_chunk.module
    return model_chunk


def _rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0


def _barrier() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.barrier()


def _layout() -> dict:
    return {
        "tensor_model_parallel_size": parallel_state.get_tensor_model_parallel_world_size(),
        "pipeline_model_parallel_size": parallel_state.get_pipeline_model_parallel_world_size(),
        "data_parallel_size": parallel_state.get_data_parallel_world_size(),
    }


def _rng_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "random": random.getstate(),
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "tracker": tensor_parallel.get_cuda_rng_tracker().get_states(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(_as_tuple(state["random"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    tensor_parallel.get_cuda_rng_tracker().set_states(state["tracker"])


def _as_tuple(value):
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def _rng_sharded_object(state: Optional[dict]) -> ShardedObject:
    pp = parallel_state.get_pipeline_model_parallel_rank()
    tp = parallel_state.get_tensor_model_parallel_rank()
    dp = parallel_state.get_data_parallel_rank()
    return ShardedObject(
        "rng_state", state,
        (parallel_state.get_pipeline_model_parallel_world_size(),
         parallel_state.get_tensor_model_parallel_world_size(),
         parallel_state.get_data_parallel_world_size()),
        (pp, tp, dp), replica_id=0,
    )


def _sharded_state_dict(model: List, optimizer, scheduler, *, with_optimizer: bool,
                        rng: Optional[dict], is_loading: bool) -> dict:
    if len(model) != 1:
        raise NotImplementedError("virtual pipeline stages are not supported yet")
    state = {"model": unwrap(model[0]).sharded_state_dict()}
    if with_optimizer:
        # The distributed optimizer's default format in megatron-core 0.16.1 (deprecated
        # 'fully_sharded_model_space') refuses to save ("ShardedTensor.flattened_range is not
        # supported"); 'fully_reshardable' saves, and reshards to any TP/PP/DP like the other
        # optimizers' state. The other optimizers ignore this metadata. Resuming it needs a fused
        # Adam: see check_optimizer_restorable.
        state["optimizer"] = optimizer.sharded_state_dict(
            state["model"], is_loading=is_loading,
            metadata={"distrib_optim_sharding_type": "fully_reshardable"})
        state["opt_param_scheduler"] = scheduler.state_dict()
    if rng is not None or is_loading:
        state["rng_state"] = _rng_sharded_object(rng)
    return state


def save_checkpoint(root: str, iteration: int, consumed_samples: int, model: List, optimizer,
                    scheduler, args: Namespace, *, extra_meta: Optional[dict] = None) -> str:
    """Write ``root/iter_XXXXXXX`` atomically and point the tracker at it. Collective."""
    final_dir = iteration_dir(root, iteration)
    temp_dir = final_dir + ".incomplete"
    if _rank() == 0:
        os.makedirs(root, exist_ok=True)
        if os.path.exists(temp_dir):  # left by a save that was killed: never loadable, remove
            shutil.rmtree(temp_dir)
        os.makedirs(temp_dir)
    _barrier()
    with_optimizer = not getattr(args, "no_save_optim", False)
    state = _sharded_state_dict(model, optimizer, scheduler, with_optimizer=with_optimizer,
                                rng=_rng_state(), is_loading=False)
    state["iteration"] = iteration
    state["consumed_samples"] = consumed_samples
    dist_checkpointing.save(state, temp_dir)
    _barrier()
    if _rank() == 0:
        meta = {
            "format_version": FORMAT_VERSION,
            "iteration": iteration,
            "consumed_samples": consumed_samples,
            "has_optimizer": with_optimizer,
            "parallel_layout": _layout(),
            "args": json.loads(args_to_json(args)),
            **(extra_meta or {}),
        }
        with open(os.path.join(temp_dir, META_FILENAME), "w") as f:
            json.dump(meta, f, indent=1)
        if os.path.exists(final_dir):  # re-saving the same iteration (e.g. after a resume)
            shutil.rmtree(final_dir)
        os.replace(temp_dir, final_dir)
        tracker_tmp = os.path.join(root, TRACKER_FILENAME + ".tmp")
        with open(tracker_tmp, "w") as f:
            f.write(str(iteration))
        os.replace(tracker_tmp, os.path.join(root, TRACKER_FILENAME))
    _barrier()
    return final_dir


def has_checkpoint(root: str) -> bool:
    """Whether ``root`` holds a complete checkpoint to resume (tracker file or iteration dir)."""
    return os.path.isfile(os.path.join(root, TRACKER_FILENAME)) or \
        os.path.isfile(os.path.join(root, META_FILENAME))


def looks_started(root: str) -> bool:
    """Whether ``root`` holds anything checkpoint-like (so a missing tracker is an error, not a
    fresh start)."""
    if not os.path.isdir(root):
        return False
    return any(name.startswith("iter_") and not name.endswith(".incomplete") or
               name == TRACKER_FILENAME for name in os.listdir(root))


def find_checkpoint(root: str) -> str:
    """The newest complete iteration directory under ``root`` (or ``root`` itself if it is one)."""
    if os.path.isfile(os.path.join(root, META_FILENAME)):
        return root
    tracker = os.path.join(root, TRACKER_FILENAME)
    if not os.path.isfile(tracker):
        found = os.listdir(root) if os.path.isdir(root) else []
        raise CheckpointError(
            f"{root}: no {TRACKER_FILENAME} (not a megatron-prealign checkpoint directory, or no "
            f"save has completed there yet). Directory holds: {sorted(found)[:10]}")
    text = open(tracker).read().strip()
    if not text.isdigit():
        raise CheckpointError(f"{tracker}: expected an iteration number, found {text!r}")
    path = iteration_dir(root, int(text))
    if not os.path.isdir(path):
        raise CheckpointError(f"{tracker} names iteration {text} but {path} does not exist")
    return path


def read_meta(path: str) -> dict:
    """Our metadata of a checkpoint directory, validating that it is complete."""
    meta_path = os.path.join(path, META_FILENAME)
    if not os.path.isfile(meta_path):
        raise CheckpointError(f"{path}: no {META_FILENAME}; the checkpoint is truncated or was not "
                              "written by megatron-prealign")
    for required in ("metadata.json", "common.pt"):
        if not os.path.isfile(os.path.join(path, required)):
            raise CheckpointError(f"{path}: {required} is missing; the checkpoint is truncated")
    try:
        meta = json.load(open(meta_path))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{meta_path}: not valid JSON ({err})") from err
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{meta_path}: format version {meta.get('format_version')}, "
                              f"this code reads version {FORMAT_VERSION}")
    return meta


def check_model_compatible(meta: dict, args: Namespace, path: str) -> None:
    """Refuse a checkpoint whose model shape differs from the flags, naming the flag."""
    saved = meta["args"]
    for key in ("num_layers", "hidden_size", "ffn_hidden_size", "num_attention_heads",
                "num_query_groups", "group_query_attention", "kv_channels", "swiglu",
                "normalization", "untie_embeddings_and_output_weights", "position_embedding_type",
                "padded_vocab_size", "disable_bias_linear"):
        if key in saved and getattr(args, key, None) != saved[key]:
            raise CheckpointError(
                f"{path} was saved with --{key.replace('_', '-')} {saved[key]} but this run has "
                f"{getattr(args, key, None)}; the model shapes must match to load it")


def check_optimizer_restorable(args: Namespace, path: str) -> None:
    """Refuse, before any state is touched, a resume that megatron-core cannot do correctly.

    Megatron-core 0.16.1 restores a distributed optimizer's Adam step from ``param_groups``, where
    Transformer Engine's and Apex's FusedAdam keep it; torch's AdamW (its fallback when neither is
    importable) keeps it per parameter, and the loader then fails on the missing key ('step'), or in
    the other sharding formats silently restarts Adam's bias correction (seen on an H100 without
    either package).
    """
    from megatron.core import optimizer as mcore_optimizer

    if getattr(args, "use_distributed_optimizer", False) and mcore_optimizer.USING_PYTORCH_OPTIMIZER:
        raise CheckpointError(
            f"{path}: resuming the distributed optimizer's state needs Transformer Engine's or Apex's "
            "FusedAdam (neither is importable, and megatron-core cannot restore torch AdamW's state into "
            "the distributed optimizer); install transformer-engine[pytorch] or apex, or pass "
            "--no-load-optim to load the weights and start a fresh optimizer state")


def load_checkpoint(root: str, model: List, optimizer, scheduler, args: Namespace,
                    *, load_optimizer: bool = True, load_rng: bool = True) -> LoadedState:
    """Load model (and optimizer, scheduler, RNG) from the newest checkpoint under ``root``.

    Any TP/PP layout loads into any other: dist_checkpointing reshards the tensors. The RNG state is
    restored only when the layout is unchanged.
    """
    path = find_checkpoint(root)
    meta = read_meta(path)
    check_model_compatible(meta, args, path)
    load_optimizer = load_optimizer and meta.get("has_optimizer", False)
    if load_optimizer:
        check_optimizer_restorable(args, path)
    same_layout = meta["parallel_layout"] == _layout()
    load_rng = load_rng and same_layout
    state = _sharded_state_dict(model, optimizer, scheduler, with_optimizer=load_optimizer,
                                rng=None, is_loading=True)
    if not load_rng:
        state.pop("rng_state", None)
    try:
        loaded = dist_checkpointing.load(state, path)
    except Exception as err:  # surface the path: upstream messages name only shard files
        raise CheckpointError(f"{path}: could not be loaded ({type(err).__name__}: {err})") from err
    unwrap(model[0]).load_state_dict(loaded["model"], strict=True)
    if load_optimizer:
        optimizer.load_state_dict(loaded["optimizer"])
        scheduler.load_state_dict(loaded["opt_param_scheduler"])
    if load_rng:
        _set_rng_state(loaded["rng_state"])
    return LoadedState(path=path, iteration=int(loaded.get("iteration", meta["iteration"])),
                       consumed_samples=int(loaded.get("consumed_samples", meta["consumed_samples"])),
                       meta=meta)
