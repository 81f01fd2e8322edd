"""Checks of the committed English / English-Clone data files (no network, no rebuilding).

``examples/experiment/clone/data/`` holds ``corpus.jsonl.gz`` (English paragraphs with their source),
``brown_genres.jsonl.gz`` (labelled Brown paragraphs) and the README that documents both; the files
are made by ``examples/experiment/clone/build_corpus.py``. These tests read the committed bytes and
check them against each other and against the README's numbers.
"""

import gzip
import hashlib
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from tests.fixtures.helpers import markdown_table_rows

DATA = Path(__file__).resolve().parents[2] / "examples" / "experiment" / "clone" / "data"
CORPUS = DATA / "corpus.jsonl.gz"
LABELLED = DATA / "brown_genres.jsonl.gz"
README = DATA / "README.md"
MAX_BYTES = 5_000_000

SOURCES = {"austen", "dickens", "wells", "verne", "melville", "brown", "mhcc"}
LABELS = {"press", "general", "learned", "fiction"}
BROWN_GENRES = {"news", "editorial", "reviews", "religion", "hobbies", "lore", "belles_lettres",
                "government", "learned", "fiction", "mystery", "science_fiction", "adventure",
                "romance", "humor"}
FUNCTION_WORDS = {"the", "and", "of", "to", "a", "in", "that", "is", "was", "he", "it", "his", "i",
                  "for", "with", "as", "not", "be", "on", "her", "had", "but", "you", "at", "by"}


def _read_jsonl_gz(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _int(cell):
    return int(cell.strip().strip("*").replace(",", ""))


@pytest.fixture(scope="module")
def corpus():
    return _read_jsonl_gz(CORPUS)


@pytest.fixture(scope="module")
def labelled():
    return _read_jsonl_gz(LABELLED)


@pytest.fixture(scope="module")
def readme():
    return README.read_text(encoding="utf-8")


_PUNCT = re.compile(r"[^\w\s]")
_ASCII_LETTERS = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_BAD = re.compile(r"gutenberg|<[a-z/][^>]*>", re.I)


def _key(text):
    """Duplicate key: case, punctuation and spacing ignored."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


@pytest.fixture(scope="module")
def corpus_keys(corpus):
    return [_key(r["text"]) for r in corpus]


def _assert_prose(text):
    """Normalized whitespace, at least 99% ASCII, at least 60% ASCII letters, no markup."""
    assert text == " ".join(text.split()), f"whitespace not normalized: {text[:80]!r}"
    raw = text.encode("ascii", "ignore")
    assert len(raw) >= 0.99 * len(text), f"non-ASCII text: {text[:80]!r}"
    letters = len(raw) - len(raw.translate(None, _ASCII_LETTERS))
    assert letters >= 0.6 * len(text), f"not mostly letters: {text[:80]!r}"
    assert not _BAD.search(text), text[:80]


def test_files_exist_and_are_small():
    for path in (CORPUS, LABELLED, README):
        assert path.is_file(), f"{path} missing: run examples/experiment/clone/build_corpus.py"
    assert CORPUS.stat().st_size < MAX_BYTES
    assert LABELLED.stat().st_size < MAX_BYTES


def test_readme_hashes_and_line_counts(readme, corpus, labelled):
    rows = {r[0].strip("`"): r for r in markdown_table_rows(readme, "| file |")}
    for path, records in ((CORPUS, corpus), (LABELLED, labelled)):
        row = rows[path.name]
        assert _int(row[1]) == len(records)
        assert _int(row[2]) == path.stat().st_size
        assert row[3].strip("`") == hashlib.sha256(path.read_bytes()).hexdigest()


def test_corpus_records(corpus):
    assert len(corpus) > 10_000
    for rec in corpus:
        assert set(rec) == {"text", "source"}
        assert isinstance(rec["text"], str) and len(rec["text"]) >= 40
        assert rec["source"] in SOURCES
        _assert_prose(rec["text"])
    assert {r["source"] for r in corpus} == SOURCES


def test_corpus_is_english(corpus):
    n_words = n_function = n_without = 0
    for rec in corpus:
        words = re.findall(r"[a-z']+", rec["text"].lower())
        hits = sum(w in FUNCTION_WORDS for w in words)
        n_words += len(words)
        n_function += hits
        n_without += hits == 0 and len(words) >= 15
    assert n_words > 1_000_000
    assert n_function / n_words > 0.25          # English prose: about a third are these words
    assert n_without <= 0.001 * len(corpus)     # a rare quotation in Latin is fine


def test_corpus_counts_match_readme(corpus, readme):
    rows = markdown_table_rows(readme, "| source |")
    table = {r[0].strip("`"): (_int(r[3]), _int(r[4])) for r in rows if r[0].startswith("`")}
    assert set(table) == SOURCES
    got = defaultdict(lambda: [0, 0])
    for rec in corpus:
        got[rec["source"]][0] += 1
        got[rec["source"]][1] += len(rec["text"].split())
    assert {k: tuple(v) for k, v in got.items()} == table


def test_corpus_has_no_duplicates(corpus_keys):
    assert len(set(corpus_keys)) == len(corpus_keys)


def test_labelled_records(labelled):
    docs_label = {}
    for rec in labelled:
        assert set(rec) == {"text", "label", "genre", "doc"}
        assert rec["label"] in LABELS
        assert rec["genre"] in BROWN_GENRES
        assert re.fullmatch(r"c[a-r]\d\d", rec["doc"])
        assert len(rec["text"].split()) >= 30
        _assert_prose(rec["text"])
        assert docs_label.setdefault(rec["doc"], rec["label"]) == rec["label"]
    assert len({_key(r["text"]) for r in labelled}) == len(labelled)


def test_labelled_counts_and_mapping_match_readme(labelled, readme):
    rows = [r for r in markdown_table_rows(readme, "| label |") if r[0].startswith("`")]
    table = {r[0].strip("`"): r for r in rows}
    assert set(table) == LABELS
    by_label = defaultdict(list)
    for rec in labelled:
        by_label[rec["label"]].append(rec)
    for label, row in table.items():
        recs = by_label[label]
        documented = dict(re.findall(r"([a-z_]+) \(([\d,]+)\)", row[1]))
        assert {g: _int(n) for g, n in documented.items()} == dict(Counter(r["genre"] for r in recs))
        assert _int(row[2]) == len({r["doc"] for r in recs})
        assert _int(row[3]) == len(recs)
        assert _int(row[4]) == sum(len(r["text"].split()) for r in recs)
    # the genre -> label mapping is a function and covers the 15 Brown genres
    mapping = {}
    for rec in labelled:
        assert mapping.setdefault(rec["genre"], rec["label"]) == rec["label"]
    assert set(mapping) == BROWN_GENRES
    sizes = [len(v) for v in by_label.values()]
    assert max(sizes) / min(sizes) < 1.2


def test_no_paragraph_in_both_files(corpus, corpus_keys, labelled):
    assert not set(corpus_keys) & {_key(r["text"]) for r in labelled}
    # also no long sentence of a labelled paragraph inside a corpus paragraph (document disjointness)
    def sentences(records):
        return {s for r in records for s in re.split(r"(?<=[.!?])\s+", r["text"]) if len(s) > 80}

    brown = [r for r in corpus if r["source"] == "brown"]
    assert not sentences(brown) & sentences(labelled)


def test_the_build_script_renders_the_committed_readme(corpus, labelled, readme):
    """``build_corpus.render_readme``, given the counts and hashes of the committed files, writes the
    committed README byte for byte: the script that made the data still describes it the same way."""
    from examples.experiment.clone import build_corpus

    per_source = defaultdict(list)
    for rec in corpus:
        per_source[rec["source"]].append(rec["text"])
    archives = {row[0].strip("`"): row[1].strip("`") for row in markdown_table_rows(readme, "| archive |")}
    stats = {
        "corpus": {name: {"paragraphs": len(ps), "words": sum(len(p.split()) for p in ps)}
                   for name, ps in per_source.items()},
        "labelled": {label: {
            "paragraphs": sum(r["label"] == label for r in labelled),
            "words": sum(len(r["text"].split()) for r in labelled if r["label"] == label),
            "documents": len({r["doc"] for r in labelled if r["label"] == label}),
            "genres": dict(sorted(Counter(r["genre"] for r in labelled if r["label"] == label).items()))}
            for label in build_corpus.LABELS},
        "brown_docs_in_corpus": 500 - len({r["doc"] for r in labelled}),  # the Brown Corpus has 500
        "files": {path.name: {"bytes": path.stat().st_size,
                              "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
                  for path in (CORPUS, LABELLED)},
        "archives": {name: {"file": name, "sha256": sha} for name, sha in archives.items()},
    }
    assert build_corpus.render_readme(stats) == readme
