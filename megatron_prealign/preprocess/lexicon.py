"""Importing lexicons into dictionary files (``tools/import_dictionary.py``).

``read_dictd`` reads FreeDict dictionaries in dictd format (Debian ``dict-freedict-*`` packages:
``/usr/share/dictd/freedict-eng-deu.index`` + ``.dict.dz``), ``clean_pairs`` keeps single-word pairs
under a case policy and removes duplicates, and ``tools/import_dictionary.py`` writes either format
with a count report.

``save_pairs`` and ``save_multiway`` write the two formats of ``text.dictionary`` atomically.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import zlib
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from megatron_prealign.files import atomic_open, describe_os_error
from megatron_prealign.text.dictionary import WORD_SEPARATOR, DictionaryError


def save_pairs(entries: Iterable[Sequence[str]], path: str) -> int:
    """Write concepts as pair lines ``first<TAB>other`` (one per other word). Returns lines."""
    lines = 0
    with atomic_open(path) as f:
        for words in entries:
            for other in words[1:]:
                f.write(f"{words[0]}\t{other}\n")
                lines += 1
    return lines


def save_multiway(entries: Iterable[Sequence[str]], path: str) -> int:
    """Write concepts as multi-way JSONL (``{"words": "a $ b"}``). Returns lines."""
    lines = 0
    with atomic_open(path) as f:
        for words in entries:
            if any(WORD_SEPARATOR in w for w in words):
                f.write(json.dumps({"words": list(words)}, ensure_ascii=False) + "\n")
            else:
                f.write(json.dumps({"words": f" {WORD_SEPARATOR} ".join(words)}, ensure_ascii=False) + "\n")
            lines += 1
    return lines


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


_B64_VALUE = {c: i for i, c in enumerate(_B64)}


SINGLE_WORD = re.compile(r"^[^\W\d_][\w'\-]*$")


_ANNOTATIONS = re.compile(r"<[^>]*>|\[[^\]]*\]|\([^)]*\)|\{[^}]*\}")


_NUMBERING = re.compile(r"^\d+\.\s*")


def dictd_number(text: str) -> int:
    """Decode dictd's big-endian base-64 numbers (``A``=0 ... ``/``=63)."""
    value = 0
    for ch in text:
        value = value * 64 + _B64_VALUE[ch]
    return value


def dictd_encode_number(value: int) -> str:
    """Inverse of ``dictd_number`` (used to write test fixtures)."""
    if value == 0:
        return "A"
    digits = []
    while value:
        digits.append(_B64[value % 64])
        value //= 64
    return "".join(reversed(digits))


@dataclass
class RawPair:
    """One headword/translation candidate read from a lexicon, before cleaning."""

    source: str
    target: str
    where: str


def read_dictd(base: str) -> Iterator[RawPair]:
    """Yield raw (headword, translation) candidates from a dictd dictionary.

    Args:
        base: path without extension, e.g. ``/usr/share/dictd/freedict-eng-deu`` (reads ``.index``
            and ``.dict.dz`` or ``.dict``).

    Entry bodies follow FreeDict's layout: the first line is the headword with pronunciation and
    part of speech, the following non-indented lines hold translations (optionally numbered
    ``1. ...``) separated by ``,`` or ``;``; indented lines (notes, synonyms, examples) and the
    ``00-database-*`` metadata entries are skipped; ``<pos>``, ``[domain]``, ``(notes)`` and
    ``{refs}`` annotations are removed.
    """
    index_path = base + ".index"
    data_path = base + ".dict.dz" if os.path.exists(base + ".dict.dz") else base + ".dict"
    for p in (index_path, data_path):
        if not os.path.exists(p):
            raise DictionaryError(
                f"{p}: not found; install the lexicon (e.g. apt-get install dict-freedict-eng-deu) "
                "and pass the path without extension, e.g. /usr/share/dictd/freedict-eng-deu"
            )
    data = _read_dictd_data(data_path)
    for number, headword, offset, length in _dictd_index(index_path, data_path, len(data)):
        if headword.startswith("00-database") or headword.startswith("00database"):
            continue
        body = data[offset : offset + length].decode("utf-8", "replace")
        where = f"{index_path}:{number}"
        for body_line in body.split("\n")[1:]:
            if not body_line.strip() or body_line[:1].isspace():
                continue
            text = _ANNOTATIONS.sub("", _NUMBERING.sub("", body_line.strip()))
            for candidate in re.split(r"[,;]", text):
                candidate = candidate.strip()
                if candidate:
                    yield RawPair(headword, candidate, where)


_REINSTALL = "reinstall the lexicon (e.g. apt-get install --reinstall dict-freedict-eng-deu)"


def _read_dictd_data(path: str) -> bytes:
    """The whole (decompressed) ``.dict``/``.dict.dz``; a truncated or damaged file is an error."""
    try:
        if path.endswith(".dz"):
            with gzip.open(path, "rb") as f:
                return f.read()
        with open(path, "rb") as f:
            return f.read()
    except EOFError:
        raise DictionaryError(f"{path}: truncated (the compressed data ends before its end "
                              f"marker); {_REINSTALL}") from None
    except (gzip.BadGzipFile, zlib.error) as err:
        raise DictionaryError(f"{path}: not a valid dictzip/gzip file ({err}); {_REINSTALL}") from None
    except OSError as err:
        raise DictionaryError(describe_os_error(err, path)) from None


def _dictd_index(index_path: str, data_path: str, data_size: int) -> List[Tuple[int, str, int, int]]:
    """(line, headword, offset, length) of every ``.index`` line, all checked against the data.

    Entries that end past the data file mean it was cut short: they are counted and refused, with
    the first one's line, instead of being read as empty or partial entries.
    """
    entries = []
    try:
        with open(index_path, "r", encoding="utf-8") as f:
            lines = f.read().split("\n")
        if lines and lines[-1] == "":
            lines.pop()
    except UnicodeDecodeError as err:
        raise DictionaryError(f"{index_path}: not valid UTF-8 ({err.reason} at byte {err.start}); "
                              "is this a dictd .index file?") from None
    for number, line in enumerate(lines, start=1):
        cols = line.split("\t")
        if len(cols) < 3:
            raise DictionaryError(
                f"{index_path}:{number}: expected 'headword<TAB>offset<TAB>length', got "
                f"{line[:80]!r}; is this a dictd .index file?"
            )
        try:
            offset, length = dictd_number(cols[1]), dictd_number(cols[2])
        except KeyError:
            raise DictionaryError(
                f"{index_path}:{number}: offset/length {cols[1]!r}/{cols[2]!r} are not dictd "
                "base-64 numbers"
            ) from None
        entries.append((number, cols[0].strip(), offset, length))
    past = [e for e in entries if e[2] + e[3] > data_size]
    if past:
        number, headword = past[0][:2]
        raise DictionaryError(
            f"{data_path} is truncated: {len(past)} of the {len(entries)} entries of {index_path} "
            f"end past its {data_size} bytes (the first at {index_path}:{number}, {headword!r}); "
            f"{_REINSTALL}"
        )
    return entries


@dataclass
class CleaningPolicy:
    """How raw lexicon pairs become dictionary entries."""

    case: str = "lower"
    """'lower': lowercase both sides; 'keep': keep the lexicon's spelling."""
    single_words: bool = True
    """Keep only pairs whose sides are single words (letters first; letters, digits, ' and -)."""
    drop_identical: bool = True
    """Drop pairs whose two sides are the same string (no-op switches, trivial positives)."""
    max_translations: Optional[int] = None
    """Keep at most this many translations per source word (in lexicon order); None: all."""


def clean_pairs(
    pairs: Iterable[RawPair], policy: Optional[CleaningPolicy] = None
) -> Tuple[List[Tuple[str, str]], Dict[str, int]]:
    """Apply a cleaning policy and count what happened.

    Returns:
        (pairs, report): unique (source, target) pairs in lexicon order, and counts: raw pairs,
        dropped by reason, kept pairs, distinct source and target words.
    """
    policy = policy or CleaningPolicy()
    if policy.case not in ("lower", "keep"):
        raise DictionaryError(f"unknown case policy {policy.case!r}; use lower or keep")
    report: Counter = Counter()
    seen = set()
    per_source: Counter = Counter()
    kept: List[Tuple[str, str]] = []
    headwords = set()
    for raw in pairs:
        report["raw_pairs"] += 1
        headwords.add(raw.source)
        src, tgt = raw.source.strip(), raw.target.strip()
        if policy.case == "lower":
            src, tgt = src.lower(), tgt.lower()
        if policy.single_words and not (SINGLE_WORD.match(src) and SINGLE_WORD.match(tgt)):
            report["dropped_not_single_word"] += 1
            continue
        if policy.drop_identical and src == tgt:
            report["dropped_identical"] += 1
            continue
        if (src, tgt) in seen:
            report["dropped_duplicate"] += 1
            continue
        if policy.max_translations is not None and per_source[src] >= policy.max_translations:
            report["dropped_over_max_translations"] += 1
            continue
        seen.add((src, tgt))
        per_source[src] += 1
        kept.append((src, tgt))
    report["headwords"] = len(headwords)
    report["kept_pairs"] = len(kept)
    report["source_words"] = len({s for s, _ in kept})
    report["target_words"] = len({t for _, t in kept})
    return kept, dict(report)


def pairs_to_entries(pairs: Iterable[Tuple[str, str]]) -> List[List[str]]:
    """Group pairs by source word into concepts ``[source, target1, ...]`` (first-seen order)."""
    concepts: "OrderedDict[str, List[str]]" = OrderedDict()
    for src, tgt in pairs:
        concepts.setdefault(src, [src])
        if tgt not in concepts[src]:
            concepts[src].append(tgt)
    return [c for c in concepts.values() if len(c) >= 2]
