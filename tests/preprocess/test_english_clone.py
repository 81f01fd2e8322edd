"""English-Clone: clone shards and the clone dictionary.

The doubled tokenizer and its id mapping are tested in tests/text/test_english_clone_tokenizer.py.
"""

import numpy as np
import pytest

from megatron_prealign.preprocess import english_clone as ec
from megatron_prealign.preprocess.lexicon import save_multiway
from megatron_prealign.preprocess.pipeline import PreprocessConfig, run_preprocess
from megatron_prealign.text.codeswitch import IGNORE, CodeSwitchTable, codeswitch_batch, document_keys
from megatron_prealign.text.dictionary import load_dictionary, tokenize_dictionary
from tests.fixtures.helpers import CORPUS, SP_MODEL, read_dataset


def test_clone_dictionary_switches_english_into_clone(tmp_path, sp_tokenizer, clone_tokenizer):
    entries, report = ec.build_clone_dictionary(["house", "the", "ice cream", "house"], sp_tokenizer)
    assert entries == [["house", "<clone>house"], ["the", "<clone>the"]]
    assert report == {"dropped: tokenizes as several words": 1, "entries": 2}
    path = str(tmp_path / "en_clone.jsonl")
    save_multiway(entries, path)
    td = tokenize_dictionary(load_dictionary(path), clone_tokenizer)
    table = CodeSwitchTable.from_concepts(td.id_concepts())
    ids = clone_tokenizer.tokenize("the house")
    res = codeswitch_batch(np.array(ids), np.array([len(ids)]), np.zeros(1, np.int64),
                           document_keys(0, 0, np.zeros(1, np.uint64), 0), table,
                           clone_tokenizer.word_boundaries, 1.0)
    assert res.tokens.tolist() == [i + 500 for i in ids]  # every word now in the clone
    expected_targets = []
    for w in ("the", "house"):
        wid = sp_tokenizer.word_initial_ids(w)
        expected_targets += [wid[0]] + [IGNORE] * (len(wid) - 1)
    assert res.targets.tolist() == expected_targets


def test_clone_shard_from_english_shard(tmp_path, sp_tokenizer):
    en = run_preprocess(PreprocessConfig(input=[CORPUS], output_prefix=str(tmp_path / "en"),
                                         tokenizer_type="SentencePieceTokenizer",
                                         tokenizer_model=SP_MODEL, append_eod=True, progress="none"))
    en_prefix = en["outputs"]["text"]["prefix"]
    info = ec.write_clone_shard(en_prefix, str(tmp_path / "clone_text_document"), 500, block_tokens=1000)
    seqs_en, docs_en = read_dataset(en_prefix)
    seqs_cl, docs_cl = read_dataset(str(tmp_path / "clone_text_document"))
    assert docs_cl == docs_en
    assert seqs_cl == [[t + 500 for t in s] for s in seqs_en]
    assert info["tokens"] == sum(len(s) for s in seqs_en) and info["dtype"] == "uint16"
    assert sum(s.count(502) for s in seqs_cl) == sum(s.count(2) for s in seqs_en) > 0  # clone EOD
    words, rep = ec.words_from_shard(en_prefix, sp_tokenizer, min_count=3)
    assert "the" in words and rep["word_types"] > len(words)
    assert all(sp_tokenizer.word_problem(sp_tokenizer.word_initial_ids(w)) is None for w in words)


def test_clone_shard_never_overwrites_its_input_and_drops_a_stale_companion(tmp_path):
    en = run_preprocess(PreprocessConfig(input=[CORPUS], output_prefix=str(tmp_path / "en"),
                                         tokenizer_type="SentencePieceTokenizer",
                                         tokenizer_model=SP_MODEL, append_eod=True, progress="none"))
    en_prefix = en["outputs"]["text"]["prefix"]
    before = [open(en_prefix + ext, "rb").read() for ext in (".bin", ".idx")]
    for out in (en_prefix, en_prefix + "_targets"):  # the shard itself, the name of its companion
        with pytest.raises(ec.PathError, match="is the same file as the English shard"):
            ec.write_clone_shard(en_prefix, out, 500)
    assert [open(en_prefix + ext, "rb").read() for ext in (".bin", ".idx")] == before
    # An older code-switched dataset at the output prefix left its companion there: training would
    # pair it with the clone shard.
    clone = str(tmp_path / "clone_text_document")
    for ext in (".bin", ".idx"):
        with open(clone + "_targets" + ext, "wb") as f:
            f.write(b"stale")
    ec.write_clone_shard(en_prefix, clone, 500)
    assert sorted(p.name for p in tmp_path.glob("clone*")) == ["clone_text_document.bin",
                                                                "clone_text_document.idx"]
