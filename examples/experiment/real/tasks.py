"""Labelled transfer tasks and sentence-retrieval sets on the committed parallel text.

Two files in ``examples/experiment/real/data/`` (made by ``build_parallel.py``) hold the data:

* ``bible_en_es.jsonl.gz``: verse-aligned King James Version and Reina-Valera 1909, one verse a line:
  ``{"key": "Genesis 1:1", "book": "Genesis", "group": "law", "en": ..., "es": ...}``.
* ``debian_reference.jsonl.gz``: Debian Reference paragraphs aligned by position within a chapter:
  ``{"chapter": "ch01", "para": 7, "label": "tutorials", "en": ..., "de": ..., "es": ..., "zh": ...}``
  (a target is ``null`` where the translation was left identical to the English).

The tasks, all deterministic (hash-ranked with fixed salts, no random state):

* **Bible book groups** (6 classes): the split is **by book**, so a verse and its translation are never
  on both sides. Fine-tune on the English verses of the train books; test on the English verses of the
  test books (in-language score) and zero-shot on their Spanish verses.
* **Debian Reference chapter topics** (12 classes): the split is by **blocks of paragraph positions**
  within each chapter; an aligned position (all its languages) lies wholly on one side. Train on the
  English paragraphs of the train blocks; test on each language's paragraphs of the test blocks.
* **Sentence retrieval**: EN<->ES verse pairs and EN<->DE/ES/ZH paragraph pairs, drawn from the test
  side only, with every text unique within a set (so the correct partner is well defined).

On top of the split, a test item is dropped when any of its texts (any language, compared with case
and spacing ignored) equals a text of a train item: the Bible repeats verses across books (2 Kings 19
and Isaiah 37, Psalms 14 and 53), and the documentation repeats sentences across chapters.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from megatron_prealign.errors import PreAlignError

DATA = Path(__file__).resolve().parent / "data"
BIBLE_FILE = DATA / "bible_en_es.jsonl.gz"
DEBIAN_REFERENCE_FILE = DATA / "debian_reference.jsonl.gz"


class ParallelDataError(PreAlignError):
    """A parallel-text file (or its package input) is malformed; the message names file and line."""


# --------------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------------

BIBLE_GROUPS: Tuple[str, ...] = ("law", "history", "wisdom", "prophets", "gospels_acts", "epistles_revelation")

# The 66 books as the SWORD modules name them (KJV versification), in canonical order, by group.
_BOOKS_BY_GROUP: Dict[str, Tuple[str, ...]] = {
    "law": ("Genesis", "Exodus", "Leviticus", "Numbers", "Deuteronomy"),
    "history": ("Joshua", "Judges", "Ruth", "I Samuel", "II Samuel", "I Kings", "II Kings", "I Chronicles",
                "II Chronicles", "Ezra", "Nehemiah", "Esther"),
    "wisdom": ("Job", "Psalms", "Proverbs", "Ecclesiastes", "Song of Solomon"),
    "prophets": ("Isaiah", "Jeremiah", "Lamentations", "Ezekiel", "Daniel", "Hosea", "Joel", "Amos", "Obadiah",
                 "Jonah", "Micah", "Nahum", "Habakkuk", "Zephaniah", "Haggai", "Zechariah", "Malachi"),
    "gospels_acts": ("Matthew", "Mark", "Luke", "John", "Acts"),
    "epistles_revelation": ("Romans", "I Corinthians", "II Corinthians", "Galatians", "Ephesians",
                            "Philippians", "Colossians", "I Thessalonians", "II Thessalonians", "I Timothy",
                            "II Timothy", "Titus", "Philemon", "Hebrews", "James", "I Peter", "II Peter",
                            "I John", "II John", "III John", "Jude", "Revelation of John"),
}
BOOK_GROUP: Dict[str, str] = {b: g for g, books in _BOOKS_BY_GROUP.items() for b in books}
BOOKS: Tuple[str, ...] = tuple(BOOK_GROUP)

# Debian Reference chapter file -> topic label (the 12 chapters; the preface and appendix are not used).
DEBIAN_REFERENCE_CHAPTERS: Dict[str, str] = {
    "ch01": "tutorials", "ch02": "package_management", "ch03": "system_initialization",
    "ch04": "authentication", "ch05": "network_setup", "ch06": "network_applications",
    "ch07": "gui", "ch08": "i18n_l10n", "ch09": "system_tips", "ch10": "data_management",
    "ch11": "data_conversion", "ch12": "programming",
}
DEBIAN_REFERENCE_LABELS: Tuple[str, ...] = tuple(DEBIAN_REFERENCE_CHAPTERS.values())
TARGET_LANGUAGES: Tuple[str, ...] = ("de", "es", "zh")

BIBLE_FIELDS = ("key", "book", "group", "en", "es")
DEBIAN_REFERENCE_FIELDS = ("chapter", "para", "label", "en", "de", "es", "zh")
_VERSE_KEY = re.compile(r"(.+) ([1-9]\d*):([1-9]\d*)")

BIBLE_TEST_FRACTION = 0.25          # of each group's verses, in whole books
DEBIAN_REFERENCE_BLOCK = 16          # paragraph positions per block
DEBIAN_REFERENCE_TEST_FRACTION = 0.25  # of each chapter's blocks
BIBLE_SPLIT_SALT = "bible-book-split-v1"
DEBIAN_REFERENCE_SPLIT_SALT = "debian-reference-block-split-v1"


def rank(text: str, salt: str) -> str:
    """A seeded, platform-independent sort key."""
    return hashlib.sha256(f"{salt}\x00{text}".encode("utf-8")).hexdigest()


def text_key(text: str) -> str:
    """What counts as "the same text" for leak checks: case and spacing ignored."""
    return " ".join(text.casefold().split())


# --------------------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------------------

def _read_jsonl_gz(path: Path) -> Iterable[Tuple[int, dict]]:
    path = Path(path)
    if not path.is_file():
        raise ParallelDataError(f"{path}: file not found (rebuild it with examples/experiment/real/build_parallel.py)")
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ParallelDataError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
                if not isinstance(rec, dict):
                    raise ParallelDataError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
                yield lineno, rec
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise ParallelDataError(f"{path}: cannot read as gzipped UTF-8 JSON lines ({exc})") from None


def _need_text(path: Path, lineno: int, rec: dict, name: str, nullable: bool = False) -> None:
    value = rec[name]
    if value is None and nullable:
        return
    if not isinstance(value, str) or not value.strip():
        raise ParallelDataError(f"{path}:{lineno}: field {name!r} must be a non-empty string, got {value!r}")


def _check_fields(path: Path, lineno: int, rec: dict, fields: Sequence[str]) -> None:
    if tuple(rec) != tuple(fields):
        raise ParallelDataError(f"{path}:{lineno}: fields {list(rec)}, expected {list(fields)} in this order")


def validate_bible_record(rec: dict, path: Path, lineno: int) -> None:
    _check_fields(path, lineno, rec, BIBLE_FIELDS)
    for name in BIBLE_FIELDS:
        _need_text(path, lineno, rec, name)
    m = _VERSE_KEY.fullmatch(rec["key"])
    if not m or m.group(1) != rec["book"]:
        raise ParallelDataError(f"{path}:{lineno}: key {rec['key']!r} is not '<book> <chapter>:<verse>' "
                                f"for book {rec['book']!r}")
    if BOOK_GROUP.get(rec["book"]) != rec["group"]:
        raise ParallelDataError(f"{path}:{lineno}: book {rec['book']!r} has group {rec['group']!r}, expected "
                                f"{BOOK_GROUP.get(rec['book'], 'a known book')!r}")


def validate_debian_reference_record(rec: dict, path: Path, lineno: int) -> None:
    _check_fields(path, lineno, rec, DEBIAN_REFERENCE_FIELDS)
    if DEBIAN_REFERENCE_CHAPTERS.get(rec["chapter"]) != rec["label"]:
        raise ParallelDataError(f"{path}:{lineno}: chapter {rec['chapter']!r} with label {rec['label']!r}; "
                                f"expected one of {DEBIAN_REFERENCE_CHAPTERS}")
    if not isinstance(rec["para"], int) or isinstance(rec["para"], bool) or rec["para"] < 0:
        raise ParallelDataError(f"{path}:{lineno}: 'para' must be a paragraph position >= 0, got {rec['para']!r}")
    _need_text(path, lineno, rec, "en")
    for lang in TARGET_LANGUAGES:
        _need_text(path, lineno, rec, lang, nullable=True)
        if rec[lang] is not None and rec[lang] == rec["en"]:
            raise ParallelDataError(f"{path}:{lineno}: {lang!r} is identical to the English; it must be null")


def load_bible(path: Path = BIBLE_FILE) -> List[dict]:
    """The verse records, validated; a repeated key is an error."""
    records, seen = [], {}
    for lineno, rec in _read_jsonl_gz(path):
        validate_bible_record(rec, Path(path), lineno)
        if rec["key"] in seen:
            raise ParallelDataError(f"{path}:{lineno}: verse {rec['key']!r} repeats line {seen[rec['key']]}")
        seen[rec["key"]] = lineno
        records.append(rec)
    return records


def load_debian_reference(path: Path = DEBIAN_REFERENCE_FILE) -> List[dict]:
    """The paragraph records, validated; a repeated (chapter, para) is an error."""
    records, seen = [], {}
    for lineno, rec in _read_jsonl_gz(path):
        validate_debian_reference_record(rec, Path(path), lineno)
        pos = (rec["chapter"], rec["para"])
        if pos in seen:
            raise ParallelDataError(f"{path}:{lineno}: paragraph {pos} repeats line {seen[pos]}")
        seen[pos] = lineno
        records.append(rec)
    return records


# --------------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------------

def bible_split(records: Sequence[dict], test_fraction: float = BIBLE_TEST_FRACTION,
                salt: str = BIBLE_SPLIT_SALT) -> Dict[str, List[str]]:
    """Train and test books: within each group, books in seeded order go to test whenever that brings
    the test side's share of the group's verses closer to ``test_fraction``; at least one book of each
    group is on each side."""
    verses: Dict[str, int] = defaultdict(int)
    for rec in records:
        verses[rec["book"]] += 1
    test: List[str] = []
    for group in BIBLE_GROUPS:
        books = sorted((b for b in verses if BOOK_GROUP[b] == group), key=lambda b: rank(b, salt))
        if len(books) < 2:
            raise ParallelDataError(f"Bible group {group!r} has {len(books)} book(s); a split needs two")
        target, taken, chosen = test_fraction * sum(verses[b] for b in books), 0, []
        for book in books:              # a book goes to test when it brings the share closer to target
            if abs(taken + verses[book] - target) < abs(taken - target):
                chosen.append(book)
                taken += verses[book]
        if not chosen:                  # one book holds most of the group: take the smallest other
            chosen = [min(books, key=lambda b: (verses[b], rank(b, salt)))]
        if len(chosen) == len(books):
            chosen.pop()
        test += chosen
    order = {b: i for i, b in enumerate(BOOKS)}
    return {"train": sorted((b for b in verses if b not in test), key=order.get),
            "test": sorted(test, key=order.get)}


def debian_reference_split(records: Sequence[dict], block: int = DEBIAN_REFERENCE_BLOCK,
                           test_fraction: float = DEBIAN_REFERENCE_TEST_FRACTION,
                           salt: str = DEBIAN_REFERENCE_SPLIT_SALT) -> Dict[str, List[Tuple[str, int]]]:
    """Test blocks of ``block`` paragraph positions per chapter (seeded; at least one block on each
    side). Returns ``{"train": [(chapter, block), ...], "test": [...]}``."""
    blocks: Dict[str, set] = defaultdict(set)
    for rec in records:
        blocks[rec["chapter"]].add(rec["para"] // block)
    out: Dict[str, List[Tuple[str, int]]] = {"train": [], "test": []}
    for chapter in sorted(blocks):
        ids = sorted(blocks[chapter], key=lambda b: rank(f"{chapter}/{b}", salt))
        if len(ids) < 2:
            raise ParallelDataError(f"Debian Reference {chapter}: {len(ids)} block(s) of paragraphs; a split "
                                    f"needs two (lower the block size)")
        n_test = min(len(ids) - 1, max(1, math.ceil(test_fraction * len(ids))))
        out["test"] += [(chapter, b) for b in sorted(ids[:n_test])]
        out["train"] += [(chapter, b) for b in sorted(ids[n_test:])]
    return out


# --------------------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------------------

@dataclass
class TransferTask:
    """A labelled task: ``train`` English (text, label) pairs; ``test[lang]`` (text, label) pairs per
    language (``"en"`` is the in-language score); ``dropped_test`` test units removed as leaks."""

    name: str
    labels: Tuple[str, ...]
    train: List[Tuple[str, str]]
    test: Dict[str, List[Tuple[str, str]]]
    train_units: List[str] = field(default_factory=list)   # books, or "chapter/block" ids
    test_units: List[str] = field(default_factory=list)
    dropped_test: int = 0
    aligned_test: Dict[str, List[Tuple[str, str, str]]] = field(default_factory=dict)
    """Per target language, the test items that have it: (English text, its translation, label), so
    the English and the zero-shot score can be measured on the same items."""


def _without_leaks(train: Sequence[dict], test: Sequence[dict], langs: Sequence[str]) -> Tuple[List[dict], int]:
    seen = {text_key(r[lang]) for r in train for lang in langs if r.get(lang)}
    kept = [r for r in test if not any(r.get(lang) and text_key(r[lang]) in seen for lang in langs)]
    return kept, len(test) - len(kept)


def bible_transfer_task(records: Sequence[dict], **split_kw) -> TransferTask:
    """Book-group classification: train on English verses of the train books, test on the English and
    (zero-shot) Spanish verses of the test books."""
    split = bible_split(records, **split_kw)
    test_books = set(split["test"])
    train = [r for r in records if r["book"] not in test_books]
    test, dropped = _without_leaks(train, [r for r in records if r["book"] in test_books], ("en", "es"))
    return TransferTask(
        name="bible_book_groups", labels=BIBLE_GROUPS,
        train=[(r["en"], r["group"]) for r in train],
        test={lang: [(r[lang], r["group"]) for r in test] for lang in ("en", "es")},
        train_units=split["train"], test_units=split["test"], dropped_test=dropped,
        aligned_test={"es": [(r["en"], r["es"], r["group"]) for r in test]})


def _debian_reference_sides(records: Sequence[dict], **split_kw) -> Tuple[List[dict], List[dict], dict, int]:
    block = split_kw.get("block", DEBIAN_REFERENCE_BLOCK)
    split = debian_reference_split(records, **split_kw)
    test_blocks = set(split["test"])
    train = [r for r in records if (r["chapter"], r["para"] // block) not in test_blocks]
    test, dropped = _without_leaks(
        train, [r for r in records if (r["chapter"], r["para"] // block) in test_blocks], ("en",) + TARGET_LANGUAGES)
    return train, test, split, dropped


def debian_reference_task(records: Sequence[dict], **split_kw) -> TransferTask:
    """Chapter-topic classification: train on English paragraphs of the train blocks; test on each
    language's paragraphs of the test blocks (a target without a translation is left out)."""
    train, test, split, dropped = _debian_reference_sides(records, **split_kw)
    return TransferTask(
        name="debian_reference_topics", labels=DEBIAN_REFERENCE_LABELS,
        train=[(r["en"], r["label"]) for r in train],
        test={lang: [(r[lang], r["label"]) for r in test if r[lang] is not None]
              for lang in ("en",) + TARGET_LANGUAGES},
        train_units=[f"{c}/{b}" for c, b in split["train"]], test_units=[f"{c}/{b}" for c, b in split["test"]],
        dropped_test=dropped,
        aligned_test={lang: [(r["en"], r[lang], r["label"]) for r in test if r[lang] is not None]
                      for lang in TARGET_LANGUAGES})


def _unique_pairs(pairs: Iterable[Tuple[str, str]], limit: Optional[int], salt: str) -> List[Tuple[str, str]]:
    """Pairs whose source and target texts are each unique among the pairs, then (if ``limit``) a
    seeded sample of ``limit`` of them, in their original order."""
    pairs = list(pairs)
    count_src, count_tgt = defaultdict(int), defaultdict(int)
    for src, tgt in pairs:
        count_src[text_key(src)] += 1
        count_tgt[text_key(tgt)] += 1
    unique = [(i, p) for i, p in enumerate(pairs) if count_src[text_key(p[0])] == 1 and count_tgt[text_key(p[1])] == 1]
    if limit is not None and len(unique) > limit:
        unique = sorted(sorted(unique, key=lambda ip: rank(ip[1][0], salt))[:limit])
    return [p for _, p in unique]


def bible_retrieval_pairs(records: Sequence[dict], limit: Optional[int] = 1000, **split_kw) -> List[Tuple[str, str]]:
    """(English, Spanish) verse pairs of the test books, texts unique, a seeded sample of ``limit``."""
    test_books = set(bible_split(records, **split_kw)["test"])
    return _unique_pairs(((r["en"], r["es"]) for r in records if r["book"] in test_books), limit, "bible-retrieval")


def debian_reference_retrieval_pairs(records: Sequence[dict], limit: Optional[int] = None,
                                     **split_kw) -> Dict[str, List[Tuple[str, str]]]:
    """Per target language, (English, target) paragraph pairs of the test blocks, texts unique."""
    _, test, _, _ = _debian_reference_sides(records, **split_kw)
    return {lang: _unique_pairs(((r["en"], r[lang]) for r in test if r[lang] is not None), limit,
                                f"debian-reference-retrieval-{lang}")
            for lang in TARGET_LANGUAGES}
