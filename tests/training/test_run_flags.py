"""The run's flags are finished in one step and never changed in place afterwards.

``validate_args`` returns new flags (tests/test_arguments.py); ``finalize_args`` adds the padded
vocabulary, which needs the tokenizer and the checkpoint, as another new Namespace; the offline
tools build their one-process flags fresh from the stored ones.
"""

import json
from argparse import Namespace


def _checkpoint(tmp_path, padded_vocab_size):
    """An iteration directory whose metadata is all the padding decision reads."""
    iteration = tmp_path / "iter_0000003"
    iteration.mkdir()
    (iteration / "prealign_checkpoint.json").write_text(json.dumps(
        {"format_version": 1, "args": {"padded_vocab_size": padded_vocab_size}}))
    for name in ("metadata.json", "common.pt"):
        (iteration / name).write_text("")
    return iteration


def test_finalize_args_returns_new_flags_with_the_checkpoints_padding(tmp_path, monkeypatch):
    from megatron_prealign.checkpointing import store as checkpointing
    from megatron_prealign.training.loop import finalize_args

    monkeypatch.setattr(checkpointing, "_shard_files_problem", lambda path: None)
    iteration = _checkpoint(tmp_path, 640)
    args = Namespace(load=None, pretrained_checkpoint=str(iteration), tensor_model_parallel_size=2,
                     make_vocab_size_divisible_by=128)
    given = dict(vars(args))
    finished = finalize_args(args, Namespace(vocab_size=513))
    assert finished.padded_vocab_size == 640  # the checkpoint's rows, not TP=2's 768
    assert vars(args) == given
    assert {k: v for k, v in vars(finished).items() if k != "padded_vocab_size"} == given


def test_finalize_args_without_a_checkpoint_pads_by_megatrons_rule():
    from megatron_prealign.training.loop import finalize_args

    args = Namespace(load=None, pretrained_checkpoint=None, tensor_model_parallel_size=2,
                     make_vocab_size_divisible_by=128)
    assert finalize_args(args, Namespace(vocab_size=513)).padded_vocab_size == 768


def test_single_process_flags_are_built_fresh_from_the_stored_ones():
    from megatron_prealign.checkpointing.offline import single_process_args

    stored = {"tensor_model_parallel_size": 4, "bf16": True, "hidden_size": 64,
              "distributed_timeout_minutes": None, "no_save_optim": False}
    given = dict(stored)
    args = single_process_args(stored, hidden_size=32)
    assert stored == given
    assert (args.tensor_model_parallel_size, args.bf16, args.hidden_size) == (1, False, 32)
    # An older checkpoint without (or with an empty) timeout or seed gets one-process defaults.
    assert (args.distributed_timeout_minutes, args.seed, args.no_save_optim) == (10, 1234, False)
