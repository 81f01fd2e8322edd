"""torchrun worker: train a few TP=2 steps, then check that replicated weights agree across TP ranks.

Prints ``REPLICAS_OK <count>`` when every parameter not split by tensor parallelism (norm weights,
and with SP their sequence-parallel grads) is bit-identical on all TP ranks.
"""

import sys
import warnings

import torch

warnings.simplefilter("ignore")


def main() -> None:
    from megatron.core import parallel_state  # noqa: F401  (after cpu_compat via setup)

    from megatron_prealign.arguments import parse_args
    from megatron_prealign.training import loop
    from megatron_prealign.training.data import build_datasets, make_loader
    from megatron_prealign.training.step import lm_forward_step, train_step

    state = loop.setup(parse_args(sys.argv[1:]))
    args = state.args  # the finished flags (padded_vocab_size filled in)
    train_ds, _ = build_datasets(args, state.tokenizer)
    iterator = iter(make_loader(train_ds, 0, args))
    for i in range(args.train_iters):
        train_step(lm_forward_step, iterator, state.model, state.optimizer, state.scheduler, args, i + 1)

    group = parallel_state.get_tensor_model_parallel_group()
    checked = 0
    for name, param in state.model[0].module.named_parameters():
        if getattr(param, "tensor_model_parallel", False):
            continue  # a TP shard: differs by design
        gathered = [torch.empty_like(param) for _ in range(torch.distributed.get_world_size(group))]
        torch.distributed.all_gather(gathered, param.detach().contiguous(), group=group)
        for other in gathered[1:]:
            if not torch.equal(gathered[0], other):
                raise SystemExit(f"replicated parameter {name} differs across TP ranks")
        checked += 1
    if torch.distributed.get_rank() == 0:
        print(f"REPLICAS_OK {checked}", flush=True)


if __name__ == "__main__":
    from megatron_prealign.distributed import destroy

    try:
        main()
    finally:
        # Tear the process groups down before the interpreter does: left to exit, gloo's threads
        # can abort a rank ("terminate called without an active exception") after a pass.
        destroy()
