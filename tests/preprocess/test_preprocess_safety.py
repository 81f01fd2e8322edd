"""tools/preprocess_data.py never corrupts or silently alters what it writes: one writer per
output prefix, and NullTokenizer ids outside the vocabulary reported, never wrapped."""

import json
import os
import subprocess
import sys

import pytest

from megatron_prealign.preprocess import pipeline as preprocess
from tests.fixtures.helpers import CORPUS, SP_MODEL, read_dataset
from tools.preprocess_data import main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SP = ["--tokenizer-type", "SentencePieceTokenizer", "--tokenizer-model", SP_MODEL, "--append-eod",
      "--progress", "none"]


def shard_bytes(prefix):
    return {ext: open(prefix + "_text_document" + ext, "rb").read() for ext in (".bin", ".idx")}


@pytest.mark.parametrize("stage, flags", [
    ("_run_pipeline", ["--workers", "1"]),
    ("_run_partitions", ["--workers", "2", "--partitions", "2", "--chunk-bytes", "2000"]),
])
def test_a_second_run_on_the_same_prefix_is_refused_and_the_first_is_intact(
        tmp_path, monkeypatch, stage, flags):
    """While a run writes its shards, a second run on the same --output-prefix (a real process)
    must fail at once, naming the prefix and the first run's pid, and change nothing."""
    prefix = str(tmp_path / "c")
    other = tmp_path / "other.jsonl"
    other.write_text(open(CORPUS, encoding="utf-8").read().replace("e", "E").replace('"tExt"', '"text"'),
                     encoding="utf-8")
    rivals = []
    real = getattr(preprocess, stage)

    def with_a_rival(*args, **kwargs):
        # The first run has opened its .partial files; now a second run starts on the same prefix.
        rivals.append(subprocess.run(
            [sys.executable, os.path.join(REPO, "tools", "preprocess_data.py"), *SP,
             "--input", str(other), "--output-prefix", prefix],
            env=dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1"), capture_output=True,
            text=True, timeout=300))
        return real(*args, **kwargs)

    monkeypatch.setattr(preprocess, stage, with_a_rival)
    assert main(SP + ["--input", CORPUS, "--output-prefix", prefix, *flags]) == 0
    monkeypatch.undo()

    (rival,) = rivals
    assert rival.returncode == 1, rival.stderr
    assert (f"--output-prefix {prefix} is being written by another process (pid {os.getpid()}, "
            f"lock {prefix}.lock)") in rival.stderr
    assert "Traceback" not in rival.stderr
    assert main(SP + ["--input", CORPUS, "--output-prefix", str(tmp_path / "clean"), *flags]) == 0
    assert shard_bytes(prefix) == shard_bytes(str(tmp_path / "clean"))
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["other.jsonl"] + [f"{n}_{s}" for n in ("c", "clean")
                           for s in ("text_document.bin", "text_document.idx", "preprocess_stats.json")])


NULL_LINES = [
    ("70000 1", "id_out_of_vocab", "id 70000 is outside the vocabulary: --vocab-size 512 allows "
                                   "ids 0..511 and EOD 512"),
    ("999 2", "id_out_of_vocab", "id 999 is outside"),
    ("-3 4", "id_out_of_vocab", "id -3 is outside"),
    ("5 abc", "not_an_id", "'abc' is not an integer id"),
    ("1  2", "not_an_id", "'' is not an integer id"),
    ("5 511 512", None, None),  # 512 is the EOD id, in the vocabulary
    ("", "empty_document", "produced no tokens"),
    ("7 8", None, None),
]


def test_null_tokenizer_ids_outside_the_vocabulary_are_reported_never_wrapped(tmp_path, capsys):
    src = tmp_path / "n.jsonl"
    src.write_text("".join(json.dumps({"text": text}) + "\n" for text, _, _ in NULL_LINES))
    null = ["--tokenizer-type", "NullTokenizer", "--vocab-size", "512", "--append-eod",
            "--input", str(src), "--progress", "none"]
    prefix = str(tmp_path / "n")
    assert main(null + ["--output-prefix", prefix]) == 0
    err = capsys.readouterr().err
    stats = json.load(open(prefix + "_preprocess_stats.json"))
    expected = [(i + 1, reason) for i, (_, reason, _) in enumerate(NULL_LINES) if reason]
    assert [(e["line"], e["reason"]) for e in stats["problems"]["examples"]] == expected
    for i, (_, reason, detail) in enumerate(NULL_LINES):
        if reason and i < 5:  # the summary lists the first five
            assert f"{src}:{i + 1}: {reason}: {detail}" in err
    seqs, docs = read_dataset(prefix + "_text_document")
    assert seqs == [[5, 511, 512, 512], [7, 8, 512]]  # 70000 is not stored as 4464, nor 999 kept
    assert len(docs) - 1 == 3  # the two good documents and the empty one, as Megatron keeps it

    # --max-errors turns them into a failure that publishes nothing
    assert main(null + ["--output-prefix", str(tmp_path / "strict"), "--max-errors", "0"]) == 1
    assert "id 70000 is outside the vocabulary" in capsys.readouterr().err
    assert not any(n.startswith("strict") for n in os.listdir(tmp_path))


def test_an_input_whose_every_line_is_bad_publishes_nothing(tmp_path, capsys):
    """A wrong --json-keys (or format) skips every line: no shard without tokens is published over
    the old one (an empty input, by contrast, is written as Megatron writes it, with a warning)."""
    prefix = str(tmp_path / "o")
    assert main(SP + ["--input", CORPUS, "--output-prefix", prefix]) == 0
    before = shard_bytes(prefix)
    capsys.readouterr()
    assert main(SP + ["--input", CORPUS, "--output-prefix", prefix, "--json-keys", "body"]) == 1
    err = capsys.readouterr().err
    assert f"error: {CORPUS}: no line of the input gave a token for --json-keys body" in err
    assert f"missing_key 48; first: {CORPUS}:1: no key 'body'" in err
    assert shard_bytes(prefix) == before
    assert not os.path.exists(prefix + "_body_document.idx")


HOLD_SHARD_LOCK = """
import sys, time
from megatron_prealign.files import output_lock
with output_lock(sys.argv[1] + ".lock", "the clone shard " + sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_shard_another_tool_is_writing_is_refused(tmp_path):
    """make_english_clone.py locks the shard it writes (``<shard prefix>.lock``); a preprocess run
    whose output is that shard must refuse too, though its --output-prefix is the shorter stem."""
    shard = str(tmp_path / "c_text_document")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_SHARD_LOCK, shard], stdout=subprocess.PIPE,
                              text=True, env=dict(os.environ, PYTHONPATH=REPO))
    try:
        assert holder.stdout.readline().strip() == "locked"
        code = main(SP + ["--input", CORPUS, "--output-prefix", str(tmp_path / "c")])
    finally:
        holder.kill()
        holder.wait()
    assert code == 1
    assert not os.path.exists(shard + ".bin") and not os.path.exists(shard + ".idx")
    assert not os.path.exists(str(tmp_path / "c") + ".lock")  # the run released what it took


@pytest.mark.parametrize("flags", [["--workers", "1"], ["--workers", "2", "--partitions", "2"]])
def test_a_companion_that_cannot_be_opened_leaves_no_partial_files(tmp_path, capsys, flags):
    """When the code-switching companion cannot be created, the token shard opened just before it
    is removed again: the error names the file and nothing half-written stays behind."""
    dictionary = tmp_path / "en-de.tsv"
    dictionary.write_text("house\tHaus\nbank\tBank\n")
    blocked = tmp_path / "out_text_document_targets.bin.partial"
    blocked.mkdir()  # a directory where the companion's temporary file must go
    code = main(SP + ["--input", CORPUS, "--output-prefix", str(tmp_path / "out"), "--dictionary",
                      str(dictionary), "--codeswitch-ratio", "0.5", *flags])
    assert code == 1
    assert "out_text_document_targets.bin.partial" in capsys.readouterr().err
    left = sorted(p.name for p in tmp_path.rglob("*") if p != blocked)
    assert left == ["en-de.tsv"]
