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
one paragraph per object).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from examples.english_clone import data_prep, training_steps  # noqa: E402
from examples.english_clone.pipeline import Pipeline, Step  # noqa: E402
from examples.english_clone.presets import PRESETS  # noqa: E402


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def build_steps(preset, corpus: Path):
    """The DAG: shared data steps, one stage 1 per seed, one stage 2 + evaluation per arm and seed."""
    from examples.english_clone import evaluate_step

    P = dict  # noqa: N806  (params as plain dicts keep keys stable and readable)
    data_params = P(corpus=file_digest(corpus), max_paragraphs=preset.max_paragraphs,
                    heldout=preset.heldout_paragraphs, clone_pool_share=preset.clone_pool_share,
                    subjects=preset.subjects_per_group, reps=(preset.fact_repetitions_en,
                                                              preset.fact_repetitions_clone))
    corpus_step = Step("corpus", "data | corpus split and facts", data_params,
                       lambda out, inp: data_prep.corpus_step(preset, corpus, out, inp), cost=3)
    tokenizer = Step("tokenizer", "data | SentencePiece tokenizer", P(vocab=preset.vocab_size),
                     lambda out, inp: data_prep.tokenizer_step(preset, out, inp),
                     {"corpus": corpus_step}, cost=3)
    shards = Step("shards", "data | English and clone shards", P(), lambda out, inp:
                  data_prep.shards_step(preset, out, inp), {"corpus": corpus_step, "tokenizer": tokenizer},
                  cost=30)
    dictionaries = Step("dictionaries", "data | English<->Clone dictionaries",
                        P(min_count=preset.min_word_count, unseen=preset.unseen_share, dev=preset.dev_words),
                        lambda out, inp: data_prep.dictionaries_step(preset, out, inp),
                        {"corpus": corpus_step, "tokenizer": tokenizer, "shards": shards}, cost=10)
    codeswitch = Step("codeswitch", f"data | code-switched English shard (p={preset.codeswitch_ratio})",
                      P(p=preset.codeswitch_ratio), lambda out, inp: data_prep.codeswitch_step(preset, out, inp),
                      {"corpus": corpus_step, "tokenizer": tokenizer, "dictionaries": dictionaries,
                       "shards": shards}, cost=30)
    transfer = Step("transfer", "data | transfer task (Brown genres)",
                    P(train=preset.transfer_train_per_class, test=preset.transfer_test_per_class),
                    lambda out, inp: data_prep.transfer_step(preset, out, inp), cost=2)

    model_params = P(layers=preset.num_layers, hidden=preset.hidden_size, ffn=preset.ffn_hidden_size,
                     heads=preset.num_attention_heads, seq=preset.seq_length, untie=preset.untie_embeddings,
                     nproc=preset.nproc)
    evaluations = []
    for seed in preset.seeds:
        stage1 = Step("stage1", f"seed {seed} | stage 1 (alignment init)",
                      P(model=model_params, seed=seed, iters=preset.stage1_iters,
                        entries=preset.stage1_entries, lr=preset.stage1_lr, levels=preset.alignment_levels,
                        alpha=preset.alignment_alpha, lm_weight=preset.alignment_lm_weight,
                        wd=preset.weight_decay, clip=preset.clip_grad),
                      lambda out, inp, seed=seed: training_steps.stage1_step(preset, seed, out, inp),
                      {"tokenizer": tokenizer, "dictionaries": dictionaries},
                      cost=preset.stage1_iters * preset.stage1_entries / 300, resumable=True)
        for arm in preset.arms:
            spec = training_steps.ARMS[arm]
            inputs = {"tokenizer": tokenizer, "shards": shards, "dictionaries": dictionaries}
            if spec["codeswitch"]:
                inputs["codeswitch"] = codeswitch
            if spec["init"]:
                inputs["stage1"] = stage1
            stage2 = Step("stage2", f"arm {arm} | seed {seed} | stage 2 (pretraining)",
                          P(model=model_params, arm=arm, seed=seed, iters=preset.train_iters,
                            mbs=preset.micro_batch_size, gbs=preset.global_batch_size, lr=preset.lr,
                            min_lr=preset.min_lr_ratio, warmup=preset.warmup_iters, wd=preset.weight_decay,
                            clip=preset.clip_grad, clone_share=preset.clone_share,
                            eval=(preset.eval_interval, preset.eval_iters)),
                          lambda out, inp, arm=arm, seed=seed: training_steps.stage2_step(
                              preset, arm, seed, out, inp),
                          inputs, cost=preset.train_iters * preset.global_batch_size * preset.seq_length / 5000,
                          resumable=True)
            evaluations.append(Step(
                "evaluate", f"arm {arm} | seed {seed} | convert + evaluate",
                P(arm=arm, seed=seed, max_tokens=preset.eval_max_tokens, seq=preset.seq_length),
                lambda out, inp, arm=arm, seed=seed: evaluate_step.evaluate(preset, arm, seed, out, inp),
                {"stage2": stage2, "tokenizer": tokenizer, "shards": shards, "corpus": corpus_step,
                 "dictionaries": dictionaries, "transfer": transfer}, cost=60))
    return evaluations


def parse_list(text: str, cast=str):
    return [cast(x) for x in text.split(",") if x.strip()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--output-dir", required=True, type=Path)
    parser.add_argument("--arms", default=None, help="Comma list of joint,init_only,cs_only,prealign.")
    parser.add_argument("--seeds", default=None, help="Comma list of integer seeds.")
    parser.add_argument("--corpus", type=Path, default=None,
                        help="JSONL corpus (one paragraph per line, field 'text'); default: built-in.")
    args = parser.parse_args(argv)

    preset = PRESETS[args.preset]
    if args.arms:
        arms = parse_list(args.arms)
        unknown = [a for a in arms if a not in training_steps.ARMS]
        if unknown:
            parser.error(f"--arms: unknown arm(s) {unknown}; choose from {sorted(training_steps.ARMS)}")
        preset = preset.replace(arms=arms)
    if args.seeds:
        try:
            preset = preset.replace(seeds=parse_list(args.seeds, int))
        except ValueError:
            parser.error(f"--seeds: expected integers like 1,2,3, got {args.seeds!r}")
    corpus = args.corpus or data_prep.DEFAULT_CORPUS
    if not corpus.is_file():
        parser.error(f"--corpus {corpus}: no such file")

    from examples.english_clone import report

    pipeline = Pipeline(args.output_dir)
    evaluations = build_steps(preset, corpus)
    pipeline.run(evaluations)
    summary = report.write_report(args.output_dir, preset, pipeline, evaluations)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
