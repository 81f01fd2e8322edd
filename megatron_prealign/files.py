"""Outputs that are never half-written, never silently replaced, and never written by two runs.

Every tool of the project publishes its outputs through these few functions:

- ``output_lock(path, what)``: an exclusive ``flock`` on ``path`` (e.g. ``<prefix>.lock`` or
  ``DIR/.lock``) held for the whole run. A second run on the same output fails at once with the
  holder's pid instead of interleaving its writes with the first run's. The kernel drops the lock
  when its process dies, so a killed run never leaves a stale lock behind.
- ``atomic_open(path)``: write a file under a unique ``<name>.<random>.partial`` name and rename it
  into place only when the ``with`` block ends without an error.
- ``publish_dir(final, overwrite=..., flag=...)``: build a directory under a unique ``.partial``
  name and swap it in at the end; an existing non-empty target is replaced only when the user
  passed ``flag``, and a failure leaves the old target untouched.
- ``check_output_parent(path, flag)``: before any work, fail with the path and the flag when an
  output cannot be created there (a parent that is a regular file, a read-only directory).

It also holds ``sha256_file`` (the digest that names tokenizers, caches and committed data) and the
one JSONL reader of the inputs that are read whole (``iter_jsonl``: corpora, evaluation items),
whose errors name the file and the line. The preprocessor's streaming chunk parser
(``preprocess.inputs``) is the other way in, for inputs too large to read line by line here.

Imports nothing of the package but ``errors``, so every layer can use it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gzip
import hashlib
import json
import os
import shutil
import tempfile
import zlib
from typing import IO, Iterator, Tuple, Type

from megatron_prealign.errors import PreAlignError

PARTIAL = ".partial"


class OutputError(PreAlignError, OSError):
    """An output that cannot be written, or may not be replaced; the message names it and the fix."""


class InputFileError(PreAlignError, ValueError):
    """An input file that cannot be used; the message names the file (and line) and the fix."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def describe_os_error(err: OSError, path: str) -> str:
    """``path: reason`` in words, for the errors a user can do something about."""
    reasons = {
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.ENOTDIR: "a parent of this path is a regular file, not a directory",
        errno.ENOENT: "no such file or directory",
        errno.EISDIR: "this is a directory",
    }
    return f"{path}: {reasons.get(err.errno, err.strerror or str(err))}"


def check_output_parent(path: str, flag: str) -> None:
    """Fail now, naming ``flag``, if ``path`` could not be created (its directory is made)."""
    parent = os.path.dirname(os.path.abspath(path))
    probe = parent
    while not os.path.exists(probe):  # the nearest existing ancestor decides
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise OutputError(f"{flag} {path}: {probe} is a regular file, not a directory")
    try:
        os.makedirs(parent, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=parent, prefix=".write-check-")
        os.close(fd)
        os.unlink(name)
    except OSError as err:
        raise OutputError(f"{flag}: cannot write there ({describe_os_error(err, parent)})") from err


@contextlib.contextmanager
def output_lock(path: str, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` for the ``with`` block; refuse if another process has it.

    ``what`` says what is being written (e.g. "the shards out/en_text_document"), for the message.
    The lock file holds the holder's pid and is removed on release.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise OutputError(
                f"{what} is being written by another process (pid {holder}, lock {path}); wait for "
                "it to finish, or write somewhere else") from None
        # The previous holder may have removed the file between our open and our lock: then we
        # locked an orphan and must lock the file that is there now.
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # while still holding it, so nobody can lock the file we remove
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a unique temporary file beside ``path``; rename it to ``path`` if the block succeeds."""
    directory, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=name + ".", suffix=PARTIAL)
    try:
        # mkstemp creates 0600; a published file gets the mode a plain open() would give it.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def directory_is_empty(path: str) -> bool:
    return not os.path.exists(path) or (os.path.isdir(path) and not os.listdir(path))


@contextlib.contextmanager
def publish_dir(final: str, *, overwrite: bool, flag: str) -> Iterator[str]:
    """Yield a fresh working directory that replaces ``final`` when the block succeeds.

    A non-empty ``final`` is replaced only with ``overwrite`` (the user passed ``flag``); it is
    refused before any work otherwise. Whatever fails inside the block, ``final`` is left as it
    was and the working directory is removed.
    """
    final = os.path.abspath(final)
    if os.path.exists(final) and not os.path.isdir(final):
        raise OutputError(f"{final} is a file, not a directory; choose another output directory")
    if not directory_is_empty(final) and not overwrite:
        raise OutputError(f"{final} exists and is not empty; pass {flag} to replace it, or choose "
                          "another output directory")
    check_output_parent(final, flag="output directory")
    parent, name = os.path.split(final)
    work = tempfile.mkdtemp(dir=parent, prefix=name + ".", suffix=PARTIAL)
    os.chmod(work, 0o777 & ~_umask())  # mkdtemp makes 0700; teammates must read what is published
    try:
        yield work
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if os.path.exists(final):  # move the old one aside first: a rename cannot replace a directory
        old = tempfile.mkdtemp(dir=parent, prefix=name + ".", suffix=".replaced")
        os.rename(final, os.path.join(old, name))
        os.rename(work, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(work, final)


def iter_jsonl(path, *, error: Type[InputFileError] = InputFileError) -> Iterator[Tuple[int, dict]]:
    """``(line number, record)`` for every non-blank line of a JSONL file; each must be an object.

    A name ending in ``.gz`` is read through gzip. Lines are read as bytes and decoded one by one,
    so a decoding error names its exact line. Every problem (a file that cannot be read, a corrupt
    ``.gz``, a line that is not UTF-8, not JSON or not an object) raises ``error`` (this module's
    ``InputFileError`` or the caller's subclass of it) with ``path:line: what is wrong``.
    """
    try:
        f = gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")
    except OSError as err:
        raise error(describe_os_error(err, str(path))) from None
    with f:
        try:
            for number, raw in enumerate(f, 1):
                record = _jsonl_record(raw, path, number, error)
                if record is not None:
                    yield number, record
        except (EOFError, zlib.error, gzip.BadGzipFile) as err:
            raise error(f"{path}: a truncated or corrupt .gz file ({err})") from None
        except OSError as err:
            raise error(describe_os_error(err, str(path))) from None


def _jsonl_record(raw: bytes, path, number: int, error: Type[InputFileError]):
    """The object on one line of a JSONL file, or None for a blank line."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise error(f"{path}:{number}: not UTF-8 text ({err.reason} at byte {err.start}); is this "
                    "a JSONL file?") from None
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise error(f"{path}:{number}: not valid JSON ({err})") from None
    if not isinstance(record, dict):
        raise error(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
    return record


def sha256_file(path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
