"""One table of hostile inputs: each row is a command, the exit code and the message it must give.

A row runs one entry point (``tools/*.py``, ``pretrain_prealign.py``, or an example's ``run.py``)
as a user would, in a fresh process from the repository root, on files its
``setup`` made under the test's ``tmp_path``. The row passes when the process exits with ``code``,
prints no Python traceback, and its output holds every string of ``expect`` (``{tmp}`` stands for
the test's directory, so a message must name the file it is about); ``check`` may then look at what
was left on disk (nothing published, old outputs intact).

Training rows run ``pretrain_prealign.py`` as one process, which is rank 0 of a one-process world:
its output is what a torchrun user reads (torchrun's launcher adds a traceback of its own whenever a
rank exits non-zero; that is the launcher's, not ours, so rows do not go through it).

Each area keeps its rows in ``cases_<area>.py`` as ``CASES``; ``test_bad_inputs.py`` runs them all.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from tests.conftest import REPO_ROOT


@dataclass(frozen=True)
class Case:
    id: str
    """Short name of the case, the parametrized test's id."""
    argv: Callable[[Path], List[str]]
    """The command after ``python`` (a script path and its flags), given the test's directory."""
    code: int
    """Expected exit code (1 for an error, 2 for a flag error, 0 for a warning case)."""
    expect: Sequence[str]
    """Strings the output (stdout + stderr) must contain; ``{tmp}`` is the test's directory."""
    setup: Optional[Callable[[Path], None]] = None
    """Makes the files the command reads, under the test's directory."""
    check: Optional[Callable[[Path], None]] = None
    """Asserts on what the command left on disk."""
    timeout: float = 300
    env: dict = field(default_factory=dict)


def run_case(case: Case, tmp: Path) -> subprocess.CompletedProcess:
    if case.setup is not None:
        case.setup(tmp)
    argv = [str(a) for a in case.argv(tmp)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT), CUDA_VISIBLE_DEVICES="",
               **case.env)
    return subprocess.run([sys.executable, *argv], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=case.timeout, stdin=subprocess.DEVNULL)


def assert_case(case: Case, tmp: Path) -> None:
    proc = run_case(case, tmp)
    output = proc.stdout + proc.stderr
    shown = f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
    assert proc.returncode == case.code, f"exit code {proc.returncode}, expected {case.code}\n{shown}"
    assert "Traceback (most recent call last)" not in output, f"a raw traceback\n{shown}"
    for text in case.expect:
        wanted = text.format(tmp=tmp)
        assert wanted in output, f"output lacks {wanted!r}\n{shown}"
    if case.check is not None:
        case.check(tmp)
