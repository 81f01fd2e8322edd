"""Hostile inputs of the evaluation tool (``tools/evaluate.py``) and the experiment runner
(``examples/experiment/run.py``). The evaluation rows use a tiny random Hugging Face Llama with a
word-level tokenizer (64 ids), made in the row's setup."""

from __future__ import annotations

import json
from pathlib import Path

from tests.hostile.harness import Case

EVALUATE = "tools/evaluate.py"
RUN = "examples/experiment/run.py"
VOCAB = 64


def tiny_model(tmp: Path) -> Path:
    """``tmp/hf``: a 1-layer Llama over 64 ids with a tokenizer.json (``w0`` .. ``w61``)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from tests.evaluation.helpers import tiny_llama

    words = ["<unk>", "</s>"] + [f"w{i}" for i in range(VOCAB - 2)]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    hf = tmp / "hf"
    tiny_llama(VOCAB).save_pretrained(hf)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>",
                            eos_token="</s>").save_pretrained(hf)
    return hf


def write_lines(path: Path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def evaluate(*flags):
    return lambda tmp: [EVALUATE, "--model", f"m={tmp / 'hf'}", *[str(f).format(tmp=tmp) for f in flags]]


def empty_perplexity(tmp: Path) -> None:
    tiny_model(tmp)
    (tmp / "heldout.jsonl").write_text("\n")


def facts_outside_vocab(tmp: Path) -> None:
    tiny_model(tmp)
    write_lines(tmp / "facts.jsonl", [
        {"prompt_ids": [3, 4], "candidate_ids": [[5], [6]], "answer": 0, "group": "seen"},
        {"prompt_ids": [3, 4], "candidate_ids": [[5], [VOCAB + 6]], "answer": 1, "group": "seen"}])


def one_label_transfer(tmp: Path) -> None:
    tiny_model(tmp)
    write_lines(tmp / "task.jsonl", [{"text": "w1 w2 w3", "label": "pos", "split": split}
                                     for split in ("train", "train", "source", "target")])


def output_is_a_file(tmp: Path) -> None:
    tiny_model(tmp)
    write_lines(tmp / "heldout.jsonl", [{"text": "w1 w2 w3 w4 w5"}])
    (tmp / "out").write_text("my notes\n")


def output_file_kept(tmp: Path) -> None:
    assert (tmp / "out").read_text() == "my notes\n"


def nothing_written(tmp: Path) -> None:
    assert not (tmp / "run").exists(), list((tmp / "run").rglob("*"))


def retrieval_pairs(*lines: str):
    """Setup: the tiny model and ``tmp/pairs.jsonl`` with these raw lines."""
    def setup(tmp: Path) -> None:
        tiny_model(tmp)
        (tmp / "pairs.jsonl").write_text("".join(line + "\n" for line in lines))
    return setup


def pair(source, target) -> str:
    return json.dumps({"source": source, "target": target})


def retrieval(*flags):
    return evaluate("--retrieval", "set={tmp}/pairs.jsonl", *flags, "--output", "{tmp}/out")


def malformed_corpus(tmp: Path) -> None:
    (tmp / "corpus.jsonl").write_text(json.dumps({"text": "A paragraph of English prose, long enough "
                                                          "to count as one."}) + "\n{'text': oops}\n")


CASES = [
    Case("evaluate_empty_perplexity_file", evaluate("--perplexity", "en={tmp}/heldout.jsonl",
                                                    "--output", "{tmp}/out"),
         1, ["{tmp}/heldout.jsonl", "empty"], setup=empty_perplexity),
    Case("evaluate_fact_ids_outside_vocab", evaluate("--knowledge", "{tmp}/facts.jsonl",
                                                     "--output", "{tmp}/out"),
         1, ["{tmp}/facts.jsonl:2", f"token id {VOCAB + 6}", f"vocabulary of {VOCAB}"],
         setup=facts_outside_vocab),
    Case("evaluate_transfer_one_label", evaluate("--transfer", "{tmp}/task.jsonl", "--probe-steps", "5",
                                                 "--output", "{tmp}/out"),
         1, ["{tmp}/task.jsonl", "'pos'", "chance 1.0"], setup=one_label_transfer),
    Case("evaluate_output_is_a_file", evaluate("--perplexity", "en={tmp}/heldout.jsonl",
                                               "--output", "{tmp}/out"),
         1, ["--output {tmp}/out", "not a directory"], setup=output_is_a_file, check=output_file_kept),
    Case("evaluate_retrieval_missing_file", retrieval(), 2, ["--retrieval {tmp}/pairs.jsonl: no such file"],
         setup=tiny_model),
    Case("evaluate_retrieval_malformed_json", retrieval(), 1, ["{tmp}/pairs.jsonl:2: not valid JSON"],
         setup=retrieval_pairs(pair("w1", "w2"), "{'source': oops}")),
    # The other file-level problems of --retrieval are checked in-process (tests/evaluation/test_retrieval.py).
    Case("evaluate_retrieval_same_tokens_once_cut", retrieval("--retrieval-max-tokens", "2"), 1,
         ["{tmp}/pairs.jsonl:2: the source text has the same first 2 tokens", "as on line 1"],
         setup=retrieval_pairs(pair("w1 w2 w3", "w4"), pair("w1 w2 w5", "w6"))),
    Case("run_empty_corpus", lambda tmp: [RUN, "--output-dir", tmp / "run", "--corpus", tmp / "corpus.jsonl"],
         1, ["{tmp}/corpus.jsonl", "empty"], setup=lambda tmp: (tmp / "corpus.jsonl").write_text(""),
         check=nothing_written),
    Case("run_malformed_corpus", lambda tmp: [RUN, "--output-dir", tmp / "run", "--corpus",
                                              tmp / "corpus.jsonl"],
         1, ["{tmp}/corpus.jsonl:2", "not valid JSON"], setup=malformed_corpus, check=nothing_written),
    Case("run_duplicate_seeds", lambda tmp: [RUN, "--output-dir", tmp / "run", "--seeds", "1,2,1"],
         2, ["--seeds 1,2,1", "1 given more than once"], check=nothing_written),
    Case("run_preset_of_the_other_setting", lambda tmp: [RUN, "--output-dir", tmp / "run", "--setting", "real",
                                                         "--preset", "long"],
         2, ["--preset long", "the real setting has tiny, cpu, gpu150m"], check=nothing_written),
    Case("run_pair_without_real_setting", lambda tmp: [RUN, "--output-dir", tmp / "run", "--pair", "en-de"],
         2, ["--pair", "--setting real"], check=nothing_written),
    Case("run_unknown_pair", lambda tmp: [RUN, "--output-dir", tmp / "run", "--setting", "real", "--pair", "en-fr"],
         2, ["--pair", "invalid choice", "en-fr"], check=nothing_written),
]
