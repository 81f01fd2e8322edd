"""Input discovery, streaming reads and document parsing for the preprocessor.

Inputs
------
``--input`` takes files, globs (``data/*.jsonl``, ``**`` allowed) or several of them; each pattern's
matches are sorted, and patterns keep their order. A file is *JSONL* when its name ends in
``.jsonl``, ``.json`` or ``.ndjson`` (optionally ``.gz``), otherwise *plain text*
(``--input-format`` overrides the guess). Files are read as bytes and split into lines the way
Python's universal newlines do (``\\n``, ``\\r\\n`` and a lone ``\\r`` all end a line, as in Megatron's
``open(..., 'r')``); a UTF-8 byte-order mark at the start of a file is dropped.

* JSONL: every line is one document, a JSON object; ``--json-keys`` picks its text fields. A value
  may be a string, or a list of strings (one sequence per non-empty element, as in Megatron).
* Plain text, ``--text-unit line`` (default): every non-blank line is a document.
  ``paragraph``: blank-line separated paragraphs (lines joined with ``\\n``) are documents.
  ``file``: the whole file is one document. Plain-text documents go to the first ``--json-keys``
  name (``text``) so that output names stay ``{prefix}_text_document``.

Bad input never stops a run: malformed JSON, a line that is not an object, a missing key, a value
that is not text (null, number, ...), invalid UTF-8, text with lone surrogates, blank JSONL lines
and lines longer than ``--max-line-bytes`` are skipped; each is a ``Problem`` with file, line and
reason, counted in the stats report (``--max-errors`` turns too many into a failure). A file that
cannot be read to its end (a truncated or corrupt ``.gz``, an I/O error) is different: how much of
it is lost is unknown, so it stops the run with an ``InputError`` naming the file and the line
reached.

Document identity
-----------------
Each document is identified by (file index, byte offset of its first line in the decompressed
file). Code-switching draws its random numbers from these coordinates (``codeswitch.py``), so the
output does not depend on how the input is cut into chunks, workers or partitions.
"""

from __future__ import annotations

import glob
import gzip
import json
import os
import re
import zlib
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple, Union

from megatron_prealign.errors import PreAlignError

JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")
BOM = b"\xef\xbb\xbf"
_GLOB_CHARS = re.compile(r"[*?\[]")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]", re.ASCII)
_BLANK = re.compile(rb"^[ \t\f\v]*$")


class InputError(PreAlignError, ValueError):
    """An ``--input`` that cannot be used at all (no file, unreadable)."""


@dataclass(frozen=True)
class InputFile:
    """One input file.

    Attributes:
        index: position in the expanded input list (part of every document's identity).
        path: the path.
        format: ``"jsonl"`` or ``"text"``.
        compressed: gzip-compressed (read whole, never split across partitions).
        size: size on disk in bytes.
    """

    index: int
    path: str
    format: str
    compressed: bool
    size: int


def guess_format(path: str) -> str:
    """``"jsonl"`` for ``.jsonl``/``.json``/``.ndjson`` (``.gz`` allowed), else ``"text"``."""
    name = path[:-3] if path.endswith(".gz") else path
    return "jsonl" if name.lower().endswith(JSON_SUFFIXES) else "text"


def expand_inputs(patterns: Sequence[str], input_format: str = "auto") -> List[InputFile]:
    """Expand ``--input`` patterns into an ordered, de-duplicated list of files.

    Raises:
        InputError: a pattern that matches nothing, or a path that is not a file.
    """
    if input_format not in ("auto", "jsonl", "text"):
        raise InputError(f"--input-format must be auto, jsonl or text, not {input_format!r}")
    paths: List[str] = []
    for pattern in patterns:
        if _GLOB_CHARS.search(pattern):
            matches = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
            if not matches:
                raise InputError(f"--input {pattern!r} matches no file")
            paths.extend(matches)
        else:
            if not os.path.exists(pattern):
                raise InputError(f"--input {pattern!r}: no such file")
            if not os.path.isfile(pattern):
                raise InputError(f"--input {pattern!r} is not a file (use a glob like DIR/*.jsonl)")
            paths.append(pattern)
    unique = list(dict.fromkeys(os.path.abspath(p) for p in paths))
    files = []
    for i, path in enumerate(unique):
        fmt = guess_format(path) if input_format == "auto" else input_format
        files.append(InputFile(i, path, fmt, path.endswith(".gz"), os.path.getsize(path)))
    return files


@dataclass
class Chunk:
    """A run of whole lines of one file, the unit of work of a worker.

    Attributes:
        file_index: ``InputFile.index``.
        offset: byte offset of ``data[0]`` in the decompressed file.
        first_line: 1-based line number of the first line in ``data``.
        data: the raw bytes.
        lines: number of lines in ``data``.
    """

    file_index: int
    offset: int
    first_line: int
    data: bytes
    lines: int


@dataclass
class Problem:
    """One skipped or suspicious piece of input.

    Attributes:
        reason: a short code (``malformed_json``, ``missing_key``, ``invalid_utf8``, ...).
        file: the input file.
        line: 1-based line number (0 when not applicable).
        detail: a human-readable explanation.
        skipped: True if the document was dropped, False if it was kept (empty documents).
    """

    reason: str
    file: str
    line: int
    detail: str
    skipped: bool = True

    def as_dict(self) -> dict:
        return {
            "file": self.file, "line": self.line, "reason": self.reason,
            "detail": self.detail, "skipped": self.skipped,
        }

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}: {self.detail}"


def count_lines(data: bytes, at_eof: bool) -> int:
    """Lines in ``data`` under universal newlines; a final unterminated line counts at EOF."""
    n = data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")
    if data and at_eof and not data.endswith((b"\n", b"\r")):
        n += 1
    return n


def _line_cut(buf: bytes) -> int:
    """Length of the longest prefix of ``buf`` that ends at a line boundary (0 if none)."""
    i = buf.rfind(b"\n")
    if i >= 0:
        return i + 1
    i = buf.rfind(b"\r", 0, len(buf) - 1)  # a final "\r" may be the first half of "\r\n"
    return i + 1 if i >= 0 else 0


def _paragraph_cut(buf: bytes) -> int:
    best = 0
    for sep in (b"\n\n", b"\r\n\r\n", b"\r\r"):
        i = buf.rfind(sep)
        if i >= 0:
            best = max(best, i + len(sep))
    return best


def _open_binary(f: InputFile):
    return gzip.open(f.path, "rb") if f.compressed else open(f.path, "rb")


def _read_or_fail(fh, n: int, f: InputFile, line: int) -> bytes:
    """``fh.read(n)``, with a damaged file (a cut or corrupt ``.gz``, an I/O error) turned into an
    ``InputError`` that names it and the first line not read (``line``)."""
    try:
        return fh.read(n)
    except (OSError, EOFError, zlib.error) as err:
        what = "truncated or corrupt gzip data" if f.compressed else "read error"
        raise InputError(
            f"{f.path}: {what} ({err}), found while reading line {line}; re-create or re-download "
            "the file, or leave it out of --input. Nothing was published."
        ) from None


@dataclass
class Segment:
    """A byte range of one file: ``[start, end)``, ``end=None`` meaning to the end of the file."""

    file: InputFile
    start: int = 0
    end: Optional[int] = None


def lines_before(f: InputFile, offset: int) -> int:
    """Number of complete lines in ``f`` before byte ``offset`` (which is at a line boundary)."""
    if offset == 0:
        return 0
    n = 0
    with _open_binary(f) as fh:
        remaining = offset
        prev_cr = False
        while remaining:
            block = fh.read(min(remaining, 1 << 24))
            if not block:
                break
            remaining -= len(block)
            n += block.count(b"\n") + block.count(b"\r") - block.count(b"\r\n")
            if prev_cr and block.startswith(b"\n"):
                n -= 1  # "\r\n" split across blocks was counted twice
            prev_cr = block.endswith(b"\r")
    return n


def split_segments(
    files: Sequence[InputFile], parts: int, text_unit: str = "line"
) -> List[List[Segment]]:
    """Cut the input into ``parts`` contiguous, line-aligned groups of about equal size.

    Compressed files, and plain-text files whose documents span lines (``text_unit`` paragraph or
    file), are never cut. Groups may be empty when there is little input. Reading the groups one
    after the other gives exactly the lines of the input, in order.
    """
    if parts <= 1:
        return [[Segment(f) for f in files]]
    total = sum(f.size for f in files)
    bounds = [total * k // parts for k in range(1, parts)]
    groups: List[List[Segment]] = [[] for _ in range(parts)]
    g = 0
    base = 0
    for f in files:
        start = 0
        cuttable = not f.compressed and (f.format == "jsonl" or text_unit == "line")
        if cuttable:
            while g < parts - 1 and bounds[g] < base + f.size:
                cut = _aligned_offset(f, max(bounds[g] - base, start))
                if cut is None:
                    break  # no line boundary before EOF: the rest stays in this group
                if cut > start:
                    groups[g].append(Segment(f, start, cut))
                    start = cut
                g += 1
        if start < f.size:
            groups[g].append(Segment(f, start, None))
        base += f.size
        while not cuttable and g < parts - 1 and base > bounds[g]:
            g += 1
    return groups


def _aligned_offset(f: InputFile, offset: int) -> Optional[int]:
    """The first line boundary at or after ``offset`` (None if none before EOF)."""
    if offset <= 0:
        return 0
    with open(f.path, "rb") as fh:
        fh.seek(offset - 1)
        pos = offset - 1
        carry = b""
        while True:
            block = fh.read(1 << 16)
            data = carry + block
            end = _first_boundary(data, "line", eof=not block)
            if end:
                return pos - len(carry) + end
            if not block:
                return None
            pos += len(block)
            carry = data[-1:]  # a final "\r" may need the next byte


class _LineCounter:
    """Counts universal-newline line ends over a byte stream fed in pieces."""

    def __init__(self) -> None:
        self.lines = 0
        self._prev_cr = False

    def feed(self, data: bytes) -> None:
        if not data:
            return
        self.lines += data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")
        if self._prev_cr and data[:1] == b"\n":
            self.lines -= 1  # the "\r" of this "\r\n" was already counted
        self._prev_cr = data[-1:] == b"\r"


def _first_boundary(buf: bytes, unit: str, eof: bool) -> int:
    """Index just after the first line (or paragraph) boundary in ``buf``, 0 if none is certain."""
    if unit == "paragraph":
        found = [buf.find(sep) + len(sep) for sep in (b"\n\n", b"\r\n\r\n", b"\r\r") if sep in buf]
        return min(found) if found else 0
    i, j = buf.find(b"\n"), buf.find(b"\r")
    if j >= 0 and (i < 0 or j < i):
        if j + 1 < len(buf):
            return j + 2 if buf[j + 1 : j + 2] == b"\n" else j + 1
        return j + 1 if eof else 0
    return i + 1 if i >= 0 else 0


def read_chunks(
    segments: Sequence[Segment],
    *,
    chunk_bytes: int,
    max_line_bytes: int,
    text_unit: str = "line",
) -> Iterator[Union[Chunk, Problem]]:
    """Stream whole-line chunks, in input order, and a ``Problem`` for every line too long to hold.

    Args:
        segments: what to read (``split_segments``).
        chunk_bytes: about how many bytes per chunk.
        max_line_bytes: longer lines (paragraphs, files for ``text_unit='file'``) are skipped.
        text_unit: for plain-text files: ``line``, ``paragraph`` or ``file``.
    """
    for seg in segments:
        unit = text_unit if seg.file.format == "text" else "line"
        line = 1 + lines_before(seg.file, seg.start)
        with _open_binary(seg.file) as fh:
            if seg.start:
                fh.seek(seg.start)
            reader = _SegmentReader(fh, seg, line)
            if unit == "file":
                yield from _whole_file(reader, max_line_bytes)
            else:
                yield from _line_chunks(reader, unit, chunk_bytes, max_line_bytes)


class _SegmentReader:
    """Reads one segment's bytes, never past its end, and keeps the position and line reached
    (``line`` names where a damaged file failed)."""

    def __init__(self, fh, seg: Segment, line: int) -> None:
        self.fh = fh
        self.file = seg.file
        self.pos = seg.start
        """Byte offset of the next chunk in the decompressed file."""
        self.line = line
        """1-based number of the next chunk's first line."""
        self.remaining = None if seg.end is None else seg.end - seg.start

    def read(self, n: int) -> bytes:
        if self.remaining is not None:
            n = min(n, self.remaining)
        block = _read_or_fail(self.fh, n, self.file, self.line) if n > 0 else b""
        if self.remaining is not None:
            self.remaining -= len(block)
        return block


def _whole_file(reader: _SegmentReader, max_line_bytes: int) -> Iterator[Union[Chunk, Problem]]:
    """``--text-unit file``: the whole file as one chunk, or a problem when it is too long."""
    f = reader.file
    data = reader.read(max_line_bytes + 1)
    if len(data) > max_line_bytes:
        yield Problem("line_too_long", f.path, reader.line,
                      f"the file is longer than --max-line-bytes {max_line_bytes}; skipped")
    elif data:
        yield Chunk(f.index, reader.pos, reader.line, data, max(count_lines(data, True), 1))


def _line_chunks(reader: _SegmentReader, unit: str, chunk_bytes: int,
                 max_line_bytes: int) -> Iterator[Union[Chunk, Problem]]:
    """Chunks of whole lines (paragraphs for ``unit='paragraph'``) of about ``chunk_bytes``, and a
    problem for each line longer than ``max_line_bytes`` (skipped without being held whole)."""
    cutter = _paragraph_cut if unit == "paragraph" else _line_cut
    buf = b""
    eof = False
    while not eof or buf:
        if not eof:
            block = reader.read(chunk_bytes)
            eof = not block
            buf += block
        cut = len(buf) if eof else cutter(buf)
        if cut:
            data, buf = buf[:cut], buf[cut:]
            n = count_lines(data, eof and not buf)
            yield Chunk(reader.file.index, reader.pos, reader.line, data, n)
            reader.pos += len(data)
            reader.line += n
            continue
        if len(buf) <= max_line_bytes:
            continue
        # buf holds the start of one gigantic line (everything before it was emitted).
        start_line = reader.line
        skipped, lines, buf, eof = _skip_long_line(reader, buf, unit, eof, chunk_bytes)
        what = "paragraph" if unit == "paragraph" else "line"
        yield Problem(
            "line_too_long", reader.file.path, start_line,
            f"{what} of {skipped} bytes (line end included) is longer than "
            f"--max-line-bytes {max_line_bytes}; skipped",
        )
        reader.line += max(lines, 1)
        reader.pos += skipped


def _skip_long_line(reader: _SegmentReader, buf: bytes, unit: str, eof: bool,
                    chunk_bytes: int) -> Tuple[int, int, bytes, bool]:
    """Read past the line (or paragraph) that ``buf`` starts, keeping only a short tail in memory.

    Returns:
        (bytes skipped, line ends in them, what follows the line in ``buf``, end of file reached).
    """
    skipped, counter = 0, _LineCounter()
    while True:
        end = _first_boundary(buf, unit, eof)
        if end or eof:
            end = end or len(buf)
            counter.feed(buf[:end])
            return skipped + end, counter.lines, buf[end:], eof
        keep = 3  # a boundary ("\r\n\r\n" less one byte) may straddle two reads
        counter.feed(buf[:-keep])
        skipped += len(buf) - keep
        buf = buf[-keep:]
        block = reader.read(chunk_bytes)
        eof = not block
        buf += block


@dataclass
class Document:
    """One parsed document.

    Attributes:
        offset: byte offset of its first line in the decompressed file (its identity).
        line: 1-based line number of its first line.
        values: per ``--json-keys`` entry, the list of texts (one per sequence before sentence
            splitting: a string value gives one text, a list value one text per element).
    """

    offset: int
    line: int
    values: List[List[str]]


def _strip_terminator(raw: bytes) -> bytes:
    if raw.endswith(b"\r\n"):
        return raw[:-2]
    if raw.endswith((b"\n", b"\r")):
        return raw[:-1]
    return raw


def _decode(body: bytes, path: str, line: int, problems: List[Problem]) -> Optional[str]:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as err:
        bad = body[err.start : err.start + 1]
        problems.append(Problem(
            "invalid_utf8", path, line,
            f"invalid UTF-8 byte 0x{bad.hex()} at byte {err.start + 1} of the line ({err.reason})",
        ))
        return None


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def parse_chunk(
    chunk: Chunk,
    file: InputFile,
    json_keys: Sequence[str],
    text_unit: str = "line",
    max_line_bytes: Optional[int] = None,
) -> Tuple[List[Document], List[Problem], int]:
    """Parse a chunk into documents, skipping bad lines with a ``Problem`` each.

    Lines longer than ``max_line_bytes`` (line end included) are skipped here when the reader
    could hold them; longer ones never reach a chunk (``read_chunks`` reports them).

    Returns:
        (documents, problems, blank_text_lines): blank lines of plain-text files are not documents
        and not problems, only counted.
    """
    problems: List[Problem] = []
    if file.format == "text" and text_unit == "file":
        return _parse_whole_file(chunk, file.path, problems), problems, 0
    lines = _chunk_lines(chunk, file.path, max_line_bytes, problems)
    if file.format == "text":
        docs, blank = _parse_text_lines(lines, file.path, text_unit, problems)
        return docs, problems, blank
    docs = []
    for offset, line, body in lines:
        values = None if body is None else _parse_json_line(body, file.path, line, json_keys, problems)
        if values is not None:
            docs.append(Document(offset, line, values))
    return docs, problems, 0


def _parse_whole_file(chunk: Chunk, path: str, problems: List[Problem]) -> List[Document]:
    """``--text-unit file``: the chunk (the whole file) is one document, newlines made ``\\n``."""
    body = chunk.data[len(BOM):] if chunk.offset == 0 and chunk.data.startswith(BOM) else chunk.data
    text = _decode(body, path, chunk.first_line, problems)
    if text is None:
        return []
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return [Document(chunk.offset, chunk.first_line, [[text]])]


def _chunk_lines(chunk: Chunk, path: str, max_line_bytes: Optional[int],
                 problems: List[Problem]) -> Iterator[Tuple[int, int, Optional[bytes]]]:
    """(byte offset, line number, body) of every line of ``chunk``; the body is without its line
    end (and without a file's BOM), None for a line longer than ``max_line_bytes`` (a problem)."""
    offset = chunk.offset
    for k, raw in enumerate(chunk.data.splitlines(keepends=True)):
        line = chunk.first_line + k
        here = offset
        offset += len(raw)
        if max_line_bytes is not None and len(raw) > max_line_bytes:
            problems.append(Problem(
                "line_too_long", path, line,
                f"line of {len(raw)} bytes (line end included) is longer than --max-line-bytes "
                f"{max_line_bytes}; skipped",
            ))
            yield here, line, None
            continue
        body = _strip_terminator(raw)
        if here == 0 and body.startswith(BOM):
            body = body[len(BOM):]
        yield here, line, body


class _Paragraph:
    """The lines of the plain-text paragraph being read (``--text-unit paragraph``)."""

    def __init__(self, docs: List[Document]) -> None:
        self.docs = docs
        self.lines: List[str] = []
        self.start = (0, 0)

    def add(self, offset: int, line: int, text: str) -> None:
        if not self.lines:
            self.start = (offset, line)
        self.lines.append(text)

    def end(self) -> None:
        """A blank or skipped line (or the chunk's end) ends the paragraph: it becomes a document."""
        if self.lines:
            self.docs.append(Document(self.start[0], self.start[1], [["\n".join(self.lines)]]))
            self.lines = []


def _parse_text_lines(lines: Iterator[Tuple[int, int, Optional[bytes]]], path: str, text_unit: str,
                      problems: List[Problem]) -> Tuple[List[Document], int]:
    """Plain-text documents (``line`` or ``paragraph``) and the number of blank lines."""
    docs: List[Document] = []
    paragraph = _Paragraph(docs)
    blank = 0
    for offset, line, body in lines:
        if body is None:  # too long: skipped, and it ends a paragraph
            paragraph.end()
            continue
        if _BLANK.match(body):
            blank += 1
            paragraph.end()
            continue
        text = _decode(body, path, line, problems)
        if text is None:
            continue
        if text_unit == "paragraph":
            paragraph.add(offset, line, text)
        else:
            docs.append(Document(offset, line, [[text]]))
    paragraph.end()
    return docs, blank


def _parse_json_line(body: bytes, path: str, line: int, json_keys: Sequence[str],
                     problems: List[Problem]) -> Optional[List[List[str]]]:
    """The texts of one JSONL line per key, or None (and a problem) when it cannot be used."""
    if _BLANK.match(body):
        problems.append(Problem("blank_line", path, line, "empty line in a JSONL file"))
        return None
    text = _decode(body, path, line, problems)
    if text is None:
        return None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        problems.append(Problem("malformed_json", path, line, f"{err.msg}: column {err.colno}"))
        return None
    if not isinstance(obj, dict):
        problems.append(Problem(
            "not_an_object", path, line, f"expected a JSON object, got {type(obj).__name__}"
        ))
        return None
    values = _json_values(obj, json_keys, path, line, problems)
    if values is None:
        return None
    # Only a line with a "\ud8.." escape can decode to a lone surrogate: the cheap test first.
    if _SURROGATE_ESCAPE.search(body) and any(_has_lone_surrogate(t) for texts in values for t in texts):
        problems.append(Problem(
            "invalid_unicode", path, line, "text contains a lone UTF-16 surrogate (\\ud8xx-\\udfxx)"
        ))
        return None
    return values


def _json_values(obj: dict, json_keys: Sequence[str], path: str, line: int,
                 problems: List[Problem]) -> Optional[List[List[str]]]:
    """Per key, the list of texts of ``obj`` (a string gives one, a list of strings one each);
    None and a problem at the first key that is missing or holds something else."""
    values: List[List[str]] = []
    for key in json_keys:
        if key not in obj:
            shown = ", ".join(repr(k) for k in list(obj)[:5])
            problems.append(Problem("missing_key", path, line, f"no key {key!r} (has {shown})"))
            return None
        value = obj[key]
        if isinstance(value, str):
            values.append([value])
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            values.append(value)
        else:
            kind = "null" if value is None else type(value).__name__
            problems.append(Problem(
                "bad_value", path, line, f"{key!r} is {kind}; expected a string or a list of strings",
            ))
            return None
    return values
