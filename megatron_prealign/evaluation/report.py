"""Evaluation results: the JSON schema, the Markdown tables and the alignment plot.

``results.json`` (schema ``megatron-prealign/evaluation/v2``; v1 had one unnamed transfer task)::

    {
      "schema": "megatron-prealign/evaluation/v2",
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
          "knowledge_generation": {"transfer": {"accuracy": 0.2, "items": 50, "chance": 0.0}, ...},
          "transfer": {"topics": {"train_accuracy": ..., "source_accuracy": ..., "target_accuracy": ...,
                                  "chance": ..., "num_classes": ..., "level": "final_norm", ...,
                                  "levels": {"final_norm": {...}, "layer2": {...}},     # --probe-level a,b
                                  "finetuned": {"source_accuracy": ..., "target_accuracy": ...,
                                                "steps": 100, ...}}},                   # --transfer-finetune-steps
          "retrieval": {"bible": {"pairs": 1000, "truncated": 3,
                                  "levels": {"embedding": {"source_to_target": ..., "target_to_source": ...,
                                                           "p_at_1": ...}, ...}}}
        }
      ]
    }

Sections a run was not evaluated on are absent. Levels are in model order. NaN (a quantity with
no pairs) is written as ``null``. ``results.md`` has one table per section (per dictionary and per
retrieval set), one row per run;
``alignment_<dictionary>.png`` plots P@1 and the cosine gap (aligned minus random) per level, one
line per run.
"""

from __future__ import annotations

import json
import math
import os
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

from megatron_prealign.files import atomic_open

SCHEMA = "megatron-prealign/evaluation/v2"


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


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]], *,
                   aligned: bool = False) -> List[str]:
    """The lines of a Markdown table: the header, its rule, one line per row of cells.

    The one table formatter of the project's reports (``results.md`` here, the English-Clone
    experiment's ``results.md`` and ``sweep.md``). ``aligned`` pads every column to its widest
    cell (the first left-justified, the others right-justified: numbers line up in a terminal);
    otherwise cells are written as they are and the rule is ``|---|---|``.
    """
    rows = [list(row) for row in rows]
    if not aligned:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
        return lines + ["| " + " | ".join(row) + " |" for row in rows]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join([cells[0].ljust(widths[0])]
                                 + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]) + " |"

    return [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows]


def _names_in(runs: Sequence[dict], section: str) -> List[str]:
    """The keys of ``section`` (languages, dictionaries, groups) over all runs, first seen first."""
    names: List[str] = []
    for run in runs:
        for name in run.get(section, {}):
            if name not in names:
                names.append(name)
    return names


def _ordered_levels(runs: Sequence[dict], name: str, section: str = "alignment") -> List[str]:
    """Union of the runs' levels of ``run[section][name]`` (a dictionary or a retrieval set) in
    model order (layers numerically)."""
    def key(level: str):
        if level == "embedding":
            return (0, 0)
        if level.startswith("layer"):
            return (1, int(level[len("layer"):]))
        return (2, 0) if level == "final_norm" else (3, 0)

    levels = set()
    for run in runs:
        levels.update(run.get(section, {}).get(name, {}).get("levels", {}))
    return sorted(levels, key=key)


def markdown_report(report: dict) -> str:
    """Markdown tables, one per section, one row per run."""
    runs = report["runs"]
    out = ["# Evaluation results", ""]
    for section in (_perplexity_section, _alignment_sections, _knowledge_section, _generation_section,
                    _transfer_section, _retrieval_sections):
        out += section(runs)
    return "\n".join(out)


def _perplexity_section(runs: Sequence[dict]) -> List[str]:
    languages = _names_in(runs, "perplexity")
    if not languages:
        return []
    return ["## Perplexity (per language)", ""] + markdown_table(["run"] + languages, [
        [run["name"]] + [_fmt(run.get("perplexity", {}).get(lang, {}).get("perplexity"), 2)
                         for lang in languages] for run in runs]) + [""]


ALIGNMENT_TABLES = (("p_at_1", "word-translation P@1"), ("gap", "cosine gap (aligned - random)"),
                    ("aligned_cosine", "aligned-pair cosine"))
"""The alignment tables of each dictionary: (metric, title)."""


def _alignment_sections(runs: Sequence[dict]) -> List[str]:
    out: List[str] = []
    for name in _names_in(runs, "alignment"):
        levels = _ordered_levels(runs, name)
        for metric, title in ALIGNMENT_TABLES:
            rows = [[run["name"]] + [_alignment_cell(run.get("alignment", {}).get(name, {})
                                                     .get("levels", {}).get(level), metric)
                                     for level in levels] for run in runs]
            out += [f"## Alignment on `{name}`: {title} per level", ""]
            out += markdown_table(["run"] + levels, rows) + [""]
    return out


def _alignment_cell(measures: Optional[Mapping], metric: str) -> str:
    """One level's ``metric`` (``gap``: aligned minus random cosine); empty if not measured."""
    if measures is None:
        return ""
    if metric == "gap":
        aligned, random = measures.get("aligned_cosine"), measures.get("random_cosine")
        return _fmt(None if aligned is None or random is None else aligned - random)
    return _fmt(measures.get(metric))


def _knowledge_section(runs: Sequence[dict]) -> List[str]:
    groups = _names_in(runs, "knowledge")
    if not groups:
        return []
    return ["## Cross-lingual knowledge application (accuracy; chance in parentheses)", ""] + \
        markdown_table(["run"] + groups, [
            [run["name"]] + [
                f"{_fmt(g.get('accuracy'))} ({_fmt(g.get('chance'))}, n={g.get('items')})" if g else ""
                for g in (run.get("knowledge", {}).get(group) for group in groups)]
            for run in runs]) + [""]


def _generation_section(runs: Sequence[dict]) -> List[str]:
    groups = _names_in(runs, "knowledge_generation")
    if not groups:
        return []
    return ["## Knowledge by greedy generation (share of right objects produced; chance about 0)", ""] + \
        markdown_table(["run"] + groups, [
            [run["name"]] + [f"{_fmt(g.get('accuracy'))} (n={g.get('items')})" if g else ""
                             for g in (run.get("knowledge_generation", {}).get(group) for group in groups)]
            for run in runs]) + [""]


def _transfer_section(runs: Sequence[dict]) -> List[str]:
    """One row per run and transfer task."""
    tasks = _names_in(runs, "transfer")
    if not tasks:
        return []
    rows = []
    for run in runs:
        for task in tasks:
            t = run.get("transfer", {}).get(task)
            if not t:
                rows.append([run["name"], task] + [""] * 5)
                continue
            # The headline probe, the probes at further levels, and the fine-tuned model.
            variants = [(t, str(t.get("level")))]
            variants += [(scores, level) for level, scores in list(t.get("levels", {}).items())[1:]]
            if "finetuned" in t:
                variants.append((t["finetuned"], f"fine-tuned ({t['finetuned'].get('steps')} steps)"))
            for scores, level in variants:
                rows.append([run["name"], task, _fmt(scores.get("source_accuracy")),
                             _fmt(scores.get("target_accuracy")), _fmt(scores.get("train_accuracy")),
                             _fmt(t.get("chance")), level])
    return ["## Zero-shot cross-lingual transfer (linear probe)", ""] + markdown_table(
        ["run", "task", "source (A) accuracy", "target (B) accuracy", "train accuracy", "chance",
         "level / model"],
        rows) + [""]


def _retrieval_sections(runs: Sequence[dict]) -> List[str]:
    """One table per retrieval set: P@1 per level, the mean and, in parentheses, source -> target /
    target -> source."""
    out: List[str] = []
    for name in _names_in(runs, "retrieval"):
        levels = _ordered_levels(runs, name, "retrieval")
        rows = []
        for run in runs:
            result = run.get("retrieval", {}).get(name)
            if result is None:
                rows.append([run["name"], "", ""] + [""] * len(levels))
                continue
            rows.append([run["name"], str(result.get("pairs")), str(result.get("truncated"))] +
                        [_retrieval_cell(result.get("levels", {}).get(level)) for level in levels])
        out += [f"## Sentence retrieval on `{name}`: P@1 per level (mean; source->target / "
                "target->source)", ""]
        out += markdown_table(["run", "pairs", "truncated"] + levels, rows) + [""]
    return out


def _retrieval_cell(measures: Optional[Mapping]) -> str:
    if measures is None:
        return ""
    return (f"{_fmt(measures.get('p_at_1'))} ({_fmt(measures.get('source_to_target'))} / "
            f"{_fmt(measures.get('target_to_source'))})")


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
    for name in _names_in(report["runs"], "alignment"):
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
