"""Stage 1 end to end: DP/TP parity of the whole objective, and the hand-over to stage 2."""

import json

import pytest

from tests.conftest import run_torchrun
from tests.training.helpers import make_word_language

pytestmark = pytest.mark.multiprocess  # starts torchrun jobs

MODEL = ["--num-layers", "2", "--hidden-size", "64", "--num-attention-heads", "4",
         "--seq-length", "32", "--lr", "2e-3", "--log-interval", "1", "--seed", "3"]


@pytest.fixture(scope="module")
def language(tmp_path_factory):
    return make_word_language(tmp_path_factory.mktemp("language"))


def stage1(tmp_path, language, name, extra, nproc=1):
    model, dictionary = language
    log = tmp_path / f"{name}.jsonl"
    proc = run_torchrun(["pretrain_prealign.py", "--stage", "align", "--alignment-dictionary", dictionary,
                         "--tokenizer-type", "SentencePieceTokenizer", "--tokenizer-model", model,
                         "--english-clone", *MODEL, "--log-json", log, *map(str, extra)], nproc=nproc)
    records = [json.loads(line) for line in open(log)]
    return proc, [r for r in records if r["event"] == "train"], [r for r in records if r["event"] == "eval"]


def close(a, b, rel=1e-5):
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-8)


@pytest.fixture(scope="module")
def single(tmp_path_factory, language):
    tmp = tmp_path_factory.mktemp("single")
    _, train, evals = stage1(tmp, language, "single",
                             ["--micro-batch-size", "16", "--global-batch-size", "16",
                              "--train-iters", "4", "--eval-interval", "4"])
    return train, evals


@pytest.mark.parametrize("layout", [[], ["--tensor-model-parallel-size", "2"],
                                    ["--tensor-model-parallel-size", "2", "--sequence-parallel"]],
                         ids=["dp2", "tp2", "tp2-sp"])
def test_two_ranks_match_one(tmp_path, language, single, layout):
    """Same global batch of entries: DP=2 (8 entries per rank) gathers negatives across ranks and
    must equal one process on all 16; TP=2 splits the model."""
    train_ref, eval_ref = single
    _, train, evals = stage1(tmp_path, language, "two",
                             ["--micro-batch-size", "16" if layout else "8",
                              "--global-batch-size", "16", "--train-iters", "4", "--eval-interval", "4",
                              *layout], nproc=2)
    assert len(train) == len(train_ref) == 4
    for got, want in zip(train, train_ref):
        for key in ("lm_loss", "align_loss", "align_embedding", "align_final_norm",
                    "align_output_embedding"):
            assert close(got[key], want[key]), (got["iteration"], key, got[key], want[key])
    # The objective moved, so equality above is not two frozen models agreeing.
    assert train_ref[0]["align_loss"] != train_ref[-1]["align_loss"]
    for key, value in eval_ref[-1].items():
        if key.startswith("align/"):
            assert close(evals[-1][key], value, 1e-4), (key, evals[-1][key], value)


def test_stage1_checkpoint_starts_stage2_at_other_layout(tmp_path, language):
    """Stage 1 saved at TP=2 initializes stage 2 at TP=1/PP=2 exactly as it does at TP=1/PP=1."""
    ckpt = tmp_path / "stage1"
    stage1(tmp_path, language, "s1", ["--micro-batch-size", "8", "--train-iters", "3", "--lr", "3e-2",
                                      "--tensor-model-parallel-size", "2", "--save", ckpt], nproc=2)
    model, _ = language
    vocab = str(2 * 200)  # mock stage-2 data with the stage-1 (English-Clone) vocabulary size

    def stage2(name, extra, nproc):
        log = tmp_path / f"{name}.jsonl"
        run_torchrun(["pretrain_prealign.py", "--mock-data", "--vocab-size", vocab, *MODEL,
                      "--micro-batch-size", "2", "--global-batch-size", "4", "--train-iters", "3",
                      "--log-json", log, *extra], nproc=nproc)
        return [json.loads(line)["lm_loss"] for line in open(log)]

    pp2 = stage2("pp2", ["--pretrained-checkpoint", ckpt, "--pipeline-model-parallel-size", "2"], 2)
    pp1 = stage2("pp1", ["--pretrained-checkpoint", ckpt], 1)
    scratch = stage2("scratch", [], 1)
    assert all(close(a, b) for a, b in zip(pp2, pp1)), (pp2, pp1)
    assert abs(pp1[0] - scratch[0]) > 1e-3  # the stage-1 weights were really loaded
    # --pretrained-reinit keeps the named parameters fresh: naming all of them is a fresh start
    # (at PP=2, where each stage holds only some of the names), naming the head is neither.
    everything = stage2("reinit_all", ["--pretrained-checkpoint", ckpt, "--pretrained-reinit",
                                       "embedding,decoder,output_layer",
                                       "--pipeline-model-parallel-size", "2"], 2)
    assert all(close(a, b) for a, b in zip(everything, scratch)), (everything, scratch)
    head = stage2("reinit_head", ["--pretrained-checkpoint", ckpt, "--pretrained-reinit",
                                  "output_layer,final_layernorm"], 1)
    assert abs(head[0] - pp1[0]) > 1e-3 and abs(head[0] - scratch[0]) > 1e-3


def test_dictionary_that_does_not_fit_the_tokenizer_is_a_clear_error(tmp_path, language):
    """Clone words with a plain (not --english-clone) tokenizer: exit 1, file and fix named."""
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    model, dictionary = language
    # One plain process: torchrun's launcher would add its own report of the failed child.
    proc = subprocess.run([sys.executable, "pretrain_prealign.py", "--stage", "align",
                           "--alignment-dictionary", str(dictionary), "--tokenizer-type",
                           "SentencePieceTokenizer", "--tokenizer-model", str(model), *MODEL,
                           "--micro-batch-size", "8", "--train-iters", "2"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "English-Clone word" in proc.stderr and str(dictionary) in proc.stderr
    assert "--english-clone" in proc.stderr
    assert "Traceback" not in proc.stderr
