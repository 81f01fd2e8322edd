"""Conversion parity: Hugging Face logits equal Megatron-Core's, for every layout in the matrix.

The reference logits are computed by Megatron-Core at the layout the checkpoint was *saved* in
(TP=2/PP=2 runs pass activations between stages and gather vocab-parallel logits), during the run
that saved it; the Hugging Face model is loaded here, offline, with ``AutoModelForCausalLM``.
"""

import json
import re

import pytest
import torch

from tests.conversion.checkpoints import CASES, checkpoints  # noqa: F401 (fixture)

pytestmark = pytest.mark.multiprocess  # starts torchrun jobs

TOLERANCE = 1e-4


@pytest.mark.parametrize("case", list(CASES))
def test_hf_logits_match_megatron(case, checkpoints, monkeypatch):  # noqa: F811
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _, reference = checkpoints.get(case)
    hf_dir, stdout = checkpoints.converted(case)
    vocab = reference["vocab_size"]
    padded = reference["logits"].shape[-1]
    assert padded > vocab  # the checkpoint carries vocabulary padding that must be stripped

    model = AutoModelForCausalLM.from_pretrained(hf_dir, local_files_only=True, dtype=torch.float32)
    with torch.no_grad():
        logits = model(input_ids=reference["tokens"]).logits  # [b, s, V]
    assert logits.shape[-1] == vocab
    diff = float((logits - reference["logits"][..., :vocab]).abs().max())
    assert diff <= TOLERANCE, (case, diff)
    assert float(reference["logits"][..., :vocab].abs().max()) > 0.1  # not a degenerate model

    config = json.loads((hf_dir / "config.json").read_text())
    nproc, flags = CASES[case]
    tied = "--no-untie-embeddings-and-output-weights" in flags
    groups = int(flags[flags.index("--num-query-groups") + 1]) if "--num-query-groups" in flags \
        else int(flags[flags.index("--num-attention-heads") + 1])
    assert config["tie_word_embeddings"] == tied
    assert config["num_key_value_heads"] == groups
    with safe_open(str(hf_dir / "model.safetensors"), "pt") as f:
        assert ("lm_head.weight" in f.keys()) == (not tied)

    # The converter's own check (one process, resharded load) agrees.
    reported = float(re.search(r"max \|diff\| ([0-9.e+-]+)", stdout).group(1))
    assert reported <= TOLERANCE
    record = json.loads((hf_dir / "prealign_conversion.json").read_text())
    assert record["vocab_size"] == vocab and record["padded_vocab_size"] == padded
    assert record["saved_parallel_layout"]["tensor_model_parallel_size"] == (2 if nproc == 4 else 1)
