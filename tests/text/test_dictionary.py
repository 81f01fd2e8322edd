"""Dictionaries: both formats, schema errors with file:line, tokenizing.

Importing lexicons (dictd, cleaning, saving) is tested in tests/preprocess/test_lexicon.py.
"""

import pytest

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
