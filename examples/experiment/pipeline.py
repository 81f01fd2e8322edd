"""A resumable pipeline of steps whose outputs are keyed by the inputs that made them.

Each ``Step`` names its parameters (anything that changes its output) and the steps it reads from.
Its key is a hash of its kind, parameters and the keys of its inputs, and it writes into
``ROOT/steps/<kind>-<key>/``; a ``done.json`` written last marks it complete. Running the pipeline
again skips complete steps, so changing one setting re-runs exactly the steps downstream of it, and
arms or seeds that share a step (e.g. one stage-1 checkpoint for two arms) run it once.

An interrupted or failed step never looks complete. Ordinary steps work in ``<dir>.partial`` and are
renamed when done; a failure leaves the ``.partial`` (with the step's log, for inspection), which the
next run deletes before it starts that step afresh. Training steps are ``resumable``: they keep their
directory, without ``done.json`` until they finish, and continue from their last checkpoint (Megatron
``--save``/``--load`` in the same directory). One pipeline writes a root at a time: the entry points
hold ``ROOT/.lock`` (``files.output_lock``) for their whole run.

Progress: one status line per step (which arm, seed and step, elapsed time, estimated time left from
the steps' cost estimates, rescaled by how fast the finished ones actually went), and a live bar for
subprocesses that print Megatron-style ``iteration N/M`` lines.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from megatron_prealign.errors import PreAlignError

DONE = "done.json"
BIG_STEP_COST = 60.0
"""Steps estimated at this many seconds or more set the speed of the time-left estimate."""
ITERATION_LINE = re.compile(r"iteration\s+(\d+)/\s*(\d+)")


@dataclass
class Step:
    """One unit of work: ``run(out_dir, inputs)`` writes its outputs into ``out_dir``."""

    kind: str  # e.g. "stage2"; names the directory
    label: str  # shown in progress, e.g. "arm prealign | seed 1 | stage 2"
    params: dict
    run: Callable[[Path, Dict[str, Path]], Optional[dict]]
    inputs: Dict[str, "Step"] = field(default_factory=dict)
    cost: float = 1.0  # relative cost estimate (seconds on the reference machine)
    resumable: bool = False
    command: Optional[Callable[[Path, Dict[str, Path]], list]] = None
    """For steps that launch one command (training): that command line, for ``Pipeline.plan``."""

    @property
    def key(self) -> str:
        payload = json.dumps({"kind": self.kind, "params": self.params,
                              "inputs": {k: s.key for k, s in sorted(self.inputs.items())}},
                             sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


class StepFailed(PreAlignError, RuntimeError):
    """A step's command failed; the message has its log's path and tail."""


def _format_seconds(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s"


class Pipeline:
    def __init__(self, root: Path, quiet: bool = False):
        self.root = Path(root)
        self.quiet = quiet

    def directory(self, step: Step) -> Path:
        return self.root / "steps" / f"{step.kind}-{step.key}"

    def is_done(self, step: Step) -> bool:
        return (self.directory(step) / DONE).is_file()

    def result(self, step: Step) -> dict:
        return json.loads((self.directory(step) / DONE).read_text())

    def plan(self, targets: Sequence[Step]) -> List[str]:
        """What ``run`` would do, one line per step (done ones marked), with each command line
        (``$ ...``) a step launches; reads nothing but ``done.json`` markers, writes nothing."""
        lines = []
        for step in self._topological(targets):
            state = "done" if self.is_done(step) else "todo"
            lines.append(f"[{state}] {step.label}  ->  {self.directory(step)}")
            if step.command is not None and state == "todo":
                inputs = {name: self.directory(dep) for name, dep in step.inputs.items()}
                lines.append("    $ " + " ".join(map(str, step.command(self.directory(step), inputs))))
        return lines

    def run(self, targets: Sequence[Step]) -> None:
        order = self._topological(targets)
        (self.root / "steps").mkdir(parents=True, exist_ok=True)
        todo = [s for s in order if not self.is_done(s)]
        started = time.time()
        skipped = len(order) - len(todo)
        if skipped and not self.quiet:
            print(f"{skipped} of {len(order)} steps already done in {self.root} (skipped)", flush=True)
        # Cost estimates are rescaled by how fast the finished *training-sized* steps went: the
        # quick data steps say little about the machine's speed for the long ones.
        big_cost = big_seconds = 0.0
        for index, step in enumerate(todo, start=1):
            elapsed = time.time() - started
            speed = big_seconds / big_cost if big_cost else 1.0
            left = sum(s.cost for s in todo[index - 1:]) * speed
            self._say(f"[{index}/{len(todo)}] {step.label} | elapsed {_format_seconds(elapsed)} | "
                      f"left ~{_format_seconds(left)}")
            step_start = time.time()
            self._run_one(step)
            if step.cost >= BIG_STEP_COST:
                big_cost += step.cost
                big_seconds += time.time() - step_start
        self._say(f"all {len(order)} steps done in {_format_seconds(time.time() - started)}")

    def _say(self, message: str) -> None:
        if not self.quiet:
            print(message, flush=True)

    def _run_one(self, step: Step) -> None:
        final = self.directory(step)
        inputs = {name: self.directory(dep) for name, dep in step.inputs.items()}
        if step.resumable:
            final.mkdir(parents=True, exist_ok=True)
            work = final
        else:
            work = final.with_name(final.name + ".partial")
            if work.exists():  # left by an interrupted run: start afresh
                shutil.rmtree(work)
            work.mkdir(parents=True)
        (work / "params.json").write_text(json.dumps(
            {"kind": step.kind, "label": step.label, "params": step.params,
             "inputs": {k: str(v) for k, v in inputs.items()}}, indent=1, default=str))
        start = time.time()
        try:
            result = step.run(work, inputs) or {}
        except BaseException:
            # No done.json was written: the step never looks complete, and the next run redoes it.
            then = "resumes it from its last checkpoint" if step.resumable else "starts it afresh"
            self._say(f"step did not finish: {step.label}; its outputs so far are in {work} (not complete; "
                      f"the next run {then})")
            raise
        result = {"seconds": round(time.time() - start, 1), **result}
        (work / (DONE + ".tmp")).write_text(json.dumps(result, indent=1))
        os.replace(work / (DONE + ".tmp"), work / DONE)
        if work != final:
            if final.exists():
                shutil.rmtree(final)
            os.replace(work, final)

    @staticmethod
    def _topological(targets: Sequence[Step]) -> List[Step]:
        order: List[Step] = []
        seen = set()

        def visit(step: Step) -> None:
            if step.key in seen:
                return
            for dep in step.inputs.values():
                visit(dep)
            seen.add(step.key)
            order.append(step)

        for target in targets:
            visit(target)
        return order


def run_logged(cmd: Sequence[str], log_path: Path, *, env: Optional[dict] = None,
               progress_label: str = "", show_progress: bool = True) -> None:
    """Run a command, teeing its output to ``log_path``; a bar follows ``iteration N/M`` lines.

    Raises ``StepFailed`` with the log's tail when the command fails.
    """
    from tqdm import tqdm

    full_env = dict(os.environ)
    full_env.update(env or {})
    bar = None
    with open(log_path, "a") as log:
        log.write(f"$ {' '.join(map(str, cmd))}\n")
        log.flush()
        proc = subprocess.Popen(list(map(str, cmd)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=full_env, bufsize=1)
        for line in proc.stdout:
            log.write(line)
            match = ITERATION_LINE.search(line)
            if match and show_progress:
                current, total = int(match.group(1)), int(match.group(2))
                if bar is None:  # the first report (or a resume) is the start: rates count from it
                    bar = tqdm(total=total, initial=current, desc=progress_label, unit="it",
                               leave=False, file=sys.stderr, dynamic_ncols=True)
                else:
                    bar.update(current - bar.n)
        proc.wait()
    if bar is not None:
        bar.close()
    if proc.returncode != 0:
        tail = "".join(open(log_path).readlines()[-40:])
        raise StepFailed(f"{' '.join(map(str, cmd[:4]))} ... exited {proc.returncode}; "
                         f"log {log_path}:\n{tail}")
