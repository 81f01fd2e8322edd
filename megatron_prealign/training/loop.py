"""The training loop, assembled from Megatron-Core parts.

The entry points first build the tokenizer and finish the run's flags with it
(``build_run_tokenizer``, ``finalize_args``: the one step after ``validate_args``, returning new
flags; nothing changes them in place). ``setup`` then builds, in order: process groups
(``parallel_state``), the lock on ``--save`` (held by rank 0 until ``run_entry`` ends), this rank's
``GPTModel`` chunk wrapped in Megatron-Core's ``DistributedDataParallel``, the Megatron optimizer
(``get_megatron_optimizer``: distributed optimizer on GPU when asked), the
``OptimizerParamScheduler``, and restores a checkpoint. ``train`` then repeats ``train_step`` and
delegates to ``save``, ``evaluate`` and the exit controller. Stage 1 (alignment) and stage 2
(pretraining) share all of it and differ only in their ``forward_step`` and data.
"""

from __future__ import annotations

import contextlib
import os
import time
from argparse import Namespace
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional

import torch

from megatron_prealign.arguments import padded_vocab_size
from megatron_prealign.checkpointing import store as checkpointing
from megatron_prealign.checkpointing.store import LOCK_FILENAME, CheckpointError, unwrap
from megatron_prealign.distributed import destroy, device, initialize_distributed
from megatron_prealign.errors import PreAlignError, user_message
from megatron_prealign.files import OutputError, output_lock
from megatron_prealign.model import build_model, transformer_config_from_args
from megatron_prealign.text.tokenizers import build_tokenizer
from megatron_prealign.training.exit import ExitController
from megatron_prealign.training.logger import TrainingLogger
from megatron_prealign.training.step import evaluate, train_step

EvalCallback = Callable[[List[torch.nn.Module], int], Dict[str, float]]

# Locks that live as long as the run (``--save``'s), released when ``run_entry`` ends.
_run_locks = contextlib.ExitStack()
_locked_paths: set = set()


@dataclass
class TrainingState:
    """Everything the loop mutates; restored from checkpoints."""

    args: Namespace
    tokenizer: object
    model: List[torch.nn.Module]
    optimizer: object
    scheduler: object
    iteration: int = 0
    consumed_samples: int = 0


def build_run_tokenizer(args: Namespace):
    """This run's tokenizer, as its flags describe it (``--english-clone`` doubles it)."""
    return build_tokenizer(args.tokenizer_type, args.tokenizer_model,
                           vocab_size=args.vocab_size, english_clone=args.english_clone)


def finalize_args(args: Namespace, tokenizer) -> Namespace:
    """The run's finished flags: ``args`` plus ``padded_vocab_size``, as a new Namespace.

    ``validate_args`` derives every value the flags alone decide. The embedding's row count also
    depends on the tokenizer's vocabulary and on the checkpoint the run starts from
    (``choose_padded_vocab_size``), so it is filled here, once per run: after the tokenizer is built
    and before anything reads it (the data checks, the model, the checkpoint metadata). ``args`` is
    left as it was; nothing changes the returned flags afterwards.

    Raises:
        CheckpointError: see ``choose_padded_vocab_size``.
    """
    padded = choose_padded_vocab_size(args, tokenizer.vocab_size)
    return Namespace(**{**vars(args), "padded_vocab_size": padded})


def choose_padded_vocab_size(args: Namespace, vocab_size: int) -> int:
    """The embedding's row count: the checkpoint's when this run loads one, else Megatron's rule.

    Megatron-LM pads the vocabulary to a multiple of --make-vocab-size-divisible-by x TP, so the same
    tokenizer pads differently at another TP (513 ids: 640 rows at TP=1, 768 at TP=2) and a stage-1
    checkpoint would not load into a stage 2 at another layout. The padding rows carry no token:
    keeping the checkpoint's count (when it holds every id and splits over this TP) gives the
    same model at every layout. Runs before the model is built.

    Raises:
        CheckpointError: the checkpoint's rows are fewer than the tokenizer's ids, or do not split
            over this run's TP; or the checkpoint cannot be read.
    """
    tp = args.tensor_model_parallel_size
    own = padded_vocab_size(vocab_size, args.make_vocab_size_divisible_by, tp)
    source = checkpointing.checkpoint_source(args)
    if source is None:
        return own
    path = checkpointing.find_checkpoint(source)
    saved = checkpointing.read_meta(path)["args"].get("padded_vocab_size")
    if saved is None or saved == own:
        return own
    if saved < vocab_size:
        raise checkpointing.CheckpointError(
            f"{path} has an embedding of {saved} rows but this run's tokenizer has {vocab_size} ids: "
            "the checkpoint was trained with another tokenizer (--tokenizer-model, --vocab-size, "
            "--english-clone)")
    if saved % tp:
        raise checkpointing.CheckpointError(
            f"{path} has a padded vocabulary of {saved} rows, which --tensor-model-parallel-size {tp} "
            f"does not divide (this run alone would pad {vocab_size} ids to {own}); choose a TP that "
            f"divides {saved}")
    if _rank() == 0:  # finalize_args asks once per run
        print(f"vocabulary: {vocab_size} ids in {saved} rows as in {path} (at TP={tp} a fresh run "
              f"would pad to {own}; padding rows hold no token)", flush=True)
    return saved


def _rank() -> int:
    if torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return int(os.environ.get("RANK", "0"))


def build_optimizer(args: Namespace, model: List[torch.nn.Module]):
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

    config = OptimizerConfig(
        optimizer="adam", lr=args.lr, min_lr=args.min_lr, weight_decay=args.weight_decay,
        adam_beta1=args.adam_beta1, adam_beta2=args.adam_beta2, adam_eps=args.adam_eps,
        clip_grad=args.clip_grad, bf16=args.bf16, fp16=args.fp16,
        params_dtype=torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else torch.float32,
        loss_scale=args.loss_scale, initial_loss_scale=args.initial_loss_scale,
        use_distributed_optimizer=args.use_distributed_optimizer,
        overlap_param_gather=args.overlap_param_gather,
    )
    optimizer = get_megatron_optimizer(config, model)
    scheduler = OptimizerParamScheduler(
        optimizer,
        init_lr=args.lr_warmup_init,
        max_lr=args.lr,
        min_lr=args.min_lr,
        lr_warmup_steps=args.lr_warmup_iters * args.global_batch_size,
        lr_decay_steps=args.lr_decay_iters * args.global_batch_size,
        lr_decay_style=args.lr_decay_style,
        start_wd=args.weight_decay,
        end_wd=args.weight_decay,
        wd_incr_steps=args.train_iters * args.global_batch_size,
        wd_incr_style="constant",
        use_checkpoint_opt_param_scheduler=True,
        override_opt_param_scheduler=False,
        wsd_decay_steps=None,
        lr_wsd_decay_style=None,
    )
    return optimizer, scheduler


def setup(args: Namespace, model_builder: Optional[Callable] = None, tokenizer=None) -> TrainingState:
    """Build process groups, model, optimizer and scheduler; load ``--load``.

    The entry points build the tokenizer and the finished flags (``build_run_tokenizer``,
    ``finalize_args``) before their data checks and pass both. Without ``tokenizer`` (tests,
    benchmarks) setup builds them itself from the validated ``args``. ``state.args`` holds the
    finished flags either way: read them there, not from the ``args`` passed in.
    """
    initialize_distributed(args)
    lock_save_dir(args)
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
    from megatron.core.distributed.finalize_model_grads import finalize_model_grads

    if tokenizer is None:
        tokenizer = build_run_tokenizer(args)
        args = finalize_args(args, tokenizer)
    elif not hasattr(args, "padded_vocab_size"):
        raise TypeError("setup(args, tokenizer=...) needs the finished flags: pass "
                        "finalize_args(args, tokenizer)")
    config = transformer_config_from_args(args)
    config.calculate_per_token_loss = args.calculate_per_token_loss
    chunk = (model_builder or build_model)(args, config)
    ddp_config = DistributedDataParallelConfig(
        grad_reduce_in_fp32=args.bf16 or args.fp16,
        overlap_grad_reduce=args.overlap_grad_reduce,
        overlap_param_gather=args.overlap_param_gather,
        use_distributed_optimizer=args.use_distributed_optimizer,
        check_for_nan_in_grad=False,
    )
    model = [DistributedDataParallel(config=config, ddp_config=ddp_config, module=chunk)]
    optimizer, scheduler = build_optimizer(args, model)
    config.finalize_model_grads_func = finalize_model_grads
    config.grad_scale_func = optimizer.scale_loss
    if args.overlap_grad_reduce:  # GPU only (validated): as Megatron-LM wires its DDP
        config.no_sync_func = model[0].no_sync
        config.grad_sync_func = model[0].start_grad_sync
    state = TrainingState(args=args, tokenizer=tokenizer, model=model, optimizer=optimizer,
                          scheduler=scheduler)
    restore(state)
    return state


def lock_save_dir(args: Namespace) -> None:
    """Rank 0 locks ``--save`` (``DIR/.lock``) until ``run_entry`` ends: a second job writing
    there is refused. The outcome is agreed over all ranks, so every rank stops together."""
    if not args.save:
        return
    path = os.path.join(os.path.abspath(args.save), LOCK_FILENAME)
    refusal = None
    if torch.distributed.get_rank() == 0 and path not in _locked_paths:
        try:
            _run_locks.enter_context(output_lock(path, f"--save {args.save}"))
            _locked_paths.add(path)
        except OutputError as err:
            refusal = err
    failed = torch.tensor([float(refusal is not None)], device=device())
    torch.distributed.all_reduce(failed, op=torch.distributed.ReduceOp.MAX)
    if refusal is not None:
        raise refusal
    if failed.item():
        raise CheckpointError(f"--save {args.save}: rank 0 could not lock it (see rank 0's error)")


def restore(state: TrainingState) -> None:
    """Resume ``--load`` if it holds a checkpoint; else start from ``--pretrained-checkpoint``'s
    weights (fresh optimizer, schedule, iteration and data position) or from scratch."""
    args = state.args
    rank0 = torch.distributed.get_rank() == 0
    source = checkpointing.checkpoint_source(args)
    if source is not None and source == args.load:
        loaded = checkpointing.load_checkpoint(  # raises a clear error for a damaged directory
            args.load, state.model, state.optimizer, state.scheduler, args,
            load_optimizer=not (args.finetune or args.no_load_optim),
            load_rng=not (args.finetune or args.no_load_rng))
        if not args.finetune:
            state.iteration, state.consumed_samples = loaded.iteration, loaded.consumed_samples
        if args.finetune or args.no_load_optim:
            state.optimizer.reload_model_params()  # main (fp32) params follow the loaded weights
        if rank0:
            print(f"loaded {loaded.path} (iteration {loaded.iteration})", flush=True)
    elif args.pretrained_checkpoint:
        fresh = _fresh_parameters(state.model, args.pretrained_reinit)
        loaded = checkpointing.load_checkpoint(args.pretrained_checkpoint, state.model, state.optimizer,
                                               state.scheduler, args, load_optimizer=False,
                                               load_rng=False)
        with torch.no_grad():
            for param, value in fresh:
                param.copy_(value)
        # Mixed-precision optimizers keep fp32 main copies made from the fresh model: refresh them.
        state.optimizer.reload_model_params()
        if rank0:
            kept = f"; kept fresh: {', '.join(args.pretrained_reinit)}" if fresh else ""
            print(f"initialized weights from {loaded.path}{kept}", flush=True)
    elif args.load and rank0:
        print(f"no checkpoint in {args.load} yet: starting from scratch", flush=True)


def _fresh_parameters(model, patterns) -> list:
    """(parameter, copy of its fresh value) for the parameters ``--pretrained-reinit`` names."""
    if not patterns:
        return []
    chosen = [(p, p.detach().clone()) for chunk in model
              for name, p in unwrap(chunk).named_parameters() if any(s in name for s in patterns)]
    matched = torch.tensor([len(chosen)], dtype=torch.long, device=device())
    torch.distributed.all_reduce(matched)  # with PP a name may live on another stage only
    if matched.item() == 0:
        names = [n for chunk in model for n, _ in unwrap(chunk).named_parameters()]
        raise CheckpointError(f"--pretrained-reinit {','.join(patterns)} matches no parameter; "
                              f"names look like {', '.join(names[:3])}, ..., {names[-1]}")
    return chosen


@contextlib.contextmanager
def gathered_parameters(state: TrainingState):
    """Inside: every rank holds the updated parameters, also with ``--overlap-param-gather``.

    With that flag the distributed optimizer leaves the all-gather of the updated parameters to
    the next step's forward pre-hooks, so between steps each data-parallel rank has only its own
    shard up to date. Evaluation and checkpoints run there: like Megatron-LM, remove the hooks
    (which all-gathers synchronously) and put them back afterwards.
    """
    if not state.args.overlap_param_gather:
        yield
        return
    for chunk in state.model:
        chunk.disable_forward_pre_hook(param_sync=True)
    try:
        yield
    finally:
        for chunk in state.model:
            chunk.enable_forward_pre_hook()


def save(state: TrainingState, extra_meta: Optional[dict] = None) -> None:
    args = state.args
    with gathered_parameters(state):
        path = checkpointing.save_checkpoint(args.save, state.iteration, state.consumed_samples,
                                             state.model, state.optimizer, state.scheduler, args,
                                             extra_meta=extra_meta)
    if torch.distributed.get_rank() == 0:
        print(f"saved checkpoint {path}", flush=True)


def train(
    state: TrainingState,
    forward_step: Callable,
    train_iterator: Iterator,
    valid_iterator_factories: Optional[Dict[str, Callable[[], Iterator]]] = None,
    eval_callbacks: Optional[List[EvalCallback]] = None,
    tokens_per_sample: Optional[int] = None,
    throughput_unit: str = "tokens",
) -> TrainingState:
    """Train from ``state.iteration`` to ``--train-iters``; save, evaluate and stop on request.

    Raises ``NonFiniteLossError`` (after nothing is saved) when the loss becomes NaN/Inf.
    """
    args = state.args
    logger = TrainingLogger(args, throughput_unit)
    exits = ExitController(args, start_time=time.time())
    tokens_per_sample = tokens_per_sample or args.seq_length
    last_saved = state.iteration if state.iteration > 0 else None

    def run_evaluation() -> None:
        _evaluate_and_log(state, forward_step, valid_iterator_factories or {}, eval_callbacks or [], logger)

    try:
        if args.eval_interval and state.iteration == 0:
            run_evaluation()  # the starting point of every curve (e.g. alignment at init)
        while state.iteration < args.train_iters:
            result = train_step(forward_step, train_iterator, state.model, state.optimizer,
                                state.scheduler, args, state.iteration + 1)
            state.iteration += 1
            state.consumed_samples += args.global_batch_size
            logger.count_tokens(args.global_batch_size * tokens_per_sample)
            if state.iteration % args.log_interval == 0 or state.iteration == args.train_iters:
                lr = state.optimizer.param_groups[0]["lr"]
                logger.log_train(state.iteration, result.losses, lr, result.grad_norm)
            if args.eval_interval and (state.iteration % args.eval_interval == 0
                                       or state.iteration == args.train_iters):
                run_evaluation()
            if args.save and args.save_interval and state.iteration % args.save_interval == 0:
                save(state)
                last_saved = state.iteration
            reason = exits.reason(state.iteration)
            if reason:
                logger.print(f"exiting at iteration {state.iteration}: {reason}")
                break
        if args.save and last_saved != state.iteration:  # the last step, or the one an exit stopped at
            save(state)
    finally:
        exits.close()
        logger.close()
    return state


def _evaluate_and_log(state: TrainingState, forward_step: Callable,
                      valid_iterator_factories: Dict[str, Callable[[], Iterator]],
                      eval_callbacks: List[EvalCallback], logger: TrainingLogger) -> None:
    """One evaluation at ``state.iteration``: the loss on every validation set, then the callbacks'
    scalars (e.g. alignment metrics), logged together."""
    losses, extra = {}, {}
    with gathered_parameters(state):
        for name, factory in valid_iterator_factories.items():
            for loss_name, value in evaluate(forward_step, factory, state.model, state.args).items():
                losses[f"{loss_name} {name}".strip()] = value
        for callback in eval_callbacks:
            extra.update(callback(state.model, state.iteration))
    logger.log_eval(state.iteration, losses, extra)


def run_entry(body: Callable[[], None]) -> int:
    """Run a training entry point and return its exit code.

    Failures with a message meant for the user (a NaN loss, a damaged checkpoint, a dictionary or
    tokenizer that does not fit) are printed once, by rank 0, and give exit code 1 on every rank;
    anything else is a bug and keeps its traceback. Process groups are torn down and the run's
    locks released either way.
    """
    import sys

    try:
        body()
    except PreAlignError as err:
        if _rank() == 0:
            print(f"error: {user_message(err)}", file=sys.stderr, flush=True)  # not a worker's traceback
        return 1
    finally:
        _run_locks.close()
        _locked_paths.clear()
        if torch.distributed.is_initialized():
            destroy()
    return 0
