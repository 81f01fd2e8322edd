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
and never replaces the previous one, and an ``.incomplete`` directory is never loaded. Loading
refuses, with the path and the reason, a directory without a tracker, a truncated iteration
directory (a shard file shorter than the checkpoint's index says: the message names the previous
intact checkpoint and how to resume from it), or one that megatron-prealign did not write.
``check_save_target`` refuses, before anything is built, a ``--save`` that cannot be written or that
holds another run's checkpoints (``--load`` elsewhere, or none) unless ``--override-save``; a
running job holds ``DIR/.lock`` (``LOCK_FILENAME``), so a second job on the same ``--save`` is
refused too.
Run arguments are stored as JSON (never a pickled Namespace) and everything loads with torch's
``weights_only`` unpickler.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from argparse import Namespace
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import torch
from megatron.core import dist_checkpointing, parallel_state, tensor_parallel
from megatron.core.dist_checkpointing.mapping import ShardedObject
from torch.distributed.checkpoint.api import CheckpointException

from megatron_prealign.arguments import args_to_json
from megatron_prealign.errors import PreAlignError
from megatron_prealign.files import check_output_parent

TRACKER_FILENAME = "latest_checkpointed_iteration.txt"
META_FILENAME = "prealign_checkpoint.json"
LOCK_FILENAME = ".lock"
INCOMPLETE = ".incomplete"
ITERATION_NAME = re.compile(r"iter_(\d{7})")
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
    try:
        dist_checkpointing.save(state, temp_dir)
    except (Exception, CheckpointException) as err:  # e.g. a full disk, after hours of training
        newest = newest_saved_iteration(root)
        kept = (f"{root}'s newest complete checkpoint (iteration {newest}) is untouched: resume from "
                f"it with --load {root}" if newest is not None else "no earlier checkpoint exists")
        raise CheckpointError(f"saving {temp_dir} failed ({_describe_failure(err)}); {kept}. Make room "
                              f"or fix the directory first ({temp_dir} can be deleted)") from err
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


def _describe_failure(err: BaseException) -> str:
    """One line for an error of dist_checkpointing: torch's CheckpointException carries each rank's
    exception and prints their tracebacks; name the first rank's exception instead."""
    if isinstance(err, CheckpointException) and err.failures:
        rank, (err, _) = next(iter(sorted(err.failures.items(), key=lambda item: item[0])))
        return f"rank {rank}: {type(err).__name__}: {err}"
    return f"{type(err).__name__}: {err}"


def has_checkpoint(root: str) -> bool:
    """Whether ``root`` holds a complete checkpoint to resume (tracker file or iteration dir)."""
    return os.path.isfile(os.path.join(root, TRACKER_FILENAME)) or \
        os.path.isfile(os.path.join(root, META_FILENAME))


def is_incomplete(path: str) -> bool:
    """Whether ``path`` is a save that never finished (``iter_XXXXXXX.incomplete``)."""
    return os.path.basename(os.path.normpath(path)).endswith(INCOMPLETE)


def saved_iterations(root: str) -> List[int]:
    """Iterations of the finished iteration directories under ``root``, oldest first."""
    if not os.path.isdir(root):
        return []
    return sorted(int(match.group(1)) for match in map(ITERATION_NAME.fullmatch, os.listdir(root))
                  if match and os.path.isdir(os.path.join(root, match.group(0))))


def looks_started(root: str) -> bool:
    """Whether ``root`` holds anything checkpoint-like (so a missing tracker is an error, not a
    fresh start)."""
    return bool(saved_iterations(root)) or os.path.isfile(os.path.join(root, TRACKER_FILENAME))


def newest_saved_iteration(root: str) -> Optional[int]:
    """The newest iteration a run saved under ``root`` (the tracker's, else the highest iteration
    directory); None when ``root`` holds no run's checkpoints (``.incomplete`` ones never count)."""
    tracker = os.path.join(root, TRACKER_FILENAME)
    text = open(tracker).read().strip() if os.path.isfile(tracker) else ""
    if text.isdigit():
        return int(text)
    found = saved_iterations(root)
    return found[-1] if found else (0 if os.path.isfile(tracker) else None)


def find_checkpoint(root: str) -> str:
    """The newest complete iteration directory under ``root`` (or ``root`` itself if it is one)."""
    if is_incomplete(root):
        parent = os.path.dirname(os.path.normpath(root)) or "."
        raise CheckpointError(
            f"{root}: an interrupted save (its name ends in {INCOMPLETE}), which is never loadable; "
            f"load {parent} (its {TRACKER_FILENAME} names the newest complete checkpoint) or one of "
            f"its complete iteration directories")
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


def checkpoint_source(args: Namespace) -> Optional[str]:
    """The directory this run loads: ``--load`` when it holds a checkpoint (or something that
    cannot be loaded, whose error beats a silent fresh start), else ``--pretrained-checkpoint``;
    None for a run from scratch."""
    load = getattr(args, "load", None)
    if load and (has_checkpoint(load) or looks_started(load) or is_incomplete(load)):
        return load
    return getattr(args, "pretrained_checkpoint", None)


def read_meta(path: str) -> dict:
    """Our metadata of a checkpoint directory, validating that it is complete."""
    meta_path = os.path.join(path, META_FILENAME)
    if is_incomplete(path):
        find_checkpoint(path)  # raises: never loadable, whatever it holds
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
    problem = _shard_files_problem(path)
    if problem:
        raise CheckpointError(f"{path}: {problem}; this checkpoint cannot be loaded. "
                              + _previous_checkpoint_hint(path))
    return meta


def _shard_files_problem(path: str) -> Optional[str]:
    """What is wrong with the tensor files of a ``torch_dist`` checkpoint: a missing or unreadable
    index (``.metadata``), or a ``.distcp`` file shorter than the bytes the index places in it
    (a save or copy cut short). None when every file is whole."""
    from torch.distributed.checkpoint import FileSystemReader

    try:
        metadata = FileSystemReader(path).read_metadata()
    except Exception as err:  # missing, cut short or garbled: the pickle's own errors vary
        return f".metadata (the index of the tensor files) cannot be read ({type(err).__name__}: {err})"
    needed = {}
    for info in metadata.storage_data.values():
        needed[info.relative_path] = max(needed.get(info.relative_path, 0), info.offset + info.length)
    for name, size in sorted(needed.items()):
        file = os.path.join(path, name)
        have = os.path.getsize(file) if os.path.isfile(file) else None
        if have is None:
            return f"{name} is missing"
        if have < size:
            return f"{name} is cut short ({have} bytes; the checkpoint's index places {size} bytes in it)"
    return None


def _previous_checkpoint_hint(path: str) -> str:
    """Where to resume from instead of the damaged iteration directory ``path``."""
    root, name = os.path.split(os.path.normpath(path))
    match = ITERATION_NAME.fullmatch(name)
    if not match:
        return "Load another checkpoint."
    for iteration in reversed([i for i in saved_iterations(root) if i < int(match.group(1))]):
        previous = iteration_dir(root, iteration)
        try:
            read_meta(previous)
        except CheckpointError:
            continue
        return (f"The previous checkpoint {previous} (iteration {iteration}) is intact: resume from "
                f"it with --load {previous}, or write {iteration} into "
                f"{os.path.join(root, TRACKER_FILENAME)}")
    return f"{root} holds no earlier intact checkpoint."


def check_save_target(args: Namespace) -> None:
    """Refuse, before anything is built, a ``--save`` this run must not write into.

    It must be writable, and it must not hold another run's checkpoints: only a resume of that
    run (``--load`` the same directory, or one of its iteration directories, without
    ``--finetune``) or ``--override-save`` may write there, since a run from iteration 0 replaces
    ``iter_*`` directories and moves the tracker back. Reads files only, identically on every rank,
    so all ranks refuse together without a collective.
    """
    save = getattr(args, "save", None)
    if not save:
        return
    check_output_parent(os.path.join(save, TRACKER_FILENAME), "--save")
    newest = newest_saved_iteration(save)
    if newest is None or getattr(args, "override_save", False):
        return
    load = getattr(args, "load", None)
    if load and not args.finetune and _same_run(load, save):
        return
    if args.finetune:
        why, resume = "--finetune starts again at iteration 0", f"pass --load {save} without --finetune"
    else:
        why = f"--load {load} is another directory" if load else "no --load"
        resume = f"pass --load {save}"
    raise CheckpointError(
        f"--save {save} already holds another run's checkpoints (newest: iteration {newest}); this "
        f"run does not resume it ({why}) and would overwrite its iter_* directories and move its "
        f"tracker back. To resume that run, {resume}; to let this run write there anyway, pass "
        "--override-save; or choose a new --save directory.")


def _same_run(load: str, save: str) -> bool:
    """``--load`` names ``--save`` itself or one of its iteration directories."""
    load, save = os.path.realpath(load), os.path.realpath(save)
    return load == save or (os.path.dirname(load) == save
                            and ITERATION_NAME.fullmatch(os.path.basename(load)) is not None)


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
    # Surface the path: upstream messages name only shard files. torch's CheckpointException, which
    # wraps every rank's read errors, derives from BaseException.
    except (Exception, CheckpointException) as err:
        raise CheckpointError(f"{path}: could not be loaded ({_describe_failure(err)})") from err
    unwrap(model[0]).load_state_dict(loaded["model"], strict=True)
    if load_optimizer:
        optimizer.load_state_dict(loaded["optimizer"])
        scheduler.load_state_dict(loaded["opt_param_scheduler"])
    if load_rng:
        _set_rng_state(loaded["rng_state"])
    return LoadedState(path=path, iteration=int(loaded.get("iteration", meta["iteration"])),
                       consumed_samples=int(loaded.get("consumed_samples", meta["consumed_samples"])),
                       meta=meta)
