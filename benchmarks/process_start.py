"""Process start: a two-step ``pretrain_prealign.py`` run as shipped vs with Megatron-Core imported first.

Every training, conversion and evaluation step of the experiment, and most of the test suite, is a
fresh process, so what a process pays before its first step matters on CPU. The shipped trainer
imports Megatron-Core only after the CPU layer (``cpu_compat``), whose lazy ``torch.compile`` keeps
TorchInductor out of the start; the comparison run imports ``megatron.core.models.gpt`` before
anything else, as the trainer did before, so upstream's fused kernels compile-wrap eagerly. Runs
alternate so machine noise hits both alike; the medians of CPU seconds (user + system) are compared.

    python benchmarks/process_start.py          # prints both medians, then
    ratio process_start_cpu = 0.78              # shipped / Megatron-first (lower is better)
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = ["--mock-data", "--vocab-size", "256", "--num-layers", "2", "--hidden-size", "32",
       "--num-attention-heads", "2", "--seq-length", "32", "--micro-batch-size", "2", "--train-iters", "2",
       "--lr", "1e-3", "--log-interval", "1000"]
MEGATRON_FIRST = ("import sys, runpy, warnings; warnings.simplefilter('ignore'); "
                  "import megatron.core.models.gpt; sys.argv = ['pretrain_prealign.py', *sys.argv[1:]]; "
                  "runpy.run_path('pretrain_prealign.py', run_name='__main__')")


def measure(cmd) -> tuple:
    """(CPU seconds, wall seconds) of one run of ``cmd``; a failed run stops the benchmark."""
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=REPO, CUDA_VISIBLE_DEVICES=""))
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--rounds", type=int, default=5)
    opts = cli.parse_args()
    shipped = [sys.executable, "pretrain_prealign.py", *RUN]
    megatron_first = [sys.executable, "-c", MEGATRON_FIRST, *RUN]
    results = {"shipped": [], "megatron_first": []}
    for round_ in range(opts.rounds):
        for name, cmd in (("shipped", shipped), ("megatron_first", megatron_first)):
            results[name].append(measure(cmd))
        print(f"round {round_ + 1}/{opts.rounds}: " + ", ".join(
            f"{name} {runs[-1][0]:.2f} CPU-s / {runs[-1][1]:.2f} s" for name, runs in results.items()))
    cpu = {name: statistics.median(r[0] for r in runs) for name, runs in results.items()}
    wall = {name: statistics.median(r[1] for r in runs) for name, runs in results.items()}
    for name in results:
        print(f"{name}: median {cpu[name]:.2f} CPU-s, {wall[name]:.2f} s wall")
    print(f"ratio process_start_wall = {wall['shipped'] / wall['megatron_first']:.2f}")
    print(f"ratio process_start_cpu = {cpu['shipped'] / cpu['megatron_first']:.2f}")


if __name__ == "__main__":
    main()
