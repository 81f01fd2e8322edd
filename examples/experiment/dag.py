"""The experiment's steps and how they depend on each other (the DAG ``run.py`` and ``sweep.py`` run).

Every builder returns a ``pipeline.Step`` whose parameters name everything that changes its output,
so two runs that need the same step (arms sharing a stage-1 checkpoint, sweep variants sharing the
data, learning-rate candidates sharing a stage 1) find it done and reuse it.

    corpus -> tokenizer -> shards -> dictionaries -> codeswitch          (data, shared; in the
                                                                          real setting dictionaries
                                                                          read the corpus only)
    stage1(seed)                                                          (PreAlign init)
    stage2(arm, seed, lr)  <- shards [+ codeswitch] [+ stage1(seed)]
    evaluation(arm, seed[, iteration])  <- stage2, data, transfer
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from examples.experiment import evaluate_step, training_steps
from examples.experiment.clone import data_prep
from examples.experiment.pipeline import Step
from examples.experiment.presets import LANGUAGE_NAMES
from examples.experiment.real import data_prep as real_data
from examples.experiment.real import tasks as real_tasks
from megatron_prealign.files import sha256_file


def file_digest(path: Path) -> str:
    return sha256_file(str(path))[:16]


@dataclass
class DataSteps:
    corpus: Step
    tokenizer: Step
    shards: Step
    dictionaries: Step
    codeswitch: Step
    transfer: Step


def data_steps(preset, corpus: Path) -> DataSteps:
    """The shared data steps of the preset's setting (``corpus``: the English corpus)."""
    if preset.setting == "real":
        return _real_data_steps(preset, corpus)
    return _clone_data_steps(preset, corpus)


def _clone_data_steps(preset, corpus: Path) -> DataSteps:
    P = dict  # noqa: N806  (params as plain dicts keep keys stable and readable)
    corpus_step = Step("corpus", "data | corpus split and facts",
                       P(corpus=file_digest(corpus), max_paragraphs=preset.max_paragraphs,
                         heldout=preset.heldout_paragraphs, valid=preset.valid_paragraphs,
                         clone_pool_share=preset.clone_pool_share, subjects=preset.subjects_per_group,
                         reps=(preset.fact_repetitions_en, preset.fact_repetitions_clone),
                         **({"subject_kind": preset.fact_subjects} if preset.fact_subjects != "invented" else {})),
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
    return DataSteps(corpus_step, tokenizer, shards, dictionaries, codeswitch, transfer)


def _real_data_steps(preset, corpus: Path) -> DataSteps:
    """The same steps on English and real languages (``real/data_prep.py``); every step's key holds
    the pair, through the corpus step's parameters or its own."""
    P = dict  # noqa: N806
    targets = "+".join(LANGUAGE_NAMES[t] for t in preset.targets)
    sources = [corpus] + [real_data.corpus_file(t) for t in preset.targets]  # each checked to exist
    corpus_step = Step("corpus", f"data | English and {targets}: corpus split and facts",
                       P(setting="real", pair=preset.pair, corpus=[file_digest(c) for c in sources],
                         max_paragraphs=preset.max_paragraphs, target_paragraphs=preset.target_paragraphs,
                         heldout=preset.heldout_paragraphs, valid=preset.valid_paragraphs,
                         subjects=preset.subjects_per_group,
                         reps=(preset.fact_repetitions_en, preset.fact_repetitions_clone)),
                       lambda out, inp: real_data.corpus_step(preset, corpus, out, inp), cost=5)
    tokenizer = Step("tokenizer", "data | SentencePiece tokenizer (all languages)", P(vocab=preset.vocab_size),
                     lambda out, inp: real_data.tokenizer_step(preset, out, inp),
                     {"corpus": corpus_step}, cost=10)
    shards = Step("shards", f"data | English and {targets} shards", P(), lambda out, inp:
                  real_data.shards_step(preset, out, inp), {"corpus": corpus_step, "tokenizer": tokenizer},
                  cost=30)
    dictionaries = Step("dictionaries", f"data | English<->{targets} dictionaries (corpus-attested)",
                        P(dictionary=file_digest(real_data.dictionary_file(preset.pair)),
                          rules=real_data.DICTIONARY_RULES,
                          min_count=preset.min_word_count, min_target=preset.min_target_count,
                          unseen=preset.unseen_share, dev=preset.dev_words),
                        lambda out, inp: real_data.dictionaries_step(preset, out, inp),
                        {"corpus": corpus_step}, cost=10)
    codeswitch = Step("codeswitch", f"data | code-switched English shard (p={preset.codeswitch_ratio})",
                      P(p=preset.codeswitch_ratio), lambda out, inp: real_data.codeswitch_step(preset, out, inp),
                      {"corpus": corpus_step, "tokenizer": tokenizer, "dictionaries": dictionaries}, cost=30)
    transfer = Step("transfer", "data | transfer tasks and retrieval sets (parallel text)",
                    P(pair=preset.pair, train=preset.transfer_train_per_class,
                      test=preset.transfer_test_per_class, retrieval=preset.retrieval_pairs,
                      seq=preset.seq_length, rules=real_data.TRANSFER_RULES,
                      data=[file_digest(real_tasks.DEBIAN_REFERENCE_FILE), file_digest(real_tasks.BIBLE_FILE)]),
                    lambda out, inp: real_data.transfer_step(preset, out, inp), {"tokenizer": tokenizer}, cost=3)
    return DataSteps(corpus_step, tokenizer, shards, dictionaries, codeswitch, transfer)


def model_params(preset) -> dict:
    params = dict(layers=preset.num_layers, hidden=preset.hidden_size, ffn=preset.ffn_hidden_size,
                  heads=preset.num_attention_heads, seq=preset.seq_length, untie=preset.untie_embeddings,
                  nproc=preset.nproc)
    if preset.tensor_parallel > 1:  # only when set, so the keys of existing runs stay as they were
        params["tp"] = preset.tensor_parallel
    if preset.bf16:  # BF16 where CUDA exists: a GPU run never resumes a CPU run's fp32 checkpoint
        params["bf16"] = training_steps.cuda_available()
    return params


def stage1(preset, seed: int, data: DataSteps, label: str = "") -> Step:
    what = "alignment init" if preset.alignment_alpha else "LM-only init, the control"
    return Step("stage1", f"{label}seed {seed} | stage 1 ({what})",
                dict(model=model_params(preset), seed=seed, iters=preset.stage1_iters,
                     entries=preset.stage1_entries, lr=preset.stage1_lr, levels=preset.alignment_levels,
                     alpha=preset.alignment_alpha, lm_weight=preset.alignment_lm_weight,
                     wd=preset.weight_decay, clip=preset.clip_grad),
                lambda out, inp: training_steps.stage1_step(preset, seed, out, inp),
                {"tokenizer": data.tokenizer, "dictionaries": data.dictionaries},
                cost=preset.stage1_iters * preset.stage1_entries / 300, resumable=True,
                command=lambda out, inp: training_steps.stage1_command(preset, seed, out, inp))


def stage2(preset, arm: str, seed: int, data: DataSteps, label: str = "") -> Step:
    """Stage 2 of one arm and seed at ``preset.lr`` (its stage 1 is built here when the arm has one)."""
    spec = training_steps.ARMS[arm]
    inputs = {"tokenizer": data.tokenizer, "shards": data.shards, "dictionaries": data.dictionaries}
    if spec["codeswitch"]:
        inputs["codeswitch"] = data.codeswitch
    params = dict(model=model_params(preset), arm=arm, seed=seed, iters=preset.train_iters,
                  mbs=preset.micro_batch_size, gbs=preset.global_batch_size, lr=preset.lr,
                  min_lr=preset.min_lr_ratio, warmup=preset.warmup_iters, wd=preset.weight_decay,
                  clip=preset.clip_grad,
                  # The clone setting's key keeps its old name, so its existing runs stay found.
                  **{"clone_share" if preset.setting == "clone" else "target_share": preset.target_share},
                  eval=(preset.eval_interval, preset.eval_iters))
    if spec["init"]:  # settings an arm does not use stay out of its key, so arms can share runs
        # The control arms' stage 1 is PreAlign's with the contrastive term off (alpha 0): the same
        # flags otherwise, hence the same steps, entries, schedule and data order.
        contrastive = spec.get("contrastive", True)
        inputs["stage1"] = stage1(preset if contrastive else preset.replace(alignment_alpha=0.0), seed, data, label)
        if preset.stage2_reinit:
            params["reinit"] = preset.stage2_reinit
    return Step("stage2", f"{label}arm {arm} | seed {seed} | lr {preset.lr:g} | stage 2 (pretraining)",
                params,
                lambda out, inp: training_steps.stage2_step(preset, arm, seed, out, inp),
                inputs, cost=preset.train_iters * preset.global_batch_size * preset.seq_length / 5000,
                resumable=True,
                command=lambda out, inp: training_steps.stage2_command(preset, arm, seed, out, inp))


def evaluation(preset, arm: str, seed: int, data: DataSteps, stage2_step: Step, label: str = "",
               iteration: Optional[int] = None) -> Step:
    """Convert and evaluate a stage-2 run: its final checkpoint, or the one saved at ``iteration``."""
    # transfer: the default transfer probe, fine-tuned (docs/probes.md, T-c), which changed what
    # ``transfer_*`` means: evaluations from before it (frozen probe) have other keys and never mix.
    params = dict(arm=arm, seed=seed, max_tokens=preset.eval_max_tokens, seq=preset.seq_length,
                  transfer=f"finetuned {preset.transfer_finetune_steps}")
    if preset.probes != "basic":
        params["probes"] = preset.probes
    if iteration is not None:
        params["iteration"] = iteration
    at = "" if iteration is None else f" at iteration {iteration}"
    return Step("evaluate", f"{label}arm {arm} | seed {seed} | convert + evaluate{at}", params,
                lambda out, inp: evaluate_step.evaluate(preset, arm, seed, out, inp, iteration),
                {"stage2": stage2_step, "tokenizer": data.tokenizer, "shards": data.shards,
                 "corpus": data.corpus, "dictionaries": data.dictionaries, "transfer": data.transfer},
                cost=60)


def build_steps(preset, corpus: Path):
    """The experiment: shared data steps, one stage 1 per seed, stage 2 + evaluation per arm and seed."""
    data = data_steps(preset, corpus)
    steps = []
    for seed in preset.seeds:
        for arm in preset.arms:
            run = stage2(preset, arm, seed, data)
            if preset.checkpoint_evals:
                steps += [evaluation(preset, arm, seed, data, run, iteration=k)
                          for k in range(preset.checkpoint_evals, preset.train_iters, preset.checkpoint_evals)]
            steps.append(evaluation(preset, arm, seed, data, run))
    return steps
