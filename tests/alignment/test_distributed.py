"""DP=2 and TP=2 runs of the alignment code under torchrun/gloo equal one process on the whole
batch.

One torchrun job (tests/alignment/workers/dist_worker.py) runs every case; each test compares one part.
"""

import pytest
import torch

from megatron_prealign.alignment import alignment_loss, pool_output_embedding
from tests.alignment.workers import dist_worker as worker
from tests.conftest import run_torchrun

pytestmark = pytest.mark.multiprocess  # starts torchrun jobs

WORLD = 2


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("alignment_dist") / "results.pt"
    run_torchrun(["tests/alignment/workers/dist_worker.py", out], nproc=WORLD, timeout=300)
    return torch.load(out)  # one results dict per rank


@pytest.mark.parametrize("case", list(worker.DP_CASES))
def test_dp2_with_global_negatives_equals_one_process(ranks, case):
    x, ids, _, anti_collapse_weight = worker.dp_inputs(case)
    model = worker.TinyEncoder()
    x = x.requires_grad_()
    out = alignment_loss(model(x), ids, worker.TEMPERATURE, anti_collapse_weight)
    out.loss.backward()

    dp = [rank["dp"][case] for rank in ranks]
    for rank in dp:
        assert int(rank["num_anchors"]) == int(out.num_anchors)
        torch.testing.assert_close(rank["loss"], out.loss.detach(), rtol=1e-12, atol=1e-14)
        for name, param in model.named_parameters():
            torch.testing.assert_close(rank["grads"][name], param.grad, rtol=1e-10, atol=1e-14)
        # Inputs are not averaged by DDP: each rank holds WORLD x its words' share (the contract).
        torch.testing.assert_close(rank["x_grad"] / WORLD, x.grad, rtol=1e-10, atol=1e-14)
    if case == "no_anchor":
        assert all(rank["loss"] == 0 for rank in dp)
        assert all((grad == 0).all() for rank in dp for grad in rank["grads"].values())
    else:
        assert x.grad.abs().sum() > 0
    if case == "no_local_anchor":
        # Rank 1 contributes no loss of its own, yet its words get gradient as negatives.
        assert dp[1]["local_loss"] == 0 and x.grad[5:].abs().sum() > 0


def test_tp2_vocab_parallel_output_embedding_pool_equals_tp1(ranks):
    weight, token_ids, mask, concepts = worker.tp_inputs()
    weight = weight.requires_grad_()
    pooled = pool_output_embedding(token_ids, mask, weight)
    loss = alignment_loss([pooled], concepts, worker.TEMPERATURE).loss
    loss.backward()
    assert {int(t) for t in token_ids.flatten()} & set(range(6)), "rank 0 must own some tokens"
    assert {int(t) for t in token_ids.flatten()} & set(range(6, 12)), "and rank 1 too"
    for rank in ranks:
        tp = rank["tp"]
        torch.testing.assert_close(tp["pooled"], pooled.detach(), rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(tp["loss"], loss.detach(), rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(tp["weight_grad"], weight.grad, rtol=1e-10, atol=1e-14)
