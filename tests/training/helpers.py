"""Run ``pretrain_prealign.py`` under torchrun and read back its per-iteration JSON log."""

import json
from pathlib import Path
from typing import List, Optional

from tests.conftest import run_torchrun

TINY_MODEL = [
    "--mock-data", "--vocab-size", "1000", "--num-layers", "2", "--hidden-size", "64",
    "--num-attention-heads", "4", "--seq-length", "32", "--micro-batch-size", "2",
    "--lr", "1e-3", "--log-interval", "1", "--seed", "7",
]


def train_losses(log_json: Path, event: str = "train") -> List[float]:
    return [json.loads(line)["lm_loss"] for line in open(log_json)
            if json.loads(line)["event"] == event]


def pretrain(tmp_path: Path, name: str, extra: List[str], nproc: int = 1,
             check: bool = True, env: Optional[dict] = None, entry: str = "pretrain_prealign.py"):
    """Run one training job; returns (completed process, path of its JSON log)."""
    log = tmp_path / f"{name}.jsonl"
    proc = run_torchrun([entry, *TINY_MODEL, "--log-json", log, *map(str, extra)],
                        nproc=nproc, check=check, env=env)
    return proc, log
