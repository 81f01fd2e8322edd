#!/usr/bin/env python
"""The English / English-Clone experiment, end to end: PreAlign vs joint training.

    python examples/english_clone/run.py --preset tiny --output-dir runs/tiny

runs corpus -> SentencePiece tokenizer -> English and clone shards -> English<->Clone dictionaries
-> stage 1 -> code-switched shards -> stage 2 (every arm, every seed) -> Hugging Face conversion ->
evaluation -> report, through the project's own tools (``tools/preprocess_data.py``,
``pretrain_prealign.py``, ``tools/convert_to_hf.py``, ``tools/evaluate.py``). It prints one status
line per step (arm, seed, step, elapsed, time left) and, at the end, the results table and the paths
of the plots::

    | metric | joint | prealign |
    | clone_ppl | 312.4 +- 0.0 | 298.1 +- 0.0 |
    ...
    plots: runs/tiny/plots/clone_loss.png runs/tiny/plots/alignment.png runs/tiny/plots/knowledge_transfer.png

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
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from examples.english_clone import data_prep, training_steps  # noqa: E402
from examples.english_clone.cli import experiment_lock, parse_list, report_errors  # noqa: E402
from examples.english_clone.dag import build_steps  # noqa: E402,F401  (tests import it from here)
from examples.english_clone.pipeline import Pipeline  # noqa: E402
from examples.english_clone.presets import PRESETS  # noqa: E402


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
    from examples.english_clone import report

    data_prep.check_corpus(corpus, [preset])  # before anything is written
    with experiment_lock(output_dir):
        pipeline = Pipeline(output_dir)
        evaluations = build_steps(preset, corpus)
        pipeline.run(evaluations)
        summary = report.write_report(output_dir, preset, pipeline, evaluations)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
