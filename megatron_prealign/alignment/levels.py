"""Names of the stage-1 levels and the ``--alignment-levels`` syntax (no torch, no Megatron)."""

from __future__ import annotations

import re
from typing import List


def all_level_names(num_layers: int) -> List[str]:
    return ["embedding", *[f"layer{i}" for i in range(1, num_layers + 1)], "final_norm",
            "output_embedding"]


def parse_levels(spec: str, num_layers: int) -> List[str]:
    """``--alignment-levels``: ``all`` or a comma list of names and ranges (``layer1-3``).

    ``layers`` means every transformer layer. Returned in model order, without duplicates.
    """
    names = all_level_names(num_layers)
    chosen = set()
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        if part == "all":
            chosen.update(names)
        elif part == "layers":
            chosen.update(n for n in names if n.startswith("layer"))
        elif re.fullmatch(r"layer\d+-\d+", part):
            lo, hi = map(int, part[len("layer"):].split("-"))
            if not 1 <= lo <= hi <= num_layers:
                raise ValueError(f"--alignment-levels: {part} is outside layer1-{num_layers}")
            chosen.update(f"layer{i}" for i in range(lo, hi + 1))
        elif part in names:
            chosen.add(part)
        else:
            raise ValueError(f"--alignment-levels: unknown level {part!r}; use all, embedding, "
                             f"layers, layerK, layerA-B (1..{num_layers}), final_norm, "
                             "output_embedding")
    if not chosen:
        raise ValueError("--alignment-levels selects no level")
    return [n for n in names if n in chosen]
