"""The CLI: its flag set is pinned, and bad combinations fail before any work starts."""

import re
import subprocess
import sys
import time

import pytest

from megatron_prealign.arguments import ArgumentError, build_parser, parse_args, validate_args
from tests.conftest import REPO_ROOT, cpu_only

# Growing the CLI is a reviewed decision: update this list in the same change.
EXPECTED_FLAGS = sorted("""
--adam-beta1 --adam-beta2 --adam-eps --alignment-alpha --alignment-anti-collapse-weight
--alignment-dictionary --alignment-eval-dictionary --alignment-eval-max-words
--alignment-heldout-fraction --alignment-levels --alignment-lm-weight --alignment-max-word-tokens
--alignment-temperature --attention-dropout --bf16 --calculate-per-token-loss --clip-grad
--data-cache-path --data-path --disable-bias-linear --distributed-backend
--distributed-timeout-minutes --english-clone --eod-mask-loss --eval-interval --eval-iters
--exit-duration-in-mins --exit-interval --exit-signal-handler --ffn-hidden-size --finetune --fp16
--fp8-format --fp8-recipe --global-batch-size --group-query-attention --hidden-dropout
--hidden-size --init-method-std --initial-loss-scale --kv-channels --load --log-interval --log-json
--loss-scale --lr --lr-decay-iters --lr-decay-style --lr-warmup-fraction --lr-warmup-init
--lr-warmup-iters --make-vocab-size-divisible-by --max-position-embeddings --micro-batch-size
--min-lr --mock-data --multiple-validation-sets --no-disable-bias-linear --no-load-optim
--no-load-rng --no-save-optim --no-swiglu --no-untie-embeddings-and-output-weights --norm-epsilon
--normalization --num-attention-heads --num-layers --num-query-groups --num-workers
--overlap-grad-reduce --overlap-param-gather --override-save --pipeline-model-parallel-size
--position-embedding-type --pretrained-checkpoint --pretrained-reinit --recompute-granularity --recompute-method
--recompute-num-layers --rotary-base --rotary-percent --save --save-interval --seed --seq-length
--sequence-parallel --split --stage --swiglu --tensor-model-parallel-size --tensorboard-dir
--tokenizer-model --tokenizer-type --train-iters --transformer-impl
--untie-embeddings-and-output-weights --use-cpu-initialization --use-distributed-optimizer
--valid-data-path --vocab-size --wandb-exp-name --wandb-project --weight-decay
""".split())

MOCK = ["--mock-data"]


def test_flag_set_is_pinned():
    parser = build_parser()
    flags = sorted(o for a in parser._actions for o in a.option_strings
                   if o.startswith("--") and o != "--help")
    assert flags == EXPECTED_FLAGS


@pytest.mark.parametrize("argv, world, message", [
    (["--num-attention-heads", "6", "--tensor-model-parallel-size", "4"], 4,
     "--num-attention-heads 6 is not divisible by --tensor-model-parallel-size 4"),
    (["--num-layers", "2", "--pipeline-model-parallel-size", "4"], 4,
     "--pipeline-model-parallel-size 4 is larger than --num-layers 2"),
    (["--fp8-format", "hybrid", "--bf16"], 1, "--fp8-format needs --transformer-impl transformer_engine"),
    (["--transformer-impl", "transformer_engine"], 1, "transformer_engine is not importable"),
    (["--tensor-model-parallel-size", "2"], 3, "world size 3 is not divisible"),
    (["--global-batch-size", "6", "--micro-batch-size", "4"], 1,
     "--global-batch-size 6 is not divisible by --micro-batch-size 4"),
    (["--group-query-attention", "--num-query-groups", "3"], 1, "not divisible by --num-query-groups 3"),
    (["--sequence-parallel"], 1, "--sequence-parallel needs --tensor-model-parallel-size > 1"),
    pytest.param(["--use-distributed-optimizer"], 1, "--use-distributed-optimizer needs CUDA",
                 marks=cpu_only),
    pytest.param(["--bf16"], 1, "--bf16 needs CUDA", marks=cpu_only),
    (["--lr-warmup-fraction", "0.1", "--lr-warmup-iters", "5"], 1, "mutually exclusive"),
    (["--save-interval", "5"], 1, "--save-interval needs --save DIR"),
    (["--override-save"], 1, "--override-save needs --save DIR"),
    (["--seq-length", "1024", "--max-position-embeddings", "512"], 1, "exceeds --max-position-embeddings"),
], ids=lambda x: str(x)[:40])
def test_inconsistent_flags_are_named(argv, world, message):
    with pytest.raises(ArgumentError, match=".*") as err:
        parse_args(MOCK + argv, world_size=world)
    assert message in str(err.value)


def test_data_path_must_exist(tmp_path):
    with pytest.raises(ArgumentError) as err:
        parse_args(["--data-path", "0.5", str(tmp_path / "a"), "0.5", str(tmp_path / "b"),
                    "--tokenizer-type", "NullTokenizer", "--vocab-size", "100"], world_size=1)
    assert str(tmp_path / "a") + ".bin does not exist" in str(err.value)
    with pytest.raises(ArgumentError, match="odd count"):
        parse_args(["--data-path", "0.5", str(tmp_path / "a"), "0.5"], world_size=1)


def test_derived_values():
    args = parse_args(MOCK + ["--hidden-size", "96", "--num-attention-heads", "4",
                              "--micro-batch-size", "2", "--global-batch-size", "16",
                              "--lr-warmup-fraction", "0.1", "--train-iters", "50"], world_size=4)
    assert args.data_parallel_size == 4
    assert args.num_microbatches == 2
    assert args.kv_channels == 24
    assert args.ffn_hidden_size == 256  # Llama 8/3*h rounded up to 64
    assert args.lr_warmup_iters == 5
    assert args.max_position_embeddings == args.seq_length


def test_entry_rejects_bad_flags_before_starting_work():
    start = time.time()
    proc = subprocess.run([sys.executable, "pretrain_prealign.py", "--mock-data", "--hidden-size", "64",
                           "--num-attention-heads", "6"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "--hidden-size 64 is not divisible by --num-attention-heads 6" in proc.stderr
    assert "iteration" not in proc.stdout  # nothing was trained
    assert time.time() - start < 60


def test_alignment_stage_flags(tmp_path):
    dictionary = tmp_path / "d.jsonl"
    dictionary.write_text('{"words": "a $ b"}\n')
    spm = tmp_path / "m.model"
    spm.write_bytes(b"x")
    base = ["--stage", "align", "--tokenizer-type", "SentencePieceTokenizer", "--tokenizer-model", str(spm)]
    with pytest.raises(ArgumentError, match="needs --alignment-dictionary"):
        parse_args(base, world_size=1)
    with pytest.raises(ArgumentError, match="--pipeline-model-parallel-size 1"):
        parse_args(base + ["--alignment-dictionary", str(dictionary),
                           "--pipeline-model-parallel-size", "2"], world_size=2)
    with pytest.raises(ArgumentError, match="unknown level 'layer9'"):
        parse_args(base + ["--alignment-dictionary", str(dictionary), "--alignment-levels",
                           "embedding,layer9"], world_size=1)
    with pytest.raises(ArgumentError, match="alignment_temperature must be a finite number > 0"):
        parse_args(base + ["--alignment-dictionary", str(dictionary),
                           "--alignment-temperature", "0"], world_size=1)
    for flag, value, message in (("--alignment-heldout-fraction", "1.0", "must be in [0, 1), got 1.0"),
                                 ("--alignment-heldout-fraction", "-0.1", "must be in [0, 1), got -0.1"),
                                 ("--alignment-max-word-tokens", "0", "must be >= 1, got 0")):
        with pytest.raises(ArgumentError, match=re.escape(f"{flag} {message}")):
            parse_args(base + ["--alignment-dictionary", str(dictionary), flag, value], world_size=1)
    args = parse_args(base + ["--alignment-dictionary", str(dictionary), "--num-layers", "4",
                              "--alignment-levels", "embedding,layer1-2,output_embedding"], world_size=1)
    assert args.alignment_level_names == ["embedding", "layer1", "layer2", "output_embedding"]
    with pytest.raises(ArgumentError, match="expected NAME=PATH"):
        parse_args(MOCK + ["--alignment-eval-dictionary", str(dictionary)], world_size=1)
    with pytest.raises(ArgumentError, match="needs every layer on one stage"):
        parse_args(MOCK + ["--alignment-eval-dictionary", f"dev={dictionary}",
                           "--pipeline-model-parallel-size", "2"], world_size=2)


def _choices(parser, flag):
    return next(a.choices for a in parser._actions if flag in a.option_strings)


def test_training_accepts_every_tokenizer_type_that_preprocessing_accepts():
    """Shards made with a --tokenizer-type (Llama2Tokenizer, say) must be trainable with it: one
    list for both entry points, and the training side builds each SentencePiece type."""
    import importlib.util

    from megatron_prealign.training.loop import build_run_tokenizer, finalize_args

    tool = REPO_ROOT / "tools" / "preprocess_data.py"
    spec = importlib.util.spec_from_file_location("preprocess_data", tool)
    preprocess = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(preprocess)
    training = _choices(build_parser(), "--tokenizer-type")
    assert list(training) == list(_choices(preprocess.build_parser(), "--tokenizer-type"))
    assert "Llama2Tokenizer" in training
    model = str(REPO_ROOT / "tests" / "fixtures" / "data" / "sp_unigram.model")
    for kind in ("SentencePieceTokenizer", "GPTSentencePieceTokenizer", "Llama2Tokenizer"):
        args = parse_args(MOCK + ["--tokenizer-type", kind, "--tokenizer-model", model], world_size=1)
        tokenizer = build_run_tokenizer(args)
        assert (tokenizer.tokenizer_type, tokenizer.vocab_size) == (kind, 500)
        assert finalize_args(args, tokenizer).padded_vocab_size == 512
        assert not hasattr(args, "padded_vocab_size")  # finalize_args returns new flags


def test_validation_returns_new_flags_and_leaves_the_parsed_ones_as_given(tmp_path):
    """Derived values are filled into the Namespace validate_args returns, never into its input."""
    parsed = build_parser().parse_args(MOCK + ["--pretrained-checkpoint", str(tmp_path),
                                               "--pretrained-reinit", "output_layer"])
    given = dict(vars(parsed))
    args = validate_args(parsed, world_size=1)
    assert vars(parsed) == given
    assert (args.kv_channels, args.global_batch_size, args.pretrained_reinit) == (32, 4, ["output_layer"])
    assert (parsed.kv_channels, parsed.global_batch_size, parsed.pretrained_reinit) == (None, None, "output_layer")
