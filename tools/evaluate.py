"""Evaluate Megatron checkpoints and/or converted Hugging Face models; write JSON, Markdown, PNG.

One process; each ``--model`` is a megatron-prealign checkpoint (any TP/PP, resharded on load) or
a Hugging Face directory (``tools/convert_to_hf.py`` output or any local LlamaForCausalLM)::

    python tools/evaluate.py --model prealign=ckpt/prealign --model joint=out/hf_joint \
        --perplexity en=data/en_valid.jsonl clone=data/clone_valid_text_document \
        --alignment-dictionary heldout=data/dict_heldout.jsonl \
        --knowledge data/facts.jsonl --transfer topics=data/topics.jsonl \
        --retrieval bible=data/bible_en_es.jsonl --output out/eval

prints one line per measurement and, last, the Markdown tables, e.g.::

    [prealign] perplexity en: 31.42 (51,200 tokens)
    [prealign] alignment heldout: P@1 embedding 0.98 ... output_embedding 0.97
    [prealign] knowledge: transfer 0.62 (n=50), seen 0.96 (n=50), unseen 0.27 (n=50)
    [prealign] transfer topics: source 0.91, target 0.84 (probe on final_norm)
    [prealign] retrieval bible: P@1 embedding 0.41 ... final_norm 0.88 (1000 pairs, 3 texts truncated)
    ...
    wrote out/eval/results.json, out/eval/results.md, out/eval/alignment_heldout.png

Input formats (documented in ``megatron_prealign/evaluation``):

* ``--perplexity NAME=PATH``: JSONL with ``"text"`` (``<clone>``-tagged text for the clone) or a
  Megatron shard prefix.
* ``--alignment-dictionary NAME=PATH``: a dictionary (pairs or multi-way JSONL); the first word of
  each entry is the source language.
* ``--knowledge FILE``: JSONL items ``{"prompt", "candidates", "answer", "group"}`` (text) or
  ``{"prompt_ids", "candidate_ids", "answer", "group"}`` (ids).
* ``--transfer NAME=FILE``: JSONL ``{"text" | "ids", "label", "split"}`` with split ``train`` and
  ``source`` (language A) or ``target`` (language B); several tasks in one run, each its own probe
  (a bare FILE is named after its file name).
* ``--retrieval NAME=PATH``: JSONL parallel pairs ``{"source": TEXT, "target": ITS TRANSLATION}``,
  at least two, no source or target text twice (``megatron_prealign/evaluation/retrieval.py``).

Exit status 0; 2 for a flag that cannot be used (a malformed NAME=PATH, a path that does not
exist); 1 for an input or output problem (an empty or malformed file, ids outside the model's
vocabulary, a transfer task with one label, a retrieval text given twice, an output directory that
cannot be written). Inputs and the output directory are checked before any model is loaded.
"""

import argparse
import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from megatron_prealign.errors import PreAlignError  # noqa: E402  (light: no torch)
from megatron_prealign.files import OutputError, check_output_parent  # noqa: E402


class FlagError(PreAlignError, ValueError):
    """A flag whose value cannot be used (exit status 2, as for argparse's own errors)."""


def _named(values, flag):
    out = {}
    for item in values or []:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = os.path.basename(os.path.normpath(item)), item
        if not name or not path:
            raise FlagError(f"{flag}: expected NAME=PATH, got {item!r}")
        if name in out:
            raise FlagError(f"{flag}: the name {name!r} is used twice")
        out[name] = path
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evaluate.py", allow_abbrev=False,
                                description="Cross-lingual evaluation suite (perplexity, alignment, "
                                            "knowledge application, zero-shot transfer, sentence "
                                            "retrieval).")
    p.add_argument("--model", action="append", required=True, metavar="NAME=PATH",
                   help="A Megatron checkpoint or Hugging Face directory; repeat for several runs.")
    p.add_argument("--output", required=True, help="Directory for results.json/.md and the plots.")
    p.add_argument("--tokenizer-model", default=None,
                   help="Megatron checkpoints: tokenizer path if the stored one moved.")
    p.add_argument("--perplexity", nargs="*", default=[], metavar="LANG=PATH",
                   help="Held-out text (JSONL) or shard prefix per language.")
    p.add_argument("--max-tokens", type=int, default=100_000, help="Tokens read per language.")
    p.add_argument("--seq-length", type=int, default=None,
                   help="Perplexity window (default: the model's maximum positions).")
    p.add_argument("--batch-size", type=int, default=8, help="Sequences per forward pass.")
    p.add_argument("--alignment-dictionary", nargs="*", default=[], metavar="NAME=PATH",
                   help="Dictionaries for the per-level alignment report.")
    p.add_argument("--alignment-max-words", type=int, default=4000, help="Words per dictionary.")
    p.add_argument("--knowledge", default=None, help="Knowledge items (JSONL).")
    p.add_argument("--knowledge-length-normalize", action="store_true",
                   help="Rank candidates by mean instead of summed log-likelihood per token.")
    p.add_argument("--knowledge-generation", action="store_true",
                   help="Also score each knowledge item by greedy generation: does the model, given the "
                        "prompt, produce the right object itself (open vocabulary, no candidates)?")
    p.add_argument("--transfer", nargs="*", default=[], metavar="NAME=PATH",
                   help="Classification tasks (JSONL) for the zero-shot transfer probe, one probe each.")
    p.add_argument("--probe-level", default="final_norm",
                   help="Level the probe reads; a comma-separated list probes each (the first is the "
                        "headline result, all are under 'levels'); 'all' for every hidden level "
                        "(final_norm first).")
    p.add_argument("--probe-steps", type=int, default=300, help="Probe training steps.")
    p.add_argument("--transfer-finetune-steps", type=int, default=0,
                   help="Also fine-tune a copy of each (Hugging Face) model on each transfer task's "
                        "training texts for this many steps, as the paper does, and test it zero-shot "
                        "(0: off).")
    p.add_argument("--transfer-finetune-lr", type=float, default=1e-4, help="Fine-tuning learning rate.")
    p.add_argument("--transfer-finetune-freeze-embeddings", action="store_true",
                   help="Keep the token embeddings fixed while fine-tuning.")
    p.add_argument("--seed", type=int, default=0, help="Seed of the probe and of the fine-tuning.")
    p.add_argument("--retrieval", nargs="*", default=[], metavar="NAME=PATH",
                   help='Parallel pairs (JSONL {"source", "target"}) for sentence-retrieval P@1 '
                        "per level.")
    p.add_argument("--retrieval-max-tokens", type=int, default=None,
                   help="Retrieval texts are cut to this many tokens (default and at most: the "
                        "model's maximum positions).")
    return p


def _transfer_records(path):
    """The records of a ``--transfer`` file, checked before any model is loaded."""
    from megatron_prealign.evaluation.inputs import EvalDataError, read_jsonl

    records = read_jsonl(path)
    if not records:
        raise EvalDataError(f"{path}: the file is empty; give JSONL records "
                            '{"text" | "ids", "label", "split"}')
    for n, r in records:
        if "label" not in r or not ("text" in r or "ids" in r):
            raise EvalDataError(f'{path}:{n}: a record needs a "label" and a "text" or "ids"')
        if r.get("split") not in ("train", "source", "target"):
            raise EvalDataError(f"{path}:{n}: split must be train, source or target, got "
                                f"{r.get('split')!r}")
    for split in ("train", "source", "target"):
        if not any(r["split"] == split for _, r in records):
            raise EvalDataError(f"{path}: no {split!r} example")
    # One label makes every accuracy 1.0 and the chance 1.0 too: the probe would measure nothing.
    for scope, subset in (("every record", records),
                          ("every 'train' record", [x for x in records if x[1]["split"] == "train"])):
        labels = sorted({str(r["label"]) for _, r in subset})
        if len(labels) < 2:
            raise EvalDataError(f"{path}: {scope} has the label {labels[0]!r}: with one class the "
                                "probe is always right (chance 1.0), which measures nothing; give "
                                "examples of at least two labels")
    return records


def _transfer_sets(path, records, tokenizer, vocab_size):
    from megatron_prealign.evaluation.inputs import EvalDataError, check_token_ids

    names = sorted({str(r["label"]) for _, r in records})
    index = {name: i for i, name in enumerate(names)}
    sets = {"train": ([], []), "source": ([], []), "target": ([], [])}
    for n, r in records:
        if "ids" in r:
            try:
                ids = [int(i) for i in r["ids"]]
            except (TypeError, ValueError):
                raise EvalDataError(f'{path}:{n}: "ids" must be a list of integers') from None
            check_token_ids(ids, vocab_size, f"{path}:{n}")
        elif tokenizer is None:
            raise EvalDataError(f"{path}:{n}: text needs a tokenizer and the model has none (use ids)")
        else:
            ids = tokenizer.tokenize(r["text"])
        sets[r["split"]][0].append(ids)
        sets[r["split"]][1].append(index[str(r["label"])])
    return sets


RETRIEVAL_SIDES = ("source", "target")
RETRIEVAL_RECORD = '{"source": TEXT, "target": ITS TRANSLATION}'


def _retrieval_pairs(path):
    """``[(line, record)]`` of a ``--retrieval`` file, checked before any model is loaded: at least
    two pairs, every text a non-blank string, no text twice on one side (two identical texts get
    the same vector, and P@1 between them is ill-defined)."""
    from megatron_prealign.evaluation.inputs import EvalDataError, read_jsonl

    records = read_jsonl(path)
    if not records:
        raise EvalDataError(f"{path}: the file is empty; give one JSONL record {RETRIEVAL_RECORD} "
                            "per line")
    first_line = {side: {} for side in RETRIEVAL_SIDES}  # text -> the line it first appears on
    for n, record in records:
        for side in RETRIEVAL_SIDES:
            if side not in record:
                raise EvalDataError(f'{path}:{n}: no "{side}" field; a record is {RETRIEVAL_RECORD}')
            text = record[side]
            if not isinstance(text, str):
                raise EvalDataError(f'{path}:{n}: "{side}" must be a string, got {type(text).__name__}')
            if not text.strip():
                raise EvalDataError(f'{path}:{n}: the "{side}" text is empty')
            if text in first_line[side]:
                raise EvalDataError(f"{path}:{n}: the same {side} text as on line "
                                    f"{first_line[side][text]}: identical texts get the same vector, "
                                    "so P@1 between them is ill-defined; keep one of the pairs")
            first_line[side][text] = n
    if len(records) < 2:
        raise EvalDataError(f"{path}: a single pair; retrieval needs at least two (chance is 1/pairs)")
    return records


def _retrieval_ids(path, side, numbered_texts, tokenizer, vocab_size, limit):
    """Token ids of one side's ``[(line, text)]``; a text with no token, an id outside the
    vocabulary or two texts with the same ids once cut to ``limit`` tokens is refused."""
    from megatron_prealign.evaluation.inputs import EvalDataError, check_token_ids
    from megatron_prealign.evaluation.retrieval import first_duplicate, truncate_texts
    from megatron_prealign.text.tokenizers.base import TokenizerError

    sequences = []
    for n, text in numbered_texts:
        try:
            ids = list(tokenizer.tokenize(text))
        except TokenizerError as err:
            raise EvalDataError(f"{path}:{n}: {err}") from err
        if not ids:
            raise EvalDataError(f'{path}:{n}: the "{side}" text has no token')
        check_token_ids(ids, vocab_size, f"{path}:{n}")
        sequences.append(ids)
    cut, _ = truncate_texts(sequences, limit)
    duplicate = first_duplicate(cut)
    if duplicate is not None:
        first, second = (numbered_texts[i][0] for i in duplicate)
        whole = all(cut[i] == tuple(sequences[i]) for i in duplicate)  # neither text was cut
        same = "the same ids" if whole \
            else f"the same first {limit} tokens (the limit: --retrieval-max-tokens or the model's positions)"
        raise EvalDataError(f"{path}:{second}: the {side} text has {same} as on line {first}: they "
                            "get the same vector, so P@1 between them is ill-defined; keep one of "
                            "the pairs")
    return sequences


def _check_perplexity_input(lang, path):
    from megatron_prealign.evaluation.inputs import EvalDataError, has_content
    from megatron_prealign.evaluation.perplexity import check_shard_input

    if os.path.isfile(path):
        if not has_content(path):
            raise EvalDataError(f"--perplexity {lang}={path}: the file is empty; give held-out text "
                                '(JSONL, one {"text": ...} per line) or a shard prefix')
    elif os.path.isfile(path + ".bin") and os.path.isfile(path + ".idx"):
        check_shard_input(path)
    else:
        raise FlagError(f"--perplexity {lang}={path}: neither a JSONL file nor a shard prefix "
                        "(PREFIX.bin + PREFIX.idx)")


def check_inputs(args) -> None:
    """Fail before any model is loaded when a flag, an input or the output cannot be used."""
    from megatron_prealign.evaluation.inputs import EvalDataError, read_jsonl

    for flag, least in (("max_tokens", 1), ("batch_size", 1), ("alignment_max_words", 1),
                        ("probe_steps", 1), ("retrieval_max_tokens", 1), ("transfer_finetune_steps", 0),
                        ("seq_length", 2)):  # a window predicts from token 2 on
        value = getattr(args, flag)
        if value is not None and value < least:
            raise FlagError(f"--{flag.replace('_', '-')} must be at least {least}, got {value}")
    if not args.transfer_finetune_lr > 0:
        raise FlagError(f"--transfer-finetune-lr must be positive, got {args.transfer_finetune_lr}")
    if not args.probe_level or any(not level for level in args.probe_level.split(",")):
        raise FlagError(f"--probe-level {args.probe_level!r}: give level names separated by commas, or 'all'")
    for path in _named(args.model, "--model").values():
        if not os.path.isdir(path):
            raise FlagError(f"--model {path}: no such directory")
    for lang, path in _named(args.perplexity, "--perplexity").items():
        _check_perplexity_input(lang, path)
    for flag, paths in (("--alignment-dictionary",
                         _named(args.alignment_dictionary, "--alignment-dictionary").values()),
                        ("--knowledge", [args.knowledge] if args.knowledge else []),
                        ("--transfer", _named(args.transfer, "--transfer").values()),
                        ("--retrieval", _named(args.retrieval, "--retrieval").values())):
        for path in paths:
            if not os.path.isfile(path):
                raise FlagError(f"{flag} {path}: no such file")
    if args.knowledge and not read_jsonl(args.knowledge):
        raise EvalDataError(f"--knowledge {args.knowledge}: the file is empty; give JSONL items "
                            '{"prompt", "candidates", "answer", "group"}')
    for path in _named(args.transfer, "--transfer").values():
        _transfer_records(path)
    for path in _named(args.retrieval, "--retrieval").values():
        _retrieval_pairs(path)
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise OutputError(f"--output {args.output}: a regular file, not a directory; give a directory "
                          "(it is created if missing)")
    check_output_parent(os.path.join(args.output, "results.json"), "--output")  # writable there?


def evaluate_model(name, path, args, log=print):
    """Every requested measurement for one model; returns its report entry."""
    from megatron_prealign.evaluation.models import load_eval_model

    model, tokenizer = load_eval_model(path, name, args.tokenizer_model)
    hidden_levels = [level for level in model.level_names() if level != "output_embedding"]
    probe_levels = args.probe_level.split(",")
    if args.probe_level == "all":  # the default level stays the headline
        probe_levels = ["final_norm"] + [level for level in hidden_levels if level != "final_norm"]
    for level in probe_levels if args.transfer else []:  # the probe reads hidden states
        if level not in hidden_levels:
            raise FlagError(f"--probe-level {args.probe_level}: {name} has the levels "
                            f"{', '.join(hidden_levels)}")
    if args.transfer and args.transfer_finetune_steps and model.kind != "huggingface":
        raise FlagError(f"--transfer-finetune-steps: {name} is a {model.kind} checkpoint; fine-tuning "
                        "runs on Hugging Face models (convert it with tools/convert_to_hf.py)")
    run = {"name": name, "model": _model_entry(path, model)}
    perplexities = _measure_perplexity(name, model, tokenizer, args, log)
    if perplexities:
        run["perplexity"] = perplexities
    alignments = _measure_alignment(name, model, tokenizer, args, log)
    if alignments:
        run["alignment"] = alignments
    if args.knowledge:
        run["knowledge"], generated = _measure_knowledge(name, model, tokenizer, args, log)
        if generated is not None:
            run["knowledge_generation"] = generated
    tasks = _named(args.transfer, "--transfer")
    if tasks:
        run["transfer"] = {task: _measure_transfer(name, model, tokenizer, args, log, task, task_path,
                                                   probe_levels)
                           for task, task_path in tasks.items()}
    retrievals = _measure_retrieval(name, model, tokenizer, args, log)
    if retrievals:
        run["retrieval"] = retrievals
    return run


def _model_entry(path, model):
    """What the report says of the model: its path, kind and (Megatron) iteration."""
    iteration = None
    if model.kind == "megatron":
        from megatron_prealign.checkpointing.store import find_checkpoint, read_meta

        iteration = read_meta(find_checkpoint(path)).get("iteration")
    return {"path": os.path.abspath(path), "kind": model.kind, "iteration": iteration}


def _measure_perplexity(name, model, tokenizer, args, log):
    """``{language: perplexity result}`` for every ``--perplexity`` input."""
    from megatron_prealign.evaluation.inputs import EvalDataError
    from megatron_prealign.evaluation.perplexity import load_sequences, perplexity

    results = {}
    for lang, data in _named(args.perplexity, "--perplexity").items():
        sequences = load_sequences(data, tokenizer, max_tokens=args.max_tokens, vocab_size=model.vocab_size)
        if not any(len(s) >= 2 for s in sequences):
            raise EvalDataError(f"--perplexity {lang}={data}: every document is shorter than two "
                                "tokens: nothing to predict")
        result = perplexity(model, sequences, seq_length=args.seq_length,
                            batch_size=args.batch_size, max_tokens=args.max_tokens)
        results[lang] = dataclasses.asdict(result)
        log(f"[{name}] perplexity {lang}: {result.perplexity:.2f} ({result.tokens:,} tokens)")
    return results


def _measure_alignment(name, model, tokenizer, args, log):
    """``{dictionary: per-level alignment}`` for every ``--alignment-dictionary``."""
    from megatron_prealign.evaluation.alignment import evaluate_alignment, load_dictionary_entries
    from megatron_prealign.evaluation.inputs import EvalDataError
    from megatron_prealign.evaluation.report import level_alignment_dict

    results = {}
    for dict_name, dict_path in _named(args.alignment_dictionary, "--alignment-dictionary").items():
        if tokenizer is None:
            raise EvalDataError(f"--alignment-dictionary {dict_path}: the model has no tokenizer")
        entries = load_dictionary_entries(dict_path, tokenizer, max_words=args.alignment_max_words)
        if not entries:
            raise EvalDataError(f"--alignment-dictionary {dict_name}={dict_path}: no entry fits in "
                                f"--alignment-max-words {args.alignment_max_words}")
        levels = evaluate_alignment(model, entries)
        results[dict_name] = {
            "dictionary": os.path.abspath(dict_path), "entries": len(entries),
            "words": sum(len(e[1]) for e in entries), "levels": level_alignment_dict(levels)}
        log(f"[{name}] alignment {dict_name}: P@1 " +
            " ".join(f"{lvl} {m.p_at_1:.2f}" for lvl, m in levels.items()))
    return results


def _measure_knowledge(name, model, tokenizer, args, log):
    """Knowledge-application accuracy per group on the ``--knowledge`` items."""
    from megatron_prealign.evaluation.inputs import read_jsonl
    from megatron_prealign.evaluation.knowledge import (
        GreedyMatcher,
        LikelihoodScorer,
        generation_accuracy,
        items_from_records,
        knowledge_accuracy,
    )

    numbered = read_jsonl(args.knowledge)
    items = items_from_records([r for _, r in numbered], tokenizer, args.knowledge,
                               lines=[n for n, _ in numbered], vocab_size=model.vocab_size,
                               max_length=model.max_length)
    result = knowledge_accuracy(LikelihoodScorer(model, args.batch_size * 4), items,
                                length_normalize=args.knowledge_length_normalize)
    log(f"[{name}] knowledge: " + ", ".join(
        f"{g} {r['accuracy']:.2f} (n={r['items']}, chance {r['chance']:.2f})"
        for g, r in result.items()))
    if args.knowledge_generation:
        generated = generation_accuracy(GreedyMatcher(model, args.batch_size * 4), items)
        log(f"[{name}] knowledge by greedy generation: " + ", ".join(
            f"{g} {r['accuracy']:.2f} (n={r['items']})" for g, r in generated.items()))
        return result, generated
    return result, None


def _measure_transfer(name, model, tokenizer, args, log, task, path, levels):
    """Zero-shot transfer of the linear probe trained on one ``--transfer`` task (its own probe,
    seeded alike: a task's result does not depend on the others given with it), at each of
    ``levels``; and of a fine-tuned copy of the model with ``--transfer-finetune-steps``."""
    from megatron_prealign.evaluation.transfer import (
        FineTuneConfig,
        ProbeConfig,
        fine_tuned_transfer,
        zero_shot_transfer,
    )

    sets = _transfer_sets(path, _transfer_records(path), tokenizer,
                          model.vocab_size)
    result = zero_shot_transfer(model, sets["train"], sets["source"], sets["target"],
                                ProbeConfig(level=levels[0], steps=args.probe_steps, seed=args.seed),
                                more_levels=levels[1:])
    log(f"[{name}] transfer {task}: source {result['source_accuracy']:.2f}, target "
        f"{result['target_accuracy']:.2f} (probe on {result['level']}, chance "
        f"{result['chance']:.2f})")
    for level, scores in list(result.get("levels", {}).items())[1:]:
        log(f"[{name}] transfer {task}: source {scores['source_accuracy']:.2f}, target "
            f"{scores['target_accuracy']:.2f} (probe on {level})")
    if args.transfer_finetune_steps:
        config = FineTuneConfig(steps=args.transfer_finetune_steps, lr=args.transfer_finetune_lr,
                                freeze_embeddings=args.transfer_finetune_freeze_embeddings, seed=args.seed)
        tuned = fine_tuned_transfer(model, sets["train"], sets["source"], sets["target"], config)
        result["finetuned"] = {k: tuned[k] for k in ("train_accuracy", "source_accuracy", "target_accuracy")}
        result["finetuned"].update(steps=config.steps, lr=config.lr, freeze_embeddings=config.freeze_embeddings)
        log(f"[{name}] transfer {task}: source {tuned['source_accuracy']:.2f}, target "
            f"{tuned['target_accuracy']:.2f} (fine-tuned {config.steps} steps)")
    return result


def _measure_retrieval(name, model, tokenizer, args, log):
    """``{set: {"pairs", "truncated", "levels"}}`` for every ``--retrieval`` file."""
    from megatron_prealign.evaluation.inputs import EvalDataError
    from megatron_prealign.evaluation.retrieval import evaluate_retrieval, token_limit

    results = {}
    limit = token_limit(model, args.retrieval_max_tokens)
    for set_name, path in _named(args.retrieval, "--retrieval").items():
        if tokenizer is None:
            raise EvalDataError(f"--retrieval {set_name}={path}: the model has no tokenizer")
        pairs = _retrieval_pairs(path)
        sources, targets = (_retrieval_ids(path, side, [(n, record[side]) for n, record in pairs],
                                           tokenizer, model.vocab_size, limit)
                            for side in RETRIEVAL_SIDES)
        result = evaluate_retrieval(model, sources, targets, max_tokens=limit,
                                    batch_size=args.batch_size)
        results[set_name] = dataclasses.asdict(result)
        log(f"[{name}] retrieval {set_name}: P@1 " +
            " ".join(f"{level} {m.p_at_1:.2f}" for level, m in result.levels.items()) +
            f" ({result.pairs} pairs, {result.truncated} texts truncated)")
    return results


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_inputs(args)  # before any model is loaded
    except PreAlignError as err:
        print(f"evaluate.py: error: {err}", file=sys.stderr)
        return 2 if isinstance(err, FlagError) else 1
    from megatron_prealign import cpu_compat
    from megatron_prealign.evaluation.models import is_hf_directory

    models = _named(args.model, "--model")
    if not all(is_hf_directory(path) for path in models.values()):
        # A Megatron checkpoint: patch before Megatron-Core is first imported (inert on CUDA
        # machines). Hugging Face directories alone never import it (seconds saved per run).
        cpu_compat.apply()
    from megatron_prealign.evaluation.report import make_report, markdown_report, write_report
    try:
        runs = [evaluate_model(name, path, args) for name, path in models.items()]
        report = make_report(runs)
        paths = write_report(report, args.output)
    except PreAlignError as err:  # anything else is a bug and keeps its traceback
        print(f"evaluate.py: error: {err}", file=sys.stderr)
        return 2 if isinstance(err, FlagError) else 1
    finally:
        import torch

        if torch.distributed.is_initialized():
            from megatron_prealign.distributed import destroy

            destroy()
    print(markdown_report(report))
    print("wrote " + ", ".join([paths["json"], paths["markdown"], *paths["plots"]]))
    return 0


if __name__ == "__main__":  # the guard keeps checkpoint helper processes from re-running main
    sys.exit(main())
