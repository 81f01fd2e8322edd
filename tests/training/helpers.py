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


def make_word_language(tmp_path: Path, num_words: int = 600, seed: int = 0):
    """A tiny synthetic language: SentencePiece model + English<->Clone dictionary of its words.

    Returns (spm model path, dictionary path). Deterministic for a given seed.
    """
    import json as _json
    import random
    import string

    import sentencepiece as spm

    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ne", "ru", "ta", "ve", "zo", "pi", "su", "da", "fe", "gu", "ho"]
    words = sorted({"".join(rng.choice(syllables) for _ in range(rng.randint(1, 3)))
                    for _ in range(num_words * 3)})[:num_words]
    text = tmp_path / "text.txt"
    with open(text, "w") as f:
        for _ in range(2000):
            f.write(" ".join(rng.choice(words) for _ in range(12)) + "\n")
        for _ in range(50):
            f.write(" ".join(string.ascii_lowercase) + "\n")
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(tmp_path / "spm"),
                                   vocab_size=200, model_type="bpe", num_threads=1, minloglevel=2)
    dictionary = tmp_path / "dict.jsonl"
    with open(dictionary, "w") as f:
        for word in words:
            f.write(_json.dumps({"words": f"{word} $ <clone>{word}"}) + "\n")
    return tmp_path / "spm.model", dictionary
