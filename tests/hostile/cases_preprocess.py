"""Hostile inputs of ``tools/preprocess_data.py``: each fails (or warns) naming the file, publishes
nothing and leaves older outputs as they were."""

import gzip
import os
from pathlib import Path

from tests.hostile.harness import Case

SP_MODEL = "tests/fixtures/data/sp_unigram.model"
CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "data" / "corpus.jsonl"
HF_JSON = "tests/fixtures/data/hf_bytelevel/tokenizer.json"
OLD = {"_text_document.bin": b"old bin", "_text_document.idx": b"old idx"}


def preprocess(tmp, input_name, prefix="o", tokenizer_model=SP_MODEL):
    return ["tools/preprocess_data.py", "--tokenizer-type", "SentencePieceTokenizer",
            "--tokenizer-model", tokenizer_model, "--append-eod", "--progress", "none",
            "--input", tmp / input_name, "--output-prefix", tmp / prefix]


def old_outputs(tmp):
    """A published shard of an earlier run, which a failed run must leave as it was."""
    for suffix, data in OLD.items():
        (tmp / ("o" + suffix)).write_bytes(data)


def old_outputs_intact(tmp):
    for suffix, data in OLD.items():
        assert (tmp / ("o" + suffix)).read_bytes() == data
    leftovers = [n for n in os.listdir(tmp) if n.endswith((".partial", ".lock", ".json"))]
    assert leftovers == [], leftovers


def truncated_gzip(tmp):
    old_outputs(tmp)
    data = gzip.compress(CORPUS.read_bytes() * 40)
    (tmp / "t.jsonl.gz").write_bytes(data[: len(data) // 2])


def full_disk(tmp):
    """A real ENOSPC from the kernel: the shard's temporary file is a link to /dev/full."""
    old_outputs(tmp)
    (tmp / "c.jsonl").write_bytes(CORPUS.read_bytes())
    os.symlink("/dev/full", tmp / "o_text_document.bin.partial")


def malformed_json(tmp):
    (tmp / "m.jsonl").write_text('{"text": "a good line"}\n{"text: 1}\n')


CASES = [
    Case("preprocess_truncated_gzip", lambda tmp: preprocess(tmp, "t.jsonl.gz"), 1,
         ["{tmp}/t.jsonl.gz: truncated or corrupt gzip data", "found while reading line"],
         setup=truncated_gzip, check=old_outputs_intact),
    Case("preprocess_output_prefix_under_a_file", lambda tmp: preprocess(tmp, "f", "f/out"), 1,
         ["--output-prefix {tmp}/f/out: {tmp}/f is a regular file, not a directory"],
         setup=lambda tmp: (tmp / "f").write_text('{"text": "x"}\n')),
    Case("preprocess_full_disk", lambda tmp: preprocess(tmp, "c.jsonl"), 1,
         ["cannot write {tmp}/o_text_document.bin.partial: no space left on the device",
          "nothing was published"],
         setup=full_disk, check=old_outputs_intact),
    Case("preprocess_sentencepiece_given_tokenizer_json",
         lambda tmp: preprocess(tmp, "c.jsonl", tokenizer_model=HF_JSON), 1,
         [f"--tokenizer-model {HF_JSON}: not a SentencePiece model",
          "use --tokenizer-type HuggingFaceTokenizer"],
         setup=lambda tmp: (tmp / "c.jsonl").write_bytes(CORPUS.read_bytes())),
    Case("preprocess_empty_input", lambda tmp: preprocess(tmp, "e.jsonl"), 0,
         ["warning: {tmp}/o_text_document.bin/.idx holds no token: the input is empty ({tmp}/e.jsonl)",
          "cannot be trained on"],
         setup=lambda tmp: (tmp / "e.jsonl").write_bytes(b"")),
    Case("preprocess_malformed_json_wording", lambda tmp: preprocess(tmp, "m.jsonl"), 0,
         ["{tmp}/m.jsonl:2: malformed_json: Unterminated string starting at: column 2"],
         setup=malformed_json),
]
