"""Hostile --save and --load directories: refused at start by name, and nothing saved is touched.

The runs are the issue's tiny model in one process (``pretrain_prealign.py`` without torchrun runs
exactly as rank 0 of a torchrun job does; torchrun adds its own launcher traceback on exit 1).
"""

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT
from tests.hostile.harness import Case

TR = ["pretrain_prealign.py", "--num-layers", "2", "--hidden-size", "64", "--num-attention-heads", "4",
      "--seq-length", "64", "--micro-batch-size", "2", "--tokenizer-type", "NullTokenizer",
      "--vocab-size", "512", "--mock-data", "--train-iters", "2"]
TRACKER = "latest_checkpointed_iteration.txt"


def another_run(tmp: Path) -> None:
    """What a run that saved iterations 4, 8 and 12 leaves (the check reads names, not tensors)."""
    for iteration in (4, 8, 12):
        directory = tmp / "ck" / f"iter_{iteration:07d}"
        directory.mkdir(parents=True)
        (directory / "prealign_checkpoint.json").write_text(f"run A, iteration {iteration}")
    (tmp / "ck" / TRACKER).write_text("12")


def another_run_untouched(tmp: Path) -> None:
    assert (tmp / "ck" / TRACKER).read_text() == "12"
    assert sorted(p.name for p in (tmp / "ck").iterdir()) == [
        "iter_0000004", "iter_0000008", "iter_0000012", TRACKER]
    for iteration in (4, 8, 12):
        meta = tmp / "ck" / f"iter_{iteration:07d}" / "prealign_checkpoint.json"
        assert meta.read_text() == f"run A, iteration {iteration}"


def interrupted_save(tmp: Path) -> None:
    partial = tmp / "ck" / "iter_0000004.incomplete"
    partial.mkdir(parents=True)
    (partial / "__0_0.distcp").write_bytes(b"half a shard")


def two_saves_the_newest_cut_short(tmp: Path) -> None:
    """A real run saving iterations 1 and 2, then iteration 2's first .distcp cut in half."""
    subprocess.run([sys.executable, *TR, "--save", str(tmp / "ck"), "--save-interval", "1"],
                   cwd=REPO_ROOT, check=True, capture_output=True, timeout=300,
                   env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT),
                            CUDA_VISIBLE_DEVICES=""))
    shard = tmp / "ck" / "iter_0000002" / "__0_0.distcp"
    os.truncate(shard, shard.stat().st_size // 2)


CASES = [
    # Issue case 1: a run with --save on another run's directory (no --load, or a mistyped one)
    # started from scratch, replaced iter_* and moved the tracker back.
    Case("save-holds-another-run", lambda tmp: [*TR, "--save", tmp / "ck", "--load", tmp / "ckk"], 1,
         ["--save {tmp}/ck already holds another run's checkpoints (newest: iteration 12)",
          "--load {tmp}/ckk is another directory", "pass --load {tmp}/ck", "--override-save"],
         setup=another_run, check=another_run_untouched),
    # An OSError with no path, after iterations of work.
    Case("save-under-a-regular-file", lambda tmp: [*TR, "--save", tmp / "f" / "ck"], 1,
         ["--save {tmp}/f/ck", "{tmp}/f is a regular file"],
         setup=lambda tmp: (tmp / "f").write_text("not a directory")),
    # Started from scratch without a word.
    Case("load-incomplete-iteration", lambda tmp: [*TR, "--load", tmp / "ck" / "iter_0000004.incomplete"],
         1, ["{tmp}/ck/iter_0000004.incomplete: an interrupted save", "never loadable", "load {tmp}/ck"],
         setup=interrupted_save),
    # A raw CheckpointException/EOFError from torch.
    Case("load-distcp-cut-short", lambda tmp: [*TR, "--train-iters", "4", "--load", tmp / "ck",
                                               "--save", tmp / "ck"], 1,
         ["{tmp}/ck/iter_0000002: __0_0.distcp is cut short",
          "The previous checkpoint {tmp}/ck/iter_0000001 (iteration 1) is intact",
          "--load {tmp}/ck/iter_0000001", "write 1 into {tmp}/ck/" + TRACKER],
         setup=two_saves_the_newest_cut_short),
]
