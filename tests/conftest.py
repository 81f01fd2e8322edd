"""Shared test fixtures.

Multi-process tests start real ``torchrun`` jobs with the gloo backend (see ``run_torchrun``);
tests make their own tiny data under ``tmp_path`` and never touch the network.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from megatron_prealign.text.tokenizers import build_tokenizer
from tests.fixtures.helpers import HF_DIR, SP_MODEL, toy_boundaries

REPO_ROOT = Path(__file__).resolve().parents[1]

# For tests of what happens on a machine without CUDA (the CPU compatibility layer, flags refused
# on CPU). They run on every CPU machine, CI included; with CUDA those behaviours rightly differ.
cpu_only = pytest.mark.skipif(torch.cuda.is_available(),
                              reason="asserts CPU-only behaviour; with CUDA the CPU layer is inert")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_RUNNING = []  # the test item being set up or run (see the hooks below)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    _RUNNING[:] = [item]
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item):
    yield
    _RUNNING.clear()


def run_torchrun(args, nproc: int = 1, timeout: float = 600, env=None, check: bool = True):
    """Run ``torchrun --nproc-per-node nproc <args>`` from the repository root on CPU/gloo.

    One process runs as ``python <args>``, the way the experiment runner starts one-process
    steps: the trainer then sets up its own one-rank group (``distributed.initialize_distributed``),
    which is what rank 0 of a torchrun job does, without the launcher's own torch import (~2.5
    CPU-s per run, ~50 runs in the suite).

    Only tests marked ``multiprocess`` may call it (``pytest -m "not multiprocess"`` is the fast
    part of the suite, so the marker must not be forgotten).

    Returns the CompletedProcess; with ``check`` a non-zero exit fails the test with the output.
    """
    if _RUNNING and _RUNNING[0].get_closest_marker("multiprocess") is None:
        pytest.fail(f"{_RUNNING[0].nodeid} starts torchrun but is not marked multiprocess: add "
                    "`pytestmark = pytest.mark.multiprocess` to its module (or mark the test)")
    launcher = [sys.executable] if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run",
        f"--nproc-per-node={nproc}", "--master-addr=127.0.0.1", f"--master-port={free_port()}",
    ]
    cmd = [*launcher, *map(str, args)]
    full_env = dict(os.environ)
    full_env.update({"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT), "CUDA_VISIBLE_DEVICES": ""})
    full_env.update(env or {})
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=full_env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail(f"torchrun {' '.join(map(str, args))} exited {proc.returncode}\n"
                    f"--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture(autouse=True, scope="session")
def private_caches(tmp_path_factory):
    """Caches our tools keep (compiled dictionaries) go to a per-session directory, not ~/.cache."""
    os.environ["PREALIGN_CACHE_DIR"] = str(tmp_path_factory.mktemp("prealign_cache"))


@pytest.fixture
def torchrun():
    return run_torchrun


# The committed tiny tokenizers (tests/fixtures/data), shared by every area.
@pytest.fixture(scope="session")
def sp_tokenizer():
    return build_tokenizer("SentencePieceTokenizer", SP_MODEL)


@pytest.fixture(scope="session")
def hf_tokenizer():
    return build_tokenizer("HuggingFaceTokenizer", HF_DIR)


@pytest.fixture(scope="session")
def clone_tokenizer():
    return build_tokenizer("SentencePieceTokenizer", SP_MODEL, english_clone=True)


@pytest.fixture(scope="session")
def toy():
    return toy_boundaries()
