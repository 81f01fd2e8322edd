
"""``--save`` is published whole: a non-empty target is refused unless ``--overwrite`` and is then
replaced, never mixed with the new files; a conversion that fails its logits check publishes
nothing and leaves the previous target as it was."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
from tests.conversion.checkpoints import checkpoints, run_tool  # noqa: F401 (fixture)

pytestmark = pytest.mark.multiprocess  # starts torchrun jobs

# A converter whose Hugging Face side is wrong (the final norm doubled): the logits check must catch
# it. Only the model the check loads is changed; the files written are the converter's own.
WRONG_CONVERSION = """
import sys
import torch
from megatron_prealign.conversion import hf
load = hf.load_hf_model
def wrong(*args, **kwargs):
    model = load(*args, **kwargs)
    with torch.no_grad():
        model.model.norm.weight.mul_(2.0)
    return model
hf.load_hf_model = wrong
from tools.convert_to_hf import main
sys.exit(main(sys.argv[1:]))
"""


def files(directory):
    return {str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def siblings(path):
    return sorted(n for n in os.listdir(path.parent) if n.startswith(path.name))


def test_non_empty_save_is_refused_then_replaced_whole(tmp_path, checkpoints):  # noqa: F811
    """A SentencePiece export, then a NullTokenizer one into the same directory: refused without
    --overwrite (nothing touched); with it, none of the old tokenizer files is left beside the new
    model (transformers would load them silently)."""
    clone_hf, _ = checkpoints.converted("tp1_tied_gqa_clone")
    untied, _ = checkpoints.get("tp1_untied")
    target = tmp_path / "hf"
    shutil.copytree(clone_hf, target)
    before = files(target)
    assert "tokenizer.model" in before

    proc = run_tool("convert_to_hf.py", "--load", untied, "--save", target)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"{target} exists and is not empty; pass --overwrite to replace it" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert files(target) == before and siblings(target) == ["hf"]

    proc = run_tool("convert_to_hf.py", "--load", untied, "--save", target, "--overwrite")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(files(target)) == ["config.json", "generation_config.json", "model.safetensors",
                                     "prealign_conversion.json"]
    assert json.loads((target / "config.json").read_text())["vocab_size"] == 1001
    assert siblings(target) == ["hf"]  # no working or replaced directory left behind


def run_wrong_conversion(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(REPO_ROOT))
    return subprocess.run([sys.executable, "-c", WRONG_CONVERSION, *map(str, args)], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


def test_a_conversion_that_fails_its_check_publishes_nothing(tmp_path, checkpoints):  # noqa: F811
    untied, _ = checkpoints.get("tp1_untied")
    fresh = tmp_path / "fresh"
    proc = run_wrong_conversion("--load", untied, "--save", fresh)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert siblings(fresh) == []  # neither the directory nor its working copy
    assert "logits differ by" in proc.stderr and f"Nothing was written to {fresh}" in proc.stderr

    previous = tmp_path / "previous"
    previous.mkdir()
    (previous / "config.json").write_text('{"an": "earlier export"}')
    proc = run_wrong_conversion("--load", untied, "--save", previous, "--overwrite")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert files(previous) == {"config.json": b'{"an": "earlier export"}'}
    assert siblings(previous) == ["previous"]


def test_save_that_holds_the_checkpoint_is_refused(tmp_path, checkpoints):  # noqa: F811
    """--overwrite replaces --save whole: a --save that is (or holds) --load would delete the run."""
    untied, _ = checkpoints.get("tp1_untied")
    run = tmp_path / "run"
    shutil.copytree(untied, run / "checkpoints")
    before = files(run)
    proc = run_tool("convert_to_hf.py", "--load", run / "checkpoints", "--save", run, "--overwrite")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"--save {run} would replace --load {run}/checkpoints/iter_0000002" in proc.stderr
    assert files(run) == before
