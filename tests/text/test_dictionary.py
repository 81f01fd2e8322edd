"""Dictionaries: both formats, schema errors with file:line, tokenizing, dictd import, cleaning."""

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
from megatron_prealign.text.dictionary import DictionaryError, load_dictionary, tokenize_dictionary


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_pair_file_tabs_spaces_and_several_lines_per_word(tmp_path):
    p = write(tmp_path / "en-de.txt",
              "# comment\nbank\tBank\nbank\tUfer\n\nhouse Haus\nice cream\tEis\nbank\tBank\n")
    d = load_dictionary(p)
    assert d.format == "pairs"
    assert d.entries == [["bank", "Bank", "Ufer"], ["house", "Haus"], ["ice cream", "Eis"]]
    assert d.sources == [f"{p}:2", f"{p}:5", f"{p}:6"]


def test_multiway_string_and_list_forms(tmp_path):
    p = write(tmp_path / "d.jsonl",
              '{"words": "bank $ Bank $ banque"}\n\n{"words": ["house", "Haus"], "id": 7}\n'
              '{"words": "same $ same"}\n')
    d = load_dictionary(p)
    assert d.format == "multiway"
    assert d.entries == [["bank", "Bank", "banque"], ["house", "Haus"]]
    assert d.where(1) == f"{p}:3"
    assert d.dropped == {"fewer than 2 distinct words": 1}


@pytest.mark.parametrize("name, text, match", [
    ("p.txt", "bank\tBank\nthree cols here\n", r"p.txt:2: expected 2 columns"),
    ("p.txt", "lonely\n", r"p.txt:1: expected 2 columns"),
    ("d.jsonl", '{"words": "a $ b"}\n{"words": "a $ b"\n', r"d.jsonl:2: not valid JSON"),
    ("d.jsonl", '{"word": "a $ b"}\n', r'd.jsonl:1: expected an object with a "words" field'),
    ("d.jsonl", '["a", "b"]\n', r'd.jsonl:1: expected an object with a "words" field'),
    ("d.jsonl", '{"words": 3}\n', r'd.jsonl:1: "words" must be a string'),
    ("d.jsonl", '{"words": "a $ $ b"}\n', r"d.jsonl:1: empty word"),
])
def test_schema_errors_name_file_and_line(tmp_path, name, text, match):
    p = write(tmp_path / name, text)
    with pytest.raises(DictionaryError, match=match):
        load_dictionary(p)


def test_invalid_utf8_and_missing_file(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_bytes(b"caf\xe9\tcoffee\n")
    with pytest.raises(DictionaryError, match="not valid UTF-8"):
        load_dictionary(str(p))
    with pytest.raises(DictionaryError, match="no such dictionary file"):
        load_dictionary(str(tmp_path / "nope.txt"))


def test_save_and_load_round_trip(tmp_path):
    entries = [["bank", "Bank", "banque"], ["house", "Haus"], ["a$b", "c"]]
    save_multiway(entries, str(tmp_path / "d.jsonl"))
    assert load_dictionary(str(tmp_path / "d.jsonl")).entries == entries
    save_pairs(entries[:2], str(tmp_path / "d.tsv"))
    assert load_dictionary(str(tmp_path / "d.tsv")).entries == entries[:2]


def test_tokenize_dictionary_word_initial_ids(tmp_path, sp_tokenizer, hf_tokenizer):
    p = write(tmp_path / "d.jsonl", '{"words": "house $ school $ ice cream"}\n'
              '{"words": "hot dog $ ice cream"}\n{"words": "the $ a"}\n')
    for tok in (sp_tokenizer, hf_tokenizer):
        td = tokenize_dictionary(load_dictionary(p), tok)
        assert [[w for w, _ in c] for c in td.concepts] == [["house", "school"], ["the", "a"]]
        assert td.source_concepts == [0, 2]
        for concept in td.concepts:
            for word, ids in concept:
                # as the word appears after a space in running text
                assert list(ids) == tok.tokenize("x " + word)[-len(ids):]
        assert td.report["dropped_words"] == {"tokenizes as several words": 3}
        assert td.report["dropped_concepts"] == 1


def test_clone_words_need_the_clone_tokenizer(tmp_path, sp_tokenizer, clone_tokenizer):
    p = write(tmp_path / "d.jsonl", '{"words": "house $ <clone>house"}\n')
    with pytest.raises(DictionaryError, match=r"d.jsonl:1: word '<clone>house' is an English-Clone"):
        tokenize_dictionary(load_dictionary(p), sp_tokenizer)
    td = tokenize_dictionary(load_dictionary(p), clone_tokenizer)
    (concept,) = td.concepts
    eng, clone = concept[0][1], concept[1][1]
    assert [i + 500 for i in eng] == list(clone)


def test_dictionary_that_does_not_fit_the_vocabulary_is_an_error(tmp_path, sp_tokenizer):
    # Chinese words with an English-only SentencePiece model: every word hits <unk>.
    p = write(tmp_path / "en-zh.txt", "bank\t\u94f6\u884c\nhouse\t\u623f\u5b50\ncat\t\u732b\n")
    with pytest.raises(DictionaryError, match="do not belong together"):
        tokenize_dictionary(load_dictionary(p), sp_tokenizer)


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


@pytest.mark.parametrize("name, text, message", [
    ("empty.tsv", "", "the file is empty (0 bytes), so no dictionary word can be matched"),
    ("blank.tsv", "\n# a comment\n\n", "the file is empty: its 14 bytes hold no entry, only blank "
                                        "lines and comments"),
    ("same.jsonl", '{"words": "bank $ bank"}\n', "none of its 1 entries has two distinct words"),
])
def test_a_dictionary_without_entries_is_an_error(tmp_path, name, text, message):
    """Empty (or useless) dictionaries fail where they are loaded (preprocess --dictionary, stage 1,
    evaluation), naming the file, instead of code-switching or aligning nothing."""
    path = write(tmp_path / name, text)
    with pytest.raises(DictionaryError) as err:
        load_dictionary(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)
