"""Hostile inputs of the conversion and dictionary/clone tools (``tools/convert_to_hf.py``,
``tools/make_english_clone.py``, ``tools/import_dictionary.py``, and dictionaries wherever they are
loaded): each fails, or warns, naming the file and what to do, and writes nothing."""

import gzip
import os

from megatron_prealign.preprocess.lexicon import dictd_encode_number
from tests.hostile.harness import Case

SP_MODEL = "tests/fixtures/data/sp_unigram.model"
CORPUS = "tests/fixtures/data/corpus.jsonl"
LEXICON = [("cat", "cat <n>\nchat\n"), ("dog", "dog <n>\nchien\n"), ("house", "house <n>\nmaison\n")]


def convert(tmp, *flags):
    return ["tools/convert_to_hf.py", "--save", tmp / "hf", *flags]


def nothing_published(tmp):
    assert not (tmp / "hf").exists()
    assert not [n for n in os.listdir(tmp) if n.startswith("hf.")], os.listdir(tmp)


def interrupted_save(tmp):
    """What a killed save leaves: every file written, the rename to iter_0000004 never done."""
    ck = tmp / "ck"
    (ck / "iter_0000004.incomplete").mkdir(parents=True)
    for name in ("metadata.json", "common.pt", "prealign_checkpoint.json", "__0_0.distcp"):
        (ck / "iter_0000004.incomplete" / name).write_bytes(b"{}")


def lexicon(tmp, data_name, cut):
    """A FreeDict-style dictd lexicon (``.index`` + data), the data cut short by ``cut`` bytes."""
    data, index = b"", []
    for headword, body in LEXICON:
        raw = body.encode()
        index.append(f"{headword}\t{dictd_encode_number(len(data))}\t{dictd_encode_number(len(raw))}\n")
        data += raw
    (tmp / "f.index").write_text("".join(index))
    if data_name.endswith(".dz"):
        data = gzip.compress(data)
    (tmp / data_name).write_bytes(data[:-cut])


def no_output(name):
    def check(tmp):
        assert not (tmp / name).exists()
    return check


CASES = [
    Case("convert_load_incomplete_iteration",
         lambda tmp: convert(tmp, "--load", tmp / "ck" / "iter_0000004.incomplete"), 2,
         ["{tmp}/ck/iter_0000004.incomplete: an interrupted save (.incomplete), never loadable",
          "{tmp}/ck holds no complete checkpoint"],
         setup=interrupted_save, check=nothing_published),
    Case("convert_negative_tolerance",
         lambda tmp: convert(tmp, "--load", tmp / "ck", "--tolerance", "-1"), 2,
         ["argument --tolerance: must be a number >= 0", "got -1"], check=nothing_published),
    Case("clone_missing_input_prefix",
         lambda tmp: ["tools/make_english_clone.py", "--tokenizer-type", "SentencePieceTokenizer",
                      "--tokenizer-model", SP_MODEL, "--input-prefix", tmp / "en_text_document",
                      "--output-prefix", tmp / "clone_text_document"], 1,
         ["--input-prefix {tmp}/en_text_document: {tmp}/en_text_document.bin and "
          "{tmp}/en_text_document.idx not found"],
         check=no_output("clone_text_document.bin")),
    Case("dictionary_empty_file",
         lambda tmp: ["tools/preprocess_data.py", "--tokenizer-type", "SentencePieceTokenizer",
                      "--tokenizer-model", SP_MODEL, "--append-eod", "--progress", "none",
                      "--input", CORPUS, "--output-prefix", tmp / "o", "--dictionary",
                      tmp / "empty.tsv", "--codeswitch-ratio", "0.1",
                      "--dictionary-cache-dir", tmp / "cache"], 1,
         ["{tmp}/empty.tsv: the file is empty (0 bytes), so no dictionary word can be matched"],
         setup=lambda tmp: (tmp / "empty.tsv").write_bytes(b""),
         check=no_output("o_text_document.bin")),
    Case("import_dictionary_truncated_dict_dz",
         lambda tmp: ["tools/import_dictionary.py", "--dictd", tmp / "f", "--output", tmp / "d.tsv"], 1,
         ["{tmp}/f.dict.dz: truncated"],
         setup=lambda tmp: lexicon(tmp, "f.dict.dz", 10), check=no_output("d.tsv")),
    Case("import_dictionary_truncated_dict",
         lambda tmp: ["tools/import_dictionary.py", "--dictd", tmp / "f", "--output", tmp / "d.tsv"], 1,
         ["{tmp}/f.dict is truncated: 1 of the 3 entries of {tmp}/f.index",
          "the first at {tmp}/f.index:3, 'house'"],
         setup=lambda tmp: lexicon(tmp, "f.dict", 5), check=no_output("d.tsv")),
    Case("import_dictionary_cedict_malformed_line",
         lambda tmp: ["tools/import_dictionary.py", "--cedict", tmp / "c.txt.gz", "--output", tmp / "d.tsv"], 1,
         ["{tmp}/c.txt.gz: 1 line(s) are not CC-CEDICT entries", "{tmp}/c.txt.gz:3 "],
         setup=lambda tmp: (tmp / "c.txt.gz").write_bytes(gzip.compress(
             "# CC-CEDICT\n\u72d7 \u72d7 [gou3] /dog/\n\u732b \u732b mao1 /cat/\n".encode(), mtime=0)),
         check=no_output("d.tsv")),
    Case("import_dictionary_empty_pairs_file",
         lambda tmp: ["tools/import_dictionary.py", "--pairs", tmp / "p.tsv", "--output", tmp / "d.tsv"], 0,
         ["warning: no pairs read from {tmp}/p.tsv: it is empty"],
         setup=lambda tmp: (tmp / "p.tsv").write_bytes(b"")),
]
