"""Evaluation step of the experiment: convert the stage-2 checkpoint, run the evaluation suite.

Converts with ``tools/convert_to_hf.py`` (logits parity checked on the way), then runs
``tools/evaluate.py`` on the Hugging Face model with:

    perplexity     held-out English and clone shards (documents no arm trained on)
    knowledge      every fact probed in the clone (groups en_only / both / never) and the en_only
                   facts probed in English (did the model learn them at all?); candidates are all
                   objects of the relation, ranked by summed log-likelihood
    transfer       a softmax probe on mean-pooled final-norm features, trained on English Brown
                   paragraphs, tested on held-out English paragraphs and on their clone (zero-shot)
    alignment      per-level P@1 and cosines for dev, unseen and strict-unseen dictionary words

and writes ``metrics.json`` with the experiment's metric names (``report.py`` reads it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

from examples.experiment.clone import facts
from examples.experiment.pipeline import run_logged
from megatron_prealign.text.tokenizers.english_clone import CLONE_TAG

REPO = Path(__file__).resolve().parents[2]


def knowledge_records(facts_json: Path) -> list:
    """The ``--knowledge`` records of the corpus step's ``facts.json`` (``facts.knowledge_records``)."""
    return facts.knowledge_records([facts.Fact(**f) for f in json.loads(facts_json.read_text())])


def transfer_records(transfer_dir: Path) -> list:
    train = json.loads((transfer_dir / "train.json").read_text())
    test = json.loads((transfer_dir / "test.json").read_text())
    return ([{"text": r["text"], "label": r["label"], "split": "train"} for r in train]
            + [{"text": r["text"], "label": r["label"], "split": "source"} for r in test]
            + [{"text": CLONE_TAG + r["text"], "label": r["label"], "split": "target"} for r in test])


def _write_jsonl(path: Path, records: list) -> None:
    with open(path, "w") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")


def metrics_from_results(run: dict) -> dict:
    """The experiment's metric names from one run of the evaluation suite's results.json."""
    metrics = {
        "clone_ppl": run["perplexity"]["clone"]["perplexity"],
        "english_ppl": run["perplexity"]["en"]["perplexity"],
        "transfer_english": run["transfer"]["source_accuracy"],
        "transfer_clone": run["transfer"]["target_accuracy"],
    }
    for group in ("en_only", "both", "never", "en_only_in_english"):
        metrics[f"knowledge_{group}"] = run["knowledge"][group]["accuracy"]
    for dict_name, report_name in (("dev", "heldout"), ("unseen", "unseen"),
                                   ("strict_unseen", "strict_unseen")):
        if dict_name not in run.get("alignment", {}):  # an empty dictionary (tiny corpora)
            continue
        levels = run["alignment"][dict_name]["levels"]
        names = list(levels)
        layers = [n for n in names if n.startswith("layer")]
        for level, values in levels.items():
            metrics[f"align_p1_{level}_{report_name}"] = values["p_at_1"]
        metrics[f"align_p1_last_layer_{report_name}"] = levels["final_norm"]["p_at_1"]
        metrics[f"align_p1_middle_layer_{report_name}"] = levels[layers[len(layers) // 2 - 1]]["p_at_1"] \
            if layers else None
    return metrics


def evaluate(preset, arm: str, seed: int, out: Path, inputs, iteration: Optional[int] = None) -> dict:
    """Convert the stage-2 checkpoint (the last one, or the one of ``iteration``) and evaluate it."""
    hf_dir = out / "hf"
    log = out / "evaluate.log"
    checkpoint = inputs["stage2"] / "checkpoints"
    if iteration is not None:
        checkpoint = checkpoint / f"iter_{iteration:07d}"
    run_logged([sys.executable, REPO / "tools" / "convert_to_hf.py",
                "--load", checkpoint, "--save", hf_dir,
                "--tokenizer-model", inputs["tokenizer"] / "spm.model"], log, show_progress=False)
    _write_jsonl(out / "knowledge.jsonl", knowledge_records(inputs["corpus"] / "facts.json"))
    _write_jsonl(out / "transfer.jsonl", transfer_records(inputs["transfer"]))
    shards, dictionaries = inputs["shards"], inputs["dictionaries"]
    run_logged([sys.executable, REPO / "tools" / "evaluate.py", "--model", f"{arm}={hf_dir}",
                "--output", out / "eval",
                "--perplexity", f"en={shards / 'en_heldout_text_document'}",
                f"clone={shards / 'clone_heldout_text_document'}",
                "--seq-length", preset.seq_length, "--max-tokens", preset.eval_max_tokens,
                "--alignment-dictionary", *[f"{name}={dictionaries / (name + '.jsonl')}"
                                            for name in ("dev", "unseen", "strict_unseen")
                                            if (dictionaries / (name + ".jsonl")).stat().st_size > 0],
                "--knowledge", out / "knowledge.jsonl", "--transfer", out / "transfer.jsonl",
                "--seed", seed], log, show_progress=False)
    results = json.loads((out / "eval" / "results.json").read_text())
    metrics = metrics_from_results(results["runs"][0])
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return {"arm": arm, "seed": seed, "iteration": iteration}
