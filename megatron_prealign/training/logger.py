"""Training logs: one console line per --log-interval, TensorBoard scalars, optional W&B and JSON.

Only global rank 0 writes (losses are already reduced over data-parallel ranks and broadcast from
the last pipeline stage). Model FLOPs utilization is reported on GPUs with a known peak.
"""

from __future__ import annotations

import json
import os
import time
from argparse import Namespace
from typing import Dict, Optional

import torch

# Dense bf16 peak TFLOP/s per GPU, by device-name substring (vendor spec sheets).
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "GH200": 989.0, "A100": 312.0, "L40S": 362.0,
                    "B200": 2250.0}


def model_flops_per_token(args: Namespace) -> float:
    """Forward+backward FLOPs per trained token (the 6N rule plus causal attention scores).

    Counted: every matmul of attention (QKV, scores, context, output projection), the MLP (SwiGLU
    has three matrices) and the output layer, times 3 for forward + backward. Embedding lookups and
    norms are ignored, as in the usual MFU definitions.
    """
    h, L, s = args.hidden_size, args.num_layers, args.seq_length
    kv = args.kv_channels * (args.num_query_groups if args.group_query_attention
                             else args.num_attention_heads)
    q = args.kv_channels * args.num_attention_heads
    attn_proj = 2 * h * (q + 2 * kv) + 2 * q * h
    attn_scores = 2 * 2 * s * q / 2  # QK^T and PV, causal: half the positions on average
    mlp = 2 * h * args.ffn_hidden_size * (3 if args.swiglu else 2)
    output = 2 * h * args.padded_vocab_size
    return 3.0 * (L * (attn_proj + attn_scores + mlp) + output)


def peak_tflops() -> Optional[float]:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in name:
            return value
    return None


class TrainingLogger:
    def __init__(self, args: Namespace, throughput_unit: str = "tokens"):
        self.args = args
        self.unit = throughput_unit
        self.is_writer = (not torch.distributed.is_initialized()) or torch.distributed.get_rank() == 0
        self.tb = None
        self.wandb = None
        self.json_file = None
        self.flops_per_token = model_flops_per_token(args)
        self.peak = peak_tflops()
        self._window_start = time.time()
        self._window_tokens = 0
        if not self.is_writer:
            return
        if args.tensorboard_dir:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=args.tensorboard_dir)
        if args.wandb_project:
            try:
                import wandb
            except ImportError as err:
                raise RuntimeError("--wandb-project given but wandb is not installed: "
                                   "pip install wandb, or drop the flag") from err
            self.wandb = wandb.init(project=args.wandb_project, name=args.wandb_exp_name,
                                    config=vars(args))
        if args.log_json:
            os.makedirs(os.path.dirname(os.path.abspath(args.log_json)), exist_ok=True)
            self.json_file = open(args.log_json, "a")

    def print(self, message: str) -> None:
        if self.is_writer:
            print(message, flush=True)

    def count_tokens(self, tokens: int) -> None:
        self._window_tokens += tokens

    def log_train(self, iteration: int, losses: Dict[str, float], lr: float,
                  grad_norm: Optional[float]) -> None:
        elapsed = max(time.time() - self._window_start, 1e-9)
        tokens_per_s = self._window_tokens / elapsed
        record = {"event": "train", "iteration": iteration, "lr": lr, "grad_norm": grad_norm,
                  f"{self.unit}_per_s": tokens_per_s, **{k.replace(" ", "_"): v for k, v in losses.items()}}
        parts = [f"iteration {iteration:>7d}/{self.args.train_iters}"]
        # Per-level stage-1 losses go to TensorBoard/JSON; the console keeps the totals.
        parts += [f"{k}: {v:.6f}" for k, v in losses.items() if k in ("lm loss", "align loss")]
        parts += [f"lr: {lr:.3e}", f"grad norm: {grad_norm:.4f}" if grad_norm is not None else "grad norm: -",
                  f"{self.unit}/s: {tokens_per_s:,.0f}"]
        if self.peak and self.unit == "tokens":
            world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
            mfu = tokens_per_s * self.flops_per_token / (world * self.peak * 1e12)
            record["mfu"] = mfu
            parts.append(f"MFU: {100 * mfu:.1f}%")
        self.print(" | ".join(parts))
        self._write(iteration, record, prefix="train")
        self._window_start = time.time()
        self._window_tokens = 0

    def log_eval(self, iteration: int, losses: Dict[str, float], extra: Optional[dict] = None) -> None:
        extra = extra or {}
        record = {"event": "eval", "iteration": iteration,
                  **{k.replace(" ", "_"): v for k, v in losses.items()}, **extra}
        if losses:
            self.print(f"validation at iteration {iteration} | " +
                       " | ".join(f"{k}: {v:.6f}" for k, v in losses.items()))
        for line in _alignment_lines(extra):
            self.print(f"alignment at iteration {iteration} | {line}")
        self._write(iteration, record, prefix="valid")

    def _write(self, iteration: int, record: dict, prefix: str) -> None:
        if not self.is_writer:
            return
        scalars = {k: v for k, v in record.items()
                   if isinstance(v, (int, float)) and k not in ("iteration",)}
        if self.tb:
            for k, v in scalars.items():
                self.tb.add_scalar(f"{prefix}/{k}", v, iteration)
        if self.wandb:
            self.wandb.log({f"{prefix}/{k}": v for k, v in scalars.items()}, step=iteration)
        if self.json_file:
            self.json_file.write(json.dumps(record) + "\n")
            self.json_file.flush()

    def close(self) -> None:
        if self.tb:
            self.tb.close()
        if self.json_file:
            self.json_file.close()
        if self.wandb:
            self.wandb.finish()


def _alignment_lines(extra: Dict[str, float]) -> list:
    """Compact console lines for ``align/<set>/<level>/<metric>`` scalars, one per set."""
    sets: Dict[str, Dict[str, Dict[str, float]]] = {}
    for key, value in extra.items():
        parts = key.split("/")
        if len(parts) == 4 and parts[0] == "align":
            sets.setdefault(parts[1], {}).setdefault(parts[2], {})[parts[3]] = value
    lines = []
    for set_name, levels in sets.items():
        p1 = " ".join(f"{lvl} {m.get('p_at_1', float('nan')):.3f}" for lvl, m in levels.items())
        gap = " ".join(f"{lvl} {m.get('aligned_cosine', float('nan')) - m.get('random_cosine', float('nan')):+.3f}"
                       for lvl, m in levels.items())
        lines.append(f"{set_name} P@1: {p1} | cosine aligned-random: {gap}")
    return lines
