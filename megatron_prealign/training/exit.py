"""When to stop: --exit-interval, --exit-duration-in-mins, and SIGTERM with --exit-signal-handler.

A signal reaches one rank or all of them (schedulers differ); every check is therefore agreed over
all ranks with an all-reduce, so the ranks save the same checkpoint together and exit 0 together.
"""

from __future__ import annotations

import signal
import time
from typing import Optional

import torch

from megatron_prealign.distributed import device


class SignalHandler:
    """Records that SIGTERM arrived instead of dying, so the loop can save first."""

    def __init__(self, sig: int = signal.SIGTERM):
        self.sig = sig
        self.received = False
        self._previous = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.received = True

    def restore(self) -> None:
        signal.signal(self.sig, self._previous)


class ExitController:
    """Decides, identically on every rank, whether to save and stop after an iteration."""

    def __init__(self, args, start_time: Optional[float] = None):
        self.exit_interval = args.exit_interval
        self.deadline = (None if args.exit_duration_in_mins is None
                         else (start_time or time.time()) + 60.0 * args.exit_duration_in_mins)
        self.signals = SignalHandler() if args.exit_signal_handler else None

    def reason(self, iteration: int) -> Optional[str]:
        """Why to stop after ``iteration`` (same answer on all ranks), or None to go on."""
        flags = torch.tensor([
            float(self.signals is not None and self.signals.received),
            float(self.deadline is not None and time.time() > self.deadline),
        ], device=device())
        if torch.distributed.is_initialized():
            torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
        if flags[0]:
            return "SIGTERM received"
        if flags[1]:
            return "--exit-duration-in-mins reached"
        if self.exit_interval and iteration % self.exit_interval == 0:
            return f"--exit-interval {self.exit_interval} reached"
        return None

    def close(self) -> None:
        if self.signals is not None:
            self.signals.restore()
