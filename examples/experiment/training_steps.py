"""Training steps of the experiment: stage 1 and stage 2 through ``pretrain_prealign.py``.

Both run under ``torchrun`` with the preset's process count, save Megatron checkpoints into their step
directory and resume from them after an interruption (``--save``/``--load`` on the same directory),
and log every iteration and evaluation as JSON lines (``log.jsonl``) for the report.

Arms (stage 2):
    joint      random init, plain English + clone                  (the baseline)
    init_only  stage-1 init, plain English + clone
    cs_only    random init, code-switched English + clone
    prealign   stage-1 init, code-switched English + clone          (the method)
All arms of a seed share the model seed, the data seed and therefore the sample order; the
code-switched shard has the plain shard's document lengths, so only the switching differs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from examples.experiment.pipeline import run_logged

REPO = Path(__file__).resolve().parents[2]
ARMS = {
    "joint": {"init": False, "codeswitch": False},
    "init_only": {"init": True, "codeswitch": False},
    "cs_only": {"init": False, "codeswitch": True},
    "prealign": {"init": True, "codeswitch": True},
}


def torchrun(nproc: int):
    if nproc == 1:
        return [sys.executable]
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}",
            "--master-addr=127.0.0.1", f"--master-port={29400 + os.getpid() % 500}"]


def model_flags(preset) -> list:
    flags = ["--num-layers", preset.num_layers, "--hidden-size", preset.hidden_size,
             "--ffn-hidden-size", preset.ffn_hidden_size, "--num-attention-heads",
             preset.num_attention_heads, "--seq-length", preset.seq_length,
             "--tokenizer-type", "SentencePieceTokenizer", "--english-clone"]
    if not preset.untie_embeddings:
        flags.append("--no-untie-embeddings-and-output-weights")
    if preset.bf16 and _cuda_available():
        flags.append("--bf16")
    return flags


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def eval_dictionaries(dictionaries: Path) -> list:
    """The evaluation dictionaries that have entries (strict_unseen can be empty on a small corpus,
    and training refuses an empty dictionary)."""
    named = [f"{name}={dictionaries / (name + '.jsonl')}" for name in ("dev", "unseen", "strict_unseen")
             if (dictionaries / (name + ".jsonl")).stat().st_size > 0]
    return ["--alignment-eval-dictionary", *named] if named else []


def _env(nproc: int) -> dict:
    # The cores split evenly between the ranks, unless the caller chose: two runs side by side on one
    # machine (``OMP_NUM_THREADS=1`` for each) would otherwise each claim every core.
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 2) // nproc))
    return {"OMP_NUM_THREADS": threads, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(REPO)}


def stage1_step(preset, seed: int, out: Path, inputs) -> dict:
    ckpt = out / "checkpoints"
    cmd = torchrun(preset.nproc) + [
        REPO / "pretrain_prealign.py", "--stage", "align",
        "--alignment-dictionary", inputs["dictionaries"] / "stage1.jsonl",
        "--alignment-heldout-fraction", "0", *eval_dictionaries(inputs["dictionaries"]),
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
    if (out / "log.jsonl").exists() and not (ckpt / "latest_checkpointed_iteration.txt").exists():
        (out / "log.jsonl").unlink()  # an interrupted first attempt: start the log afresh
    run_logged(cmd, out / "train.log", env=_env(preset.nproc), progress_label=f"stage 1 seed {seed}")
    return {"checkpoint": "checkpoints"}


def stage2_step(preset, arm: str, seed: int, out: Path, inputs) -> dict:
    spec = ARMS[arm]
    shards = inputs["shards"]
    english = (inputs["codeswitch"] / "en_train_cs_text_document") if spec["codeswitch"] \
        else (shards / "en_train_text_document")
    ckpt = out / "checkpoints"
    cmd = torchrun(preset.nproc) + [
        REPO / "pretrain_prealign.py", *model_flags(preset),
        "--tokenizer-model", inputs["tokenizer"] / "spm.model",
        "--data-path", 1.0 - preset.clone_share, english, preset.clone_share,
        shards / "clone_train_text_document",
        "--valid-data-path", shards / "en_valid_text_document", shards / "clone_valid_text_document",
        "--multiple-validation-sets", *eval_dictionaries(inputs["dictionaries"]),
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
    if (out / "log.jsonl").exists() and not (ckpt / "latest_checkpointed_iteration.txt").exists():
        (out / "log.jsonl").unlink()
    run_logged(cmd, out / "train.log", env=_env(preset.nproc), progress_label=f"{arm} seed {seed}")
    return {"checkpoint": "checkpoints", "arm": arm, "seed": seed}
