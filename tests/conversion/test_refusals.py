"""Architectures a Llama cannot hold are refused with the flag (or config field) that chose them."""

import json
import shutil
from argparse import Namespace

import pytest

from megatron_prealign.conversion.hf import check_llama_representable, shape_from_hf_config
from megatron_prealign.conversion.mapping import ConversionError
from tests.conversion.checkpoints import checkpoints, run_tool  # noqa: F401 (fixture)

pytestmark = pytest.mark.multiprocess  # starts torchrun jobs

LLAMA = dict(position_embedding_type="rope", rotary_percent=1.0, normalization="RMSNorm",
             swiglu=True, disable_bias_linear=True, hidden_size=64, num_attention_heads=4)


@pytest.mark.parametrize("change, flag", [
    ({"position_embedding_type": "learned_absolute"}, "--position-embedding-type learned_absolute"),
    ({"rotary_percent": 0.5}, "--rotary-percent 0.5"),
    ({"normalization": "LayerNorm"}, "--normalization LayerNorm"),
    ({"swiglu": False}, "--no-swiglu"),
    ({"disable_bias_linear": False}, "--no-disable-bias-linear"),
    ({"hidden_size": 66}, "--hidden-size 66 is not divisible by --num-attention-heads 4"),
])
def test_megatron_features_without_a_llama_equivalent_are_refused(change, flag):
    check_llama_representable(Namespace(**LLAMA))  # the baseline converts
    with pytest.raises(ConversionError) as err:
        check_llama_representable(Namespace(**{**LLAMA, **change}))
    assert flag in str(err.value)


def test_every_problem_is_listed_at_once():
    with pytest.raises(ConversionError) as err:
        check_llama_representable(Namespace(**{**LLAMA, "normalization": "LayerNorm", "swiglu": False}))
    assert "--normalization LayerNorm" in str(err.value) and "--no-swiglu" in str(err.value)


@pytest.mark.parametrize("change, message", [
    ({"attention_bias": True}, "attention_bias=true"),
    ({"mlp_bias": True}, "mlp_bias=true"),
    ({"hidden_act": "gelu"}, "hidden_act 'gelu'"),
    ({"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}},
     "rope type 'linear'"),
])
def test_hugging_face_models_megatron_cannot_hold_are_refused(tmp_path, change, message):
    from transformers import LlamaConfig

    config = dict(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                  num_attention_heads=2, max_position_embeddings=32)
    LlamaConfig(**config).save_pretrained(tmp_path / "ok")
    shape_from_hf_config(str(tmp_path / "ok"), 50, 128)
    LlamaConfig(**config, **change).save_pretrained(tmp_path / "bad")
    with pytest.raises(ConversionError, match=message):
        shape_from_hf_config(str(tmp_path / "bad"), 50, 128)


def test_cli_refuses_before_reading_weights(tmp_path, checkpoints):  # noqa: F811
    """A checkpoint whose run used LayerNorm: exit 2, the flag named, nothing written."""
    ckpt, _ = checkpoints.get("tp1_untied")
    fake = tmp_path / "layernorm"
    shutil.copytree(ckpt, fake)
    meta_path = fake / "iter_0000002" / "prealign_checkpoint.json"
    meta = json.loads(meta_path.read_text())
    meta["args"]["normalization"] = "LayerNorm"
    meta_path.write_text(json.dumps(meta))
    proc = run_tool("convert_to_hf.py", "--load", fake, "--save", tmp_path / "out")
    assert proc.returncode == 2, proc.stderr
    assert "--normalization LayerNorm: Llama uses RMSNorm" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_cli_names_a_directory_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = run_tool("convert_to_hf.py", "--load", tmp_path / "empty", "--save", tmp_path / "out")
    assert proc.returncode == 2
    assert "latest_checkpointed_iteration.txt" in proc.stderr and "Traceback" not in proc.stderr
