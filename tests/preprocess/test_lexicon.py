"""Lexicon import (``preprocess.lexicon``): FreeDict dictd and CC-CEDICT reading, cleaning, saving
dictionaries, corpus coverage."""

import gzip
import json

import pytest

from megatron_prealign.preprocess.lexicon import (
    CleaningPolicy,
    RawPair,
    cedict_glosses,
    clean_pairs,
    corpus_word_counts,
    coverage,
    dictd_encode_number,
    dictd_number,
    pairs_to_entries,
    read_cedict,
    read_dictd,
    save_multiway,
    save_pairs,
    truncated_phrase,
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


# --------------------------------------------------------------------------------------------------
# CC-CEDICT
# --------------------------------------------------------------------------------------------------

CEDICT_FIXTURE = (
    "# CC-CEDICT\n"
    "#! version=1\n"
    "\n"
    "\u72d7 \u72d7 [gou3] /dog/CL:\u96bb|\u53ea[zhi1]/\n"  # line 4
    "\u7375 \u7375 [xiao1] /dog (archaic)/to hunt (old)/\n"  # line 5
    "\u597d \u597d [hao3] /good/appropriate; proper/all right!/\n"  # line 6
    "\u826f\u597d \u826f\u597d [liang2 hao3] /good; favorable/well/\n"  # line 7
    "\u8dd1 \u8dd1 [pao3] /to run/to run away (from (sb))/the Run/\n"  # line 8
    "\u9280\u884c \u94f6\u884c [yin2 hang2] /a bank (finance)/An Institution/\n"  # line 9
    "\u72d7\u72d7 \u72d7\u72d7 [gou3 gou3] /(child language) doggy/\n"  # line 10
)


def write_cedict(tmp_path, text=CEDICT_FIXTURE, name="cedict.txt"):
    path = tmp_path / name
    if name.endswith(".gz"):
        with gzip.open(path, "wb") as f:
            f.write(text.encode("utf-8"))
    else:
        path.write_bytes(text.encode("utf-8"))
    return str(path)


def test_cedict_gloss_cleaning():
    assert cedict_glosses("to run/to run away (from (sb))/the Run") == ["run", "run away", "Run"]
    assert cedict_glosses("good; favorable/a bank (finance)/An Institution") == [
        "good", "favorable", "bank", "Institution"]
    assert cedict_glosses("(child language) doggy/ (archaic) /CL:\u96bb|\u53ea[zhi1]") == [
        "doggy", "CL:\u96bb|\u53ea[zhi1]"]


def test_read_cedict_inverts_and_ranks(tmp_path):
    path = write_cedict(tmp_path, name="cedict.txt.gz")
    raw = read_cedict(path)
    assert all(r.dropped is None for r in raw)
    by_source = {}
    for r in raw:
        by_source.setdefault(r.source, []).append(r.target)
    # first-gloss words first; among them the common character (in 3 headwords) before the rare
    assert by_source["dog"] == ["\u72d7", "\u7375"]
    assert by_source["good"] == ["\u597d", "\u826f\u597d"]
    assert by_source["run"] == ["\u8dd1"] and by_source["Run"] == ["\u8dd1"]
    assert by_source["bank"] == ["\u94f6\u884c"]  # simplified side, "a " removed
    assert by_source["doggy"] == ["\u72d7\u72d7"]
    assert next(r for r in raw if r.source == "bank").where == f"{path}:9"
    pairs, report = clean_pairs(raw)
    entries = {c[0]: c[1:] for c in pairs_to_entries(pairs)}
    assert entries["run"] == ["\u8dd1"]  # "Run" lowercased is a duplicate
    assert entries["good"] == ["\u597d", "\u826f\u597d"]
    assert "hunt" in entries and "run away" not in entries and "cl:\u96bb|\u53ea[zhi1]" not in entries
    assert report["dropped_duplicate"] == 1 and report["dropped_not_single_word"] == 3


def test_read_cedict_errors(tmp_path):
    with pytest.raises(DictionaryError, match="not found; pass the CC-CEDICT text file"):
        read_cedict(str(tmp_path / "none.txt"))
    bad = CEDICT_FIXTURE + "\u72d7 \u72d7 gou3 /dog/\n\n\u732b \u732b [mao1] /cat\n"
    path = write_cedict(tmp_path, bad, "bad.txt")
    with pytest.raises(DictionaryError, match=r"bad.txt: 2 line\(s\) are not CC-CEDICT entries .*"
                       r"bad.txt:11 .*bad.txt:13 "):
        read_cedict(path)
    (tmp_path / "latin1.txt").write_bytes(b"# ok\n\xe9 x [a] /b/\n")
    with pytest.raises(DictionaryError, match=r"latin1.txt:2: not valid UTF-8"):
        read_cedict(str(tmp_path / "latin1.txt"))
    (tmp_path / "cut.txt.gz").write_bytes(gzip.compress(CEDICT_FIXTURE.encode())[:-12])
    with pytest.raises(DictionaryError, match="cut.txt.gz: truncated"):
        read_cedict(str(tmp_path / "cut.txt.gz"))


def test_import_tool_on_cedict(tmp_path, capsys):
    from tools.import_dictionary import main

    path = write_cedict(tmp_path)
    out = tmp_path / "en-zh.tsv"
    assert main(["--cedict", path, "--output", str(out), "--max-translations", "1"]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert "dog\t\u72d7" in lines and "good\t\u597d" in lines and "good\t\u826f\u597d" not in lines
    assert load_dictionary(str(out)).entries[0][0] == "dog"
    report = json.loads((tmp_path / "en-zh.tsv.report.json").read_text())
    assert report["source"] == path and report["dropped_over_max_translations"] == 2
    assert "kept" in capsys.readouterr().out
    bad = write_cedict(tmp_path, "x y z\n", "bad.txt")
    assert main(["--cedict", bad, "--output", str(tmp_path / "b.tsv")]) == 1
    assert f"{bad}:1" in capsys.readouterr().err and not (tmp_path / "b.tsv").exists()
    assert main(["--cedict", path, "--output", path]) == 1  # the output may not be the input


def test_dictd_truncated_phrases(tmp_path):
    """FreeDict eng-spa's phrase entries cut to their first word are recognised and counted."""
    base = make_dictd(tmp_path, [
        ("good", "good /gud/\nbueno\n"),
        ("good", "good /gudmɔːniŋ/\nbuenosdías\n"),
        ("bank", "bank /bˈæŋk/\nbanco\n"),
        ("move", "move /transfer/\ntransferir\n"),
        ("transfer", "transfer /tɹˈansfɜː/\ntransferir\n"),
        ("strength", "strength /streŋθ/\nfuerza\n"),
    ])
    assert truncated_phrase("good /gudmɔːniŋ/") and not truncated_phrase("good /gud/")
    assert truncated_phrase("good /gudnait/", {"good"}) and not truncated_phrase("ice cream /ˈaɪs kɹˈiːm/")
    assert not truncated_phrase("move /transfer/", {"move", "transfer"})
    pairs, report = clean_pairs(read_dictd(base))
    assert pairs == [("good", "bueno"), ("bank", "banco"), ("move", "transferir"), ("transfer", "transferir"),
                     ("strength", "fuerza")]
    assert report["dropped_truncated_phrase"] == 1


def test_corpus_coverage():
    counts = corpus_word_counts(["The dog's bone; the well-known DOG.", "A cat, 3 cats-"])
    assert counts == {"the": 2, "dog's": 1, "bone": 1, "well-known": 1, "dog": 1, "a": 1,
                      "cat": 1, "cats": 1}
    cov = coverage(["the", "dog", "fish"], counts)
    assert cov == {"tokens": 9, "types": 8, "covered_tokens": 3, "covered_types": 2,
                   "token_share": 3 / 9, "type_share": 2 / 8}
    assert coverage(["x"], {})["token_share"] == 0.0
