"""tools/make_english_clone.py: clone shards equal --write-clone; the generated dictionary works."""

import json

from megatron_prealign.text.dictionary import load_dictionary
from tests.fixtures.helpers import CORPUS, SP_MODEL, read_dataset
from tools.make_english_clone import main as clone_main
from tools.preprocess_data import main as preprocess_main

SP = ["--tokenizer-type", "SentencePieceTokenizer", "--tokenizer-model", SP_MODEL]


def test_clone_shard_and_dictionary(tmp_path, capsys):
    en, direct = str(tmp_path / "en"), str(tmp_path / "direct")
    common = SP + ["--input", CORPUS, "--append-eod", "--progress", "none"]
    assert preprocess_main(common + ["--output-prefix", en]) == 0
    assert preprocess_main(common + ["--output-prefix", direct, "--write-clone"]) == 0
    clone = str(tmp_path / "clone_text_document")
    dict_path = str(tmp_path / "en_clone.jsonl")
    assert clone_main(SP + ["--input-prefix", en + "_text_document", "--output-prefix", clone,
                            "--dictionary-out", dict_path, "--min-count", "2"]) == 0
    out = capsys.readouterr().out
    assert "ids + 500" in out and "entries (English word <-> <clone>word)" in out
    for ext in (".bin", ".idx"):
        assert open(clone + ext, "rb").read() == open(direct + "_text_document" + ext, "rb").read()
    seqs_en, _ = read_dataset(en + "_text_document")
    seqs_cl, _ = read_dataset(clone)
    assert seqs_cl == [[t + 500 for t in s] for s in seqs_en]
    d = load_dictionary(dict_path)
    assert len(d) > 100
    assert all(len(e) == 2 and e[1] == "<clone>" + e[0] for e in d.entries)
    report = json.load(open(dict_path + ".report.json"))
    assert report["entries"] == len(d) and report["source"]["below_min_count"] > 0
    # the dictionary drives code-switching of English text into clone words
    assert preprocess_main(common + ["--output-prefix", str(tmp_path / "cs"), "--english-clone",
                                     "--dictionary", dict_path, "--codeswitch-ratio", "1"]) == 0
    stats = json.load(open(str(tmp_path / "cs_preprocess_stats.json")))["outputs"]["text"]
    assert stats["switched_words"] == stats["dictionary_words"] > 1000  # p = 1: every one
    seqs_cs, _ = read_dataset(str(tmp_path / "cs_text_document"))
    assert sum(1 for s in seqs_cs for t in s if t >= 500) >= stats["switched_words"]


def test_usage_errors(tmp_path, capsys):
    assert clone_main(SP + ["--output-prefix", str(tmp_path / "x")]) == 2
    assert "needs --input-prefix" in capsys.readouterr().err
    assert clone_main(SP) == 2
    words = tmp_path / "words.txt"
    words.write_text("house\nschool\nice cream\n")
    assert clone_main(SP + ["--word-list", str(words), "--dictionary-out", str(tmp_path / "d.tsv")]) == 0
    assert load_dictionary(str(tmp_path / "d.tsv")).entries == [
        ["house", "<clone>house"], ["school", "<clone>school"]]


def test_an_output_that_is_an_input_is_refused(tmp_path, capsys, monkeypatch):
    """Whatever the spelling (relative, '..', a symlinked directory), the English shard, its
    companion's name and its index are never written over; nothing is written at all."""
    data = tmp_path / "data"
    assert preprocess_main(SP + ["--input", CORPUS, "--append-eod", "--progress", "none",
                                 "--output-prefix", str(data / "en")]) == 0
    shard = str(data / "en_text_document")
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    (tmp_path / "link").symlink_to(data)
    monkeypatch.chdir(tmp_path)
    for out in (shard, "data/en_text_document", f"{data}/../data/./en_text_document",
                f"{tmp_path}/link/en_text_document", shard + "_targets"):
        assert clone_main(SP + ["--input-prefix", shard, "--output-prefix", out]) == 1, out
        assert "is the same file as --input-prefix" in capsys.readouterr().err
    assert clone_main(SP + ["--input-prefix", shard, "--dictionary-out", shard + ".idx"]) == 1
    assert f"--dictionary-out {shard}.idx is the same file as --input-prefix {shard}.idx" in \
        capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before
