
"""Hugging Face -> Megatron -> Hugging Face is exact, and the imported checkpoint starts a run."""

import json
import re

import pytest
import torch

from tests.conftest import run_torchrun
from tests.conversion.checkpoints import checkpoints, run_tool  # noqa: F401 (fixture)

pytestmark = pytest.mark.multiprocess  # starts torchrun jobs


def test_hf_llama_round_trips_through_megatron_and_trains(tmp_path, monkeypatch):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = LlamaConfig(vocab_size=1001, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         rope_theta=500000.0, rms_norm_eps=1e-6, tie_word_embeddings=False)
    torch.manual_seed(0)
    original = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # HF initializes norms to 1: make them matter
        for name, p in original.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    original.save_pretrained(tmp_path / "hf")

    proc = run_tool("convert_to_hf.py", "--from-hf", tmp_path / "hf", "--save", tmp_path / "mg")
    assert proc.returncode == 0, proc.stderr[-3000:]
    flags = re.search(r"--pretrained-checkpoint \S+ (.*)", proc.stdout).group(1).split()
    assert float(re.search(r"max \|diff\| ([0-9.e+-]+)", proc.stdout).group(1)) <= 1e-4
    meta = json.loads((tmp_path / "mg" / "iter_0000000" / "prealign_checkpoint.json").read_text())
    assert meta["args"]["padded_vocab_size"] == 1024 and meta["args"]["rotary_base"] == 500000
    assert meta["args"]["num_query_groups"] == 2 and meta["args"]["group_query_attention"]

    proc = run_tool("convert_to_hf.py", "--load", tmp_path / "mg", "--save", tmp_path / "back")
    assert proc.returncode == 0, proc.stderr[-3000:]
    before, after = load_file(tmp_path / "hf" / "model.safetensors"), \
        load_file(tmp_path / "back" / "model.safetensors")
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key
    back = AutoModelForCausalLM.from_pretrained(tmp_path / "back", local_files_only=True,
                                                dtype=torch.float32)
    for field in ("rms_norm_eps", "num_key_value_heads", "head_dim", "max_position_embeddings",
                  "tie_word_embeddings", "vocab_size"):
        assert getattr(back.config, field) == getattr(config, field), field
    assert back.config.rope_parameters["rope_theta"] == 500000.0
    tokens = torch.randint(0, 1001, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(back(input_ids=tokens).logits, original(input_ids=tokens).logits)

    # The printed flags start a real run from the imported weights.
    assert flags[flags.index("--vocab-size") + 1] == "1000"  # NullTokenizer: ids 0..1000
    run = run_torchrun(["pretrain_prealign.py", *flags, "--mock-data", "--micro-batch-size", "2",
                        "--train-iters", "1", "--seq-length", "32",
                        "--pretrained-checkpoint", tmp_path / "mg"], nproc=1)
    assert "initialized weights from" in run.stdout


def test_english_clone_export_imports_back_with_its_tokenizer(tmp_path, checkpoints):  # noqa: F811
    """The stage-1 English-Clone export (tied, GQA, SentencePiece) -> Megatron: the run flags name
    the exported tokenizer.model with --english-clone, and the logits still match."""
    hf_dir, _ = checkpoints.converted("tp1_tied_gqa_clone")
    proc = run_tool("convert_to_hf.py", "--from-hf", hf_dir, "--save", tmp_path / "mg")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert float(re.search(r"max \|diff\| ([0-9.e+-]+)", proc.stdout).group(1)) <= 1e-4
    args = json.loads((tmp_path / "mg" / "iter_0000000" / "prealign_checkpoint.json").read_text())["args"]
    assert args["tokenizer_type"] == "SentencePieceTokenizer" and args["english_clone"]
    assert args["tokenizer_model"] == str(hf_dir / "tokenizer.model")
    assert args["padded_vocab_size"] == 512 and not args["untie_embeddings_and_output_weights"]
    assert args["num_query_groups"] == 2 and args["stage"] == "pretrain"
