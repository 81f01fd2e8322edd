"""The training loop, assembled from Megatron-Core parts.

``setup`` builds, in order: process groups (``parallel_state``), the tokenizer, this rank's
``GPTModel`` chunk wrapped in Megatron-Core's ``DistributedDataParallel``, the Megatron optimizer
(``get_megatron_optimizer``: distributed optimizer on GPU when asked), the ``OptimizerParamScheduler``,
and restores a checkpoint. ``train`` then repeats ``train_step`` and delegates to ``save``,
``evaluate`` and the exit controller. Stage 1 (alignment) and stage 2 (pretraining) share all of it
and differ only in their ``forward_step`` and data.
"""

from __future__ import annotations

import contextlib
import time
from argparse import Namespace
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional

import torch

from megatron_prealign.arguments import padded_vocab_size
from megatron_prealign.training.initialize import device, initialize_distributed

EvalCallback = Callable[[List[torch.nn.Module], int], Dict[str, float]]


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


def build_tokenizer_for(args: Namespace):
    from megatron_prealign.data.tokenizer import build_tokenizer

    tokenizer = build_tokenizer(args.tokenizer_type, args.tokenizer_model,
                                vocab_size=args.vocab_size, english_clone=args.english_clone)
    args.padded_vocab_size = padded_vocab_size(tokenizer.vocab_size, args.make_vocab_size_divisible_by,
                                               args.tensor_model_parallel_size)
    return tokenizer


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


def setup(args: Namespace, model_builder: Optional[Callable] = None) -> TrainingState:
    """Build process groups, tokenizer, model, optimizer and scheduler; load ``--load``."""
    initialize_distributed(args)
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
    from megatron.core.distributed.finalize_model_grads import finalize_model_grads

    from megatron_prealign.model import build_model, transformer_config_from_args

    tokenizer = build_tokenizer_for(args)
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


def restore(state: TrainingState) -> None:
    """Resume ``--load`` if it holds a checkpoint; else start from ``--pretrained-checkpoint``'s
    weights (fresh optimizer, schedule, iteration and data position) or from scratch."""
    from megatron_prealign.training import checkpointing

    args = state.args
    rank0 = torch.distributed.get_rank() == 0
    if args.load and (checkpointing.has_checkpoint(args.load) or checkpointing.looks_started(args.load)):
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
    from megatron_prealign.training.checkpointing import CheckpointError, unwrap

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
    from megatron_prealign.training import checkpointing

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
    from megatron_prealign.training.exit import ExitController
    from megatron_prealign.training.logger import TrainingLogger
    from megatron_prealign.training.step import evaluate, train_step

    args = state.args
    logger = TrainingLogger(args, throughput_unit)
    exits = ExitController(args, start_time=time.time())
    tokens_per_sample = tokens_per_sample or args.seq_length
    last_saved = state.iteration if state.iteration > 0 else None
    def run_evaluation() -> None:
        losses = {}
        extra = {}
        with gathered_parameters(state):
            for name, factory in (valid_iterator_factories or {}).items():
                for loss_name, value in evaluate(forward_step, factory, state.model, args).items():
                    losses[f"{loss_name} {name}".strip()] = value
            for callback in eval_callbacks or []:
                extra.update(callback(state.model, state.iteration))
        logger.log_eval(state.iteration, losses, extra)

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
                if args.save and last_saved != state.iteration:
                    save(state)
                    last_saved = state.iteration
                return state
        if args.save and last_saved != state.iteration:
            save(state)
    finally:
        exits.close()
        logger.close()
    return state


def run_entry(body: Callable[[], None]) -> int:
    """Run a training entry point and return its exit code.

    Failures with a message meant for the user (a NaN loss, a damaged checkpoint, a dictionary or
    tokenizer that does not fit) are printed once, by rank 0, and give exit code 1 on every rank;
    anything else is a bug and keeps its traceback. Process groups are torn down either way.
    """
    import sys

    from megatron_prealign.data.dictionary import DictionaryError
    from megatron_prealign.data.tokenizer import TokenizerError
    from megatron_prealign.training.checkpointing import CheckpointError
    from megatron_prealign.training.initialize import destroy
    from megatron_prealign.training.step import NonFiniteLossError

    try:
        body()
    except (NonFiniteLossError, CheckpointError, DictionaryError, TokenizerError) as err:
        if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
            print(f"error: {err}", file=sys.stderr, flush=True)
        return 1
    finally:
        if torch.distributed.is_initialized():
            destroy()
    return 0
