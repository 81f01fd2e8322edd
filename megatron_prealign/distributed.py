"""Process groups, seeds and the CPU compatibility layer: everything before the model exists."""

from __future__ import annotations

import os
import random
from argparse import Namespace
from datetime import timedelta

import numpy as np
import torch

from megatron_prealign import cpu_compat


def initialize_distributed(args: Namespace) -> None:
    """Start torch.distributed (torchrun env or a single process) and Megatron's parallel groups.

    Idempotent: the process group is started once, Megatron's model-parallel groups are rebuilt only
    when their TP/PP sizes change; the seeds are reset at every call.
    """
    cpu_compat.apply()  # before megatron.core is used; a no-op on CUDA machines
    from megatron.core import parallel_state
    from megatron.core.tensor_parallel import model_parallel_cuda_manual_seed

    if not torch.distributed.is_initialized():
        if "WORLD_SIZE" not in os.environ:  # one process started without torchrun
            os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
            os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
            # A free port, so that several single-process runs can share a machine.
            os.environ.setdefault("MASTER_PORT", str(_free_port()))
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        torch.distributed.init_process_group(
            backend=args.distributed_backend,
            timeout=timedelta(minutes=args.distributed_timeout_minutes),
        )
    if torch.distributed.get_world_size() != args.world_size:
        raise RuntimeError(f"flags were validated for world size {args.world_size} but "
                           f"torch.distributed reports {torch.distributed.get_world_size()}")
    same_groups = (parallel_state.model_parallel_is_initialized()
                   and parallel_state.get_tensor_model_parallel_world_size() == args.tensor_model_parallel_size
                   and parallel_state.get_pipeline_model_parallel_world_size()
                   == args.pipeline_model_parallel_size)
    if not same_groups:  # the entry points call this before and in setup(): build the groups once
        parallel_state.destroy_model_parallel()
        parallel_state.initialize_model_parallel(
            tensor_model_parallel_size=args.tensor_model_parallel_size,
            pipeline_model_parallel_size=args.pipeline_model_parallel_size,
            distributed_timeout_minutes=args.distributed_timeout_minutes,
        )
    set_seeds(args.seed)
    # On CPU the tracker cannot fork CUDA generators; the inference tracker keeps per-region seeds
    # on the CPU generator (dropout masks inside TP regions are then equal on all TP ranks).
    model_parallel_cuda_manual_seed(args.seed, inference_rng_tracker=not torch.cuda.is_available())


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def set_seeds(seed: int) -> None:
    """Seed Python, NumPy and torch identically on every rank.

    Replicated parameters (norms, and every weight under use_cpu_initialization) must be equal on
    every tensor-parallel rank; the same seed everywhere guarantees it.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def device() -> torch.device:
    """Where this rank's tensors live: its GPU, or the CPU."""
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() \
        else torch.device("cpu")


def destroy() -> None:
    from megatron.core import parallel_state

    parallel_state.destroy_model_parallel()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
