"""Evaluate Megatron checkpoints and/or converted Hugging Face models; write JSON, Markdown, PNG.

One process; each ``--model`` is a megatron-prealign checkpoint (any TP/PP, resharded on load) or
a Hugging Face directory (``tools/convert_to_hf.py`` output or any local LlamaForCausalLM)::

    python tools/evaluate.py --model prealign=ckpt/prealign --model joint=out/hf_joint \
        --perplexity en=data/en_valid.jsonl clone=data/clone_valid_text_document \
        --alignment-dictionary heldout=data/dict_heldout.jsonl \
        --knowledge data/facts.jsonl --transfer data/task.jsonl --output out/eval

prints one line per measurement and, last, the Markdown tables, e.g.::

    [prealign] perplexity en: 31.42 (51,200 tokens)
    [prealign] alignment heldout: P@1 embedding 0.98 ... output_embedding 0.97
    [prealign] knowledge: transfer 0.62 (n=50), seen 0.96 (n=50), unseen 0.27 (n=50)
    [prealign] transfer: source 0.91, target 0.84 (probe on final_norm)
    ...
    wrote out/eval/results.json, out/eval/results.md, out/eval/alignment_heldout.png

Input formats (documented in ``megatron_prealign/evaluation``):

* ``--perplexity NAME=PATH``: JSONL with ``"text"`` (``<clone>``-tagged text for the clone) or a
  Megatron shard prefix.
* ``--alignment-dictionary NAME=PATH``: a dictionary (pairs or multi-way JSONL); the first word of
  each entry is the source language.
* ``--knowledge FILE``: JSONL items ``{"prompt", "candidates", "answer", "group"}`` (text) or
  ``{"prompt_ids", "candidate_ids", "answer", "group"}`` (ids).
* ``--transfer FILE``: JSONL ``{"text" | "ids", "label", "split"}`` with split ``train`` and
  ``source`` (language A) or ``target`` (language B).

Exit status 0, or 2 with a message naming the file or flag.
"""

import argparse
import dataclasses
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _named(values, flag):
    out = {}
    for item in values or []:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = os.path.basename(os.path.normpath(item)), item
        if not name or not path:
            raise ValueError(f"{flag}: expected NAME=PATH, got {item!r}")
        if name in out:
            raise ValueError(f"{flag}: the name {name!r} is used twice")
        out[name] = path
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evaluate.py", allow_abbrev=False,
                                description="Cross-lingual evaluation suite (perplexity, alignment, "
                                            "knowledge application, zero-shot transfer).")
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
    p.add_argument("--transfer", default=None, help="Classification data (JSONL) for the probe.")
    p.add_argument("--probe-level", default="final_norm", help="Level the probe reads.")
    p.add_argument("--probe-steps", type=int, default=300, help="Probe training steps.")
    p.add_argument("--seed", type=int, default=0, help="Seed of the probe.")
    return p


def _read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        records = []
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{n}: not valid JSON ({err})") from err
    return records


def _transfer_sets(path, tokenizer):
    records = _read_jsonl(path)
    for n, r in enumerate(records, 1):
        if "label" not in r or not ("text" in r or "ids" in r):
            raise ValueError(f"{path}: record {n} needs a \"label\" and a \"text\" or \"ids\"")
    names = sorted({str(r["label"]) for r in records})
    index = {name: i for i, name in enumerate(names)}
    sets = {"train": ([], []), "source": ([], []), "target": ([], [])}
    for n, r in enumerate(records, 1):
        split = r.get("split")
        if split not in sets:
            raise ValueError(f"{path}:{n}: split must be train, source or target, got {split!r}")
        if "ids" in r:
            ids = [int(i) for i in r["ids"]]
        elif tokenizer is None:
            raise ValueError(f"{path}:{n}: text needs a tokenizer and the model has none (use ids)")
        else:
            ids = tokenizer.tokenize(r["text"])
        sets[split][0].append(ids)
        sets[split][1].append(index[str(r["label"])])
    for split, (seqs, _) in sets.items():
        if not seqs:
            raise ValueError(f"{path}: no {split!r} example")
    return sets


def check_inputs(args) -> None:
    """Fail before any model is loaded when an input is missing or malformed."""
    _named(args.model, "--model")
    for path in _named(args.model, "--model").values():
        if not os.path.isdir(path):
            raise ValueError(f"--model {path}: no such directory")
    for lang, path in _named(args.perplexity, "--perplexity").items():
        if not (os.path.isfile(path) or (os.path.isfile(path + ".bin") and os.path.isfile(path + ".idx"))):
            raise ValueError(f"--perplexity {lang}={path}: neither a JSONL file nor a shard prefix "
                             "(PREFIX.bin + PREFIX.idx)")
    for flag, paths in (("--alignment-dictionary",
                         _named(args.alignment_dictionary, "--alignment-dictionary").values()),
                        ("--knowledge", [args.knowledge] if args.knowledge else []),
                        ("--transfer", [args.transfer] if args.transfer else [])):
        for path in paths:
            if not os.path.isfile(path):
                raise ValueError(f"{flag} {path}: no such file")


def evaluate_model(name, path, args, log=print):
    """Every requested measurement for one model; returns its report entry."""
    from megatron_prealign.evaluation import (
        LikelihoodScorer,
        ProbeConfig,
        evaluate_alignment,
        items_from_records,
        knowledge_accuracy,
        load_dictionary_entries,
        load_eval_model,
        load_sequences,
        perplexity,
        zero_shot_transfer,
    )
    from megatron_prealign.evaluation.report import level_alignment_dict

    model, tokenizer = load_eval_model(path, name, args.tokenizer_model)
    iteration = None
    if model.kind == "megatron":
        from megatron_prealign.training.checkpointing import find_checkpoint, read_meta

        iteration = read_meta(find_checkpoint(path)).get("iteration")
    run = {"name": name, "model": {"path": os.path.abspath(path), "kind": model.kind,
                                   "iteration": iteration}}
    for lang, data in _named(args.perplexity, "--perplexity").items():
        sequences = load_sequences(data, tokenizer, max_tokens=args.max_tokens)
        result = perplexity(model, sequences, seq_length=args.seq_length,
                            batch_size=args.batch_size, max_tokens=args.max_tokens)
        run.setdefault("perplexity", {})[lang] = dataclasses.asdict(result)
        log(f"[{name}] perplexity {lang}: {result.perplexity:.2f} ({result.tokens:,} tokens)")
    for dict_name, dict_path in _named(args.alignment_dictionary, "--alignment-dictionary").items():
        if tokenizer is None:
            raise ValueError(f"--alignment-dictionary {dict_path}: the model has no tokenizer")
        entries = load_dictionary_entries(dict_path, tokenizer, max_words=args.alignment_max_words)
        levels = evaluate_alignment(model, entries)
        run.setdefault("alignment", {})[dict_name] = {
            "dictionary": os.path.abspath(dict_path), "entries": len(entries),
            "words": sum(len(e[1]) for e in entries), "levels": level_alignment_dict(levels)}
        log(f"[{name}] alignment {dict_name}: P@1 " +
            " ".join(f"{lvl} {m.p_at_1:.2f}" for lvl, m in levels.items()))
    if args.knowledge:
        items = items_from_records(_read_jsonl(args.knowledge), tokenizer, args.knowledge)
        result = knowledge_accuracy(LikelihoodScorer(model, args.batch_size * 4), items,
                                    length_normalize=args.knowledge_length_normalize)
        run["knowledge"] = result
        log(f"[{name}] knowledge: " + ", ".join(
            f"{g} {r['accuracy']:.2f} (n={r['items']}, chance {r['chance']:.2f})"
            for g, r in result.items()))
    if args.transfer:
        sets = _transfer_sets(args.transfer, tokenizer)
        result = zero_shot_transfer(model, sets["train"], sets["source"], sets["target"],
                                    ProbeConfig(level=args.probe_level, steps=args.probe_steps,
                                                seed=args.seed))
        run["transfer"] = result
        log(f"[{name}] transfer: source {result['source_accuracy']:.2f}, target "
            f"{result['target_accuracy']:.2f} (probe on {result['level']}, chance "
            f"{result['chance']:.2f})")
    return run


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_inputs(args)  # before the slow imports and any model load
    except ValueError as err:
        print(f"evaluate.py: error: {err}", file=sys.stderr)
        return 2
    from megatron_prealign import cpu_compat

    cpu_compat.apply()  # before Megatron-Core is first imported; inert on CUDA machines
    from megatron_prealign.conversion.mapping import ConversionError
    from megatron_prealign.evaluation.perplexity import EvalDataError
    from megatron_prealign.evaluation.report import make_report, markdown_report, write_report
    from megatron_prealign.training.checkpointing import CheckpointError
    try:
        models = _named(args.model, "--model")
        runs = [evaluate_model(name, path, args) for name, path in models.items()]
        report = make_report(runs)
        paths = write_report(report, args.output)
    except (ValueError, KeyError, OSError, ConversionError, CheckpointError, EvalDataError) as err:
        print(f"evaluate.py: error: {err}", file=sys.stderr)
        return 2
    finally:
        import torch

        if torch.distributed.is_initialized():
            from megatron_prealign.training.initialize import destroy

            destroy()
    print(markdown_report(report))
    print("wrote " + ", ".join([paths["json"], paths["markdown"], *paths["plots"]]))
    return 0


if __name__ == "__main__":  # the guard keeps checkpoint helper processes from re-running main
    sys.exit(main())
