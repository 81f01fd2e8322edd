"""With code-switching off, our shards are byte-for-byte Megatron-LM's (golden files made by
Megatron-LM core_v0.16.1's own tools/preprocess_data.py; see tests/fixtures/data/README.md)."""

import os

import pytest

from tests.fixtures.helpers import CORPUS, CORPUS_SENTENCES, GOLDEN, HF_DIR, PUNKT, SP_MODEL
from tools.preprocess_data import main

SP = ["--tokenizer-type", "SentencePieceTokenizer", "--tokenizer-model", SP_MODEL]
HF = ["--tokenizer-type", "HuggingFaceTokenizer", "--tokenizer-model", HF_DIR]

CASES = {
    # name: (our flags, {our output suffix: golden prefix})
    "sp_eod": (SP + ["--input", CORPUS, "--append-eod", "--workers", "2"],
               {"text_document": "sp_eod_text_document"}),
    "sp_noeod": (SP + ["--input", CORPUS, "--workers", "1"],
                 {"text_document": "sp_noeod_text_document"}),
    "sp_noeod_partitions": (SP + ["--input", CORPUS, "--workers", "2", "--partitions", "2",
                                  "--chunk-bytes", "1000"],
                            {"text_document": "sp_noeod_text_document"}),
    "sp_keys": (SP + ["--input", CORPUS, "--append-eod", "--json-keys", "text", "title",
                      "--workers", "2"],
                {"text_document": "sp_eod_text_document", "title_document": "sp_keys_title_document"}),
    "hf_eod": (HF + ["--input", CORPUS, "--append-eod", "--workers", "2"],
               {"text_document": "hf_eod_text_document"}),
    "sp_sentences": (SP + ["--input", CORPUS_SENTENCES, "--append-eod", "--split-sentences",
                           "--punkt-model", PUNKT, "--workers", "2"],
                     {"text_sentence": "sp_sent_text_sentence"}),
    "sp_sentences_keep_newlines": (SP + ["--input", CORPUS_SENTENCES, "--append-eod",
                                         "--split-sentences", "--keep-newlines",
                                         "--punkt-model", PUNKT, "--workers", "1"],
                                   {"text_sentence": "sp_sentnl_text_sentence"}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bytes_equal_megatron(tmp_path, name):
    flags, outputs = CASES[name]
    prefix = str(tmp_path / "out")
    assert main(flags + ["--output-prefix", prefix, "--progress", "none"]) == 0
    for ours, golden in outputs.items():
        for ext in (".bin", ".idx"):
            want = (GOLDEN / (golden + ext)).read_bytes()
            got = open(f"{prefix}_{ours}{ext}", "rb").read()
            assert got == want, f"{ours}{ext} differs from golden {golden}{ext}"


def test_empty_input_file(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    prefix = str(tmp_path / "out")
    assert main(SP + ["--input", str(empty), "--output-prefix", prefix, "--progress", "none"]) == 0
    for ext in (".bin", ".idx"):
        assert open(prefix + "_text_document" + ext, "rb").read() == \
            (GOLDEN / ("empty_text_document" + ext)).read_bytes()
    assert os.path.getsize(prefix + "_text_document.idx") == 42
