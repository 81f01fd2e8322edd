"""Tiny checkpoints for the conversion and evaluation tests, made once per session, on demand.

Each case trains 2 steps with ``pretrain_prealign.py`` under torchrun (gloo) and, at the same
time, dumps the Megatron-Core logits of a fixed random batch computed at the layout it was saved
in (``workers/pretrain_and_dump_logits.py``). Four cases cover the parity matrix:

=====================  ======  ======  =====  ==========================================
case                   layout  tied    GQA    vocabulary
=====================  ======  ======  =====  ==========================================
tp1_untied             1 proc  no      no     NullTokenizer 1001 ids, padded to 1024
tp1_tied_gqa_clone     1 proc  yes     8h/2g  SentencePiece BPE, English-Clone 400 -> 512;
                                              a stage-1 (``--stage align``) checkpoint
tp2pp2_untied_gqa      TP2PP2  no      4h/2g  NullTokenizer 1001 -> 1024
tp2pp2_tied            TP2PP2  yes     no     NullTokenizer 1101 -> 1280 (padding for TP=2)
=====================  ======  ======  =====  ==========================================
"""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, run_torchrun
from tests.training.helpers import make_word_language

COMMON = ["--num-layers", "2", "--hidden-size", "64", "--seq-length", "32", "--train-iters", "2",
          "--lr", "1e-2", "--seed", "5", "--log-interval", "1"]
TP2PP2 = ["--tensor-model-parallel-size", "2", "--pipeline-model-parallel-size", "2"]

CASES = {
    "tp1_untied": (1, ["--mock-data", "--vocab-size", "1000", "--num-attention-heads", "4",
                       "--micro-batch-size", "2"]),
    "tp1_tied_gqa_clone": (1, ["--stage", "align", "--english-clone",
                               "--tokenizer-type", "SentencePieceTokenizer",
                               "--num-attention-heads", "8", "--group-query-attention",
                               "--num-query-groups", "2", "--no-untie-embeddings-and-output-weights",
                               "--micro-batch-size", "16"]),
    "tp2pp2_untied_gqa": (4, ["--mock-data", "--vocab-size", "1000", "--num-attention-heads", "4",
                              "--group-query-attention", "--num-query-groups", "2",
                              "--micro-batch-size", "2", *TP2PP2]),
    "tp2pp2_tied": (4, ["--mock-data", "--vocab-size", "1100", "--num-attention-heads", "4",
                        "--no-untie-embeddings-and-output-weights", "--micro-batch-size", "2",
                        *TP2PP2]),
}

_BUILDERS = {}


class Checkpoints:
    """Builds each case once (``get``) and converts it to Hugging Face once (``converted``)."""

    def __init__(self, root: Path):
        self.root = root
        self._built = {}
        self._converted = {}
        self._language = None

    def language(self):
        """(SentencePiece model, English<->Clone dictionary) of ``make_word_language``."""
        if self._language is None:
            directory = self.root / "language"
            directory.mkdir(exist_ok=True)
            self._language = make_word_language(directory)
        return self._language

    def get(self, case: str):
        """(checkpoint dir, reference dump {tokens, logits, vocab_size}) of ``case``."""
        if case not in self._built:
            import torch

            nproc, flags = CASES[case]
            ckpt, dump = self.root / case, self.root / f"{case}_logits.pt"
            if "--stage" in flags:
                model, dictionary = self.language()
                flags = flags + ["--tokenizer-model", model, "--alignment-dictionary", dictionary]
            run_torchrun([Path(__file__).parent / "workers" / "pretrain_and_dump_logits.py", *COMMON, *flags,
                          "--save", ckpt], nproc=nproc,
                         env={"PREALIGN_DUMP_LOGITS": str(dump)})
            self._built[case] = (ckpt, torch.load(dump, weights_only=True))
        return self._built[case]

    def converted(self, case: str):
        """(HF directory, converter stdout) of ``tools/convert_to_hf.py --load <case>``."""
        if case not in self._converted:
            ckpt, _ = self.get(case)
            out = self.root / f"{case}_hf"
            proc = run_tool("convert_to_hf.py", "--load", ckpt, "--save", out)
            assert proc.returncode == 0, proc.stderr[-4000:]
            self._converted[case] = (out, proc.stdout)
        return self._converted[case]


def run_tool(tool: str, *args, timeout: float = 300):
    """Run ``python tools/<tool> args`` from the repository root (1 thread, no GPU)."""
    import os

    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(REPO_ROOT))
    return subprocess.run([sys.executable, str(REPO_ROOT / "tools" / tool), *map(str, args)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """The shared ``Checkpoints`` builder (one per session even when imported by two packages)."""
    key = str(tmp_path_factory.getbasetemp())
    if key not in _BUILDERS:
        _BUILDERS[key] = Checkpoints(tmp_path_factory.mktemp("checkpoints"))
    return _BUILDERS[key]
