"""Test entry: ``pretrain_prealign.py`` whose loss turns NaN at $INJECT_NAN_AT_ITERATION.

Fault injection lives in the test, not in the product: it wraps the LM loss function.
"""

import os
import sys

import torch

import megatron_prealign.training.step as step
import pretrain_prealign

_original = step.masked_lm_loss
_calls = {"n": 0}


def _nan_after(loss_mask, output_tensor):
    loss_sum, num_tokens, reported = _original(loss_mask, output_tensor)
    _calls["n"] += 1
    target = int(os.environ["INJECT_NAN_AT_ITERATION"])
    # One call per microbatch; the tiny test runs one microbatch per iteration and rank.
    if _calls["n"] >= target:
        loss_sum = loss_sum * torch.tensor(float("nan"))
        reported = {"lm loss": torch.stack([loss_sum.detach(), num_tokens.float()])}
    return loss_sum, num_tokens, reported


step.masked_lm_loss = _nan_after

if __name__ == "__main__":
    sys.exit(pretrain_prealign.main())
