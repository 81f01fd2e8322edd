"""The experiment's report: results.json, results.md and plots, from the finished steps.

Inputs: each evaluation step's ``metrics.json`` (one value per metric for one arm and seed) and each
stage-2 step's ``log.jsonl`` (training and evaluation events of ``pretrain_prealign.py``).

    results.json   {"preset": ..., "seeds": [...], "arms": {arm: {metric: [value per seed]}},
                    "curves": {arm: {seed: {...}}}}
    results.md     mean +- std over seeds per arm, then the per-seed values
    plots/clone_loss.png          validation clone (and English) loss over stage 2, per arm
                                  (``loss.png`` in the real setting: every language)
    plots/alignment.png           dev-word P@1 per level over stage 2, per arm
    plots/knowledge_transfer.png  knowledge-application and transfer accuracy, bars with seed spread
    plots/metrics_vs_tokens.png   presets with checkpoint evaluations (``long``): metrics vs tokens
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Dict, List

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from examples.experiment.presets import LANGUAGE_NAMES
from megatron_prealign.evaluation.report import markdown_table
from megatron_prealign.files import atomic_open  # noqa: E402

HEADLINE = ["clone_ppl", "english_ppl", "knowledge_en_only", "knowledge_both", "knowledge_never",
            "knowledge_en_only_in_english", "transfer_english", "transfer_clone",
            "align_p1_last_layer_heldout", "align_p1_last_layer_unseen",
            "align_p1_embedding_heldout", "align_p1_middle_layer_heldout",
            "align_p1_last_layer_strict_unseen"]
ARM_COLOURS = {"joint": "tab:grey", "init_only": "tab:blue", "cs_only": "tab:orange",
               "prealign": "tab:green", "lm_init": "tab:purple", "lm_init_cs": "tab:brown"}


def read_log(path: Path) -> List[dict]:
    """Events of a training log; a resumed run re-logs some iterations: the last record wins."""
    records: Dict[tuple, dict] = {}
    if path.exists():
        for line in open(path):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # the last line of a run that was killed mid-write
                continue
            records[(record["event"], record["iteration"])] = record
    return sorted(records.values(), key=lambda r: (r["iteration"], r["event"]))


def curves_from_log(records: List[dict]) -> dict:
    evals = [r for r in records if r["event"] == "eval"]
    curves = {"iteration": [r["iteration"] for r in evals]}
    for key in sorted({k for r in evals for k in r}):
        if key.startswith("lm_loss") or key.startswith("align/"):
            curves[key] = [r.get(key) for r in evals]
    return curves


def mean_std(values: List[float]):
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3f}"


def _first_metrics(results: dict) -> List[str]:
    """The metrics results.md lists first: ``HEADLINE``, or in the real setting the perplexities,
    knowledge, transfer and retrieval (middle and last layer) before the per-level details."""
    if results.get("setting") != "real":
        return HEADLINE
    names = sorted({m for arm in results["arms"].values() for m in arm})
    return ([f"{t}_ppl" for t in _targets(results)] + ["english_ppl"]
            + [m for m in names if m.startswith("knowledge_")]
            + [m for m in names if m.startswith("transfer_")]
            + [m for m in names if m.startswith(("retrieval_p1_middle", "retrieval_p1_last"))]
            + [m for m in names if m.startswith(("align_p1_embedding", "align_p1_middle", "align_p1_last"))])


def markdown(results: dict) -> str:
    """results.md: the mean +- std table (metric x arm), then every seed's value."""
    arms, seeds = list(results["arms"]), results["seeds"]
    metrics = [m for m in _first_metrics(results) if any(m in results["arms"][a] for a in arms)]
    metrics += sorted({m for a in arms for m in results["arms"][a]} - set(metrics))
    languages = "English / English-Clone" if results.get("setting") != "real" else \
        "English / " + " + ".join(LANGUAGE_NAMES[t] for t in _targets(results))
    lines = [f"# {languages}: {results['preset']} preset, seeds {', '.join(map(str, seeds))}",
             "", f"{results['embeddings'].capitalize()} input/output embeddings; stage-2 lr "
             f"{results['stage2_lr']:g}.", "",
             "Mean +- std over seeds (perplexities: lower is better; accuracies and P@1: higher).", ""]
    lines += markdown_table(["metric"] + arms, [
        [metric] + ["{} +- {}".format(*map(_fmt, mean_std(results["arms"][arm].get(metric, []))))
                    for arm in arms] for metric in metrics])
    lines += ["", "Per seed:", ""]
    # An arm without the metric gets one empty cell.
    lines += markdown_table(["metric", "arm"] + [f"seed {s}" for s in seeds], [
        [metric, arm] + ([_fmt(v) for v in results["arms"][arm].get(metric, [])] or [""])
        for metric in metrics for arm in arms])
    return "\n".join(lines) + "\n"


def _targets(results: dict) -> List[str]:
    return results["pair"].split("-")[1:] if results.get("setting") == "real" else ["clone"]


def _plot_curves(results: dict, path: Path) -> None:
    languages = _targets(results) + ["en"]
    fig, axes = plt.subplots(1, len(languages), figsize=(5.5 * len(languages), 4), constrained_layout=True)
    for ax, language in zip(axes, languages):
        key = f"lm_loss_{language}_valid"
        later = [v for per_seed in results["curves"].values() for c in per_seed.values()
                 for it, v in zip(c["iteration"], c.get(key, [])) if it > 0 and v is not None]
        if later:  # the iteration-0 losses (9-12 nats) would flatten every difference that matters
            ax.set_ylim(min(later) - 0.1, max(later) + 0.15)
            ax.text(0.98, 0.97, "iteration 0 above the axis", transform=ax.transAxes, ha="right",
                    va="top", fontsize=8, color="grey")
        for arm, per_seed in results["curves"].items():
            runs = [c for c in per_seed.values() if key in c]
            if not runs:
                continue
            its = runs[0]["iteration"]
            mean = [statistics.fmean(r[key][i] for r in runs) for i in range(len(its))]
            ax.plot(its, mean, label=arm, color=ARM_COLOURS.get(arm), marker="o", markersize=3)
            if len(runs) > 1:
                lo = [min(r[key][i] for r in runs) for i in range(len(its))]
                hi = [max(r[key][i] for r in runs) for i in range(len(its))]
                ax.fill_between(its, lo, hi, color=ARM_COLOURS.get(arm), alpha=0.15)
        ax.set_title(f"validation {'clone' if language == 'clone' else LANGUAGE_NAMES[language]} loss (stage 2)")
        ax.set_xlabel("iteration")
        ax.set_ylabel("loss (nats/token)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_alignment(results: dict, path: Path) -> None:
    levels = []
    for per_seed in results["curves"].values():
        for curve in per_seed.values():
            for key in curve:
                if key.startswith("align/dev/") and key.endswith("/p_at_1"):
                    level = key.split("/")[2]
                    if level not in levels:
                        levels.append(level)
    if not levels:
        return
    levels.sort(key=_level_order)
    fig, axes = plt.subplots(1, len(levels), figsize=(3.2 * len(levels), 3.4), sharey=True,
                             constrained_layout=True)
    for ax, level in zip(list(axes) if len(levels) > 1 else [axes], levels):
        key = f"align/dev/{level}/p_at_1"
        for arm, per_seed in results["curves"].items():
            runs = [c for c in per_seed.values() if key in c]
            if runs:
                its = runs[0]["iteration"]
                ax.plot(its, [statistics.fmean(r[key][i] for r in runs) for i in range(len(its))],
                        label=arm, color=ARM_COLOURS.get(arm), marker="o", markersize=3)
        ax.set_title(level)
        ax.set_xlabel("stage-2 iteration")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    target = " + ".join(LANGUAGE_NAMES[t] for t in _targets(results))
    (axes[0] if len(levels) > 1 else axes).set_ylabel(f"P@1, held-out words (English -> {target})")
    (axes[-1] if len(levels) > 1 else axes).legend()
    fig.suptitle("Alignment per level during stage 2: does it persist?")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _level_order(level: str):
    """Model order: embedding, layer1..N, final_norm, output_embedding."""
    if level.startswith("layer") and level[5:].isdigit():
        return (1, int(level[5:]))
    return ({"embedding": 0, "final_norm": 2, "output_embedding": 3}.get(level, 4), 0)


def default_transfer_metrics(names) -> List[str]:
    """The default (fine-tuned) transfer metrics among ``names``, English and zero-shot: those with a
    frozen-probe twin ``{metric}_frozen`` (``evaluate_step._transfer_metrics``)."""
    return sorted(m for m in names if m.startswith("transfer_") and f"{m}_frozen" in names)


def _bar_metrics(results: dict) -> List[tuple]:
    """(metric, axis label) of the knowledge and transfer bars."""
    if results.get("setting") != "real":
        return [("knowledge_en_only", "facts: English only\n(probed in clone)"),
                ("knowledge_both", "facts: both\n(upper bound)"), ("knowledge_never", "facts: never\n(chance)"),
                ("transfer_english", "transfer:\nEnglish"), ("transfer_clone", "transfer:\nclone (zero-shot)")]
    names = sorted({m for arm in results["arms"].values() for m in arm})
    bars = [(m, "facts: " + m[len("knowledge_"):].replace("_", " ")) for m in names
            if m.startswith("knowledge_") and not m.endswith("in_english")]
    bars += [(m, m[len("transfer_"):].replace("_", "\n", 1).replace("_", " "))
             for m in default_transfer_metrics(names)]
    return bars


def _plot_bars(results: dict, path: Path) -> None:
    bars = _bar_metrics(results)
    metrics = [m for m, _ in bars]
    arms = list(results["arms"])
    fig, ax = plt.subplots(figsize=(max(10, 1.6 * len(bars)), 4), constrained_layout=True)
    width = 0.8 / max(len(arms), 1)
    for i, arm in enumerate(arms):
        stats = [mean_std(results["arms"][arm].get(m, [])) for m in metrics]
        xs = [j + (i - (len(arms) - 1) / 2) * width for j in range(len(metrics))]
        ax.bar(xs, [s[0] for s in stats], width, yerr=[s[1] for s in stats], capsize=3, label=arm,
               color=ARM_COLOURS.get(arm))
        for j, m in enumerate(metrics):  # individual seeds as dots
            ax.scatter([xs[j]] * len(results["arms"][arm].get(m, [])), results["arms"][arm].get(m, []),
                       color="black", s=8, zorder=3)
    ax.set_xticks(range(len(metrics)))
    ax.set_xticklabels([label for _, label in bars], fontsize=8 if len(bars) > 6 else None)
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    ax.set_title("Knowledge application and zero-shot transfer (bars: mean, whiskers: std, dots: seeds)")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def collect(preset, pipeline, evaluations) -> dict:
    arms: Dict[str, Dict[str, List[float]]] = {arm: {} for arm in preset.arms}
    curves: Dict[str, Dict[str, dict]] = {arm: {} for arm in preset.arms}
    checkpoints: Dict[str, Dict[str, Dict[str, dict]]] = {arm: {} for arm in preset.arms}
    tokens_per_iteration = preset.global_batch_size * preset.seq_length
    for seed in preset.seeds:
        for step in evaluations:
            if step.params["seed"] != seed:
                continue
            arm = step.params["arm"]
            metrics = json.loads((pipeline.directory(step) / "metrics.json").read_text())
            iteration = step.params.get("iteration")
            if preset.checkpoint_evals:  # metrics vs tokens: every evaluated checkpoint, final included
                at = preset.train_iters if iteration is None else iteration
                checkpoints[arm].setdefault(str(seed), {})[str(at * tokens_per_iteration)] = metrics
            if iteration is not None:
                continue
            for name, value in metrics.items():
                arms[arm].setdefault(name, []).append(value)
            stage2_log = pipeline.directory(step.inputs["stage2"]) / "log.jsonl"
            curves[arm][str(seed)] = curves_from_log(read_log(stage2_log))
    results = {"preset": preset.name, **({"setting": "real", "pair": preset.pair} if preset.setting == "real"
                                          else {}), "seeds": list(preset.seeds),
               "embeddings": "untied" if preset.untie_embeddings else "tied",
               "stage2_lr": preset.lr, "arms": arms, "curves": curves}
    if preset.checkpoint_evals:
        results["tokens_per_iteration"] = tokens_per_iteration
        results["checkpoints"] = checkpoints
    return results


TOKEN_METRICS = ["clone_ppl", "english_ppl", "knowledge_en_only", "knowledge_en_only_in_english",
                 "transfer_clone", "align_p1_embedding_heldout", "align_p1_middle_layer_heldout",
                 "align_p1_last_layer_heldout"]


def _plot_metrics_vs_tokens(results: dict, path: Path) -> None:
    """Each metric of the evaluated checkpoints against stage-2 tokens seen, per arm."""
    fig, axes = plt.subplots(2, 4, figsize=(16, 7), constrained_layout=True)
    for ax, metric in zip(axes.flat, TOKEN_METRICS):
        for arm, per_seed in results["checkpoints"].items():
            for i, (_, by_tokens) in enumerate(sorted(per_seed.items())):
                tokens = sorted(by_tokens, key=int)
                ax.plot([int(t) / 1e6 for t in tokens], [by_tokens[t].get(metric) for t in tokens],
                        marker="o", markersize=3, color=ARM_COLOURS.get(arm),
                        label=arm if i == 0 else None, alpha=1.0 if i == 0 else 0.5)
        ax.set_title(metric.replace("_", " "), fontsize=10)
        ax.set_xlabel("stage-2 tokens (millions)")
        if metric.endswith("_ppl"):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes.flat[0].legend()
    fig.suptitle("Evaluated checkpoints: metrics against tokens seen")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(output_dir: Path, preset, pipeline, evaluations) -> str:
    """Write the plots, results.md and, last, results.json; return the text to print.

    The two results files are renamed into place complete (``files.atomic_open``), and results.json
    comes last: its presence means the report was written whole.
    """
    output_dir = Path(output_dir)
    results = collect(preset, pipeline, evaluations)
    table = markdown(results)
    plots = output_dir / "plots"
    plots.mkdir(exist_ok=True)
    loss_plot = "clone_loss.png" if results.get("setting") != "real" else "loss.png"
    paths = [plots / loss_plot, plots / "alignment.png", plots / "knowledge_transfer.png"]
    _plot_curves(results, paths[0])
    _plot_alignment(results, paths[1])
    _plot_bars(results, paths[2])
    if results.get("checkpoints"):
        paths.append(plots / "metrics_vs_tokens.png")
        _plot_metrics_vs_tokens(results, paths[-1])
    with atomic_open(str(output_dir / "results.md")) as f:
        f.write(table)
    with atomic_open(str(output_dir / "results.json")) as f:
        f.write(json.dumps(results, indent=1))
    return table + "\nplots: " + " ".join(str(p) for p in paths if p.exists()) + \
        f"\nresults: {output_dir / 'results.json'} {output_dir / 'results.md'}"
