"""Command-line flags: Megatron-LM's names for everything Megatron-LM has, a PreAlign group beside.

``parse_args()`` parses and validates in one go, before any process group, model or dataset exists,
so an inconsistent combination fails in a second with a message naming the flags involved. The set of
flags is pinned by ``tests/test_arguments.py``: adding one is a reviewed decision.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from typing import List, Optional, Sequence

import torch

from megatron_prealign.alignment.levels import parse_levels
from megatron_prealign.alignment.loss import AlignmentLossConfig
from megatron_prealign.errors import PreAlignError
from megatron_prealign.model.backends import have_transformer_engine
from megatron_prealign.text.tokenizers import SUPPORTED_TYPES as TOKENIZER_TYPES


class ArgumentError(PreAlignError, ValueError):
    """A flag value or combination that cannot work; the message names the flags and the fix."""


def _model_group(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--num-layers", type=int, default=4, help="Transformer layers.")
    g.add_argument("--hidden-size", type=int, default=256, help="Hidden size.")
    g.add_argument("--ffn-hidden-size", type=int, default=None,
                   help="MLP hidden size (default 4*hidden, or the Llama 8/3*hidden with --swiglu).")
    g.add_argument("--num-attention-heads", type=int, default=8, help="Attention heads.")
    g.add_argument("--kv-channels", type=int, default=None, help="Head dim (default hidden/heads).")
    g.add_argument("--group-query-attention", action="store_true", help="Use grouped-query attention.")
    g.add_argument("--num-query-groups", type=int, default=1,
                   help="Key/value head groups with --group-query-attention.")
    g.add_argument("--seq-length", type=int, default=512, help="Training sequence length.")
    g.add_argument("--max-position-embeddings", type=int, default=None,
                   help="Maximum positions (default: --seq-length).")
    g.add_argument("--position-embedding-type", default="rope",
                   choices=["rope", "learned_absolute", "none"], help="Position embedding.")
    g.add_argument("--rotary-percent", type=float, default=1.0, help="Share of head dim rotated.")
    g.add_argument("--rotary-base", type=int, default=10000, help="RoPE base.")
    g.add_argument("--swiglu", action=argparse.BooleanOptionalAction, default=True,
                   help="SwiGLU MLP (Llama). --no-swiglu gives a GeLU MLP.")
    g.add_argument("--normalization", default="RMSNorm", choices=["RMSNorm", "LayerNorm"],
                   help="Norm type.")
    g.add_argument("--norm-epsilon", type=float, default=1e-5, help="Norm epsilon.")
    g.add_argument("--untie-embeddings-and-output-weights", action=argparse.BooleanOptionalAction,
                   default=True, help="Separate output layer (Llama; project default). "
                   "--no-untie-embeddings-and-output-weights ties them.")
    g.add_argument("--disable-bias-linear", action=argparse.BooleanOptionalAction, default=True,
                   help="No biases in linear layers (Llama).")
    g.add_argument("--init-method-std", type=float, default=0.02, help="Init std of weights.")
    g.add_argument("--attention-dropout", type=float, default=0.0, help="Attention dropout.")
    g.add_argument("--hidden-dropout", type=float, default=0.0, help="Hidden dropout.")
    g.add_argument("--make-vocab-size-divisible-by", type=int, default=128,
                   help="Pad the vocabulary to a multiple of this times TP (Megatron-LM rule).")
    g.add_argument("--use-cpu-initialization", action="store_true",
                   help="Build weights on the CPU then slice (always on without CUDA): init is "
                        "then independent of TP/PP.")
    g.add_argument("--recompute-granularity", default=None, choices=["full", "selective"],
                   help="Activation recomputation.")
    g.add_argument("--recompute-method", default=None, choices=["uniform", "block"])
    g.add_argument("--recompute-num-layers", type=int, default=None)


def _parallel_group(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("parallelism")
    g.add_argument("--tensor-model-parallel-size", type=int, default=1, help="TP size.")
    g.add_argument("--pipeline-model-parallel-size", type=int, default=1, help="PP size.")
    g.add_argument("--sequence-parallel", action="store_true", help="Sequence parallelism (needs TP>1).")
    g.add_argument("--use-distributed-optimizer", action="store_true",
                   help="Shard optimizer state over data-parallel ranks (CUDA only).")
    g.add_argument("--overlap-grad-reduce", action="store_true",
                   help="Overlap DP gradient reduce with backward (CUDA only).")
    g.add_argument("--overlap-param-gather", action="store_true",
                   help="Overlap param all-gather with forward (needs the distributed optimizer).")
    g.add_argument("--distributed-backend", default=None, choices=["nccl", "gloo"],
                   help="torch.distributed backend (default: nccl with CUDA, gloo without).")
    g.add_argument("--distributed-timeout-minutes", type=int, default=10)


def _precision_group(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("precision")
    g.add_argument("--bf16", action="store_true", help="BF16 mixed precision (CUDA).")
    g.add_argument("--fp16", action="store_true", help="FP16 mixed precision (CUDA).")
    g.add_argument("--fp8-format", default=None, choices=["e4m3", "hybrid"],
                   help="FP8 through Transformer Engine (H100-class GPUs).")
    g.add_argument("--fp8-recipe", default="delayed",
                   choices=["delayed", "tensorwise", "blockwise", "mxfp8"], help="FP8 recipe.")
    g.add_argument("--transformer-impl", default="local", choices=["local", "transformer_engine"],
                   help="Layer implementation: Megatron-Core local spec (+SDPA) or Transformer Engine.")
    g.add_argument("--loss-scale", type=float, default=None, help="Static loss scale (fp16).")
    g.add_argument("--initial-loss-scale", type=float, default=2.0 ** 32)


def _training_group(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("training")
    g.add_argument("--micro-batch-size", type=int, default=4, help="Samples per microbatch per rank.")
    g.add_argument("--global-batch-size", type=int, default=None,
                   help="Samples per step over all DP ranks (default micro-batch x DP).")
    g.add_argument("--train-iters", type=int, default=100, help="Optimizer steps.")
    g.add_argument("--lr", type=float, default=3e-4, help="Peak learning rate.")
    g.add_argument("--min-lr", type=float, default=0.0, help="Final learning rate.")
    g.add_argument("--lr-decay-style", default="cosine",
                   choices=["constant", "linear", "cosine", "inverse-square-root", "WSD"])
    g.add_argument("--lr-decay-iters", type=int, default=None, help="Default: --train-iters.")
    g.add_argument("--lr-warmup-fraction", type=float, default=None,
                   help="Warmup as a fraction of --lr-decay-iters.")
    g.add_argument("--lr-warmup-iters", type=int, default=0, help="Warmup steps.")
    g.add_argument("--lr-warmup-init", type=float, default=0.0)
    g.add_argument("--weight-decay", type=float, default=0.01)
    g.add_argument("--adam-beta1", type=float, default=0.9)
    g.add_argument("--adam-beta2", type=float, default=0.999)
    g.add_argument("--adam-eps", type=float, default=1e-8)
    g.add_argument("--clip-grad", type=float, default=1.0, help="Global grad-norm clip (0: off).")
    g.add_argument("--seed", type=int, default=1234, help="Seed of init, data order and dropout.")
    g.add_argument("--calculate-per-token-loss", action="store_true",
                   help="Average the loss over tokens of the global batch, not per microbatch.")


def _data_group(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("data")
    g.add_argument("--data-path", nargs="*", default=None,
                   help="Shard prefixes, optionally weighted: 'w1 prefix1 w2 prefix2 ...'.")
    g.add_argument("--split", default="969,30,1", help="Train,valid,test split of each prefix.")
    g.add_argument("--valid-data-path", nargs="*", default=None,
                   help="Validation shards (optionally weighted); replaces the validation share of "
                        "--split, and --data-path is then used whole for training.")
    g.add_argument("--multiple-validation-sets", action="store_true",
                   help="Evaluate each --valid-data-path prefix on its own ('lm loss <name>').")
    g.add_argument("--mock-data", action="store_true", help="Synthetic tokens (no --data-path).")
    g.add_argument("--tokenizer-type", default=None, choices=TOKENIZER_TYPES,
                   help="Megatron-LM's tokenizer name; the same list as tools/preprocess_data.py.")
    g.add_argument("--tokenizer-model", default=None, help="Tokenizer model file or directory.")
    g.add_argument("--vocab-size", type=int, default=None, help="Vocabulary of NullTokenizer.")
    g.add_argument("--english-clone", action="store_true",
                   help="Double the tokenizer's vocabulary for English-Clone (clone id = id + |V|).")
    g.add_argument("--data-cache-path", default=None, help="Where GPTDataset caches its indices.")
    g.add_argument("--eod-mask-loss", action="store_true", help="No loss on EOD tokens.")
    g.add_argument("--num-workers", type=int, default=0, help="DataLoader workers.")


def _checkpoint_group(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("checkpointing")
    g.add_argument("--save", default=None,
                   help="Checkpoint directory to save to. One that holds another run's checkpoints is "
                        "refused unless this run resumes it (--load the same directory) or "
                        "--override-save is given; one job at a time may write there.")
    g.add_argument("--override-save", action="store_true",
                   help="Let this run save into a --save directory that holds another run's "
                        "checkpoints: its iteration directories are replaced as this run reaches "
                        "them and the tracker follows this run.")
    g.add_argument("--load", default=None, help="Checkpoint directory to resume from.")
    g.add_argument("--save-interval", type=int, default=None, help="Save every N steps.")
    g.add_argument("--no-load-optim", action="store_true", help="Do not load optimizer state.")
    g.add_argument("--no-load-rng", action="store_true", help="Do not load RNG state.")
    g.add_argument("--finetune", action="store_true",
                   help="Load weights only; reset iteration, optimizer, scheduler and data position.")
    g.add_argument("--no-save-optim", action="store_true")
    g.add_argument("--pretrained-checkpoint", default=None,
                   help="Start from these weights (fresh optimizer, scheduler, iteration, data "
                        "position; resharded to this run's TP/PP) unless --load holds a checkpoint "
                        "to resume. Stage 2 starts from stage 1 this way.")
    g.add_argument("--pretrained-reinit", default=None,
                   help="With --pretrained-checkpoint: comma list of parameter-name substrings "
                        "(e.g. output_layer,final_layernorm) that keep their fresh initialization "
                        "instead of the checkpoint's values.")


def _logging_group(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("logging and evaluation")
    g.add_argument("--log-interval", type=int, default=10)
    g.add_argument("--tensorboard-dir", default=None)
    g.add_argument("--wandb-project", default=None, help="Log to Weights & Biases (if installed).")
    g.add_argument("--wandb-exp-name", default=None)
    g.add_argument("--eval-interval", type=int, default=None, help="Evaluate every N steps.")
    g.add_argument("--eval-iters", type=int, default=10, help="Batches per evaluation.")
    g.add_argument("--log-json", default=None,
                   help="Append one JSON line per log/eval event to this file (rank 0).")


def _exit_group(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("exit control")
    g.add_argument("--exit-interval", type=int, default=None, help="Save and exit at a multiple of N.")
    g.add_argument("--exit-duration-in-mins", type=float, default=None,
                   help="Save and exit after this many minutes of training.")
    g.add_argument("--exit-signal-handler", action="store_true",
                   help="On SIGTERM (any rank): save a checkpoint and exit 0.")


def _prealign_group(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("PreAlign")
    g.add_argument("--stage", default="pretrain", choices=["pretrain", "align"],
                   help="pretrain: (code-switched) LM pretraining (stage 2); align: stage-1 alignment "
                        "initialization on --alignment-dictionary.")
    g.add_argument("--alignment-dictionary", default=None,
                   help="Stage 1: dictionary to align (pairs 'src<TAB>tgt' or multi-way JSONL "
                        "{'words': 'a $ b $ c'}). --micro-batch-size counts its entries.")
    g.add_argument("--alignment-max-word-tokens", type=int, default=30,
                   help="Words longer than this many tokens are dropped and counted (authors: 30).")
    g.add_argument("--alignment-heldout-fraction", type=float, default=0.05,
                   help="Share of dictionary entries held out of stage-1 training for metrics.")
    g.add_argument("--alignment-levels", default="all",
                   help="Levels aligned in stage 1: all, or a comma list of embedding, layers, "
                        "layerK, layerA-B, final_norm, output_embedding.")
    g.add_argument("--alignment-temperature", type=float, default=0.1, help="InfoNCE temperature (paper 0.1).")
    g.add_argument("--alignment-alpha", type=float, default=0.1,
                   help="Weight of the contrastive loss (authors' code 0.1).")
    g.add_argument("--alignment-lm-weight", type=float, default=1.0,
                   help="Weight of the LM loss on dictionary words.")
    g.add_argument("--alignment-anti-collapse-weight", type=float, default=0.0,
                   help="Weight of max(0, mean off-diagonal cosine) per level (authors' code: on).")
    g.add_argument("--alignment-eval-dictionary", nargs="*", default=[], metavar="NAME=PATH",
                   help="Dictionaries whose alignment (per-level cosine, P@1) is measured at every "
                        "evaluation, in stage 1 and stage 2, e.g. heldout=dev.jsonl unseen=u.jsonl.")
    g.add_argument("--alignment-eval-max-words", type=int, default=4000,
                   help="Cap on words per evaluation dictionary (the first entries are kept).")


def build_parser(extra_groups: Sequence = ()) -> argparse.ArgumentParser:
    """The full parser: Megatron-LM groups, then the PreAlign group, then any extras."""
    parser = argparse.ArgumentParser(
        prog="pretrain_prealign.py", allow_abbrev=False,
        description="Megatron-Core pretraining with PreAlign (flags follow Megatron-LM's pretrain_gpt.py).",
    )
    for add in (_model_group, _parallel_group, _precision_group, _training_group, _data_group,
                _checkpoint_group, _logging_group, _exit_group, _prealign_group, *extra_groups):
        add(parser)
    return parser


def _fail(message: str) -> None:
    raise ArgumentError(message)


def validate_args(parsed: argparse.Namespace, world_size: Optional[int] = None) -> argparse.Namespace:
    """The finished run flags: every check passed and every derived value filled in.

    Returns a new Namespace (``parsed`` is left as argparse made it); nothing changes it afterwards
    except ``training.loop.finalize_args``, which returns another new Namespace with the one value
    that needs the tokenizer and the checkpoint (``padded_vocab_size``). The sections run in this
    order because it decides which error a user with several problems sees first, and later
    sections read values that earlier ones derive (``data_parallel_size``,
    ``max_position_embeddings``).

    Raises:
        ArgumentError: the first problem found, naming the flags involved.
    """
    args = argparse.Namespace(**vars(parsed))
    _validate_parallel_layout(args, world_size or int(os.environ.get("WORLD_SIZE", "1")))
    _validate_model_shape(args)
    _validate_parallelism_and_precision(args)
    _validate_batch(args)
    _validate_schedule(args)
    _validate_data(args)
    _validate_checkpointing(args)
    _validate_logging_and_evaluation(args)
    return args


def _validate_parallel_layout(args: argparse.Namespace, world_size: int) -> None:
    """TP x PP divides the world; fills ``world_size`` and ``data_parallel_size``."""
    tp, pp = args.tensor_model_parallel_size, args.pipeline_model_parallel_size
    if tp < 1 or pp < 1:
        _fail("--tensor-model-parallel-size and --pipeline-model-parallel-size must be >= 1")
    if world_size % (tp * pp):
        _fail(f"world size {world_size} is not divisible by --tensor-model-parallel-size {tp} x "
              f"--pipeline-model-parallel-size {pp}")
    args.world_size = world_size
    args.data_parallel_size = world_size // (tp * pp)


def _validate_model_shape(args: argparse.Namespace) -> None:
    """Heads, groups, MLP and layers split over TP/PP; fills ``kv_channels``, ``ffn_hidden_size``
    and ``max_position_embeddings`` when not given."""
    tp, pp = args.tensor_model_parallel_size, args.pipeline_model_parallel_size
    if args.num_attention_heads % tp:
        _fail(f"--num-attention-heads {args.num_attention_heads} is not divisible by "
              f"--tensor-model-parallel-size {tp}")
    if args.kv_channels is None:
        if args.hidden_size % args.num_attention_heads:
            _fail(f"--hidden-size {args.hidden_size} is not divisible by --num-attention-heads "
                  f"{args.num_attention_heads}; set --kv-channels")
        args.kv_channels = args.hidden_size // args.num_attention_heads
    if args.group_query_attention:
        if args.num_attention_heads % args.num_query_groups:
            _fail(f"--num-attention-heads {args.num_attention_heads} is not divisible by "
                  f"--num-query-groups {args.num_query_groups}")
        if args.num_query_groups % tp:
            _fail(f"--num-query-groups {args.num_query_groups} is not divisible by "
                  f"--tensor-model-parallel-size {tp}")
    if args.ffn_hidden_size is None:
        if args.swiglu:  # Llama: 2/3 of 4h, rounded up to a multiple of 64
            args.ffn_hidden_size = int(math.ceil(8 * args.hidden_size / 3 / 64) * 64)
        else:
            args.ffn_hidden_size = 4 * args.hidden_size
    if args.ffn_hidden_size % tp:
        _fail(f"--ffn-hidden-size {args.ffn_hidden_size} is not divisible by "
              f"--tensor-model-parallel-size {tp}")
    if pp > args.num_layers:
        _fail(f"--pipeline-model-parallel-size {pp} is larger than --num-layers {args.num_layers}")
    if args.num_layers % pp:
        _fail(f"--num-layers {args.num_layers} is not divisible by --pipeline-model-parallel-size {pp}")
    if args.max_position_embeddings is None:
        args.max_position_embeddings = args.seq_length
    if args.seq_length > args.max_position_embeddings:
        _fail(f"--seq-length {args.seq_length} exceeds --max-position-embeddings "
              f"{args.max_position_embeddings}")
    if not 0.0 < args.rotary_percent <= 1.0:
        _fail("--rotary-percent must be in (0, 1]")


def _validate_parallelism_and_precision(args: argparse.Namespace) -> None:
    """Sequence parallelism, mixed precision, FP8 and the GPU-only features; fills
    ``distributed_backend`` (nccl with CUDA, gloo without)."""
    cuda = torch.cuda.is_available()
    tp = args.tensor_model_parallel_size
    if args.sequence_parallel and tp == 1:
        _fail("--sequence-parallel needs --tensor-model-parallel-size > 1")
    if args.sequence_parallel and args.seq_length % tp:
        _fail(f"--sequence-parallel: --seq-length {args.seq_length} is not divisible by TP {tp}")
    if args.bf16 and args.fp16:
        _fail("--bf16 and --fp16 are mutually exclusive")
    if args.fp8_format:
        if args.transformer_impl != "transformer_engine":
            _fail("--fp8-format needs --transformer-impl transformer_engine")
        if not (args.bf16 or args.fp16):
            _fail("--fp8-format needs --bf16 (or --fp16) as the higher-precision format")
    if args.transformer_impl == "transformer_engine":
        if not have_transformer_engine():
            _fail("--transformer-impl transformer_engine: transformer_engine is not importable; "
                  "install transformer-engine[pytorch] (NGC containers ship it) or use "
                  "--transformer-impl local" + (" and drop --fp8-format" if args.fp8_format else ""))
    if not cuda:
        _refuse_gpu_only_flags(args)
    if args.overlap_param_gather and not args.use_distributed_optimizer:
        _fail("--overlap-param-gather needs --use-distributed-optimizer")
    if args.distributed_backend is None:
        args.distributed_backend = "nccl" if cuda else "gloo"


def _refuse_gpu_only_flags(args: argparse.Namespace) -> None:
    """On a machine without CUDA: the first flag that Megatron-Core implements only for GPUs."""
    for flag, on in (("--bf16", args.bf16), ("--fp16", args.fp16),
                     ("--use-distributed-optimizer", args.use_distributed_optimizer),
                     ("--overlap-grad-reduce", args.overlap_grad_reduce),
                     ("--overlap-param-gather", args.overlap_param_gather),
                     ("--fp8-format", bool(args.fp8_format)),
                     ("--recompute-granularity", bool(args.recompute_granularity))):
        if on:
            _fail(f"{flag} needs CUDA (Megatron-Core's implementation is GPU-only); "
                  f"this machine has no GPU: drop {flag}")
    if args.distributed_backend == "nccl":
        _fail("--distributed-backend nccl needs CUDA; use gloo")


def _validate_batch(args: argparse.Namespace) -> None:
    """Batch sizes; fills ``global_batch_size`` (micro-batch x DP when not given) and
    ``num_microbatches``."""
    dp = args.data_parallel_size
    for flag, value in (("--micro-batch-size", args.micro_batch_size),
                        ("--global-batch-size", args.global_batch_size),
                        ("--eval-iters", args.eval_iters)):
        if value is not None and value < 1:
            _fail(f"{flag} must be >= 1, got {value}")
    if args.global_batch_size is None:
        args.global_batch_size = args.micro_batch_size * dp
    if args.global_batch_size % (args.micro_batch_size * dp):
        _fail(f"--global-batch-size {args.global_batch_size} is not divisible by "
              f"--micro-batch-size {args.micro_batch_size} x data-parallel size {dp}")
    args.num_microbatches = args.global_batch_size // (args.micro_batch_size * dp)


def _validate_schedule(args: argparse.Namespace) -> None:
    """Learning-rate schedule and length; fills ``lr_decay_iters`` (default ``--train-iters``) and
    ``lr_warmup_iters`` from ``--lr-warmup-fraction``."""
    if args.lr_decay_iters is None:
        args.lr_decay_iters = args.train_iters
    if args.lr_warmup_fraction is not None:
        if args.lr_warmup_iters:
            _fail("--lr-warmup-fraction and --lr-warmup-iters are mutually exclusive")
        if not 0.0 <= args.lr_warmup_fraction < 1.0:
            _fail("--lr-warmup-fraction must be in [0, 1)")
        args.lr_warmup_iters = int(args.lr_warmup_fraction * args.lr_decay_iters)
    if args.min_lr > args.lr:
        _fail(f"--min-lr {args.min_lr} is larger than --lr {args.lr}")
    if args.train_iters < 1:
        _fail("--train-iters must be >= 1")


def _validate_data(args: argparse.Namespace) -> None:
    """Where the tokens come from (shards, mock data or stage 1's dictionary) and the tokenizer.

    Stage 1 is checked right after ``--mock-data``/``--data-path`` exclude each other and before the
    shard checks, so that ``--stage align`` with ``--data-path`` hears "drop --data-path" rather than
    a complaint about the shard. Fills ``tokenizer_type`` (NullTokenizer for mock data) and
    ``vocab_size`` (8192 for mock data).
    """
    if args.mock_data and args.data_path:
        _fail("--mock-data and --data-path are mutually exclusive")
    if args.stage == "align":
        _validate_alignment_stage(args)
    if not args.mock_data and not args.data_path and args.stage == "pretrain":
        _fail("give --data-path PREFIX (a preprocessed shard, see tools/preprocess_data.py) "
              "or --mock-data")
    if args.data_path:
        _check_data_path(args.data_path)
    if args.valid_data_path:
        if not args.data_path:
            _fail("--valid-data-path needs --data-path for the training data")
        _check_data_path(args.valid_data_path)
    if args.multiple_validation_sets and not args.valid_data_path:
        _fail("--multiple-validation-sets needs --valid-data-path")
    _validate_tokenizer(args)


def _validate_tokenizer(args: argparse.Namespace) -> None:
    """A tokenizer type and what it needs (a model file, or a vocabulary size for NullTokenizer)."""
    if args.tokenizer_type is None:
        args.tokenizer_type = "NullTokenizer" if args.mock_data else None
    if args.tokenizer_type is None:
        _fail("--tokenizer-type is required with --data-path")
    if args.tokenizer_type == "NullTokenizer":
        if args.vocab_size is None:
            if args.mock_data:
                args.vocab_size = 8192
            else:
                _fail("--tokenizer-type NullTokenizer needs --vocab-size")
    elif not args.tokenizer_model:
        _fail(f"--tokenizer-type {args.tokenizer_type} needs --tokenizer-model")
    elif not os.path.exists(args.tokenizer_model):
        _fail(f"--tokenizer-model {args.tokenizer_model}: no such file or directory")


def _validate_checkpointing(args: argparse.Namespace) -> None:
    """Save, load, exit-with-save and pretrained-start flags; turns ``--pretrained-reinit``'s comma
    list into a list of names."""
    if args.save_interval is not None and args.save_interval < 1:
        _fail("--save-interval must be >= 1")
    if args.save_interval and not args.save:
        _fail("--save-interval needs --save DIR")
    if args.override_save and not args.save:
        _fail("--override-save needs --save DIR")
    if args.exit_signal_handler and not args.save:
        _fail("--exit-signal-handler saves a checkpoint on SIGTERM: give --save DIR")
    if args.finetune and not args.load:
        _fail("--finetune needs --load DIR")
    if args.pretrained_checkpoint and not os.path.isdir(args.pretrained_checkpoint):
        _fail(f"--pretrained-checkpoint {args.pretrained_checkpoint}: no such directory")
    if args.pretrained_reinit and not args.pretrained_checkpoint:
        _fail("--pretrained-reinit needs --pretrained-checkpoint")
    args.pretrained_reinit = [n.strip() for n in (args.pretrained_reinit or "").split(",") if n.strip()]
    if args.pretrained_checkpoint and args.finetune:
        _fail("--pretrained-checkpoint already loads weights only; drop --finetune")


def _validate_logging_and_evaluation(args: argparse.Namespace) -> None:
    """Evaluation dictionaries and intervals; fills ``alignment_eval_sets`` ({name: path})."""
    args.alignment_eval_sets = _parse_eval_dictionaries(args.alignment_eval_dictionary)
    if args.alignment_eval_sets and args.pipeline_model_parallel_size > 1:
        _fail("--alignment-eval-dictionary needs every layer on one stage: use "
              "--pipeline-model-parallel-size 1 for runs that measure alignment")
    if args.eval_interval is not None and args.eval_interval < 1:
        _fail("--eval-interval must be >= 1")
    if args.log_interval < 1:
        _fail("--log-interval must be >= 1")


def _validate_alignment_stage(args: argparse.Namespace) -> None:
    """Stage 1 (``--stage align``): its dictionary, layout, tokenizer and loss weights; fills
    ``alignment_level_names``."""
    if not args.alignment_dictionary:
        _fail("--stage align needs --alignment-dictionary FILE (pairs or multi-way JSONL)")
    if not os.path.isfile(args.alignment_dictionary):
        _fail(f"--alignment-dictionary {args.alignment_dictionary}: no such file")
    if args.pipeline_model_parallel_size > 1:
        _fail("--stage align runs with --pipeline-model-parallel-size 1 (every level must be on one "
              "stage); its checkpoint loads into stage 2 at any TP/PP")
    if args.data_path or args.mock_data:
        _fail("--stage align trains on --alignment-dictionary only; drop --data-path/--mock-data")
    if args.tokenizer_type in (None, "NullTokenizer"):
        _fail("--stage align needs a real tokenizer (--tokenizer-type SentencePieceTokenizer or "
              "HuggingFaceTokenizer) to tokenize the dictionary words")
    if not 0.0 <= args.alignment_heldout_fraction < 1.0:
        _fail(f"--alignment-heldout-fraction must be in [0, 1), got {args.alignment_heldout_fraction}")
    if args.alignment_max_word_tokens < 1:
        _fail(f"--alignment-max-word-tokens must be >= 1, got {args.alignment_max_word_tokens}")
    if args.alignment_max_word_tokens > args.max_position_embeddings:
        _fail(f"--alignment-max-word-tokens {args.alignment_max_word_tokens} exceeds "
              f"--max-position-embeddings {args.max_position_embeddings}")

    try:
        args.alignment_level_names = parse_levels(args.alignment_levels, args.num_layers)
    except ValueError as err:
        _fail(str(err))

    try:
        AlignmentLossConfig(args.alignment_alpha, args.alignment_lm_weight,
                            args.alignment_temperature, args.alignment_anti_collapse_weight)
    except ValueError as err:
        _fail(str(err))


def _parse_eval_dictionaries(items: List[str]) -> dict:
    sets = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            _fail(f"--alignment-eval-dictionary: expected NAME=PATH, got {item!r}")
        if not os.path.isfile(path):
            _fail(f"--alignment-eval-dictionary {name}: {path} does not exist")
        if name in sets:
            _fail(f"--alignment-eval-dictionary: the name {name!r} is used twice")
        sets[name] = path
    return sets


def _check_data_path(data_path: List[str]) -> None:
    """Megatron blend syntax: either all prefixes, or alternating weight/prefix pairs."""
    def is_number(x: str) -> bool:
        try:
            float(x)
            return True
        except ValueError:
            return False

    if is_number(data_path[0]):
        if len(data_path) % 2:
            _fail("--data-path: weighted form needs 'weight prefix' pairs, got an odd count")
        pairs = list(zip(data_path[0::2], data_path[1::2]))
        for weight, prefix in pairs:
            if not is_number(weight):
                _fail(f"--data-path: expected a weight before {prefix!r}, got {weight!r}")
            if float(weight) < 0:
                _fail(f"--data-path: negative weight {weight} for {prefix}")
        prefixes = [p for _, p in pairs]
    else:
        prefixes = data_path
    for prefix in prefixes:
        for suffix in (".bin", ".idx"):
            if not os.path.isfile(prefix + suffix):
                _fail(f"--data-path: {prefix + suffix} does not exist (a prefix names the shard "
                      "without .bin/.idx, e.g. out/corpus_text_document)")


def padded_vocab_size(vocab_size: int, divisible_by: int, tp: int) -> int:
    """Megatron-LM's rule: pad the vocabulary to a multiple of divisible_by x TP."""
    multiple = divisible_by * tp
    return int(math.ceil(vocab_size / multiple) * multiple)


def parse_args(argv: Optional[Sequence[str]] = None, world_size: Optional[int] = None,
               extra_groups: Sequence = ()) -> argparse.Namespace:
    """Parse and validate ``argv`` (default ``sys.argv``)."""
    args = build_parser(extra_groups).parse_args(argv)
    return validate_args(args, world_size)


def args_to_json(args: argparse.Namespace) -> str:
    """Run arguments as JSON (stored in checkpoints instead of a pickled Namespace)."""
    return json.dumps({k: v for k, v in sorted(vars(args).items())
                       if isinstance(v, (int, float, str, bool, list, type(None)))}, indent=1)
