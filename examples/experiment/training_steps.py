"""Training steps of the experiment: stage 1 and stage 2 through ``pretrain_prealign.py``.

Both run under ``torchrun`` with the preset's process count, save Megatron checkpoints into their step
directory and resume from them after an interruption (``--save``/``--load`` on the same directory),
and log every iteration and evaluation as JSON lines (``log.jsonl``) for the report.

Arms (stage 2; "target" is the clone, or the real target language(s)):
    joint      random init, plain English + target                 (the baseline)
    init_only  stage-1 init, plain English + target
    cs_only    random init, code-switched English + target
    prealign   stage-1 init, code-switched English + target         (the method)
    lm_init    LM-only stage-1 init, plain English + target         (controls: stage 1 with the same
    lm_init_cs LM-only stage-1 init, code-switched English + target  steps, entries, schedule and data
                                                                     order, the contrastive term off)
The controls spend PreAlign's stage-1 compute without aligning anything, so "PreAlign beats joint" can
be told apart from "extra steps on dictionary words beat joint".
All arms of a seed share the model seed, the data seed and therefore the sample order; in the clone
setting the code-switched shard has the plain shard's document lengths, so only the switching
differs (a real translation has its own token count, so there the samples shift a little).

``stage1_command``/``stage2_command`` build the exact command lines, which ``run.py --dry-run``
prints without running anything.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from examples.experiment.pipeline import run_logged
from examples.experiment.real.data_prep import evaluation_dictionaries

REPO = Path(__file__).resolve().parents[2]
ARMS = {
    "joint": {"init": False, "codeswitch": False},
    "init_only": {"init": True, "codeswitch": False},
    "cs_only": {"init": False, "codeswitch": True},
    "prealign": {"init": True, "codeswitch": True},
    "lm_init": {"init": True, "codeswitch": False, "contrastive": False},
    "lm_init_cs": {"init": True, "codeswitch": True, "contrastive": False},
}
"""Per arm: a stage-1 init, code-switched English, and (default True) the contrastive term in stage 1."""


def torchrun(nproc: int):
    if nproc == 1:
        return [sys.executable]
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}",
            "--master-addr=127.0.0.1", f"--master-port={29400 + os.getpid() % 500}"]


def model_flags(preset) -> list:
    flags = ["--num-layers", preset.num_layers, "--hidden-size", preset.hidden_size,
             "--ffn-hidden-size", preset.ffn_hidden_size, "--num-attention-heads",
             preset.num_attention_heads, "--seq-length", preset.seq_length,
             "--tokenizer-type", "SentencePieceTokenizer"]
    if preset.setting == "clone":  # the doubled table: English ids and clone ids (+|V|)
        flags.append("--english-clone")
    if preset.tensor_parallel > 1:
        flags += ["--tensor-model-parallel-size", preset.tensor_parallel, "--sequence-parallel"]
    if not preset.untie_embeddings:
        flags.append("--no-untie-embeddings-and-output-weights")
    if preset.bf16 and cuda_available():
        flags.append("--bf16")
    return flags


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def eval_dictionaries(preset, dictionaries: Path) -> list:
    """The evaluation dictionaries that exist and have entries (strict_unseen can be empty on a small
    corpus, and training refuses an empty dictionary)."""
    names = evaluation_dictionaries(preset) if preset.setting == "real" else ("dev", "unseen", "strict_unseen")
    named = [f"{name}={dictionaries / (name + '.jsonl')}" for name in names
             if (dictionaries / (name + ".jsonl")).is_file()
             and (dictionaries / (name + ".jsonl")).stat().st_size > 0]
    return ["--alignment-eval-dictionary", *named] if named else []


def _env(nproc: int) -> dict:
    # The cores split evenly between the ranks, unless the caller chose: two runs side by side on one
    # machine (``OMP_NUM_THREADS=1`` for each) would otherwise each claim every core.
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 2) // nproc))
    return {"OMP_NUM_THREADS": threads, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(REPO)}


def stage1_command(preset, seed: int, out: Path, inputs) -> list:
    """The stage-1 command line (``torchrun`` with ``nproc`` ranks when there are several)."""
    ckpt = out / "checkpoints"
    return torchrun(preset.nproc) + [
        REPO / "pretrain_prealign.py", "--stage", "align",
        "--alignment-dictionary", inputs["dictionaries"] / "stage1.jsonl",
        "--alignment-heldout-fraction", "0", *eval_dictionaries(preset, inputs["dictionaries"]),
        "--alignment-levels", preset.alignment_levels, "--alignment-alpha", preset.alignment_alpha,
        "--alignment-lm-weight", preset.alignment_lm_weight,
        *model_flags(preset), "--tokenizer-model", inputs["tokenizer"] / "spm.model",
        "--micro-batch-size", preset.stage1_entries,
        "--global-batch-size", preset.stage1_entries * preset.nproc,
        "--train-iters", preset.stage1_iters, "--lr", preset.stage1_lr,
        "--min-lr", preset.stage1_lr * preset.min_lr_ratio, "--lr-warmup-fraction", 0.05,
        "--weight-decay", preset.weight_decay, "--adam-beta2", 0.95, "--clip-grad", preset.clip_grad,
        "--seed", seed, "--log-interval", 10, "--eval-interval", max(1, preset.stage1_iters // 4),
        "--save", ckpt, "--load", ckpt, "--save-interval", max(1, preset.stage1_iters // 2),
        "--log-json", out / "log.jsonl",
    ]


def stage1_step(preset, seed: int, out: Path, inputs) -> dict:
    _fresh_log_unless_resuming(out)
    run_logged(stage1_command(preset, seed, out, inputs), out / "train.log", env=_env(preset.nproc),
               progress_label=f"stage 1 seed {seed}")
    return {"checkpoint": "checkpoints"}


def _fresh_log_unless_resuming(out: Path) -> None:
    """An interrupted first attempt (no checkpoint yet) starts its JSON log afresh."""
    if (out / "log.jsonl").exists() and not (out / "checkpoints" / "latest_checkpointed_iteration.txt").exists():
        (out / "log.jsonl").unlink()


def data_blend(preset, english: Path, shards: Path) -> list:
    """``--data-path`` weights and prefixes: English ``1 - target_share``, the targets the rest, evenly."""
    share = preset.target_share / len(preset.targets)
    blend = [1.0 - preset.target_share, english]
    for language in preset.targets:
        blend += [share, shards / f"{language}_train_text_document"]
    return blend


def stage2_command(preset, arm: str, seed: int, out: Path, inputs) -> list:
    """The stage-2 command line of one arm and seed."""
    spec = ARMS[arm]
    shards = inputs["shards"]
    english = (inputs["codeswitch"] / "en_train_cs_text_document") if spec["codeswitch"] \
        else (shards / "en_train_text_document")
    ckpt = out / "checkpoints"
    cmd = torchrun(preset.nproc) + [
        REPO / "pretrain_prealign.py", *model_flags(preset),
        "--tokenizer-model", inputs["tokenizer"] / "spm.model",
        "--data-path", *data_blend(preset, english, shards),
        "--valid-data-path", *[shards / f"{language}_valid_text_document"
                               for language in ["en", *preset.targets]],
        "--multiple-validation-sets", *eval_dictionaries(preset, inputs["dictionaries"]),
        "--micro-batch-size", preset.micro_batch_size,  # per process
        "--global-batch-size", preset.global_batch_size, "--train-iters", preset.train_iters,
        "--lr", preset.lr, "--min-lr", preset.lr * preset.min_lr_ratio,
        "--lr-warmup-iters", preset.warmup_iters, "--weight-decay", preset.weight_decay,
        "--adam-beta2", 0.95, "--clip-grad", preset.clip_grad, "--seed", seed,
        "--log-interval", 20, "--eval-interval", preset.eval_interval, "--eval-iters", preset.eval_iters,
        "--data-cache-path", out / "index_cache",
        "--save", ckpt, "--load", ckpt, "--save-interval", preset.eval_interval,
        "--log-json", out / "log.jsonl",
    ]
    if spec["init"]:
        cmd += ["--pretrained-checkpoint", inputs["stage1"] / "checkpoints"]
        if preset.stage2_reinit:
            cmd += ["--pretrained-reinit", preset.stage2_reinit]
    return cmd


def stage2_step(preset, arm: str, seed: int, out: Path, inputs) -> dict:
    _fresh_log_unless_resuming(out)
    run_logged(stage2_command(preset, arm, seed, out, inputs), out / "train.log", env=_env(preset.nproc),
               progress_label=f"{arm} seed {seed}")
    return {"checkpoint": "checkpoints", "arm": arm, "seed": seed}
