"""``tools/evaluate.py`` end to end on a stage-1 English-Clone checkpoint and its HF conversion.

Both kinds of model must give the same numbers on every metric (the Megatron checkpoint is read
directly, resharded into one process; the Hugging Face directory through AutoModelForCausalLM).
"""

import json
import random

import numpy as np
import pytest
import torch

from megatron_prealign.text.tokenizers import build_tokenizer
from tests.conversion.checkpoints import checkpoints, run_tool  # noqa: F401 (fixture)

pytestmark = pytest.mark.multiprocess  # starts torchrun jobs


def write_inputs(tmp_path, spm_model, dictionary):
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    rng = random.Random(0)
    words = [json.loads(line)["words"].split(" $ ")[0] for line in open(dictionary)]
    english = [" ".join(rng.choice(words) for _ in range(8)) for _ in range(12)]
    (tmp_path / "en.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in english))
    tok = build_tokenizer("SentencePieceTokenizer", str(spm_model), english_clone=True)
    prefix = str(tmp_path / "clone_text_document")  # a clone shard: English ids + V
    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=np.uint16)
    for text in english:
        ids = tok.tokenize("<clone>" + text) + [tok.clone_eod]
        builder.add_document(torch.tensor(ids), [len(ids)])
    builder.finalize(prefix + ".idx")
    with open(tmp_path / "facts.jsonl", "w") as f:
        for i in range(9):
            tag = "<clone>" if i % 3 else ""
            options = rng.sample(words, 4)
            f.write(json.dumps({"prompt": tag + " ".join(rng.sample(words, 3)),
                                "candidates": [tag + o for o in options], "answer": i % 4,
                                "group": ["transfer", "seen", "unseen"][i % 3]}) + "\n")
    with open(tmp_path / "task.jsonl", "w") as f:
        for split, tag, n in (("train", "", 16), ("source", "", 8), ("target", "<clone>", 8)):
            for i in range(n):
                pool = words[:40] if i % 2 else words[40:80]
                f.write(json.dumps({"text": tag + " ".join(rng.choice(pool) for _ in range(5)),
                                    "label": ["neg", "pos"][i % 2], "split": split}) + "\n")
    return prefix


def flat(value, prefix=""):
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(flat(v, f"{prefix}/{k}"))
        return out
    return {prefix: value}


def test_megatron_checkpoint_and_its_hf_conversion_score_the_same(tmp_path, checkpoints):  # noqa: F811
    ckpt, _ = checkpoints.get("tp1_tied_gqa_clone")
    hf_dir, _ = checkpoints.converted("tp1_tied_gqa_clone")
    spm_model, dictionary = checkpoints.language()
    shard = write_inputs(tmp_path, spm_model, dictionary)
    out = tmp_path / "eval"
    proc = run_tool("evaluate.py", "--model", f"megatron={ckpt}", "--model", f"hf={hf_dir}",
                    "--perplexity", f"en={tmp_path / 'en.jsonl'}", f"clone={shard}",
                    "--alignment-dictionary", f"words={dictionary}", "--alignment-max-words", "200",
                    "--knowledge", tmp_path / "facts.jsonl", "--knowledge-generation",
                    "--transfer", f"topics={tmp_path / 'task.jsonl'}", f"again={tmp_path / 'task.jsonl'}",
                    "--probe-steps", "50", "--output", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "results.json").read_text())
    megatron, hf = report["runs"]
    assert (megatron["model"]["kind"], hf["model"]["kind"]) == ("megatron", "huggingface")
    assert megatron["model"]["iteration"] == 2
    assert set(megatron) >= {"perplexity", "alignment", "knowledge", "transfer"}
    assert megatron["perplexity"]["clone"]["tokens"] == megatron["perplexity"]["en"]["tokens"]
    assert list(megatron["alignment"]["words"]["levels"]) == \
        ["embedding", "layer1", "layer2", "final_norm", "output_embedding"]
    assert megatron["alignment"]["words"]["words"] == 200
    assert set(megatron["knowledge"]) == {"transfer", "seen", "unseen", "all"}
    assert set(megatron["knowledge_generation"]) == set(megatron["knowledge"])
    # Each transfer task has its own probe, seeded alike: the same task under two names, one result.
    assert list(megatron["transfer"]) == ["topics", "again"]
    assert megatron["transfer"]["topics"] == megatron["transfer"]["again"]
    assert megatron["transfer"]["topics"]["train_accuracy"] > 0.5
    compared = ("perplexity", "alignment", "knowledge", "knowledge_generation", "transfer")
    ours, theirs = flat({k: megatron[k] for k in compared}), flat({k: hf[k] for k in compared})
    assert ours.keys() == theirs.keys()
    for key, value in ours.items():
        if isinstance(value, float):
            assert theirs[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
        else:
            assert theirs[key] == value, key
    assert "| megatron |" in (out / "results.md").read_text()
    assert (out / "alignment_words.png").stat().st_size > 10_000
    assert "wrote " in proc.stdout


def test_missing_input_fails_before_loading_any_model(tmp_path):
    (tmp_path / "model").mkdir()  # never opened: the inputs are checked first
    proc = run_tool("evaluate.py", "--model", tmp_path / "model", "--perplexity", f"en={tmp_path / 'nope'}",
                    "--output", tmp_path / "eval")
    assert proc.returncode == 2
    assert "--perplexity en=" in proc.stderr and "neither a JSONL file nor a shard prefix" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_transfer_at_several_levels_and_fine_tuned(tmp_path, checkpoints):  # noqa: F811
    ckpt, _ = checkpoints.get("tp1_tied_gqa_clone")
    hf_dir, _ = checkpoints.converted("tp1_tied_gqa_clone")
    spm_model, dictionary = checkpoints.language()
    write_inputs(tmp_path, spm_model, dictionary)
    task = f"topics={tmp_path / 'task.jsonl'}"
    proc = run_tool("evaluate.py", "--model", f"hf={hf_dir}", "--transfer", task, "--probe-level", "all",
                    "--probe-steps", "20", "--transfer-finetune-steps", "3", "--output", tmp_path / "eval")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "eval" / "results.json").read_text())["runs"][0]["transfer"]["topics"]
    assert result["level"] == "final_norm" and list(result["levels"]) == ["final_norm", "embedding", "layer1",
                                                                         "layer2"]
    assert result["finetuned"]["steps"] == 3 and 0 <= result["finetuned"]["target_accuracy"] <= 1
    assert "fine-tuned (3 steps)" in (tmp_path / "eval" / "results.md").read_text()
    # Fine-tuning needs a Hugging Face model: a Megatron checkpoint is refused by name.
    proc = run_tool("evaluate.py", "--model", f"megatron={ckpt}", "--transfer", task,
                    "--transfer-finetune-steps", "3", "--output", tmp_path / "eval2")
    assert proc.returncode == 2 and "megatron is a megatron checkpoint" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
