#!/usr/bin/env python
"""The PreAlign experiment, end to end: PreAlign vs joint training, on English / English-Clone
(``--setting clone``, the default and the built-in main job) or on English with real languages
(``--setting real --pair en-de|en-es|en-zh|en-de-es``; presets ``tiny``, ``cpu``, ``gpu150m``).

    python examples/experiment/run.py --preset tiny --output-dir runs/tiny
    python examples/experiment/run.py --setting real --pair en-de --preset tiny --output-dir runs/de
    python examples/experiment/run.py --setting real --preset gpu150m --output-dir runs/g --dry-run

runs corpus -> SentencePiece tokenizer -> English and clone shards -> English<->Clone dictionaries
-> stage 1 -> code-switched shards -> stage 2 (every arm, every seed) -> Hugging Face conversion ->
evaluation -> report, through the project's own tools (``tools/preprocess_data.py``,
``pretrain_prealign.py``, ``tools/convert_to_hf.py``, ``tools/evaluate.py``). It prints one status
line per step (arm, seed, step, elapsed, time left) and, at the end, a headline table (the mean over
seeds, +- the standard deviation when there are several) and where the whole report is::

    | tiny, seed 1                           | joint | prealign |
    |----------------------------------------|-------|----------|
    | clone PPL                              | 281.8 |    181.4 |
    | English PPL                            | 146.3 |    114.7 |
    | knowledge: English-only facts, clone   | 0.167 |    0.167 |
    | transfer: fine-tuned on English, clone | 0.250 |    0.335 |
    | P@1 held-out words, embedding          | 0.000 |    0.957 |
    | P@1 held-out words, middle layer       | 0.000 |    0.777 |
    | P@1 held-out words, last layer         | 0.000 |    0.143 |
    (PPL: lower is better; the rest: higher)

    full results: runs/tiny/results.md (every metric, per seed); plots: runs/tiny/plots/

``results.json`` and ``results.md`` hold every metric; the headline only picks from them.

Rerunning skips finished steps (their outputs are keyed by the inputs that made them); an
interrupted step restarts cleanly (training steps resume from their last checkpoint).

Options: ``--arms joint,init_only,cs_only,prealign`` (and the controls ``lm_init,lm_init_cs``: stage 1
without its contrastive term) and ``--seeds 1,2,3`` override the preset's;
``--corpus FILE.jsonl`` replaces the built-in corpus (one JSON object per line with a "text" field,
one paragraph per object; checked before anything is written).

One run per output directory: a run holds ``OUTPUT_DIR/.lock`` until it ends, and a second one on
the same directory is refused (exit 1, naming the first one's pid). A failed step leaves its
``.partial`` directory and log, never a ``done.json``; the next run starts that step afresh (exit 1
with the step and its log named).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from examples.experiment import training_steps  # noqa: E402
from examples.experiment.cli import experiment_lock, parse_list, report_errors  # noqa: E402
from examples.experiment.clone import data_prep  # noqa: E402
from examples.experiment.dag import build_steps  # noqa: E402,F401  (tests import it from here)
from examples.experiment.pipeline import Pipeline  # noqa: E402
from examples.experiment.presets import (  # noqa: E402
    LANGUAGE_NAMES,
    PRESETS,
    PROBE_SUITES,
    REAL_PAIRS,
    REAL_PRESETS,
)
from megatron_prealign.evaluation.report import markdown_table  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="run.py", description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=["clone", "real"], default="clone",
                        help="clone: English / English-Clone (the built-in main job); real: English with "
                             "German, Spanish or Chinese (--pair).")
    parser.add_argument("--pair", choices=REAL_PAIRS, default=None,
                        help="Real setting: the languages (default en-de; en-de-es: one multi-way model).")
    parser.add_argument("--preset", default="tiny",
                        help=f"clone: {', '.join(sorted(PRESETS))}; real: {', '.join(REAL_PRESETS)}.")
    parser.add_argument("--output-dir", required=True, type=Path)
    parser.add_argument("--arms", default=None, help="Comma list of joint,init_only,cs_only,prealign and the "
                        "controls lm_init,lm_init_cs (stage 1 without the contrastive term).")
    parser.add_argument("--seeds", default=None, help="Comma list of distinct integer seeds.")
    parser.add_argument("--probes", choices=PROBE_SUITES, default=None,
                        help="basic (the preset's default) or examined: more probes of knowledge and "
                             "transfer (docs/probes.md); evaluations only, training steps are reused.")
    parser.add_argument("--corpus", type=Path, default=None,
                        help="JSONL corpus (one paragraph per line, field 'text'); default: built-in.")
    parser.add_argument("--dry-run", action="store_true",
                        help="Print the plan (every step, done or to do, and each training command line "
                             "as it would be launched now: flags that depend on finished data steps, "
                             "such as evaluation dictionaries, appear once those are done) and exit; "
                             "runs and writes nothing.")
    args = parser.parse_args(argv)

    presets = REAL_PRESETS if args.setting == "real" else PRESETS
    if args.preset not in presets:
        parser.error(f"--preset {args.preset}: the {args.setting} setting has {', '.join(presets)}")
    if args.pair and args.setting != "real":
        parser.error("--pair chooses the languages of --setting real; the clone setting is en-clone")
    preset = presets[args.preset]
    if args.pair:
        preset = preset.replace(pair=args.pair)
    if args.arms:
        arms = parse_list(parser, "--arms", args.arms)
        unknown = [a for a in arms if a not in training_steps.ARMS]
        if unknown:
            parser.error(f"--arms: unknown arm(s) {unknown}; choose from {sorted(training_steps.ARMS)}")
        preset = preset.replace(arms=arms)
    if args.seeds:
        preset = preset.replace(seeds=parse_list(parser, "--seeds", args.seeds, int))
    if args.probes:
        preset = preset.replace(probes=args.probes)
    corpus = args.corpus or data_prep.DEFAULT_CORPUS
    if not corpus.is_file():
        parser.error(f"--corpus {corpus}: no such file")
    if args.dry_run:
        def plan() -> int:
            print("\n".join(Pipeline(args.output_dir).plan(build_steps(preset, corpus))))
            return 0
        return report_errors("run.py", plan)
    return report_errors("run.py", lambda: run(preset, corpus, args.output_dir))


def run(preset, corpus: Path, output_dir: Path) -> int:
    from examples.experiment import report

    data_prep.check_corpus(corpus, [preset])  # before anything is written
    with experiment_lock(output_dir):
        pipeline = Pipeline(output_dir)
        evaluations = build_steps(preset, corpus)
        pipeline.run(evaluations)
        report.write_report(output_dir, preset, pipeline, evaluations)  # its full table: results.md
    print(headline(json.loads((output_dir / "results.json").read_text()), output_dir))
    return 0


# The headline table's rows: (label, results.json metric). Every other metric is in results.md.
HEADLINE_ROWS = [
    ("clone PPL", "clone_ppl"),
    ("English PPL", "english_ppl"),
    ("knowledge: English-only facts, clone", "knowledge_en_only"),
    ("transfer: fine-tuned on English, clone", "transfer_clone"),
    ("P@1 held-out words, embedding", "align_p1_embedding_heldout"),
    ("P@1 held-out words, middle layer", "align_p1_middle_layer_heldout"),
    ("P@1 held-out words, last layer", "align_p1_last_layer_heldout"),
]


def headline_rows(results: dict) -> list:
    """``HEADLINE_ROWS`` for the clone setting; for the real one, the same rows per target language
    (perplexity, knowledge, zero-shot transfer) and sentence retrieval beside word P@1."""
    if results.get("setting") != "real":
        return HEADLINE_ROWS
    from examples.experiment.report import default_transfer_metrics  # matplotlib: loaded when needed

    targets = results["pair"].split("-")[1:]
    metrics = {m for arm in results["arms"].values() for m in arm}
    rows = []
    for language in targets:
        rows.append((f"{LANGUAGE_NAMES[language]} PPL", f"{language}_ppl"))
    rows.append(("English PPL", "english_ppl"))
    suffixes = [f"_{t}" for t in targets] if len(targets) > 1 else [""]
    for language, suffix in zip(targets, suffixes):
        rows.append((f"knowledge: English-only facts, {LANGUAGE_NAMES[language]}", f"knowledge_en_only{suffix}"))
    for metric in default_transfer_metrics(metrics):
        if not metric.endswith("_english"):
            task, language = metric[len("transfer_"):].rsplit("_", 1)
            rows.append((f"transfer: {task.replace('_', ' ')}, {LANGUAGE_NAMES[language]} zero-shot "
                         "(fine-tuned on English)", metric))
    for metric in sorted(m for m in metrics if m.startswith("retrieval_p1_middle_layer_")):
        rows.append((f"retrieval P@1 {metric[len('retrieval_p1_middle_layer_'):].replace('_', ' ')}, "
                     "middle layer", metric))
    for suffix, language in zip(suffixes, targets):
        name = f" ({LANGUAGE_NAMES[language]})" if suffix else ""
        rows += [(f"P@1 held-out words{name}, {where}", f"align_p1_{level}_heldout{suffix}")
                 for where, level in (("embedding", "embedding"), ("middle layer", "middle_layer"),
                                      ("last layer", "last_layer"))]
    return rows


def _headline_cell(values) -> str:
    """Mean over seeds (``+- std`` when there are several); ``n/a`` when no seed has the metric."""
    values = [v for v in values or [] if v is not None and not math.isnan(v)]
    if not values:
        return "n/a"
    mean = statistics.fmean(values)
    digits = 1 if abs(mean) >= 10 else 3  # perplexities vs accuracies and P@1
    cell = f"{mean:.{digits}f}"
    if len(values) > 1:
        cell += f" +- {statistics.stdev(values):.{digits}f}"
    return cell


def headline(results: dict, output_dir: Path) -> str:
    """The few numbers a reader looks at first, per arm, as an aligned Markdown table, then the path
    of ``results.md`` (every metric, per seed) and of the plots. Reads only ``results.json``'s
    contents: what is printed is what was written."""
    arms = list(results["arms"])
    seeds = results["seeds"]
    name = results["preset"] + (f" {results['pair']}" if results.get("setting") == "real" else "")
    title = f"{name}, " + (f"seed {seeds[0]}" if len(seeds) == 1 else
                                         f"seeds {', '.join(map(str, seeds))}: mean +- std")
    rows = [[title, *arms]]
    rows += [[label, *(_headline_cell(results["arms"][arm].get(metric)) for arm in arms)]
             for label, metric in headline_rows(results)]
    table = markdown_table(rows[0], rows[1:], aligned=True)  # labels left, numbers right
    output_dir = Path(output_dir)
    return "\n".join(table + ["(PPL: lower is better; the rest: higher)", "",
                               f"full results: {output_dir / 'results.md'} (every metric, per seed); "
                               f"plots: {output_dir / 'plots'}/"])


if __name__ == "__main__":
    sys.exit(main())
