"""Stage 2 (and plain) pretraining: datasets + the loop, run by ``pretrain_prealign.py``."""

from __future__ import annotations

from argparse import Namespace
from functools import partial

import torch

from megatron_prealign.distributed import initialize_distributed
from megatron_prealign.training.align import build_evaluator
from megatron_prealign.training.data import build_datasets, check_training_data, make_loader
from megatron_prealign.training.loop import build_run_tokenizer, finalize_args, run_entry, setup, train
from megatron_prealign.training.step import lm_forward_step


def run(args: Namespace) -> int:
    """Run pretraining; returns the process exit code."""
    return run_entry(lambda: _pretrain(args))


def _pretrain(args: Namespace) -> None:
    """Check the data, build the run, train; ``args`` as ``validate_args`` left them."""
    # The data is checked before the model is built or a checkpoint loaded, so that a bad shard
    # or --split costs seconds; process groups first, so that rank 0 alone reports it.
    initialize_distributed(args)
    tokenizer = build_run_tokenizer(args)
    args = finalize_args(args, tokenizer)
    check_training_data(args, tokenizer)
    state = setup(args, tokenizer=tokenizer)
    train_ds, valid_sets = build_datasets(args, state.tokenizer)
    train_iterator = iter(make_loader(train_ds, state.consumed_samples, args))
    valid_factories = {name: partial(lambda ds: iter(make_loader(ds, 0, args)), ds)
                       for name, ds in valid_sets.items()}
    callbacks = []
    if args.alignment_eval_sets:
        rank0 = torch.distributed.get_rank() == 0
        callbacks.append(build_evaluator(args, state.tokenizer,
                                         log=print if rank0 else (lambda *a, **k: None)))
    train(state, lm_forward_step, train_iterator, valid_factories, callbacks)
