"""Evaluation step of the experiment: convert the stage-2 checkpoint, run the evaluation suite.

Converts with ``tools/convert_to_hf.py`` (logits parity checked on the way), then runs
``tools/evaluate.py`` on the Hugging Face model with:

    perplexity     held-out English and clone shards (documents no arm trained on)
    knowledge      every fact probed in the clone (groups en_only / both / never) and the en_only
                   facts probed in English (did the model learn them at all?); candidates are all
                   objects of the relation, ranked by summed log-likelihood
    transfer       the paper's protocol: a copy of the model with a classification head, fine-tuned
                   on English Brown paragraphs (``Preset.transfer_finetune_steps``), tested on
                   held-out English paragraphs and on their clone (zero-shot); beside it the frozen
                   probe (a softmax probe on mean-pooled final-norm features, ``..._frozen``)
    alignment      per-level P@1 and cosines for dev, unseen and strict-unseen dictionary words

and writes ``metrics.json`` with the experiment's metric names (``report.py`` reads it).

The real setting measures the same on real languages: perplexity per language (``{lang}_ppl``),
knowledge probed in each target (``real/facts.py``), each transfer task (``transfer_{task}_{lang}``),
P@1 on the held-out and unseen dictionary entries, and sentence retrieval on parallel text
(``retrieval_p1_{level}_{set}``).

With the ``examined`` probes (``Preset.probes``, ``docs/probes.md``) it also measures: facts by
greedy generation (``knowledge_gen_{group}``), the frozen transfer probe at every level
(``transfer_..._{level}``), and word P@1 per level of the facts' objects and, in the clone setting,
their subjects' name parts (``align_p1_{level}_fact_objects``, ``..._fact_subjects``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

from examples.experiment.clone import facts
from examples.experiment.pipeline import run_logged
from examples.experiment.real import data_prep as real_data
from examples.experiment.real import facts as real_facts
from examples.experiment.real.data_prep import CorpusError
from megatron_prealign.evaluation.facts import Fact
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
    }
    _transfer_metrics(metrics, run["transfer"]["genres"], "transfer_clone", "transfer_english")
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
    _examined_metrics(metrics, run, {"genres": ("transfer_clone", "transfer_english")})
    return metrics


def _transfer_metrics(metrics: dict, result: dict, target: str, english: str) -> None:
    """One transfer task's default metrics (``docs/probes.md``, T-c adopted): ``target`` and
    ``english`` are the fine-tuned model's zero-shot and English accuracies, ``{...}_frozen`` the
    frozen final-norm probe's (the default until the probes were examined)."""
    metrics[target] = result["finetuned"]["target_accuracy"]
    metrics[english] = result["finetuned"]["source_accuracy"]
    metrics[f"{target}_frozen"] = result["target_accuracy"]
    metrics[f"{english}_frozen"] = result["source_accuracy"]


def _examined_metrics(metrics: dict, run: dict, transfer_names: dict) -> None:
    """The ``examined`` probes' metrics, where the run has them: ``knowledge_gen_{group}``; per
    transfer task (``transfer_names``: task -> (target metric, English metric)) the frozen probe at
    every level and its middle layer (``{metric}_{level}``, ``{metric}_middle_layer``); P@1 per level
    of the fact dictionaries."""
    for group, values in run.get("knowledge_generation", {}).items():
        if group != "all":
            metrics[f"knowledge_gen_{group}"] = values["accuracy"]
    for task, (target, english) in transfer_names.items():
        result = run["transfer"][task]
        variants = dict(result.get("levels", {}))
        layers = [level for level in variants if level.startswith("layer")]
        if layers:
            variants["middle_layer"] = variants[layers[len(layers) // 2 - 1]]
        for variant, scores in variants.items():
            metrics[f"{target}_{variant}"] = scores["target_accuracy"]
            metrics[f"{english}_{variant}"] = scores["source_accuracy"]
    for name, result in run.get("alignment", {}).items():
        if name.startswith("fact_"):
            _level_metrics(metrics, "align_p1", result["levels"], name)


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
    if preset.setting == "real":
        metrics = _evaluate_real(preset, arm, seed, out, inputs, hf_dir, log)
    else:
        metrics = _evaluate_clone(preset, arm, seed, out, inputs, hf_dir, log)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return {"arm": arm, "seed": seed, "iteration": iteration}


def _evaluate_command(preset, arm: str, seed: int, hf_dir: Path, output: Path) -> list:
    return [sys.executable, REPO / "tools" / "evaluate.py", "--model", f"{arm}={hf_dir}", "--output", output,
            "--seq-length", preset.seq_length, "--max-tokens", preset.eval_max_tokens, "--seed", seed]


def _dictionary_flags(dictionaries: Path, names, more=()) -> list:
    """``--alignment-dictionary`` with every non-empty dictionary of ``names`` in ``dictionaries``
    and the files of ``more`` (the ``examined`` probes' fact dictionaries)."""
    present = [f"{name}={dictionaries / (name + '.jsonl')}" for name in names
               if (dictionaries / (name + ".jsonl")).is_file()
               and (dictionaries / (name + ".jsonl")).stat().st_size > 0]
    present += [f"{path.stem}={path}" for path in more if path.stat().st_size > 0]
    return ["--alignment-dictionary", *present] if present else []


def _probe_flags(preset) -> list:
    """``tools/evaluate.py``'s probe flags: the fine-tuned transfer (every evaluation: the default
    transfer probe), and the ``examined`` probes' further measurements."""
    flags = ["--transfer-finetune-steps", preset.transfer_finetune_steps]
    if preset.probes == "basic":
        return flags
    return flags + ["--knowledge-generation", "--probe-level", "all"]


def fact_dictionaries(preset, out: Path, inputs) -> list:
    """The ``examined`` probes' dictionaries of the facts' words (written into ``out``): every
    relation's objects, English -> target; in the clone setting also the subjects' name parts
    (invented words, seen only in their facts), English -> clone."""
    from megatron_prealign.preprocess.english_clone import build_clone_dictionary
    from megatron_prealign.preprocess.lexicon import save_multiway
    from megatron_prealign.text.tokenizers import build_tokenizer

    if preset.probes == "basic":
        return []
    objects = [o for spec in facts.RELATIONS.values() for o in spec["objects"]]
    paths = []
    if preset.setting == "clone":
        tokenizer = build_tokenizer("SentencePieceTokenizer", str(inputs["tokenizer"] / "spm.model"))
        subjects = sorted({part for f in json.loads((inputs["corpus"] / "facts.json").read_text())
                           for part in f["subject"].split()})
        for name, words in (("fact_objects", objects), ("fact_subjects", subjects)):
            entries, _ = build_clone_dictionary(words, tokenizer)
            save_multiway(entries, str(out / f"{name}.jsonl"))
            paths.append(out / f"{name}.jsonl")
        return paths
    for language in preset.targets:
        suffix = f"_{language}" if len(preset.targets) > 1 else ""
        pairs = [[english, target] for relation, spec in facts.RELATIONS.items()
                 for english, target in zip(spec["objects"], real_facts.TARGETS[language][relation]["objects"])]
        save_multiway(pairs, str(out / f"fact_objects{suffix}.jsonl"))
        paths.append(out / f"fact_objects{suffix}.jsonl")
    return paths


def _evaluate_clone(preset, arm: str, seed: int, out: Path, inputs, hf_dir: Path, log: Path) -> dict:
    _write_jsonl(out / "knowledge.jsonl", knowledge_records(inputs["corpus"] / "facts.json"))
    _write_jsonl(out / "transfer.jsonl", transfer_records(inputs["transfer"]))
    shards = inputs["shards"]
    run_logged(_evaluate_command(preset, arm, seed, hf_dir, out / "eval") + _probe_flags(preset) + [
        "--perplexity", f"en={shards / 'en_heldout_text_document'}",
        f"clone={shards / 'clone_heldout_text_document'}",
        *_dictionary_flags(inputs["dictionaries"], ("dev", "unseen", "strict_unseen"),
                           fact_dictionaries(preset, out, inputs)),
        "--knowledge", out / "knowledge.jsonl", "--transfer", f"genres={out / 'transfer.jsonl'}"], log,
        show_progress=False)
    results = json.loads((out / "eval" / "results.json").read_text())
    return metrics_from_results(results["runs"][0])


def _evaluate_real(preset, arm: str, seed: int, out: Path, inputs, hf_dir: Path, log: Path) -> dict:
    """Perplexity per language, knowledge probed in each target, per-layer P@1, sentence retrieval
    and every transfer task in one run of ``tools/evaluate.py``."""
    facts_list = [Fact(**f) for f in json.loads((inputs["corpus"] / "facts.json").read_text())]
    records = []
    for language in preset.targets:
        suffix = f"_{language}" if len(preset.targets) > 1 else ""
        for record in real_facts.knowledge_records(facts_list, language):
            if record["group"] != "en_only_in_english":
                record["group"] += suffix
            elif language != preset.targets[0]:
                continue  # the English probe once
            records.append(record)
    _write_jsonl(out / "knowledge.jsonl", records)
    shards, transfer = inputs["shards"], inputs["transfer"]
    tasks = [f"{task}_{language}" for task, language in real_data.transfer_tasks(preset)]
    if not tasks:
        raise CorpusError(f"pair {preset.pair}: no transfer task has a target language of this pair")
    retrieval = sorted(transfer.glob("retrieval_*.jsonl"))
    run_logged(_evaluate_command(preset, arm, seed, hf_dir, out / "eval") + _probe_flags(preset) + [
        "--perplexity", *[f"{language}={shards / f'{language}_heldout_text_document'}"
                          for language in ["en", *preset.targets]],
        *_dictionary_flags(inputs["dictionaries"], real_data.evaluation_dictionaries(preset),
                           fact_dictionaries(preset, out, inputs)),
        "--knowledge", out / "knowledge.jsonl",
        "--transfer", *[f"{task}={transfer / f'{task}.jsonl'}" for task in tasks],
        *(["--retrieval", *[f"{p.stem[len('retrieval_'):]}={p}" for p in retrieval]] if retrieval else [])],
        log, show_progress=False)
    return real_metrics(preset, json.loads((out / "eval" / "results.json").read_text())["runs"][0])


def real_metrics(preset, first: dict) -> dict:
    """The real setting's metric names from the evaluation run's results."""
    metrics = {"english_ppl": first["perplexity"]["en"]["perplexity"]}
    for language in preset.targets:
        metrics[f"{language}_ppl"] = first["perplexity"][language]["perplexity"]
    for task, result in first["transfer"].items():  # English and target scores on the same aligned units
        _transfer_metrics(metrics, result, f"transfer_{task}", f"transfer_{task}_english")
    _examined_metrics(metrics, first, {task: (f"transfer_{task}", f"transfer_{task}_english")
                                       for task in first["transfer"]})
    for group, values in first["knowledge"].items():
        if isinstance(values, dict) and "accuracy" in values and group != "all":  # groups only
            metrics[f"knowledge_{group}"] = values["accuracy"]
    for name in real_data.evaluation_dictionaries(preset):
        if name in first.get("alignment", {}):
            report_name = name.replace("dev", "heldout", 1)
            _level_metrics(metrics, "align_p1", first["alignment"][name]["levels"], report_name)
    for name, result in first.get("retrieval", {}).items():
        _level_metrics(metrics, "retrieval_p1", result["levels"], name)
    return metrics


def _level_metrics(metrics: dict, prefix: str, levels: dict, name: str) -> None:
    """``{prefix}_{level}_{name}`` for every level, and the middle and last layer by those names."""
    layers = [level for level in levels if level.startswith("layer")]
    for level, values in levels.items():
        metrics[f"{prefix}_{level}_{name}"] = values["p_at_1"]
    if "final_norm" in levels:
        metrics[f"{prefix}_last_layer_{name}"] = levels["final_norm"]["p_at_1"]
    metrics[f"{prefix}_middle_layer_{name}"] = levels[layers[len(layers) // 2 - 1]]["p_at_1"] if layers else None
