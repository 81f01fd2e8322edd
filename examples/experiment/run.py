#!/usr/bin/env python
"""The English / English-Clone experiment, end to end: PreAlign vs joint training.

    python examples/experiment/run.py --preset tiny --output-dir runs/tiny

runs corpus -> SentencePiece tokenizer -> English and clone shards -> English<->Clone dictionaries
-> stage 1 -> code-switched shards -> stage 2 (every arm, every seed) -> Hugging Face conversion ->
evaluation -> report, through the project's own tools (``tools/preprocess_data.py``,
``pretrain_prealign.py``, ``tools/convert_to_hf.py``, ``tools/evaluate.py``). It prints one status
line per step (arm, seed, step, elapsed, time left) and, at the end, a headline table (the mean over
seeds, +- the standard deviation when there are several) and where the whole report is::

    | tiny, seed 1                         | joint | prealign |
    |--------------------------------------|-------|----------|
    | clone PPL                            | 281.8 |    181.4 |
    | English PPL                          | 146.3 |    114.7 |
    | knowledge: English-only facts, clone | 0.167 |    0.167 |
    | transfer: English probe on the clone | 0.260 |    0.280 |
    | P@1 held-out words, embedding        | 0.000 |    0.957 |
    | P@1 held-out words, middle layer     | 0.000 |    0.780 |
    | P@1 held-out words, last layer       | 0.000 |    0.143 |
    (PPL: lower is better; the rest: higher)

    full results: runs/tiny/results.md (every metric, per seed); plots: runs/tiny/plots/

``results.json`` and ``results.md`` hold every metric; the headline only picks from them.

Rerunning skips finished steps (their outputs are keyed by the inputs that made them); an
interrupted step restarts cleanly (training steps resume from their last checkpoint).

Options: ``--arms joint,init_only,cs_only,prealign`` and ``--seeds 1,2,3`` override the preset's;
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
from examples.experiment.presets import PRESETS  # noqa: E402
from megatron_prealign.evaluation.report import markdown_table  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="run.py", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--output-dir", required=True, type=Path)
    parser.add_argument("--arms", default=None, help="Comma list of joint,init_only,cs_only,prealign.")
    parser.add_argument("--seeds", default=None, help="Comma list of distinct integer seeds.")
    parser.add_argument("--corpus", type=Path, default=None,
                        help="JSONL corpus (one paragraph per line, field 'text'); default: built-in.")
    args = parser.parse_args(argv)

    preset = PRESETS[args.preset]
    if args.arms:
        arms = parse_list(parser, "--arms", args.arms)
        unknown = [a for a in arms if a not in training_steps.ARMS]
        if unknown:
            parser.error(f"--arms: unknown arm(s) {unknown}; choose from {sorted(training_steps.ARMS)}")
        preset = preset.replace(arms=arms)
    if args.seeds:
        preset = preset.replace(seeds=parse_list(parser, "--seeds", args.seeds, int))
    corpus = args.corpus or data_prep.DEFAULT_CORPUS
    if not corpus.is_file():
        parser.error(f"--corpus {corpus}: no such file")
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
    ("transfer: English probe on the clone", "transfer_clone"),
    ("P@1 held-out words, embedding", "align_p1_embedding_heldout"),
    ("P@1 held-out words, middle layer", "align_p1_middle_layer_heldout"),
    ("P@1 held-out words, last layer", "align_p1_last_layer_heldout"),
]


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
    title = f"{results['preset']}, " + (f"seed {seeds[0]}" if len(seeds) == 1 else
                                         f"seeds {', '.join(map(str, seeds))}: mean +- std")
    rows = [[title, *arms]]
    rows += [[label, *(_headline_cell(results["arms"][arm].get(metric)) for arm in arms)]
             for label, metric in HEADLINE_ROWS]
    table = markdown_table(rows[0], rows[1:], aligned=True)  # labels left, numbers right
    output_dir = Path(output_dir)
    return "\n".join(table + ["(PPL: lower is better; the rest: higher)", "",
                               f"full results: {output_dir / 'results.md'} (every metric, per seed); "
                               f"plots: {output_dir / 'plots'}/"])


if __name__ == "__main__":
    sys.exit(main())
