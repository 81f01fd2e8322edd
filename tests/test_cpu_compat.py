"""The CPU layer: each patch is still needed by megatron-core, works, and is inert with CUDA (but
for patch 7's tie of the checkpoint processes to their parent, which every machine needs).

Patches are process-global, so every check runs in a fresh interpreter.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.conftest import REPO_ROOT, cpu_only


def run_python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_upstream_still_needs_the_clip_patch():
    """Fails loudly when megatron-core makes clipping CPU-safe (then drop patch 4)."""
    out = run_python("""
        import torch, warnings
        warnings.simplefilter("ignore")
        from megatron.core.optimizer.clip_grads import clip_grad_by_total_norm_fp32
        p = torch.nn.Parameter(torch.ones(3)); p.grad = torch.ones(3)
        try:
            clip_grad_by_total_norm_fp32([p], max_norm=1.0, total_norm=10.0)
            print("clipped-on-cpu")
        except AssertionError:
            print("asserts-on-cpu")
    """)
    assert out.strip() == "asserts-on-cpu"


@cpu_only
def test_patches_make_cuda_requests_land_on_cpu_and_clip():
    out = run_python("""
        import torch, warnings
        warnings.simplefilter("ignore")
        from megatron_prealign import cpu_compat
        assert cpu_compat.apply() and cpu_compat.is_active()
        assert cpu_compat.apply()  # idempotent
        assert torch.empty(2, device="cuda").device.type == "cpu"
        assert torch.zeros(2, device=torch.device("cuda", 0)).device.type == "cpu"
        assert torch.cuda.current_device() == "cpu"
        torch.cuda.synchronize()
        import megatron.core.optimizer.optimizer as opt
        p = torch.nn.Parameter(torch.ones(4)); p.grad = torch.full((4,), 3.0)
        opt.clip_grad_by_total_norm_fp32([p], max_norm=1.0, total_norm=6.0)
        print(p.grad.tolist())
    """)
    grads = eval(out.strip().splitlines()[-1])
    assert all(abs(g - 3.0 / (6.0 + 1e-6)) < 1e-6 for g in grads)


@cpu_only
def test_upstream_still_compiles_at_import_and_the_deferral_keeps_dynamo_out():
    """Plain import pulls in TorchDynamo (drop patch 6 when it stops); after apply() it does not,
    torch.compile is restored, and a deferred kernel compiles on its first call."""
    out = run_python("""
        import sys, torch, warnings
        warnings.simplefilter("ignore")
        import megatron.core.models.gpt
        print("torch._dynamo" in sys.modules)
    """)
    assert out.split() == ["True"]
    out = run_python("""
        import sys, torch, warnings
        warnings.simplefilter("ignore")
        real = torch.compile
        from megatron_prealign import cpu_compat
        cpu_compat.apply()
        import megatron.core.models.gpt
        from megatron.core import jit
        print("torch._dynamo" in sys.modules, torch.compile is real)
        calls = []
        lazy = cpu_compat._lazy_compile(lambda fn, **kw: calls.append(kw) or (lambda x: 2 * fn(x)))
        f = lazy(lambda x: x + 1, dynamic=False)
        g = lazy(dynamic=True)(lambda x: x - 1)
        print(len(calls), f(1), f(2), g(5), calls)
        print(jit.jit_fuser.__module__)
    """)
    lines = out.strip().splitlines()
    assert lines[0].split() == ["False", "True"]
    assert lines[1] == "0 4 6 8 [{'dynamic': False}, {'dynamic': True}]"
    assert lines[2] == "megatron_prealign.cpu_compat"  # Megatron's fuser decorates lazily


def test_inert_when_cuda_is_present():
    out = run_python("""
        import torch
        torch.cuda.is_available = lambda: True
        original, compile_ = torch.empty, torch.compile
        from megatron_prealign import cpu_compat
        with cpu_compat.deferred_torch_compile():
            deferred = torch.compile is not compile_
        print(cpu_compat.apply(), cpu_compat.is_active(), torch.empty is original, deferred)
    """)
    assert out.split() == ["False", "False", "True", "False"]


def test_gradient_clipping_works_in_training(tmp_path):
    """A tiny --clip-grad bounds the update: the step with clip 1e-3 moves weights far less."""
    out = run_python("""
        import sys, warnings, torch
        warnings.simplefilter("ignore")
        sys.argv = ["x"]
        from megatron_prealign.arguments import parse_args
        from megatron_prealign.training import loop
        from megatron_prealign.training.data import build_datasets, make_loader
        from megatron_prealign.training.step import lm_forward_step, train_step
        moved = []
        for clip in (0.0, 1e-3):
            args = parse_args(["--mock-data", "--vocab-size", "500", "--num-layers", "1",
                               "--hidden-size", "32", "--num-attention-heads", "2",
                               "--seq-length", "16", "--micro-batch-size", "2", "--lr", "1e-2",
                               "--clip-grad", str(clip), "--adam-beta1", "0", "--adam-beta2", "0",
                               "--adam-eps", "1.0", "--weight-decay", "0"],
                              world_size=1)
            state = loop.setup(args)
            args = state.args  # the finished flags
            train_ds, _ = build_datasets(args, state.tokenizer)
            it = iter(make_loader(train_ds, 0, args))
            before = [p.detach().clone() for p in state.model[0].parameters()]
            result = train_step(lm_forward_step, it, state.model, state.optimizer, state.scheduler, args, 1)
            delta = sum((p.detach() - b).abs().sum().item()
                        for p, b in zip(state.model[0].parameters(), before))
            moved.append((result.grad_norm, delta))
        print(moved)
    """)
    (norm_free, delta_free), (norm_clipped, delta_clipped) = eval(out.strip().splitlines()[-1])
    assert norm_free > 1e-3 and norm_clipped > 1e-3  # the norm is measured before clipping
    # Adam with betas 0 and eps 1 steps by lr*g/(|g|+1) ~ lr*g for small g: the update shrinks
    # by about the clipping factor 1e-3/norm.
    assert delta_clipped < 0.05 * delta_free


@cpu_only
def test_checkpoint_results_manager_is_spawned_upstream_and_forked_on_cpu():
    """Upstream spawns the manager that carries dist_checkpointing's write results (drop patch 7
    when it stops); after apply() it is forked, and results still travel through it."""
    code = """
        import warnings, torch
        warnings.simplefilter("ignore")
        {apply}
        import megatron.core.dist_checkpointing.strategies.filesystem_async as fa
        queue = fa._get_write_results_queue()
        assert fa._get_write_results_queue() is queue  # one manager per process
        queue.put({{0: [torch.arange(3)]}})
        print(type(queue._manager._process).__name__, queue.get()[0][0].tolist())
    """
    assert run_python(code.format(apply="")).split() == ["SpawnProcess", "[0,", "1,", "2]"]
    forked = run_python(code.format(apply="from megatron_prealign import cpu_compat; cpu_compat.apply()"))
    assert forked.split() == ["ForkProcess", "[0,", "1,", "2]"]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead
    except OSError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads process states from /proc")
@pytest.mark.parametrize("cuda, prctl", [(False, True), (True, True), (False, False)],
                         ids=["cpu-forked", "cuda-spawned", "cpu-forked-without-prctl"])
def test_checkpoint_results_manager_dies_with_its_parent(tmp_path, cuda, prctl):
    """Killing a process (SIGKILL: nothing of it runs) kills the manager it started for
    dist_checkpointing, forked on CPU or spawned as upstream does with CUDA, also where there is no
    prctl (not Linux); the per-save writer processes are tied to their parent on both too
    (``tests/training/test_save_safety.py`` kills a rank mid-save)."""
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        import os, signal, warnings
        warnings.simplefilter("ignore")
        if __name__ == "__main__":  # spawn re-imports the main module
            import torch
            if {cuda}:
                torch.cuda.is_available = lambda: True
            from megatron_prealign import cpu_compat
            if not {prctl}:  # what the forked manager sees on macOS
                import types
                cpu_compat.sys = types.SimpleNamespace(platform="darwin")
            cpu_compat.apply()
            import megatron.core.dist_checkpointing.strategies.filesystem_async as fa
            queue = fa._get_write_results_queue()
            queue.put(1)
            assert queue.get() == 1
            writer_tied = getattr(fa.FileSystemWriterAsync.write_preloaded_data, "__prealign_cpu_patch__", 0)
            print(queue._manager._process.pid, type(queue._manager._process).__name__, bool(writer_tied),
                  flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    """))
    out = tmp_path / "out"
    with open(out, "w") as f:  # not a pipe: the manager inherits it and may outlive the parent
        proc = subprocess.run([sys.executable, str(script)], cwd=REPO_ROOT, stdout=f,
                              stderr=subprocess.STDOUT, timeout=180,
                              env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    assert proc.returncode == -signal.SIGKILL, out.read_text()[-3000:]
    pid, kind, writer_tied = out.read_text().split()[-3:]
    pid = int(pid)
    deadline = time.time() + 30
    while _alive(pid) and time.time() < deadline:
        time.sleep(0.1)
    try:
        assert not _alive(pid), f"the manager (pid {pid}) outlived its parent"
        assert (kind, writer_tied) == ("SpawnProcess" if cuda else "ForkProcess", "True")
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_entry_points_import_megatron_core_only_after_the_cpu_layer():
    """The trainer's and the tools' module-level imports (argument parsing included) leave
    Megatron-Core unimported, so the CPU layer (patch 6's lazy ``torch.compile`` among its patches) is in
    place when it is first imported. An entry point that imports it early costs every process ~1.5 s."""
    entry_points = ["pretrain_prealign.py", *sorted(str(p.relative_to(REPO_ROOT))
                                                    for p in (REPO_ROOT / "tools").glob("*.py"))]
    assert len(entry_points) >= 5
    out = run_python(f"""
        import importlib.util, sys, warnings
        warnings.simplefilter("ignore")
        sys.path.insert(0, ".")
        for path in {entry_points!r}:
            spec = importlib.util.spec_from_file_location("entry_point", path)
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
            print(path, "megatron.core" in sys.modules)
    """)
    early = [line for line in out.strip().splitlines() if line.endswith("True")]
    assert len(out.strip().splitlines()) == len(entry_points)
    assert not early, f"imports Megatron-Core at module level (the first one is the culprit): {early}"
