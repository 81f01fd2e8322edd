"""Lexicon import (``preprocess.lexicon``): FreeDict dictd reading, cleaning, saving dictionaries."""

import gzip
import json

import pytest

from megatron_prealign.preprocess.lexicon import (
    CleaningPolicy,
    RawPair,
    clean_pairs,
    dictd_encode_number,
    dictd_number,
    pairs_to_entries,
    read_dictd,
    save_multiway,
    save_pairs,
)
from megatron_prealign.text.dictionary import DictionaryError, load_dictionary


def test_save_and_load_round_trip(tmp_path):
    entries = [["bank", "Bank", "banque"], ["house", "Haus"], ["a$b", "c"]]
    save_multiway(entries, str(tmp_path / "d.jsonl"))
    assert load_dictionary(str(tmp_path / "d.jsonl")).entries == entries
    save_pairs(entries[:2], str(tmp_path / "d.tsv"))
    assert load_dictionary(str(tmp_path / "d.tsv")).entries == entries[:2]


def make_dictd(tmp_path, entries):
    """Write a tiny dictd dictionary (index + gzip data) like FreeDict's."""
    data = b""
    index = []
    for headword, body in entries:
        raw = body.encode("utf-8")
        index.append(f"{headword}\t{dictd_encode_number(len(data))}\t{dictd_encode_number(len(raw))}")
        data += raw
    base = tmp_path / "freedict-eng-xxx"
    (tmp_path / "freedict-eng-xxx.index").write_text("\n".join(index) + "\n", encoding="utf-8")
    with gzip.open(str(base) + ".dict.dz", "wb") as f:
        f.write(data)
    return str(base)


def test_dictd_numbers():
    assert dictd_number("A") == 0 and dictd_number("BA") == 64 and dictd_number("/") == 63
    for n in (0, 1, 63, 64, 4095, 123456789):
        assert dictd_number(dictd_encode_number(n)) == n


def test_read_and_clean_dictd(tmp_path):
    base = make_dictd(tmp_path, [
        ("00-database-info", "00-database-info\nThis is metadata\n"),
        ("Bank", "Bank /b\u00e6\u014bk/ <n>\n1. banque, rive [geo.]\n2. Banque (finance); talus\n"
                 "   Synonym: {shore}\n"),
        ("cat", "cat /k\u00e6t/ <n>\nchat, chat\n   Note: an animal\n"),
        ("ice cream", "ice cream <n>\ngla\u00e7e\n"),
        ("hotel", "hotel <n>\nh\u00f4tel, hotel, maison de passe\n"),
    ])
    raw = list(read_dictd(base))
    assert [(r.source, r.target) for r in raw] == [
        ("Bank", "banque"), ("Bank", "rive"), ("Bank", "Banque"), ("Bank", "talus"),
        ("cat", "chat"), ("cat", "chat"), ("ice cream", "gla\u00e7e"),
        ("hotel", "h\u00f4tel"), ("hotel", "hotel"), ("hotel", "maison de passe"),
    ]
    assert raw[0].where.endswith("freedict-eng-xxx.index:2")
    pairs, report = clean_pairs(raw)
    assert pairs == [("bank", "banque"), ("bank", "rive"), ("bank", "talus"), ("cat", "chat"),
                     ("hotel", "h\u00f4tel")]
    assert report["raw_pairs"] == 10 and report["kept_pairs"] == 5
    assert report["dropped_duplicate"] == 2  # Banque after lowercasing, chat twice
    assert report["dropped_not_single_word"] == 2 and report["dropped_identical"] == 1
    assert report["source_words"] == 3 and report["headwords"] == 4
    kept, rep = clean_pairs(raw, CleaningPolicy(case="keep", max_translations=1))
    assert kept == [("Bank", "banque"), ("cat", "chat"), ("hotel", "h\u00f4tel")]
    assert rep["dropped_over_max_translations"] == 3  # rive, Banque (distinct when kept), talus
    assert pairs_to_entries(pairs) == [["bank", "banque", "rive", "talus"], ["cat", "chat"],
                                       ["hotel", "h\u00f4tel"]]


def test_dictd_errors(tmp_path):
    with pytest.raises(DictionaryError, match="install the lexicon"):
        list(read_dictd(str(tmp_path / "missing")))
    (tmp_path / "x.index").write_text("headword-only\n", encoding="utf-8")
    (tmp_path / "x.dict").write_text("", encoding="utf-8")
    with pytest.raises(DictionaryError, match=r"x.index:1: expected 'headword<TAB>offset<TAB>length'"):
        list(read_dictd(str(tmp_path / "x")))


def test_unknown_case_policy():
    with pytest.raises(DictionaryError, match="unknown case policy"):
        clean_pairs([RawPair("a", "b", "x:1")], CleaningPolicy(case="title"))


def test_import_tool_on_dictd(tmp_path, capsys):
    from tools.import_dictionary import main

    base = make_dictd(tmp_path, [("cat", "cat <n>\nchat\n"), ("dog", "dog <n>\nchien, chien\n")])
    out = tmp_path / "en-fr.jsonl"
    assert main(["--dictd", base, "--output", str(out)]) == 0
    assert [json.loads(x) for x in out.read_text().splitlines()] == [
        {"words": "cat $ chat"}, {"words": "dog $ chien"}]
    report = json.loads((tmp_path / "en-fr.jsonl.report.json").read_text())
    assert report["kept_pairs"] == 2 and report["dropped_duplicate"] == 1
    printed = capsys.readouterr().out
    assert "kept 2 pairs" in printed and "duplicate 1" in printed
    assert main(["--dictd", str(tmp_path / "none"), "--output", str(out)]) == 1
