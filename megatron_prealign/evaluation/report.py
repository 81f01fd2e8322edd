"""Evaluation results: the JSON schema, the Markdown tables and the alignment plot.

``results.json`` (schema ``megatron-prealign/evaluation/v1``)::

    {
      "schema": "megatron-prealign/evaluation/v1",
      "runs": [                                  # in the order the models were given
        {
          "name": "prealign",
          "model": {"path": "...", "kind": "megatron" | "huggingface", "iteration": 2000 | null},
          "perplexity": {"en": {"nll": 3.2, "perplexity": 24.5, "tokens": 51200, "sequences": 100}},
          "alignment": {"heldout": {"dictionary": "dev.jsonl", "words": 400,
                                    "levels": {"embedding": {"aligned_cosine": ..., "random_cosine": ...,
                                                             "p_at_1": ..., "num_aligned_pairs": ...,
                                                             "num_queries": ...}, ...}}},
          "knowledge": {"transfer": {"accuracy": 0.6, "items": 50, "chance": 0.25}, "all": {...}},
          "transfer": {"train_accuracy": ..., "source_accuracy": ..., "target_accuracy": ...,
                       "chance": ..., "num_classes": ..., "level": "final_norm", ...}
        }
      ]
    }

Sections a run was not evaluated on are absent. Levels are in model order. NaN (a quantity with
no pairs) is written as ``null``. ``results.md`` has one table per section, one row per run;
``alignment_<dictionary>.png`` plots P@1 and the cosine gap (aligned minus random) per level, one
line per run.
"""

from __future__ import annotations

import json
import math
import os
from typing import Dict, List, Mapping, Sequence

from megatron_prealign.files import atomic_open

SCHEMA = "megatron-prealign/evaluation/v1"


def _clean(value):
    """JSON-safe copy: NaN/inf -> None, tuples -> lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def make_report(runs: Sequence[dict]) -> dict:
    """The results document for ``runs`` (each a dict as in the module docstring)."""
    names = [run["name"] for run in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"run names must be unique, got {names}")
    return {"schema": SCHEMA, "runs": _clean(list(runs))}


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: List[str], rows: List[List[str]]) -> List[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _ordered_levels(runs: Sequence[dict], dictionary: str) -> List[str]:
    """Union of the runs' levels in model order (layers numerically)."""
    def key(level: str):
        if level == "embedding":
            return (0, 0)
        if level.startswith("layer"):
            return (1, int(level[len("layer"):]))
        return (2, 0) if level == "final_norm" else (3, 0)

    levels = set()
    for run in runs:
        levels.update(run.get("alignment", {}).get(dictionary, {}).get("levels", {}))
    return sorted(levels, key=key)


def markdown_report(report: dict) -> str:
    """Markdown tables, one per section, one row per run."""
    runs = report["runs"]
    out = ["# Evaluation results", ""]
    languages = []
    for run in runs:
        for lang in run.get("perplexity", {}):
            if lang not in languages:
                languages.append(lang)
    if languages:
        out += ["## Perplexity (per language)", ""]
        out += _table(["run"] + languages, [
            [run["name"]] + [_fmt(run.get("perplexity", {}).get(lang, {}).get("perplexity"), 2)
                             for lang in languages] for run in runs])
        out.append("")
    dictionaries = []
    for run in runs:
        for name in run.get("alignment", {}):
            if name not in dictionaries:
                dictionaries.append(name)
    for name in dictionaries:
        levels = _ordered_levels(runs, name)
        for metric, title in (("p_at_1", "word-translation P@1"),
                              ("gap", "cosine gap (aligned - random)"),
                              ("aligned_cosine", "aligned-pair cosine")):
            out += [f"## Alignment on `{name}`: {title} per level", ""]
            rows = []
            for run in runs:
                got = run.get("alignment", {}).get(name, {}).get("levels", {})
                row = [run["name"]]
                for level in levels:
                    m = got.get(level)
                    if m is None:
                        row.append("")
                    elif metric == "gap":
                        a, r = m.get("aligned_cosine"), m.get("random_cosine")
                        row.append(_fmt(None if a is None or r is None else a - r))
                    else:
                        row.append(_fmt(m.get(metric)))
                rows.append(row)
            out += _table(["run"] + levels, rows)
            out.append("")
    groups = []
    for run in runs:
        for group in run.get("knowledge", {}):
            if group not in groups:
                groups.append(group)
    if groups:
        out += ["## Cross-lingual knowledge application (accuracy; chance in parentheses)", ""]
        out += _table(["run"] + groups, [
            [run["name"]] + [
                f"{_fmt(g.get('accuracy'))} ({_fmt(g.get('chance'))}, n={g.get('items')})" if g else ""
                for g in (run.get("knowledge", {}).get(group) for group in groups)]
            for run in runs])
        out.append("")
    if any("transfer" in run for run in runs):
        out += ["## Zero-shot cross-lingual transfer (linear probe)", ""]
        out += _table(["run", "source (A) accuracy", "target (B) accuracy", "train accuracy",
                       "chance", "level"], [
            [run["name"]] + ([_fmt(t.get("source_accuracy")), _fmt(t.get("target_accuracy")),
                              _fmt(t.get("train_accuracy")), _fmt(t.get("chance")),
                              str(t.get("level"))] if t else [""] * 5)
            for run in runs for t in [run.get("transfer")]])
        out.append("")
    return "\n".join(out)


def plot_alignment(runs: Sequence[dict], dictionary: str, path: str) -> str:
    """PNG of P@1 and cosine gap per level for one dictionary, one line per run.

    Args:
        runs: report runs (``report["runs"]``).
        dictionary: the alignment set to plot.
        path: the PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = _ordered_levels(runs, dictionary)
    if not levels:
        raise ValueError(f"no run has alignment results for {dictionary!r}")
    fig, (ax_p, ax_gap) = plt.subplots(1, 2, figsize=(max(8.0, 1.1 * len(levels) + 4), 4.2),
                                       constrained_layout=True)
    xs = list(range(len(levels)))
    for run in runs:
        got = run.get("alignment", {}).get(dictionary, {}).get("levels", {})
        points = [(i, got[lvl]) for i, lvl in enumerate(levels) if lvl in got]
        if not points:
            continue
        x = [i for i, _ in points]
        p1 = [m["p_at_1"] if m.get("p_at_1") is not None else float("nan") for _, m in points]
        gap = [m["aligned_cosine"] - m["random_cosine"]
               if m.get("aligned_cosine") is not None and m.get("random_cosine") is not None
               else float("nan") for _, m in points]
        ax_p.plot(x, p1, marker="o", label=run["name"])
        ax_gap.plot(x, gap, marker="o", label=run["name"])
    for ax, label in ((ax_p, "word-translation P@1"), (ax_gap, "cosine gap (aligned - random)")):
        ax.set_xticks(xs)
        ax.set_xticklabels(levels, rotation=45, ha="right")
        ax.set_xlabel("level")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend(title="run", fontsize="small")
    ax_p.set_ylim(-0.02, 1.02)
    fig.suptitle(f"Cross-lingual alignment per level ({dictionary})")
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
    return path


def write_report(report: dict, out_dir: str) -> Dict[str, str]:
    """Write one alignment PNG per dictionary, ``results.md`` and, last, ``results.json``.

    Each file is written under a temporary name and renamed into place when complete, so a failed
    or interrupted write leaves the previous file (or none), never a partial one; ``results.json``
    comes last, so its presence means the whole report was written.

    Returns:
        ``{"json": path, "markdown": path, "plots": [...]}``.
    """
    os.makedirs(out_dir, exist_ok=True)
    paths: Dict[str, object] = {"json": os.path.join(out_dir, "results.json"),
                                "markdown": os.path.join(out_dir, "results.md"), "plots": []}
    dictionaries: List[str] = []
    for run in report["runs"]:
        for name in run.get("alignment", {}):
            if name not in dictionaries:
                dictionaries.append(name)
    for name in dictionaries:
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)
        paths["plots"].append(plot_alignment(report["runs"], name,
                                             os.path.join(out_dir, f"alignment_{safe}.png")))
    with atomic_open(paths["markdown"]) as f:
        f.write(markdown_report(report) + "\n")
    with atomic_open(paths["json"]) as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    return paths


def level_alignment_dict(report: Mapping[str, object]) -> Dict[str, dict]:
    """``{level: LevelAlignment}`` -> ``{level: plain dict}`` for the JSON report."""
    import dataclasses

    return {level: dataclasses.asdict(m) if dataclasses.is_dataclass(m) else dict(m)
            for level, m in report.items()}
