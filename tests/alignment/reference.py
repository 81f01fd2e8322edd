"""Float64 references for the alignment code, written as plain loops over the definitions."""

from typing import List, Sequence

import torch


def reference_alignment_loss(
    levels: Sequence[torch.Tensor], concept_ids: Sequence[int], temperature: float,
    anti_collapse_weight: float = 0.0,
) -> torch.Tensor:
    """Multi-positive (SupCon "L_out") InfoNCE averaged over anchors, then over levels."""
    ids = [int(c) for c in concept_ids]
    num = len(ids)
    total = 0.0
    for rep in levels:
        z = [row / row.norm() for row in rep.double()]
        terms: List[torch.Tensor] = []
        for i in range(num):
            positives = [p for p in range(num) if p != i and ids[p] == ids[i]]
            if not positives:
                continue
            log_denominator = torch.log(
                sum(torch.exp(z[i] @ z[j] / temperature) for j in range(num) if j != i))
            terms.append(-sum(z[i] @ z[p] / temperature - log_denominator for p in positives)
                         / len(positives))
        level = sum(terms) / len(terms) if terms else rep.double().sum() * 0
        if anti_collapse_weight:
            pairs = [z[i] @ z[j] for i in range(num) for j in range(num) if i != j]
            mean_cosine = sum(pairs) / len(pairs) if pairs else torch.zeros((), dtype=torch.float64)
            level = level + anti_collapse_weight * torch.clamp(mean_cosine, min=0)
        total = total + level
    return total / len(levels)


def reference_mean_pool(hidden_bsh: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[b, s, h] batch-first hidden states -> [b, h] unit vectors, one word at a time."""
    rows = []
    for word, keep in zip(hidden_bsh.double(), mask.bool()):
        mean = word[keep].mean(dim=0)
        rows.append(mean / mean.norm())
    return torch.stack(rows)
