"""One optimizer step and one evaluation pass, on Megatron-Core's pipeline schedules.

The schedule (``get_forward_backward_func``: no pipelining, or 1F1B across pipeline stages) calls a
``forward_step(data_iterator, model) -> (output, loss_fn)`` once per microbatch on every stage; on
the last stage ``loss_fn(output)`` returns ``(loss_sum, num_tokens, reported)``. With that 3-tuple the
schedule divides by the tokens and the microbatch count (a per-microbatch mean, Megatron's default),
or, with ``--calculate-per-token-loss``, leaves the sum for ``finalize_model_grads`` to divide by the
global token count. ``reported`` carries ``[sum, tokens]`` pairs so logged losses are token means over
the global batch however it is split.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Dict, Iterator, List, Optional

import torch
from megatron.core import parallel_state
from megatron.core.pipeline_parallel import get_forward_backward_func

from megatron_prealign.distributed import device
from megatron_prealign.errors import PreAlignError


class NonFiniteLossError(PreAlignError, RuntimeError):
    """The loss became NaN/Inf; the run stops without writing a checkpoint."""


@dataclass
class StepResult:
    losses: Dict[str, float]  # token-mean of each reported loss over the global batch
    num_tokens: int  # loss tokens in the global batch
    grad_norm: Optional[float]
    update_successful: bool


def masked_lm_loss(loss_mask: torch.Tensor, output_tensor: torch.Tensor):
    """Sum of per-token LM losses where ``loss_mask`` is 1.

    The mask comes from the dataset: 0 on EOD (with --eod-mask-loss), on padding, and inside
    code-switched spans (input-only code-switching: those positions have no target).
    """
    losses = output_tensor.float().reshape(-1)  # [b*s]
    mask = loss_mask.float().reshape(-1)  # [b*s]
    loss_sum = torch.sum(losses * mask)
    num_tokens = mask.sum().to(torch.int)
    return loss_sum, num_tokens, {"lm loss": torch.stack([loss_sum.detach(), num_tokens.float()])}


def lm_forward_step(data_iterator: Iterator, model) -> tuple:
    """Forward one microbatch of (code-switched) LM pretraining."""
    batch = next(data_iterator)
    dev = device()
    tokens = batch["tokens"].to(dev, non_blocking=True)  # [b, s]
    labels = batch["labels"].to(dev, non_blocking=True)  # [b, s]
    loss_mask = batch["loss_mask"].to(dev, non_blocking=True)  # [b, s]
    position_ids = batch["position_ids"].to(dev, non_blocking=True)  # [b, s]
    output = model(tokens, position_ids, attention_mask=None, labels=labels)  # [b, s] per-token loss
    return output, partial(masked_lm_loss, loss_mask)


def _reduce_reported(reported: List[dict]) -> tuple[Dict[str, float], int]:
    """Sum [sum, tokens] pairs over microbatches and data-parallel ranks; broadcast from last stage."""
    names = sorted({k for r in reported for k in r}) if reported else []
    # Every rank must take part in the collectives; only last-stage ranks have values.
    totals = torch.zeros(2 * len(names), dtype=torch.float64, device=device())
    for r in reported:
        for i, name in enumerate(names):
            totals[2 * i: 2 * i + 2] += r[name].to(torch.float64)
    torch.distributed.all_reduce(totals, group=parallel_state.get_data_parallel_group())
    names = _broadcast_names(names)
    totals = _broadcast_from_last_stage(totals)
    losses = {name: (totals[2 * i] / totals[2 * i + 1].clamp(min=1)).item()
              for i, name in enumerate(names)}
    num_tokens = int(totals[1].item()) if names else 0
    return losses, num_tokens


def _broadcast_names(names: List[str]) -> List[str]:
    if parallel_state.get_pipeline_model_parallel_world_size() == 1:
        return names
    holder = [names]
    last = parallel_state.get_pipeline_model_parallel_last_rank()
    torch.distributed.broadcast_object_list(holder, src=last,
                                            group=parallel_state.get_pipeline_model_parallel_group())
    return holder[0]


def _broadcast_from_last_stage(tensor: torch.Tensor) -> torch.Tensor:
    if parallel_state.get_pipeline_model_parallel_world_size() == 1:
        return tensor
    group = parallel_state.get_pipeline_model_parallel_group()
    last = parallel_state.get_pipeline_model_parallel_last_rank()
    size = torch.tensor([tensor.numel()], device=tensor.device)
    torch.distributed.broadcast(size, src=last, group=group)
    if tensor.numel() != size.item():
        tensor = torch.zeros(int(size.item()), dtype=tensor.dtype, device=tensor.device)
    torch.distributed.broadcast(tensor, src=last, group=group)
    return tensor


def run_schedule(forward_step: Callable, data_iterator, model: List, args, *, forward_only: bool):
    """Run the forward(-backward) schedule over one global batch's microbatches."""
    forward_backward = get_forward_backward_func()
    return forward_backward(
        forward_step_func=forward_step,
        data_iterator=data_iterator,
        model=model,
        num_microbatches=args.num_microbatches,
        seq_length=args.seq_length,
        micro_batch_size=args.micro_batch_size,
        decoder_seq_length=args.seq_length,
        forward_only=forward_only,
    )


def train_step(forward_step: Callable, data_iterator, model: List, optimizer, scheduler, args,
               iteration: int) -> StepResult:
    """Forward, backward, a non-finite check on every rank, then the optimizer step."""
    for chunk in model:
        chunk.zero_grad_buffer()
    optimizer.zero_grad()
    reported = run_schedule(forward_step, data_iterator, model, args, forward_only=False)
    losses, num_tokens = _reduce_reported(reported)
    if any(not torch.isfinite(torch.tensor(v)) for v in losses.values()):
        raise NonFiniteLossError(
            f"iteration {iteration}: non-finite loss {losses}; stopping without saving (the last "
            "good checkpoint is kept). Lower --lr, raise --clip-grad or check the data.")
    update_successful, grad_norm, _ = optimizer.step()
    if update_successful:
        scheduler.step(increment=args.global_batch_size)
    return StepResult(losses=losses, num_tokens=num_tokens, grad_norm=grad_norm,
                      update_successful=update_successful)


@torch.no_grad()
def evaluate(forward_step: Callable, make_iterator: Callable[[], Iterator], model: List, args) -> Dict[str, float]:
    """Token-mean validation losses over ``--eval-iters`` global batches."""
    for chunk in model:
        chunk.eval()
    iterator = make_iterator()
    reported = []
    for _ in range(args.eval_iters):
        reported += run_schedule(forward_step, iterator, model, args, forward_only=True)
    for chunk in model:
        chunk.train()
    losses, _ = _reduce_reported(reported)
    return losses
