"""tools/preprocess_data.py: flags, bad input, --max-errors, determinism, stats, atomic outputs."""

import argparse
import dataclasses
import fcntl
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from megatron_prealign.preprocess import english_clone as ec
from megatron_prealign.preprocess.lexicon import save_multiway
from megatron_prealign.preprocess.pipeline import PreprocessConfig, PreprocessError
from tests.fixtures.helpers import CORPUS, SP_MODEL, read_dataset
from tools.preprocess_data import build_parser, main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SP = ["--tokenizer-type", "SentencePieceTokenizer", "--tokenizer-model", SP_MODEL]

EXPECTED_FLAGS = {
    # Megatron-LM's tools/preprocess_data.py (core_v0.16.1)
    "--tokenizer-type", "--tokenizer-model", "--vocab-size", "--input", "--json-keys",
    "--split-sentences", "--keep-newlines", "--append-eod", "--lang", "--output-prefix",
    "--workers", "--partitions", "--log-interval", "--keep-sequential-samples",
    # PreAlign
    "--input-format", "--text-unit", "--punkt-model", "--punkt-train-bytes", "--max-errors",
    "--max-line-bytes", "--chunk-bytes", "--progress", "--dictionary", "--dictionary-format",
    "--codeswitch-ratio", "--codeswitch-seed", "--english-clone", "--write-clone",
    "--dictionary-cache-dir", "--no-dictionary-cache",
}


def test_cli_flags_are_a_reviewed_list():
    flags = {o for a in build_parser()._actions for o in a.option_strings if o.startswith("--")}
    assert flags - {"--help"} == EXPECTED_FLAGS


def test_every_config_field_is_a_flag_with_the_fields_default():
    """PreprocessConfig.from_args reads every field from the flag of its name; a flag's default
    is its field's, so parsing no optional flag gives the config's own defaults."""
    parser = build_parser()
    assert {a.dest for a in parser._actions} - {"help"} == {f.name for f in dataclasses.fields(PreprocessConfig)}
    args = parser.parse_args(["--tokenizer-type", "NullTokenizer", "--input", "a.jsonl", "b.jsonl",
                              "--output-prefix", "out"])
    assert PreprocessConfig.from_args(args) == PreprocessConfig(
        input=["a.jsonl", "b.jsonl"], output_prefix="out", tokenizer_type="NullTokenizer")
    flags = ["--tokenizer-type", "NullTokenizer", "--input", "a", "--output-prefix", "o", "--workers", "3",
             "--json-keys", "text", "title", "--codeswitch-ratio", "0.5", "--dictionary", "d.tsv",
             "--write-clone", "--max-errors", "0", "--no-dictionary-cache"]
    config = PreprocessConfig.from_args(parser.parse_args(flags))
    assert (config.workers, config.json_keys, config.codeswitch_ratio, config.dictionary) == \
        (3, ["text", "title"], 0.5, "d.tsv")
    assert (config.write_clone, config.english_clone, config.max_errors, config.no_dictionary_cache) == \
        (True, True, 0, True)  # english_clone derived from --write-clone, once


def test_a_config_field_without_a_flag_is_named():
    args = build_parser().parse_args(["--tokenizer-type", "NullTokenizer", "--input", "a", "--output-prefix", "o"])
    del args.codeswitch_seed, args.max_line_bytes
    with pytest.raises(TypeError, match="no flag for PreprocessConfig's --codeswitch-seed, --max-line-bytes"):
        PreprocessConfig.from_args(args)
    with pytest.raises(TypeError):
        PreprocessConfig.from_args(argparse.Namespace())


def test_the_config_is_validated_once_and_never_changes():
    config = PreprocessConfig(input="one.jsonl", output_prefix="o", tokenizer_type="NullTokenizer",
                              write_clone=True, dictionary_cache_dir=None)
    assert config.input == ["one.jsonl"] and config.english_clone
    assert config.dictionary_cache_dir  # the default cache directory, filled in at construction
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.workers = 4
    with pytest.raises(PreprocessError, match="--partitions 3 needs at least as many --workers"):
        PreprocessConfig(input=["a"], output_prefix="o", tokenizer_type="NullTokenizer", partitions=3)


def run(tmp_path, *flags, name="out"):
    prefix = str(tmp_path / name)
    code = main(SP + ["--output-prefix", prefix, "--progress", "none", *flags])
    stats_path = prefix + "_preprocess_stats.json"
    stats = json.load(open(stats_path)) if os.path.exists(stats_path) else None
    return code, prefix, stats


BAD_LINES = [
    (b'{"text": "A good first document."}', None),
    (b'{"text": broken json}', "malformed_json"),
    (b'{"title": "no text key"}', "missing_key"),
    (b'{"text": "caf\xe9 in latin-1"}', "invalid_utf8"),
    (b'{"text": ""}', "empty_document"),
    (b'{"text": null}', "bad_value"),
    (b'{"text": "' + b"long " * 400 + b'"}', "line_too_long"),
    (b'{"text": "lone \\udc00 surrogate"}', "invalid_unicode"),
    (b"", "blank_line"),
    (b"[1, 2]", "not_an_object"),
    (b'{"text": "The last good document."}', None),
]


@pytest.fixture
def bad_input(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(b"\n".join(line for line, _ in BAD_LINES) + b"\n")
    return str(p)


@pytest.mark.parametrize("workers, partitions", [(1, 1), (2, 2)])
def test_bad_input_is_counted_with_file_and_line(tmp_path, bad_input, workers, partitions, capsys):
    code, prefix, stats = run(tmp_path, "--input", bad_input, "--max-line-bytes", "1000",
                              "--append-eod", "--workers", str(workers), "--partitions", str(partitions),
                              "--chunk-bytes", "64")
    assert code == 0
    expected = [(i + 1, reason) for i, (_, reason) in enumerate(BAD_LINES) if reason]
    got = sorted((e["line"], e["reason"]) for e in stats["problems"]["examples"])
    assert got == expected
    assert all(e["file"] == os.path.abspath(bad_input) for e in stats["problems"]["examples"])
    assert stats["problems"]["total"] == len(expected)
    assert stats["documents_skipped"] == len(expected) - 1  # the empty document is kept
    assert stats["lines_read"] == len(BAD_LINES)
    seqs, docs = read_dataset(prefix + "_text_document")
    assert len(docs) - 1 == 3  # two good documents and the empty one, as Megatron keeps it
    assert len(seqs) == 2
    err = capsys.readouterr().err
    assert f"{os.path.abspath(bad_input)}:2: malformed_json" in err


@pytest.mark.parametrize("workers, partitions", [(1, 1), (2, 1), (2, 2)])
def test_max_errors_fails_and_publishes_nothing(tmp_path, bad_input, workers, partitions, capsys):
    code, prefix, stats = run(tmp_path, "--input", bad_input, "--max-line-bytes", "1000",
                              "--max-errors", "3", "--workers", str(workers),
                              "--partitions", str(partitions), "--chunk-bytes", "64")
    assert code == 1 and stats is None
    assert "--max-errors 3" in capsys.readouterr().err
    assert [f for f in os.listdir(tmp_path) if f != "bad.jsonl"] == []
    # at the limit it passes
    code, _, stats = run(tmp_path, "--input", bad_input, "--max-line-bytes", "1000",
                         "--max-errors", str(len([r for _, r in BAD_LINES if r])))
    assert code == 0


@pytest.mark.parametrize("workers", ["1", "2"])  # 2: the dictionary compiles while workers run
def test_dictionary_that_does_not_fit_the_tokenizer_is_an_error(tmp_path, capsys, workers):
    clone_dict = tmp_path / "en_clone.jsonl"
    clone_dict.write_text('{"words": "house $ <clone>house"}\n')
    code, prefix, _ = run(tmp_path, "--input", CORPUS, "--dictionary", str(clone_dict),
                          "--codeswitch-ratio", "0.1", "--workers", workers)
    assert code == 1
    assert f"{clone_dict}:1: word '<clone>house' is an English-Clone word" in capsys.readouterr().err
    zh = tmp_path / "en-zh.txt"
    zh.write_text("bank\t\u94f6\u884c\nhouse\t\u623f\u5b50\n")
    code, _, _ = run(tmp_path, "--input", CORPUS, "--dictionary", str(zh), "--codeswitch-ratio", "0.1",
                     "--workers", workers)
    assert code == 1 and "do not belong together" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["en-zh.txt", "en_clone.jsonl"]


@pytest.mark.parametrize("flags, message", [
    (["--codeswitch-ratio", "0.1"], "needs --dictionary"),
    (["--workers", "1", "--partitions", "2"], "needs at least as many --workers"),
    (["--keep-newlines"], "only applies with --split-sentences"),
    (["--tokenizer-model", "/nonexistent.model"], "does not exist"),
])
def test_flag_errors(tmp_path, capsys, flags, message):
    code, _, _ = run(tmp_path, "--input", CORPUS, *flags)
    assert code == 1 and message in capsys.readouterr().err


@pytest.fixture(scope="module")
def clone_dictionary(tmp_path_factory, clone_tokenizer):
    d = tmp_path_factory.mktemp("dict")
    en = d / "en"
    assert main(SP + ["--input", CORPUS, "--output-prefix", str(en), "--progress", "none"]) == 0
    words, _ = ec.words_from_shard(str(en) + "_text_document", clone_tokenizer.base)
    entries, _ = ec.build_clone_dictionary(words, clone_tokenizer)
    save_multiway(entries, str(d / "en_clone.jsonl"))
    return str(d / "en_clone.jsonl")


def output_bytes(prefix):
    out = {}
    for suffix in ("_text_document", "_text_document_targets", "_title_document",
                   "_title_document_targets"):
        for ext in (".bin", ".idx"):
            out[suffix + ext] = open(prefix + suffix + ext, "rb").read()
    return out


def comparable(stats):
    """The stats minus what legitimately differs between runs (timing, flags, output names)."""
    out = {k: v for k, v in stats.items()
           if k not in ("elapsed_s", "mb_per_s", "timing", "config", "command")}
    out["outputs"] = {key: {k: v for k, v in o.items() if k not in ("prefix", "companion")}
                      for key, o in stats["outputs"].items()}
    if stats.get("dictionary"):
        out["dictionary"] = {k: v for k, v in stats["dictionary"].items() if k != "compiled_cache"}
    return out


def test_same_output_whatever_workers_partitions_and_chunks(tmp_path, clone_dictionary):
    flags = ["--input", CORPUS, "--json-keys", "text", "title", "--append-eod", "--english-clone",
             "--dictionary", clone_dictionary, "--codeswitch-ratio", "0.2", "--codeswitch-seed", "9"]
    results = []
    for i, extra in enumerate([["--workers", "1"], ["--workers", "2", "--chunk-bytes", "300"],
                               ["--workers", "2", "--partitions", "2", "--chunk-bytes", "1000"]]):
        code, prefix, stats = run(tmp_path, *flags, *extra, name=f"run{i}")
        assert code == 0
        results.append((output_bytes(prefix), comparable(stats)))
    assert results[0][1]["outputs"]["text"]["switched_words"] > 50
    for other in results[1:]:
        assert other[0] == results[0][0]
        assert other[1] == results[0][1]
    # another seed switches other words
    code, prefix, _ = run(tmp_path, *flags[:-1], "10", name="seed10")
    assert output_bytes(prefix)["_text_document.bin"] != results[0][0]["_text_document.bin"]


def test_stats_report_matches_the_shards(tmp_path, clone_dictionary):
    p = 0.25
    code, prefix, stats = run(tmp_path, "--input", CORPUS, "--append-eod", "--english-clone",
                              "--dictionary", clone_dictionary, "--codeswitch-ratio", str(p))
    assert code == 0
    out = stats["outputs"]["text"]
    tokens, docs = read_dataset(prefix + "_text_document")
    targets, tdocs = read_dataset(prefix + "_text_document_targets")
    flat_x = [t for s in tokens for t in s]
    flat_y = [t for s in targets for t in s]
    with open(CORPUS, newline=None) as f:
        n_docs = sum(1 for _ in f)
    assert out["documents"] == len(docs) - 1 == n_docs == stats["documents_read"]
    assert out["tokens"] == len(flat_x) == len(flat_y) and tdocs == docs
    assert out["sequences"] == len(tokens)
    # a switched span starts where the target is an original English id but the input is not
    spans = sum(1 for x, y in zip(flat_x, flat_y) if x != y and y != 65535)
    assert out["switched_words"] == spans > 0
    assert out["dictionary_words"] <= out["words"]
    assert out["dictionary_coverage"] == pytest.approx(out["dictionary_words"] / out["words"])
    assert out["switched_rate"] == pytest.approx(spans / out["dictionary_words"])
    n = out["dictionary_words"]
    assert abs(spans - n * p) < 5 * np.sqrt(n * p * (1 - p))
    assert stats["tokenizer"]["english_clone"] is True and stats["tokenizer"]["vocab_size"] == 1000
    assert stats["dictionary"]["path"] == clone_dictionary
    assert stats["problems"]["by_reason"] == {"empty_document": 3}


def test_plain_text_inputs_and_globs(tmp_path):
    (tmp_path / "a.txt").write_text("First document.\n\nSecond document.\n")
    (tmp_path / "b.txt").write_text("Third document.\n")
    code, prefix, stats = run(tmp_path, "--input", str(tmp_path / "*.txt"), "--append-eod")
    assert code == 0
    seqs, docs = read_dataset(prefix + "_text_document")
    from megatron_prealign.text.tokenizers import build_tokenizer

    tok = build_tokenizer("SentencePieceTokenizer", SP_MODEL)
    assert [tok.detokenize(s[:-1]) for s in seqs] == ["First document.", "Second document.",
                                                      "Third document."]
    assert stats["blank_text_lines"] == 1 and stats["problems"]["total"] == 0


def test_split_sentences_trains_punkt_on_the_input_and_says_so(tmp_path, monkeypatch, capsys):
    from megatron_prealign.preprocess import sentences

    monkeypatch.setattr(sentences, "find_installed_punkt", lambda lang: None)
    code, prefix, stats = run(tmp_path, "--input", CORPUS, "--split-sentences", "--append-eod")
    assert code == 0
    assert "trained Punkt on the first" in capsys.readouterr().err
    assert stats["sentence_splitter"]["kind"] == "trained-on-input"
    saved = prefix + "_punkt"
    assert os.path.exists(os.path.join(saved, "abbrev_types.txt"))
    seqs, docs = read_dataset(prefix + "_text_sentence")
    assert len(seqs) > len(docs)
    code, again, _ = run(tmp_path, "--input", CORPUS, "--split-sentences", "--append-eod",
                         "--punkt-model", saved, name="again")
    for ext in (".bin", ".idx"):
        assert open(prefix + "_text_sentence" + ext, "rb").read() == \
            open(again + "_text_sentence" + ext, "rb").read()


def test_progress_reports_docs_and_megabytes_per_second(tmp_path, capsys):
    prefix = str(tmp_path / "p")
    assert main(SP + ["--input", CORPUS, "--output-prefix", prefix, "--progress", "log",
                      "--log-interval", "10", "--chunk-bytes", "2000"]) == 0
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.startswith("Processed")]
    assert len(lines) >= 3 and all("docs/s" in ln and "MB/s" in ln for ln in lines)
    assert "wrote " + prefix + "_text_document.bin/.idx: 48 documents" in captured.out
    assert main(SP + ["--input", CORPUS, "--output-prefix", prefix, "--progress", "bar"]) == 0
    err = capsys.readouterr().err
    assert "\r[" in err and "docs/s" in err and "MB/s" in err


def _kill_after_rename(k, argv):
    """In a forked child: run the CLI and SIGKILL ourselves right after the k-th os.replace."""
    pid = os.fork()
    if pid == 0:  # child
        calls = [0]
        real = os.replace

        def dying_replace(src, dst):
            real(src, dst)
            calls[0] += 1
            if calls[0] == k:
                os.kill(os.getpid(), signal.SIGKILL)

        os.replace = dying_replace
        try:
            main(argv)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def test_killed_commit_never_leaves_a_mixed_or_incomplete_pair(tmp_path, clone_dictionary):
    base = SP + ["--input", CORPUS, "--english-clone", "--dictionary", clone_dictionary,
                 "--progress", "none", "--workers", "1"]
    old_flags = ["--codeswitch-ratio", "0.5"]
    new_flags = ["--codeswitch-ratio", "0.1", "--append-eod"]
    refs = {}
    for name, flags in (("old", old_flags), ("new", new_flags)):
        assert main(base + flags + ["--output-prefix", str(tmp_path / name)]) == 0
        refs[name] = output_bytes_single(str(tmp_path / name))
    assert refs["old"]["_text_document.idx"] != refs["new"]["_text_document.idx"]
    target = str(tmp_path / "t")
    # The commit renames: stats, companion .bin, companion .idx, token .bin, token .idx.
    for k in range(1, 6):
        assert main(base + old_flags + ["--output-prefix", target]) == 0
        assert present(target) == refs["old"]
        assert _kill_after_rename(k, base + new_flags + ["--output-prefix", target])
        state = present(target)
        if k < 5:
            # killed mid-commit: no token pair looks complete (its old .idx went first)
            assert state["_text_document.idx"] is None, k
        else:
            assert state == refs["new"]
        if state["_text_document_targets.idx"] is not None:  # a visible companion is whole
            assert state["_text_document_targets.idx"] == refs["new"]["_text_document_targets.idx"]
            assert state["_text_document_targets.bin"] == refs["new"]["_text_document_targets.bin"]
        # a rerun is safe and complete
        assert main(base + new_flags + ["--output-prefix", target]) == 0
        assert present(target) == refs["new"]
        assert not any(n.endswith(".partial") for n in os.listdir(tmp_path))


def output_bytes_single(prefix):
    return {s + e: open(prefix + s + e, "rb").read()
            for s in ("_text_document", "_text_document_targets") for e in (".bin", ".idx")}


def present(prefix):
    out = {}
    for s in ("_text_document", "_text_document_targets"):
        for e in (".bin", ".idx"):
            path = prefix + s + e
            out[s + e] = open(path, "rb").read() if os.path.exists(path) else None
    return out


def wait_until_unlocked(path, timeout=60):
    """Wait until no process holds the flock on ``path`` (a missing file is unlocked)."""
    deadline = time.time() + timeout
    while True:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            assert time.time() < deadline, f"{path} is still locked after {timeout} s"
            time.sleep(0.05)
        finally:
            os.close(fd)


def test_kill_9_during_processing_then_rerun(tmp_path):
    big = tmp_path / "big.jsonl"
    with open(CORPUS, "rb") as f:
        corpus = f.read()
    big.write_bytes(corpus * 250)  # ~5.5 MB
    prefix = str(tmp_path / "k")
    cmd = [sys.executable, os.path.join(REPO, "tools", "preprocess_data.py"), *SP,
           "--input", str(big), "--output-prefix", prefix, "--workers", "2", "--progress", "none",
           "--chunk-bytes", "65536"]
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    partial = prefix + "_text_document.bin.partial"
    deadline = time.time() + 120
    while not os.path.exists(partial) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.kill()  # SIGKILL: no cleanup runs
    proc.wait()
    names = os.listdir(tmp_path)
    assert not any(n.endswith((".idx", ".bin")) for n in names), names
    assert any(n.endswith(".partial") for n in names)
    # Its workers die with it (and only then drop the output lock they inherited).
    wait_until_unlocked(prefix + ".lock")
    # the rerun overwrites the leftovers and publishes a complete pair
    assert main(SP + ["--input", str(big), "--output-prefix", prefix, "--workers", "2",
                      "--progress", "none"]) == 0
    assert not any(n.endswith(".partial") for n in os.listdir(tmp_path))
    seqs, docs = read_dataset(prefix + "_text_document")
    assert len(docs) - 1 == 48 * 250


def test_gzip_and_several_files_equal_one_plain_file(tmp_path):
    import gzip

    lines = open(CORPUS, "rb").read().splitlines(keepends=True)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_bytes(b"".join(lines[:20]))
    with gzip.open(tmp_path / "in" / "b.jsonl.gz", "wb") as f:
        f.write(b"".join(lines[20:]))
    code, one, _ = run(tmp_path, "--input", CORPUS, "--append-eod", name="one")
    code2, many, stats = run(tmp_path, "--input", str(tmp_path / "in" / "*"), "--append-eod",
                             "--workers", "2", "--partitions", "2", name="many")
    assert code == code2 == 0 and len(stats["inputs"]) == 2
    for ext in (".bin", ".idx"):
        assert open(one + "_text_document" + ext, "rb").read() == \
            open(many + "_text_document" + ext, "rb").read()


def _dying_chunk(chunk, state=None):
    """A worker that dies (like an OOM kill) on its second chunk."""
    from megatron_prealign.preprocess import pipeline as preprocess

    if chunk.first_line > 1:
        os._exit(3)
    return preprocess.real_process_chunk(chunk, state)


def test_a_dead_worker_fails_the_run_instead_of_hanging(tmp_path, monkeypatch, capsys):
    from megatron_prealign.preprocess import pipeline as preprocess

    monkeypatch.setattr(preprocess, "real_process_chunk", preprocess.process_chunk, raising=False)
    monkeypatch.setattr(preprocess, "process_chunk", _dying_chunk)
    code, prefix, stats = run(tmp_path, "--input", CORPUS, "--workers", "2", "--chunk-bytes", "2000")
    assert code == 1 and stats is None
    assert "a worker process died" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_compiled_dictionary_cache_hits_and_changes_nothing(tmp_path, clone_dictionary, capsys):
    cache = tmp_path / "cache"
    flags = ["--input", CORPUS, "--english-clone", "--dictionary", clone_dictionary,
             "--codeswitch-ratio", "0.2", "--dictionary-cache-dir", str(cache)]
    code, off, stats_off = run(tmp_path, *flags[:-2], "--no-dictionary-cache", name="nocache")
    assert code == 0 and stats_off["dictionary"]["compiled_cache"] == {"status": "off"}
    assert not cache.exists()
    code, first, stats_miss = run(tmp_path, *flags, name="miss")
    assert code == 0 and stats_miss["dictionary"]["compiled_cache"]["status"] == "miss"
    entry = stats_miss["dictionary"]["compiled_cache"]["path"]
    assert os.path.dirname(entry) == str(cache) and os.path.exists(entry)
    code, second, stats_hit = run(tmp_path, *flags, name="hit")
    assert code == 0 and stats_hit["dictionary"]["compiled_cache"] == {"status": "hit", "path": entry}
    assert output_bytes_single(off) == output_bytes_single(first) == output_bytes_single(second)
    drop = lambda s: {k: v for k, v in s.items() if k != "compiled_cache"}  # noqa: E731
    assert drop(stats_off["dictionary"]) == drop(stats_miss["dictionary"]) == drop(stats_hit["dictionary"])

    # A damaged entry is reported, recompiled and replaced; the output does not change.
    with open(entry, "wb") as f:
        f.write(b"not an npz")
    code, third, stats = run(tmp_path, *flags, name="damaged")
    assert code == 0 and "is unreadable" in capsys.readouterr().err
    assert stats["dictionary"]["compiled_cache"]["status"] == "miss"
    assert output_bytes_single(third) == output_bytes_single(off)
    assert run(tmp_path, *flags, name="again")[2]["dictionary"]["compiled_cache"]["status"] == "hit"

    # A cache that cannot be written costs only the speed-up.
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code, fourth, stats = run(tmp_path, *flags[:-1], str(blocker / "cache"), name="unwritable")
    assert code == 0 and "could not write" in capsys.readouterr().err
    assert stats["dictionary"]["compiled_cache"]["status"] == "unwritable"
    assert output_bytes_single(fourth) == output_bytes_single(off)


def test_cache_key_follows_the_dictionary_bytes_and_the_tokenizer(tmp_path, clone_dictionary,
                                                                  clone_tokenizer, sp_tokenizer):
    from megatron_prealign.preprocess.table_cache import cache_key

    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(open(clone_dictionary, "rb").read())
    key = cache_key(str(copy), "auto", clone_tokenizer, max_tokens=30)
    assert key == cache_key(clone_dictionary, "auto", clone_tokenizer, max_tokens=30)
    assert key != cache_key(str(copy), "auto", sp_tokenizer, max_tokens=30)
    assert key != cache_key(str(copy), "multiway", clone_tokenizer, max_tokens=30)
    assert key != cache_key(str(copy), "auto", clone_tokenizer, max_tokens=20)
    with open(copy, "a", encoding="utf-8") as f:
        f.write(json.dumps({"words": "zebra $ <clone>zebra"}) + "\n")
    assert key != cache_key(str(copy), "auto", clone_tokenizer, max_tokens=30)


def test_compiled_table_round_trips_and_rejects_damaged_arrays(clone_dictionary, clone_tokenizer):
    from megatron_prealign.text.codeswitch import CodeSwitchTable
    from megatron_prealign.text.dictionary import compile_switch_table, load_dictionary

    table, _ = compile_switch_table(load_dictionary(clone_dictionary), clone_tokenizer)
    arrays = table.state_arrays()
    again = CodeSwitchTable.from_state_arrays(arrays)
    assert again.keys == table.keys and again.translations == table.translations
    assert all(again.lookup(k) == table.lookup(k) for k in table.keys[:50])
    with pytest.raises(ValueError, match="inconsistent"):
        CodeSwitchTable.from_state_arrays(arrays[:6] + [arrays[6][:-1], arrays[7]])


def test_missing_dictionary_is_a_clear_error_and_publishes_nothing(tmp_path, capsys):
    missing = str(tmp_path / "nope.pairs")
    code, prefix, stats = run(tmp_path, "--input", CORPUS, "--dictionary", missing,
                              "--codeswitch-ratio", "0.1", "--dictionary-cache-dir", str(tmp_path / "c"))
    assert code == 1 and stats is None and not os.path.exists(prefix + "_text_document.idx")
    err = capsys.readouterr().err
    assert missing in err and "Traceback" not in err
