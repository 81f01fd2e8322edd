"""Reading the evaluation's input files, with errors that name the file and the line.

Every problem with an input (a file that cannot be read, a line that is not a JSON object, a token
id outside the model's vocabulary) raises ``EvalDataError``, a ``PreAlignError``:
``tools/evaluate.py`` prints it as ``error: ...`` and exits 1, while anything else keeps its
traceback (a bug).
"""

from __future__ import annotations

from typing import Iterator, List, Sequence, Tuple

import numpy as np

from megatron_prealign import files
from megatron_prealign.files import InputFileError, describe_os_error


class EvalDataError(InputFileError):
    """An evaluation input that cannot be used; the message names the file and the fix."""


def iter_jsonl(path: str) -> Iterator[Tuple[int, dict]]:
    """``(line number, record)`` for every non-blank line of a JSONL file (``files.iter_jsonl``),
    each an object; a problem raises ``EvalDataError`` naming the file and the line."""
    return files.iter_jsonl(path, error=EvalDataError)


def read_jsonl(path: str) -> List[Tuple[int, dict]]:
    """Every ``(line number, record)`` of a JSONL file (``iter_jsonl``)."""
    return list(iter_jsonl(path))


def has_content(path: str) -> bool:
    """Whether a text file has a non-blank line (read up to the first one)."""
    try:
        with open(path, "rb") as f:
            return any(line.strip() for line in f)
    except OSError as err:
        raise EvalDataError(describe_os_error(err, path)) from None


def check_token_ids(ids: Sequence[int], vocab_size: int, where: str) -> None:
    """Fail, naming ``where``, if an id is outside ``[0, vocab_size)``."""
    if len(ids) == 0:
        return
    array = np.asarray(ids, dtype=np.int64)
    bad = array[(array < 0) | (array >= vocab_size)]
    if bad.size:
        raise EvalDataError(f"{where}: token id {int(bad[0])} is outside the model's vocabulary of "
                            f"{vocab_size} (ids 0..{vocab_size - 1}): the data was made with another "
                            "tokenizer or for another model")
