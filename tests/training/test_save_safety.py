"""Nothing a run saved is lost to the next one: a --save holding another run is refused, one job at
a time writes a --save, and a killed rank leaves no process behind."""

import os
import signal
import subprocess
import sys
import time
from argparse import Namespace
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, free_port
from tests.training.helpers import TINY_MODEL

pytestmark = pytest.mark.multiprocess  # starts torchrun jobs

TRACKER = "latest_checkpointed_iteration.txt"


def saved_run(root: Path, iterations=(4, 8, 12)) -> Path:
    """A --save directory as a run leaves it (the check reads names only, not tensors)."""
    for iteration in iterations:
        (root / f"iter_{iteration:07d}").mkdir(parents=True)
        (root / f"iter_{iteration:07d}" / "prealign_checkpoint.json").write_text("{}")
    (root / TRACKER).write_text(str(iterations[-1]))
    return root


def flags(save, **given) -> Namespace:
    return Namespace(**{"save": str(save), "load": None, "finetune": False, "override_save": False,
                        "pretrained_checkpoint": None, **given})


@pytest.mark.parametrize("given, why", [
    ({}, "(no --load)"),
    ({"load": "{tmp}/ckk"}, "(--load {tmp}/ckk is another directory)"),
    ({"pretrained_checkpoint": "{tmp}/ck"}, "(no --load)"),
    ({"finetune": True, "load": "{tmp}/other"}, "pass --load {tmp}/ck without --finetune"),
    ({"finetune": True, "load": "{tmp}/ck"}, "(--finetune starts again at iteration 0)"),
], ids=["no-load", "mistyped-load", "pretrained", "finetune-elsewhere", "finetune-itself"])
def test_save_holding_another_run_is_refused(tmp_path, given, why):
    from megatron_prealign.checkpointing.store import CheckpointError, check_save_target

    ckpt = saved_run(tmp_path / "ck")
    given = {k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in given.items()}
    with pytest.raises(CheckpointError) as err:
        check_save_target(flags(ckpt, **given))
    message = str(err.value)
    for part in (f"--save {ckpt} already holds another run's checkpoints (newest: iteration 12)",
                 why.format(tmp=tmp_path), f"pass --load {ckpt}", "--override-save"):
        assert part in message, message


@pytest.mark.parametrize("setup, given", [
    (lambda ck: saved_run(ck), {"load": "{ck}"}),  # a resume: --save == --load
    (lambda ck: saved_run(ck), {"load": "{ck}/"}),
    (lambda ck: saved_run(ck), {"load": "{ck}/iter_0000008"}),  # resume an older iteration
    (lambda ck: saved_run(ck), {"override_save": True}),
    (lambda ck: None, {"pretrained_checkpoint": "elsewhere"}),  # a new --save
    (lambda ck: (ck / "iter_0000004.incomplete").mkdir(parents=True), {}),  # never loadable
], ids=["resume", "resume-trailing-slash", "resume-older-iteration", "override", "new-dir",
        "only-incomplete"])
def test_save_that_loses_nothing_is_accepted(tmp_path, setup, given):
    from megatron_prealign.checkpointing.store import check_save_target

    ckpt = tmp_path / "ck"
    setup(ckpt)
    check_save_target(flags(ckpt, **{k: v.format(ck=ckpt) if isinstance(v, str) else v
                                     for k, v in given.items()}))
    assert ckpt.is_dir()  # the writability probe made it, and left nothing in it
    assert not [p for p in ckpt.iterdir() if p.name.startswith(".write-check")]


def test_incomplete_directory_is_never_loadable(tmp_path):
    from megatron_prealign.checkpointing.store import CheckpointError, find_checkpoint, read_meta

    partial = tmp_path / "ck" / "iter_0000004.incomplete"
    partial.mkdir(parents=True)
    (partial / "prealign_checkpoint.json").write_text("{}")  # killed after the metadata was written
    for reader in (find_checkpoint, read_meta):
        with pytest.raises(CheckpointError, match="never loadable"):
            reader(str(partial))


def _env(**extra):
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT), CUDA_VISIBLE_DEVICES="",
                **extra)


def _start(argv, output: Path):
    """``pretrain_prealign.py`` in one process (as rank 0 of torchrun runs it), output to a file (a
    pipe would stay open as long as any child that inherited it lives)."""
    with open(output, "w") as out:
        return subprocess.Popen([sys.executable, "pretrain_prealign.py", *TINY_MODEL, *map(str, argv)],
                                cwd=REPO_ROOT, env=_env(), stdout=out, stderr=subprocess.STDOUT)


def _wait_for(condition, what, timeout=180.0):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_second_job_on_the_same_save_is_refused_on_every_rank(tmp_path):
    ckpt, log = tmp_path / "ck", tmp_path / "first.jsonl"
    first = _start(["--train-iters", "100000", "--save", ckpt, "--log-json", log], tmp_path / "first.out")
    try:
        _wait_for(lambda: log.exists() and log.read_text().strip(), "the first job's first iteration")
        # The second job resumes the same directory, so only the lock can stop it; two ranks,
        # started as torchrun would, must both exit 1 (rank 0 holds the refusal, rank 1 learns it).
        port = free_port()
        ranks = [subprocess.Popen(
            [sys.executable, "pretrain_prealign.py", *TINY_MODEL, "--train-iters", "2",
             "--save", str(ckpt), "--load", str(ckpt)],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=_env(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                     MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)))
            for rank in range(2)]
        outputs = [rank.communicate(timeout=180)[0] for rank in ranks]
        assert [rank.returncode for rank in ranks] == [1, 1], outputs
        assert (f"--save {ckpt} is being written by another process (pid {first.pid}, lock "
                f"{ckpt}/.lock)") in outputs[0], outputs[0][-3000:]
        assert "iteration" not in outputs[0] + outputs[1]  # neither rank trained
        assert first.poll() is None  # the first job goes on
    finally:
        first.kill()
        first.wait()


def _children(pid: int):
    """Pids whose parent is ``pid``, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie is dead, waiting for its new parent to reap it


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads the process tree from /proc")
def test_killed_rank_leaves_no_child_process(tmp_path):
    """SIGKILL a rank while it saves every iteration: the checkpoint writers' processes (the
    results manager, kept for the run, and the per-save writers) die with it."""
    ckpt = tmp_path / "ck"
    rank = _start(["--train-iters", "100000", "--save", ckpt, "--save-interval", "1"], tmp_path / "out")
    children = []
    try:
        # The manager lives from the first save on; a second child is a writer: mid-save.
        _wait_for(lambda: (ckpt / TRACKER).exists() and len(_children(rank.pid)) >= 2,
                  "a save in progress")
        children = _children(rank.pid)
        rank.kill()
        rank.wait()
        deadline = time.time() + 60
        while any(map(_alive, children)) and time.time() < deadline:
            time.sleep(0.1)
        survivors = [pid for pid in children if _alive(pid)]
        assert not survivors, f"orphaned children of the killed rank: {survivors}"
    finally:
        for pid in [pid for pid in children if _alive(pid)]:
            os.kill(pid, signal.SIGKILL)


def test_save_that_fails_names_the_directory_and_what_is_kept(tmp_path):
    """A disk that fills up mid-run (here: a file-size limit the writers hit) is a message naming
    the directory and the cause, not torch's CheckpointException with every rank's traceback."""
    import resource

    ckpt = tmp_path / "ck"
    limit = 500_000  # bytes; the model's .distcp files are larger
    proc = subprocess.run(
        [sys.executable, "pretrain_prealign.py", *TINY_MODEL, "--train-iters", "2", "--save", str(ckpt)],
        cwd=REPO_ROOT, env=_env(), capture_output=True, text=True, timeout=180,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback (most recent call last)" not in proc.stderr, proc.stderr[-3000:]
    # The writer's own error varies with where the limit strikes (EFBIG, torch's zip writer).
    assert f"error: saving {ckpt}/iter_0000002.incomplete failed (rank 0: " in proc.stderr
    assert "); no earlier checkpoint exists. Make room or fix the directory first" in proc.stderr
    assert not (ckpt / TRACKER).exists()
