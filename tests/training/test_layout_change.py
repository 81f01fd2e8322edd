"""Stage 1 at one layout, stage 2 (or a resume) at another: the vocabulary padding follows the
checkpoint, so the model and its losses are the same at every TP/PP.

Megatron pads the vocabulary to a multiple of --make-vocab-size-divisible-by x TP: NullTokenizer
--vocab-size 512 has 513 ids, padded to 640 rows at TP=1 and to 768 at TP=2, so without this a
checkpoint saved at one TP did not load at the other.
"""

import json

import pytest

from tests.training.helpers import pretrain, train_losses

pytestmark = pytest.mark.multiprocess  # starts torchrun jobs

VOCAB = ["--vocab-size", "512"]  # after TINY_MODEL's --vocab-size 1000: the last one counts
STAGE = VOCAB + ["--global-batch-size", "4", "--train-iters", "3"]


def padded_rows(iteration_dir) -> int:
    meta = json.loads((iteration_dir / "prealign_checkpoint.json").read_text())
    return meta["args"]["padded_vocab_size"]


def assert_close(got, want):
    assert len(got) == len(want), (got, want)
    for it, (a, b) in enumerate(zip(got, want), start=1):
        assert abs(a - b) <= 1e-5 * abs(b), f"iteration {it}: {a} vs {b}"


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    """A short pretrain at TP=1 (640 rows) and its losses."""
    tmp = tmp_path_factory.mktemp("stage1")
    _, log = pretrain(tmp, "stage1", STAGE + ["--save", tmp / "ckpt"])
    assert padded_rows(tmp / "ckpt" / "iter_0000003") == 640
    return tmp / "ckpt", train_losses(log)


@pytest.fixture(scope="module")
def stage2_tp1(stage1, tmp_path_factory):
    """Stage 2 from stage 1 at TP=1: the reference losses."""
    tmp = tmp_path_factory.mktemp("stage2_tp1")
    _, log = pretrain(tmp, "tp1", STAGE + ["--pretrained-checkpoint", stage1[0]])
    losses = train_losses(log)
    assert losses[0] != stage1[1][0]  # the same first batch: the stage-1 weights were loaded
    return losses


@pytest.mark.parametrize("layout", [
    ["--tensor-model-parallel-size", "2"],
    ["--pipeline-model-parallel-size", "2", "--num-layers", "2"],
], ids=["tp2", "pp2"])
def test_stage2_at_another_layout_matches_tp1(tmp_path, stage1, stage2_tp1, layout):
    proc, log = pretrain(tmp_path, "stage2", STAGE + ["--pretrained-checkpoint", stage1[0],
                                                      "--save", tmp_path / "ckpt", *layout], nproc=2)
    assert_close(train_losses(log), stage2_tp1)
    assert padded_rows(tmp_path / "ckpt" / "iter_0000003") == 640  # the checkpoint's, kept
    if "--tensor-model-parallel-size" in layout:
        assert f"513 ids in 640 rows as in {stage1[0]}/iter_0000003 (at TP=2 a fresh run would pad " \
               "to 768" in proc.stdout


def test_checkpoint_saved_at_tp2_resumes_at_tp1(tmp_path):
    ckpt = tmp_path / "ckpt"
    _, tp2 = pretrain(tmp_path, "tp2", VOCAB + ["--global-batch-size", "4", "--train-iters", "6",
                                                "--save", ckpt, "--save-interval", "3",
                                                "--tensor-model-parallel-size", "2"], nproc=2)
    assert padded_rows(ckpt / "iter_0000003") == 768  # a fresh TP=2 run pads to 768
    proc, resumed = pretrain(tmp_path, "tp1", VOCAB + ["--global-batch-size", "4", "--train-iters", "6",
                                                       "--load", ckpt / "iter_0000003"])
    assert "loaded " + str(ckpt / "iter_0000003") + " (iteration 3)" in proc.stdout
    assert_close(train_losses(resumed), train_losses(tp2)[3:])


def test_checkpoint_padding_that_does_not_fit_is_refused(tmp_path, monkeypatch):
    """640 rows do not split over TP=256 (a contrived TP, the same rule as a real mismatch), nor
    hold 1025 ids: refused before the model is built, naming both sizes and the TP."""
    from argparse import Namespace

    from megatron_prealign.checkpointing import store as checkpointing
    from megatron_prealign.training.loop import choose_padded_vocab_size

    iteration = tmp_path / "iter_0000003"
    iteration.mkdir()
    (iteration / "prealign_checkpoint.json").write_text(json.dumps(
        {"format_version": 1, "args": {"padded_vocab_size": 640}}))
    for name in ("metadata.json", "common.pt"):
        (iteration / name).write_text("")
    # The tensor files play no part in the padding decision.
    monkeypatch.setattr(checkpointing, "_shard_files_problem", lambda path: None)

    def choose(tp, ids):
        args = Namespace(load=None, pretrained_checkpoint=str(iteration), tensor_model_parallel_size=tp,
                         make_vocab_size_divisible_by=1)
        return choose_padded_vocab_size(args, ids)

    with pytest.raises(checkpointing.CheckpointError, match=r"has a padded vocabulary of 640 rows, "
                       r"which --tensor-model-parallel-size 256 does not divide"):
        choose(256, 513)
    with pytest.raises(checkpointing.CheckpointError, match="embedding of 640 rows but this run's "
                                                            "tokenizer has 1025 ids"):
        choose(1, 1025)
    assert choose(1, 513) == 640
