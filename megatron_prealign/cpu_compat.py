"""CPU compatibility layer for Megatron-Core (targets megatron-core 0.16.1).

Megatron-Core assumes CUDA in a few places that lie on the paths we use (GPTModel forward/backward,
tensor/pipeline/data parallelism over gloo, the Megatron optimizer, dist_checkpointing). On a machine
without CUDA, ``apply()`` installs the smallest set of patches that makes those paths run; with CUDA
present it installs only patch 7's tie of the checkpoint processes to their parent (a process leak
that upstream has on every machine), so GPU clusters otherwise run unmodified Megatron-Core.

Patches (each checked by ``tests/test_cpu_compat.py``, which fails loudly when upstream changes):

1. ``torch.cuda.current_device()`` returns ``"cpu"``: Megatron passes it as ``device=`` when it
   allocates parameters, buffers and communication scratch tensors.
2. ``torch.cuda.synchronize()`` is a no-op: pipeline p2p and checkpoint saving call it.
3. ``device="cuda"`` given to torch factory functions (``torch.empty``, ``zeros``, ``tensor``, ...)
   is mapped to the CPU: the optimizer, grad-norm and loss code allocate small tensors that way.
4. ``megatron.core.optimizer.optimizer.clip_grad_by_total_norm_fp32`` asserts that every gradient
   is a ``torch.cuda.FloatTensor``; on CPU it is replaced by the same scaling done with
   ``torch._foreach_mul_`` (the norm itself is computed by Megatron's own code).
5. ``Tensor.cuda()`` returns the tensor itself: with tied embeddings and pipeline parallelism,
   ``LanguageModule.setup_embeddings_and_output_layer`` moves the last stage's copy of the
   embedding with ``.cuda()`` before the all-reduce that makes both stages start equal.

6. While Megatron-Core is first imported, ``torch.compile`` decorates lazily: upstream wraps its
   fused kernels (``jit_fuser``) in ``torch.compile`` at import time, which imports TorchDynamo
   (2-4 s of every process start on CPU, where those kernels are not on our paths). The lazy
   decorator calls the real ``torch.compile`` on the function's first call, so behaviour is
   unchanged; ``torch.compile`` itself is restored right after the import
   (``deferred_torch_compile``, also used by the data tools).

7. ``dist_checkpointing`` saves through child processes: a multiprocessing manager that collects
   the write results (started with ``spawn`` at the first save, kept for the process's life) and
   writer processes forked for each save. Nothing ties them to their parent: when a rank is killed
   (SIGKILL, the OOM killer, a scheduler), the manager lives on as an orphan of ~250 MB, and a writer
   killed mid-save can hang for ever. On every machine each of them therefore first calls
   ``_die_with_parent`` (``PR_SET_PDEATHSIG``: the kernel kills it when its parent dies): the
   manager as its initializer (``_write_results_queue``), a writer on entry
   (``_writer_dying_with_parent``). The spawned manager also re-imports torch to unpickle the
   results: 3-4 s at the first save of every training process and 1-2 s more at exit, on CPU,
   where there is no CUDA context to protect; without CUDA it is forked instead. What the processes
   write and pass on is unchanged.

Patch 3 fills torch's cache of factory functions before wrapping them, so that
``with torch.device(...)`` (transformers builds models under ``torch.device("meta")``) still
recognises them.

Call ``apply()`` before the first ``import megatron.core``; the runtime (``distributed.initialize_distributed``)
does this, and nothing else in the package patches upstream code.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import sys
import threading
import time
from typing import Callable, List, Union

import torch

SUPPORTED_MEGATRON_CORE = "0.16.1"

_FACTORY_FUNCTIONS = (
    "empty", "zeros", "ones", "full", "tensor", "as_tensor", "arange", "rand", "randn", "randint",
    "empty_like", "zeros_like", "ones_like", "full_like", "randn_like", "rand_like",
)

_applied = False


def is_active() -> bool:
    """True when the CPU patches are installed in this process."""
    return _applied


def _is_cuda_device(device) -> bool:
    if isinstance(device, torch.device):
        return device.type == "cuda"
    if isinstance(device, str):
        return device.startswith("cuda")
    return False


def _cpu_factory(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if _is_cuda_device(kwargs.get("device")):
            kwargs["device"] = "cpu"
        return fn(*args, **kwargs)

    wrapper.__prealign_cpu_patch__ = True
    return wrapper


def _clip_grad_by_total_norm_cpu(
    parameters: Union[List[torch.Tensor], torch.Tensor],
    max_norm: float,
    total_norm: float,
    use_decoupled_grad: bool = False,
) -> None:
    """CPU twin of Megatron's ``clip_grad_by_total_norm_fp32``: scale grads in place."""
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    attr = "decoupled_grad" if use_decoupled_grad else "grad"
    grads = [getattr(p, attr).detach() for p in parameters if getattr(p, attr, None) is not None]
    clip_coeff = max_norm / (total_norm + 1.0e-6)
    if clip_coeff < 1.0 and grads:
        torch._foreach_mul_(grads, clip_coeff)


def _tensor_stays_on_cpu(self, *args, **kwargs):
    """``Tensor.cuda()`` without CUDA: the tensor itself (patch 5)."""
    return self


def _lazy_compile(real_compile: Callable) -> Callable:
    """A ``torch.compile`` stand-in that compiles each function on its first call (patch 6)."""

    def lazy_compile(model=None, **options):
        if model is None:  # used as @torch.compile(**options)
            return lambda fn: lazy_compile(fn, **options)
        compiled = None

        @functools.wraps(model)
        def first_call_compiles(*args, **kwargs):
            nonlocal compiled
            if compiled is None:
                compiled = real_compile(model, **options)
            return compiled(*args, **kwargs)

        return first_call_compiles

    return lazy_compile


def _write_results_queue(filesystem_async, start_method: str):
    """``filesystem_async._get_write_results_queue`` whose manager dies with its parent (patch 7)."""
    import multiprocessing
    from multiprocessing.managers import SyncManager

    def get_write_results_queue():
        if filesystem_async._results_queue is None:
            manager = SyncManager(ctx=multiprocessing.get_context(start_method))
            manager.start(_die_with_parent, (os.getpid(),))
            filesystem_async._results_queue = manager.Queue()
        return filesystem_async._results_queue

    get_write_results_queue.__prealign_cpu_patch__ = True
    return get_write_results_queue


def _writer_dying_with_parent(write: Callable) -> Callable:
    """``FileSystemWriterAsync.write_preloaded_data``, run in a forked writer process, tied to its
    parent first (patch 7)."""
    import multiprocessing

    @functools.wraps(write)
    def tied_write(*args, **kwargs):
        parent = multiprocessing.parent_process()
        if parent is not None:  # in a child process, not called in place
            _die_with_parent(parent.pid)
        return write(*args, **kwargs)

    tied_write.__prealign_cpu_patch__ = True
    return tied_write


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    """In a child process: get killed when ``parent_pid`` dies (patch 7).

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, which the kernel acts on when the thread that
    started the child exits (the saves run on the main thread); elsewhere a daemon thread checks the
    parent once a second. A parent that died before the tie existed is caught by the pid check.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    else:
        threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), daemon=True).start()
    if os.getppid() != parent_pid:
        os._exit(1)


def _exit_when_orphaned(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(1)


@contextlib.contextmanager
def deferred_torch_compile():
    """Inside: ``torch.compile`` decorates lazily (patch 6). Without CUDA only; a no-op on GPUs."""
    if torch.cuda.is_available():
        yield
        return
    real = torch.compile
    torch.compile = _lazy_compile(real)
    try:
        yield
    finally:
        torch.compile = real


def apply() -> bool:
    """Install the CPU patches if CUDA is unavailable; with CUDA only patch 7's parent tie.
    Idempotent.

    Returns:
        True if the CPU patches are active after the call, False on CUDA machines.
    """
    global _applied
    if _applied:
        return True
    if torch.cuda.is_available():
        _tie_checkpoint_processes_to_parent("spawn")  # upstream's start method, kept with CUDA
        return False

    torch.cuda.current_device = lambda: "cpu"
    torch.cuda.synchronize = lambda *args, **kwargs: None
    # ``with torch.device(...)`` recognises factories by identity through a cache filled on first
    # use; fill it with torch's own functions before wrapping them, or the context stops applying
    # (transformers builds models under ``torch.device("meta")``).
    from torch.utils import _device as torch_device_context

    torch_device_context._device_constructors()
    for name in _FACTORY_FUNCTIONS:
        setattr(torch, name, _cpu_factory(getattr(torch, name)))
    torch.Tensor.cuda = _tensor_stays_on_cpu

    with deferred_torch_compile():
        import megatron.core.optimizer.optimizer as megatron_optimizer

    if not hasattr(megatron_optimizer, "clip_grad_by_total_norm_fp32"):
        raise RuntimeError(
            "megatron.core.optimizer.optimizer.clip_grad_by_total_norm_fp32 is gone: the CPU "
            f"compatibility layer targets megatron-core {SUPPORTED_MEGATRON_CORE}; update "
            "megatron_prealign/cpu_compat.py for the installed version."
        )
    megatron_optimizer.clip_grad_by_total_norm_fp32 = _clip_grad_by_total_norm_cpu
    _tie_checkpoint_processes_to_parent("fork")
    _applied = True
    return True


def _tie_checkpoint_processes_to_parent(start_method: str) -> None:
    """Install patch 7 (idempotent)."""
    with deferred_torch_compile():
        import megatron.core.dist_checkpointing.strategies.filesystem_async as filesystem_async

    writer = getattr(filesystem_async, "FileSystemWriterAsync", None)
    queue = getattr(filesystem_async, "_get_write_results_queue", None)
    if queue is None or not hasattr(filesystem_async, "_results_queue") or \
            not hasattr(writer, "write_preloaded_data"):
        raise RuntimeError(
            "megatron.core.dist_checkpointing.strategies.filesystem_async's _get_write_results_queue "
            "or FileSystemWriterAsync.write_preloaded_data is gone: the CPU compatibility layer "
            f"targets megatron-core {SUPPORTED_MEGATRON_CORE}; update megatron_prealign/cpu_compat.py "
            "for the installed version."
        )
    if not getattr(queue, "__prealign_cpu_patch__", False):
        filesystem_async._get_write_results_queue = _write_results_queue(filesystem_async, start_method)
    if not getattr(writer.write_preloaded_data, "__prealign_cpu_patch__", False):
        writer.write_preloaded_data = staticmethod(_writer_dying_with_parent(writer.write_preloaded_data))
