"""torchrun worker for test_distributed.py: the alignment code on 2 gloo ranks.

    python -m torch.distributed.run --nproc-per-node 2 tests/alignment/workers/dist_worker.py OUT.pt

Runs every data-parallel case (DP=2, the words split unevenly between the ranks) and the
vocab-parallel output-embedding pooling (TP=2), and rank 0 writes what the test compares with a
one-process run on the whole batch / table. Everything is fp64 so the comparison can be tight.
"""

import sys

import torch
import torch.distributed as dist

from megatron_prealign.alignment import alignment_loss, all_gather_rows, pool_output_embedding

# name -> (concept ids of the global batch, words on rank 0, anti-collapse weight)
DP_CASES = {
    # Concept 3 spans both ranks; rank 0 holds 5 anchors, rank 1 holds 3.
    "uneven": ([0, 0, 1, 1, 3, 9, 8, 3, 3, 5, 6], 7, 0.3),
    # Every word on rank 1 is a singleton: it has no local anchor but its words are negatives.
    "no_local_anchor": ([0, 0, 0, 1, 1, 2, 3, 4, 5, 6], 5, 0.0),
    # No anchor anywhere: loss 0 and zero gradients on both ranks.
    "no_anchor": ([0, 1, 2, 3, 4, 5], 3, 0.0),
}
TEMPERATURE = 0.1


class TinyEncoder(torch.nn.Module):
    """Two 'levels' from a small network, so the test sees gradients of shared weights."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.first = torch.nn.Linear(6, 8, dtype=torch.float64)
        self.second = torch.nn.Linear(8, 8, dtype=torch.float64)

    def forward(self, x):  # x [n, 6]
        # The +1 makes cosines mostly positive, so the anti-collapse term is active.
        first = self.first(x) + 1.0  # [n, 8]
        return {"first": first, "second": self.second(torch.tanh(first))}  # [n, 8] each


def dp_inputs(name):
    """Global batch of a DP case: inputs [N, 6], concept ids [N], words on rank 0, weight."""
    ids, rank0_words, anti_collapse_weight = DP_CASES[name]
    gen = torch.Generator().manual_seed(len(ids))
    x = torch.randn(len(ids), 6, generator=gen, dtype=torch.float64)
    return x, torch.tensor(ids), rank0_words, anti_collapse_weight


def tp_inputs():
    """Output-embedding table [V, h], token ids [b, s], padding mask [b, s], concept ids [b]."""
    gen = torch.Generator().manual_seed(3)
    weight = torch.randn(12, 5, generator=gen, dtype=torch.float64)
    token_ids = torch.randint(0, 12, (6, 4), generator=gen)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0],
                         [1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]])
    return weight, token_ids, mask, torch.tensor([0, 0, 1, 1, 1, 2])


def run_dp(name, group):
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    x, ids, rank0_words, anti_collapse_weight = dp_inputs(name)
    mine = slice(0, rank0_words) if rank == 0 else slice(rank0_words, None)
    model = TinyEncoder()
    x_local = x[mine].clone().requires_grad_()
    out = alignment_loss(model(x_local), ids[mine], TEMPERATURE, anti_collapse_weight, group)
    out.loss.backward()
    # What Megatron's DDP does with the gradients (and what its logging does with the loss):
    # average over the data-parallel group.
    grads = {}
    for pname, param in model.named_parameters():
        dist.all_reduce(param.grad, group=group)
        grads[pname] = param.grad / world
    loss = out.loss.detach().clone()
    dist.all_reduce(loss, group=group)
    x_grad, _ = all_gather_rows(x_local.grad, group)
    return {"loss": loss / world, "grads": grads, "x_grad": x_grad,
            "num_anchors": out.num_anchors, "local_loss": out.loss.detach()}


def run_tp(group):
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    weight, token_ids, mask, concepts = tp_inputs()
    rows = weight.shape[0] // world
    local = weight[rank * rows : (rank + 1) * rows].clone().requires_grad_()  # [V / tp, h]
    pooled = pool_output_embedding(token_ids, mask, local, group)  # [b, h]
    # The loss is computed identically on both tensor-parallel ranks, as in Megatron.
    loss = alignment_loss([pooled], concepts, TEMPERATURE).loss
    loss.backward()
    full_grad, _ = all_gather_rows(local.grad, group)  # [V, h]
    return {"pooled": pooled.detach(), "loss": loss.detach(), "weight_grad": full_grad}


def main(out_path):
    dist.init_process_group("gloo")
    group = dist.group.WORLD
    results = {"dp": {name: run_dp(name, group) for name in DP_CASES}, "tp": run_tp(group)}
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, results)
    if dist.get_rank() == 0:
        torch.save(gathered, out_path)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
