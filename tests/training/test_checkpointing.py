"""Checkpoints: exact resume, resharding across TP/PP, SIGTERM, NaN stop, bad directories."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO_ROOT, free_port
from tests.training.helpers import TINY_MODEL, pretrain, train_losses

pytestmark = pytest.mark.multiprocess  # starts torchrun jobs

COMMON = ["--global-batch-size", "4", "--train-iters", "10"]


def test_resume_is_exact(tmp_path):
    _, straight = pretrain(tmp_path, "straight", COMMON)
    ckpt = tmp_path / "ckpt"
    proc, first = pretrain(tmp_path, "first", COMMON + ["--save", ckpt, "--exit-interval", "5",
                                                        "--tensorboard-dir", tmp_path / "tb"])
    assert "exiting at iteration 5" in proc.stdout
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))  # TensorBoard scalars written
    assert (ckpt / "latest_checkpointed_iteration.txt").read_text() == "5"
    _, second = pretrain(tmp_path, "second", COMMON + ["--save", ckpt, "--load", ckpt])
    resumed = train_losses(first) + train_losses(second)
    assert resumed == train_losses(straight)  # fp32 CPU: bit-exact, not approximately equal


def test_checkpoint_reshards_from_tp2_pp2_to_single_process(tmp_path):
    """Save at TP=2/PP=2 (4 ranks), resume at TP=1/PP=1: same losses as an uninterrupted run."""
    _, straight = pretrain(tmp_path, "straight", COMMON[:2] + ["--train-iters", "6"])
    ckpt = tmp_path / "ckpt"
    pretrain(tmp_path, "tp2pp2", COMMON[:2] + ["--train-iters", "6", "--save", ckpt,
                                                "--exit-interval", "3",
                                                "--tensor-model-parallel-size", "2",
                                                "--pipeline-model-parallel-size", "2"], nproc=4)
    meta = json.loads((ckpt / "iter_0000003" / "prealign_checkpoint.json").read_text())
    assert meta["parallel_layout"]["tensor_model_parallel_size"] == 2
    _, resumed = pretrain(tmp_path, "tp1", COMMON[:2] + ["--train-iters", "6", "--load", ckpt])
    want = train_losses(straight)[3:]
    got = train_losses(resumed)
    assert len(got) == 3
    for a, b in zip(got, want):
        assert abs(a - b) <= 1e-5 * abs(b), (got, want)


def _torchrun_popen(args, nproc, log):
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}",
           "--master-addr=127.0.0.1", f"--master-port={free_port()}", "pretrain_prealign.py",
           *TINY_MODEL, "--log-json", str(log), *map(str, args)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    return subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _worker_pids(launcher_pid):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(launcher_pid)], capture_output=True,
                         text=True).stdout
    return [int(p) for p in out.split()]


def test_sigterm_to_one_rank_saves_and_resumes(tmp_path):
    ckpt = tmp_path / "ckpt"
    log = tmp_path / "run.jsonl"
    args = ["--global-batch-size", "4", "--train-iters", "400", "--save", ckpt,
            "--exit-signal-handler"]
    launcher = _torchrun_popen(args, 2, log)
    deadline = time.time() + 240
    while time.time() < deadline and not (log.exists() and len(log.read_text().splitlines()) >= 3):
        time.sleep(0.2)
    workers = _worker_pids(launcher.pid)
    assert len(workers) == 2, workers
    os.kill(workers[1], signal.SIGTERM)  # one rank only: the others must learn of it
    out, _ = launcher.communicate(timeout=240)
    assert launcher.returncode == 0, out[-3000:]
    assert "SIGTERM received" in out
    stopped_at = int((ckpt / "latest_checkpointed_iteration.txt").read_text())
    assert 3 <= stopped_at < 400
    assert len(train_losses(log)) == stopped_at
    # Resume for two more iterations and compare with an uninterrupted run of the same length.
    resume_log = tmp_path / "resume.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2",
         "--master-addr=127.0.0.1", f"--master-port={free_port()}", "pretrain_prealign.py",
         *TINY_MODEL, "--log-json", str(resume_log), "--global-batch-size", "4",
         "--train-iters", "400", "--load", str(ckpt), "--exit-interval", str(stopped_at + 2)],
        cwd=REPO_ROOT, env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT)),
        capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, straight = pretrain(tmp_path, "straight", ["--global-batch-size", "4", "--train-iters", "400",
                                                  "--exit-interval", str(stopped_at + 2)], nproc=2)
    assert train_losses(log) + train_losses(resume_log) == train_losses(straight)


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    ckpt = tmp_path / "ckpt"
    one_microbatch = ["--global-batch-size", "2", "--train-iters", "10"]
    proc, log = pretrain(tmp_path, "nan", one_microbatch + ["--save", ckpt, "--save-interval", "2"],
                         check=False, entry="tests/training/workers/nan_injecting_pretrain.py",
                         env={"INJECT_NAN_AT_ITERATION": "5"})
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "iteration 5: non-finite loss" in proc.stderr
    assert (ckpt / "latest_checkpointed_iteration.txt").read_text() == "4"
    assert not (ckpt / "iter_0000005").exists()
    assert len(train_losses(log)) == 4
    # The last good checkpoint still loads and training continues from it.
    proc, resumed = pretrain(tmp_path, "resume", one_microbatch + ["--load", ckpt, "--exit-interval", "6"])
    assert len(train_losses(resumed)) == 2


@pytest.mark.parametrize("damage, message", [
    ("no_tracker", "no latest_checkpointed_iteration.txt"),
    ("truncated", "truncated"),
    ("foreign", "not written by megatron-prealign"),
])
def test_bad_checkpoint_directory_gives_clear_error(tmp_path, damage, message):
    ckpt = tmp_path / "ckpt"
    pretrain(tmp_path, "save", ["--global-batch-size", "4", "--train-iters", "2", "--save", ckpt])
    iteration = ckpt / "iter_0000002"
    if damage == "no_tracker":
        (ckpt / "latest_checkpointed_iteration.txt").unlink()
    elif damage == "truncated":
        (iteration / "metadata.json").unlink()
    else:
        (iteration / "prealign_checkpoint.json").unlink()
    proc, _ = pretrain(tmp_path, "load", ["--global-batch-size", "4", "--train-iters", "4",
                                          "--load", ckpt], check=False)
    assert proc.returncode == 1
    assert message in proc.stderr
    assert str(ckpt) in proc.stderr


def test_interrupted_save_never_looks_complete(tmp_path):
    """A save killed before its rename leaves only an .incomplete directory, never a tracker hit."""
    ckpt = tmp_path / "ckpt"
    pretrain(tmp_path, "save", ["--global-batch-size", "4", "--train-iters", "2", "--save", ckpt])
    # Simulate a save of iteration 4 that was killed mid-way.
    partial = ckpt / "iter_0000004.incomplete"
    partial.mkdir()
    (partial / "__0_0.distcp").write_bytes(b"half")
    proc, log = pretrain(tmp_path, "resume", ["--global-batch-size", "4", "--train-iters", "4",
                                              "--load", ckpt, "--save", ckpt])
    assert len(train_losses(log)) == 2  # resumed from iteration 2, the last complete save
    assert (ckpt / "latest_checkpointed_iteration.txt").read_text() == "4"
    assert not partial.exists()


def test_weights_only_loads_refresh_the_optimizers_main_params(monkeypatch):
    """BF16/FP16 optimizers keep fp32 main copies of the fresh model; after loading weights
    without the optimizer state they must be refreshed, or the first step writes the fresh
    initialization back (Megatron-LM calls reload_model_params for the same reason)."""
    from argparse import Namespace
    from types import SimpleNamespace

    from megatron_prealign.checkpointing import store as checkpointing
    from megatron_prealign.training import loop

    calls = []
    optimizer = SimpleNamespace(reload_model_params=lambda: calls.append("reload"))
    loaded = SimpleNamespace(path="ckpt/iter_0000005", iteration=5, consumed_samples=40)
    monkeypatch.setattr(checkpointing, "has_checkpoint", lambda root: True)
    monkeypatch.setattr(checkpointing, "load_checkpoint",
                        lambda *a, load_optimizer, **k: calls.append(("load", load_optimizer)) or loaded)
    monkeypatch.setattr(loop.torch.distributed, "get_rank", lambda: 0)

    def restore(**flags):
        calls.clear()
        args = Namespace(load="ckpt", finetune=False, no_load_optim=False, no_load_rng=False,
                         pretrained_checkpoint=None, pretrained_reinit=[])
        vars(args).update(flags)
        loop.restore(loop.TrainingState(args=args, tokenizer=None, model=[], optimizer=optimizer,
                                        scheduler=None))
        return list(calls)

    assert restore() == [("load", True)]  # a resume restores the main params with the optimizer
    assert restore(no_load_optim=True) == [("load", False), "reload"]
    assert restore(finetune=True) == [("load", False), "reload"]
    assert restore(load=None, pretrained_checkpoint="stage1") == [("load", False), "reload"]


def test_pretrained_reinit_keeps_named_parameters_and_rejects_names_that_match_nothing(monkeypatch):
    """--pretrained-reinit snapshots the fresh values of the parameters it names; a name that
    matches no parameter on any pipeline stage is a typo and stops the run before training."""
    import torch

    from megatron_prealign.checkpointing.store import CheckpointError
    from megatron_prealign.training import loop

    class Chunk(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(8, 4)
            self.output_layer = torch.nn.Linear(4, 8, bias=False)
            self.final_layernorm = torch.nn.LayerNorm(4)

    class Wrapper(torch.nn.Module):  # DDP-style .module wrapper
        def __init__(self, module):
            super().__init__()
            self.module = module

    monkeypatch.setattr(loop.torch.distributed, "all_reduce", lambda tensor: None)  # one stage
    model = [Wrapper(Chunk())]
    chosen = loop._fresh_parameters(model, ["output_layer", "final_layernorm"])
    assert len(chosen) == 3  # output weight, norm weight and bias; not the embedding
    fresh = model[0].module.output_layer.weight.detach().clone()
    with torch.no_grad():
        model[0].module.output_layer.weight.add_(1.0)  # what loading a checkpoint does
    kept = [value for param, value in chosen if param is model[0].module.output_layer.weight]
    assert torch.equal(kept[0], fresh)  # a copy, untouched by the load
    assert loop._fresh_parameters(model, []) == []
    with pytest.raises(CheckpointError, match="outptu_layer matches no parameter; names look like "
                                              "embedding.weight"):
        loop._fresh_parameters(model, ["outptu_layer"])


def test_distributed_optimizer_resume_without_fused_adam_is_refused_before_loading(monkeypatch):
    """Megatron-core cannot restore torch AdamW's state into the distributed optimizer (it fails on
    the per-parameter 'step', or silently restarts Adam's bias correction): the load names the fix."""
    from argparse import Namespace

    from megatron.core import optimizer as mcore_optimizer

    from megatron_prealign.checkpointing.store import CheckpointError, check_optimizer_restorable

    monkeypatch.setattr(mcore_optimizer, "USING_PYTORCH_OPTIMIZER", True)
    with pytest.raises(CheckpointError, match="ckpt/iter_0000020: resuming the distributed optimizer.*"
                                              "--no-load-optim"):
        check_optimizer_restorable(Namespace(use_distributed_optimizer=True), "ckpt/iter_0000020")
    check_optimizer_restorable(Namespace(use_distributed_optimizer=False), "ckpt/iter_0000020")
    monkeypatch.setattr(mcore_optimizer, "USING_PYTORCH_OPTIMIZER", False)  # TE's or Apex's FusedAdam
    check_optimizer_restorable(Namespace(use_distributed_optimizer=True), "ckpt/iter_0000020")


def test_checkpoints_and_evaluation_see_gathered_parameters_with_overlap_param_gather():
    """With --overlap-param-gather the all-gather of updated parameters waits for the next forward;
    saving and evaluation in between first gather them synchronously, then restore the hooks."""
    from argparse import Namespace
    from types import SimpleNamespace

    from megatron_prealign.training import loop

    calls = []
    chunk = SimpleNamespace(disable_forward_pre_hook=lambda param_sync: calls.append(("off", param_sync)),
                            enable_forward_pre_hook=lambda: calls.append("on"))

    def state(overlap):
        return loop.TrainingState(args=Namespace(overlap_param_gather=overlap), tokenizer=None,
                                  model=[chunk, chunk], optimizer=None, scheduler=None)

    with loop.gathered_parameters(state(True)):
        assert calls == [("off", True), ("off", True)]
    assert calls[2:] == ["on", "on"]
    calls.clear()
    with pytest.raises(ValueError):
        with loop.gathered_parameters(state(True)):
            raise ValueError("a failed save")
    assert calls[2:] == ["on", "on"]  # the hooks come back even when the body fails
    calls.clear()
    with loop.gathered_parameters(state(False)):
        pass
    assert calls == []
