"""What the experiment's entry points (``run.py``, ``sweep.py``) share: list flags, one run per
output directory, and how they report a user-facing error."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Callable, Iterator, List

from megatron_prealign.errors import PreAlignError
from megatron_prealign.files import check_output_parent, output_lock


def parse_list(parser: argparse.ArgumentParser, flag: str, text: str, cast: Callable = str) -> List:
    """A comma list flag (``--seeds 1,2,3``); a flag error (exit 2) if malformed, empty or repeated.

    A repeated value would be one run (its steps have the same key) counted twice in the report's
    means and standard deviations.
    """
    try:
        values = [cast(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError:
        parser.error(f"{flag}: expected a comma list like 1,2,3, got {text!r}")
    if not values:
        parser.error(f"{flag}: no value in {text!r}")
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
        parser.error(f"{flag} {text}: {', '.join(repeated)} given more than once; give each value "
                     "once (a repeat would count one run twice in the report)")
    return values


@contextlib.contextmanager
def experiment_lock(output_dir: Path, flag: str = "--output-dir") -> Iterator[None]:
    """Hold ``OUTPUT_DIR/.lock`` for the block: a second run on the same directory is refused (with
    the first one's pid) instead of training into the same checkpoint directories."""
    lock = Path(output_dir) / ".lock"
    check_output_parent(str(lock), flag)
    with output_lock(str(lock), f"the experiment directory {output_dir}"):
        yield


def report_errors(prog: str, body: Callable[[], int]) -> int:
    """``body()``, with a ``PreAlignError`` printed as ``prog: error: ...`` and exit status 1
    (anything else is a bug and keeps its traceback)."""
    try:
        return body()
    except PreAlignError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 1
