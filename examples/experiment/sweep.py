#!/usr/bin/env python
"""Where does PreAlign beat joint training? Named variants x arms x seeds through the experiment.

    python examples/experiment/sweep.py --grid cpu --seeds 1,2 --output-dir runs/sweep
    python examples/experiment/sweep.py --grid real-cpu --pair en-de --seeds 1 --output-dir runs/de
    python examples/experiment/sweep.py --grid probes --seeds 1,2,3 --output-dir runs/probes

For every variant (a set of preset overrides: tied output embedding, which levels stage 1 aligns,
the alignment loss weights, the code-switching ratio, stage-1 length, more tokens) and every arm:

The ``real-cpu`` grid asks the same of the real setting (``--pair``): stage-1 length and loss weights
and the code-switching ratio around the real ``cpu`` preset, at the clone sweep's lr. The ``probes``
grid runs the registered probe variants that need their own data (``docs/probes.md``: kinds of fact
subject, fact repetitions, more transfer examples) with the ``examined`` probes and the control
``lm_init``; its "selected" line is not a choice of configuration (the probes do not change training).

1. **learning rate**: stage 2 runs on the first seed at every lr of the grid; the one with the lowest
   final validation loss (mean of English and clone, on the validation documents, which the final
   test perplexities never see) is that arm's lr in that variant. Each arm gets its own lr, so no
   comparison hinges on one lr that happens to suit one arm. A variant may instead reuse the lrs
   chosen for another (``lr_from``). In the ``cpu`` grid, ``authors_code``, ``paper_weights`` and
   the tied variants (tying changes the joint arm's model as well) run the grid; the others reuse
   the per-arm lrs of the variant they change: a grid in every variant triples the sweep;
   ``--lr-grid-every-variant`` runs it anyway.
2. **seeds**: every seed at the chosen lr (the first seed's grid run is reused), then conversion and
   the evaluation suite (clone/English test perplexity, knowledge application, transfer, per-level
   alignment).

Everything runs through the experiment's own steps (``dag.py``), so it is resumable the same way:
finished runs are skipped, an interrupted training run continues from its last checkpoint, and any
run that two cells share (the data, a stage-1 checkpoint shared by the lr candidates, the joint arm
of variants that only change PreAlign's knobs) runs once. After each variant the report is
rewritten:

    sweep.json   per variant: overrides, lr candidates and choice per arm, per-arm metrics per seed,
                 per-arm validation loss per seed, and the gap PreAlign - joint per metric
    sweep.md     the validation table and the variant it selects (lowest PreAlign validation loss:
                 the configuration to adopt, chosen without the test metrics), the gap table (mean
                 +- std over seeds), the chosen lrs, per-arm values
    plots/sweep_gap.png    the gap per variant for the headline metrics, seeds as dots
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from examples.experiment import dag, training_steps  # noqa: E402
from examples.experiment.cli import experiment_lock, parse_list, report_errors  # noqa: E402
from examples.experiment.clone import data_prep  # noqa: E402
from examples.experiment.pipeline import Pipeline  # noqa: E402
from examples.experiment.presets import (  # noqa: E402
    AUTHORS_CODE,
    PAPER_WEIGHTS,
    PRESETS,
    REAL_PAIRS,
    REAL_PRESETS,
    Preset,
)
from examples.experiment.report import mean_std, read_log  # noqa: E402
from megatron_prealign.evaluation.report import markdown_table  # noqa: E402
from megatron_prealign.files import atomic_open  # noqa: E402

GAP_METRICS = ["clone_ppl", "english_ppl", "knowledge_en_only", "knowledge_both",
               "knowledge_en_only_in_english", "transfer_english", "transfer_clone",
               "align_p1_embedding_heldout", "align_p1_middle_layer_heldout",
               "align_p1_last_layer_heldout", "align_p1_embedding_strict_unseen",
               "align_p1_middle_layer_strict_unseen", "align_p1_last_layer_strict_unseen"]
PLOTTED = ["clone_ppl", "english_ppl", "knowledge_en_only", "transfer_clone",
           "align_p1_middle_layer_heldout", "align_p1_middle_layer_strict_unseen"]
REAL_GAP_PATTERNS = [r"\w+_ppl", r"knowledge_(en_only|both)(_[a-z]{2})?", r"knowledge_en_only_in_english",
                     r"transfer_\w+", r"align_p1_(embedding|middle_layer|last_layer)_heldout(_[a-z]{2})?",
                     r"retrieval_p1_(embedding|middle_layer|last_layer)_\w+"]
"""The real setting's headline metrics, by name (the targets and transfer tasks vary with the pair)."""
REAL_PLOTTED_PATTERNS = [r"\w+_ppl", r"knowledge_en_only(_[a-z]{2})?", r"transfer_\w+_(?!english)[a-z]{2}",
                         r"align_p1_middle_layer_heldout(_[a-z]{2})?", r"retrieval_p1_middle_layer_\w+"]


def lower_is_better(metric: str) -> bool:
    return metric.endswith("_ppl")


def matching(names, patterns: Sequence[str]) -> List[str]:
    """``names`` that fully match one of ``patterns``, grouped by pattern in pattern order."""
    return [n for p in patterns for n in sorted(names) if re.fullmatch(p, n)
            and not any(re.fullmatch(q, n) for q in patterns[:patterns.index(p)])]


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    overrides: dict = field(default_factory=dict)
    lr_from: Optional[str] = None
    """Reuse the learning rates chosen for this variant instead of running the grid."""


@dataclass(frozen=True)
class Grid:
    name: str
    base: Preset
    variants: Tuple[Variant, ...]
    lrs: Tuple[float, ...]
    arms: Tuple[str, ...] = ("joint", "prealign")

    def gap_metrics(self, names) -> List[str]:
        """The metrics of the gap table: fixed in the clone setting, by pattern in the real one."""
        return GAP_METRICS if self.base.setting == "clone" else matching(names, REAL_GAP_PATTERNS)

    def plotted(self, names) -> List[str]:
        return PLOTTED if self.base.setting == "clone" else matching(names, REAL_PLOTTED_PATTERNS)


def _cpu_variants(base: Preset) -> Tuple[Variant, ...]:
    """Two rounds. First, single changes to the authors' code; then, since ``paper_weights`` won the
    first round (clone PPL -59 +- 3 at equal English, where the authors' weights lose), the remaining
    knobs one at a time on top of it: the configuration worth adopting is the question, and knobs
    measured around a losing base say little about it."""
    top = base.num_layers
    first, winner = "authors_code", "paper_weights"
    round_two = [
        ("levels_no_top", f"stage 1 aligns embedding + layer1-{top - 1} (not the last layer, final norm "
         "or output embedding)", {"alignment_levels": f"embedding,layer1-{top - 1}"}),
        ("cs_0.2", "code-switching ratio 0.2", {"codeswitch_ratio": 0.2}),
        # Tying changes the joint arm's model too: own lr grid (its joint runs are tied's).
        ("tied", "tied input/output embedding (own lr grid)", {"untie_embeddings": False}),
        ("stage1_short", f"stage 1 a quarter as long ({base.stage1_iters // 4} steps): less alignment, "
         "closer to a fresh init", {"stage1_iters": base.stage1_iters // 4}),
        ("stage1_x3", f"stage 1 three times longer ({3 * base.stage1_iters} steps)",
         {"stage1_iters": 3 * base.stage1_iters}),
        ("levels_lower", f"stage 1 aligns embedding + layer1-{top // 2} only",
         {"alignment_levels": f"embedding,layer1-{top // 2}"}),
        ("tokens_x5", "5x the stage-2 tokens",
         {"train_iters": 5 * base.train_iters, "warmup_iters": 5 * base.warmup_iters,
          "eval_interval": 5 * base.eval_interval}),
    ]
    return (
        Variant(first, "the experiment's defaults: untied, all levels incl. output "
                "embedding, alpha 0.1 / LM 1.0 (the authors' code), p 0.05, stage 1 120 steps"),
        Variant("reinit_head", "stage 2 keeps the stage-1 embeddings and layers but a fresh output "
                "layer and final norm (stage 1 leaves a confident word-level head behind)",
                {"stage2_reinit": "output_layer,final_layernorm"}, lr_from=first),
        # Tying changes the joint arm's model too, so both arms' lrs are chosen again here.
        Variant("tied", "tied input/output embedding (own lr grid)", {"untie_embeddings": False}),
        # Own grid: its joint arm is authors_code's (same runs), so only PreAlign's candidates run.
        Variant(winner, "alpha 1.0 / LM 0.05 (one reading of the paper; own lr grid)", PAPER_WEIGHTS),
    ) + tuple(Variant(f"{winner}+{name}", f"{winner} and {description}", {**PAPER_WEIGHTS, **overrides},
                      lr_from=None if "untie_embeddings" in overrides else winner)
              for name, description, overrides in round_two)


def _real_cpu_variants(base: Preset) -> Tuple[Variant, ...]:
    """The knobs the clone sweep found to matter, one at a time, around the real ``cpu`` preset as it
    was before this sweep (the clone sweep's winner, ``PAPER_WEIGHTS``): on real words stage 1 can
    align only the dictionary it sees (held-out P@1 ~0.1, not the clone's ~1.0), so how long and how
    hard to align, and how much to switch, may choose differently. The lr is the clone sweep's (3e-3,
    both arms): a grid per arm would double the sweep on 2 cores."""
    reference = "preset"
    return (
        Variant(reference, f"the real cpu preset: alpha {base.alignment_alpha:g} / LM "
                f"{base.alignment_lm_weight:g}, stage 1 {base.stage1_iters} steps, p {base.codeswitch_ratio:g}"),
        Variant("stage1_short", f"stage 1 a quarter as long ({base.stage1_iters // 4} steps)",
                {"stage1_iters": base.stage1_iters // 4}, lr_from=reference),
        Variant("stage1_x2", f"stage 1 twice as long ({2 * base.stage1_iters} steps)",
                {"stage1_iters": 2 * base.stage1_iters}, lr_from=reference),
        Variant("authors_weights", "stage-1 loss weights of the authors' code (alpha 0.1 / LM 1.0)",
                {"alignment_alpha": AUTHORS_CODE["alignment_alpha"],
                 "alignment_lm_weight": AUTHORS_CODE["alignment_lm_weight"]}, lr_from=reference),
        Variant("cs_0.2", "code-switching ratio 0.2", {"codeswitch_ratio": 0.2}, lr_from=reference),
    )


def _probe_variants(base: Preset) -> Tuple[Variant, ...]:
    """The registered knowledge and transfer probe variants that need their own data
    (``docs/probes.md``: K-a, K-c, T-b), each with the ``examined`` probes (K-b, K-d, T-a, T-c) and
    the control ``lm_init`` beside joint and PreAlign. The lr is the cpu preset's: these variants
    change what is probed, not how the models train."""
    reference, reps = "today", base.fact_repetitions_en
    return (
        Variant(reference, f"the cpu preset's facts (invented subjects, x{reps} in English) and transfer "
                f"task ({base.transfer_train_per_class} English paragraphs per genre)"),
        Variant("subjects_dictionary", "subjects are ordinary nouns the corpus uses, dictionary words "
                "(\"the lantern\")", {"fact_subjects": "dictionary"}, lr_from=reference),
        Variant("subjects_common_pieces", "subjects are invented names of frequent subword pieces",
                {"fact_subjects": "common_pieces"}, lr_from=reference),
        Variant("reps_x0.5", f"English fact repetitions x0.5 ({reps // 2})", {"fact_repetitions_en": reps // 2},
                lr_from=reference),
        Variant("reps_x2", f"English fact repetitions x2 ({2 * reps})", {"fact_repetitions_en": 2 * reps},
                lr_from=reference),
        Variant("reps_x4", f"English fact repetitions x4 ({4 * reps})", {"fact_repetitions_en": 4 * reps},
                lr_from=reference),
        Variant("transfer_x3", f"3x the transfer task's English training paragraphs "
                f"({3 * base.transfer_train_per_class} per genre; the smallest genre has 628)",
                {"transfer_train_per_class": 3 * base.transfer_train_per_class}, lr_from=reference),
    )


_CPU_BASE = PRESETS["cpu"].replace(**AUTHORS_CODE)
# The real cpu preset as the sweep measured it (the clone setting's stage 1, PAPER_WEIGHTS), fixed
# here so that adopting its winner (REAL_WEIGHTS) leaves the sweep's runs and their cache as they were.
_REAL_CPU_BASE = REAL_PRESETS["cpu"].replace(**PAPER_WEIGHTS)
_PROBES_BASE = PRESETS["cpu"].replace(probes="examined")
GRIDS: Dict[str, Grid] = {
    "cpu": Grid("cpu", _CPU_BASE, _cpu_variants(_CPU_BASE), lrs=(1.5e-3, 3e-3, 6e-3)),
    "real-cpu": Grid("real-cpu", _REAL_CPU_BASE, _real_cpu_variants(_REAL_CPU_BASE), lrs=(_REAL_CPU_BASE.lr,)),
    "probes": Grid("probes", _PROBES_BASE, _probe_variants(_PROBES_BASE), lrs=(_PROBES_BASE.lr,),
                   arms=("joint", "prealign", "lm_init")),
}


# --------------------------------------------------------------------------------------------


def selection_loss(log_path: Path) -> float:
    """Mean of the languages' validation losses (``lm_loss_{lang}_valid``: English and the clone or
    each target) at the last evaluation of a stage-2 log."""
    evals = [r for r in read_log(log_path) if r["event"] == "eval"]
    if not evals:
        raise RuntimeError(f"{log_path}: no evaluation recorded; cannot choose a learning rate")
    last = evals[-1]
    losses = [v for k, v in last.items() if re.fullmatch(r"lm_loss_\w+_valid", k)]
    if not losses:
        raise RuntimeError(f"{log_path}: the last evaluation has no lm_loss_<language>_valid")
    return float("inf") if any(not math.isfinite(v) for v in losses) else statistics.fmean(losses)


def gaps(arms: Dict[str, Dict[str, List[float]]], metrics: Sequence[str] = GAP_METRICS) -> Dict[str, dict]:
    """PreAlign - joint per metric: per seed (paired by seed), mean and std over seeds."""
    out = {}
    for metric in metrics:
        joint, prealign = arms.get("joint", {}).get(metric), arms.get("prealign", {}).get(metric)
        if not joint or not prealign:
            continue
        per_seed = [None if a is None or b is None else b - a for a, b in zip(joint, prealign)]
        mean, std = mean_std(per_seed)
        out[metric] = {"per_seed": per_seed, "mean": mean, "std": std}
    return out


class Sweep:
    def __init__(self, grid: Grid, seeds: Sequence[int], output_dir: Path, corpus: Path,
                 variants: Optional[Sequence[str]] = None, quiet: bool = False):
        self.grid, self.seeds, self.output_dir, self.corpus = grid, list(seeds), Path(output_dir), corpus
        names = [v.name for v in grid.variants]
        self.variants = [v for v in grid.variants if variants is None or v.name in variants]
        unknown = sorted(set(variants or ()) - set(names))
        if unknown:
            raise ValueError(f"unknown variant(s) {unknown}; grid {grid.name!r} has {names}")
        for v in self.variants:
            if v.lr_from and v.lr_from not in [u.name for u in self.variants[:self.variants.index(v)]]:
                raise ValueError(f"variant {v.name} takes its lrs from {v.lr_from}, which must run "
                                 "before it (add it to --variants)")
        self.pipeline = Pipeline(self.output_dir, quiet=quiet)
        self.quiet = quiet
        self.results: Dict[str, dict] = {}

    def _say(self, message: str) -> None:
        if not self.quiet:
            print(message, flush=True)

    def preset(self, variant: Variant) -> Preset:
        return self.grid.base.replace(**variant.overrides, arms=list(self.grid.arms), seeds=self.seeds)

    def choose_lrs(self, variant: Variant, preset: Preset, data: dag.DataSteps, label: str) -> dict:
        if variant.lr_from:
            chosen = self.results[variant.lr_from]["lr"]
            return {arm: {"chosen": chosen[arm]["chosen"], "from": variant.lr_from} for arm in self.grid.arms}
        candidates = {arm: {lr: dag.stage2(preset.replace(lr=lr), arm, self.seeds[0], data, label)
                            for lr in self.grid.lrs} for arm in self.grid.arms}
        self.pipeline.run([s for per_arm in candidates.values() for s in per_arm.values()])
        out = {}
        for arm, per_lr in candidates.items():
            losses = {lr: selection_loss(self.pipeline.directory(step) / "log.jsonl")
                      for lr, step in per_lr.items()}
            best = min(losses, key=lambda lr: (losses[lr], lr))
            out[arm] = {"chosen": best, "candidates": {f"{lr:g}": v for lr, v in losses.items()}}
            self._say(f"{label}{arm}: validation loss by lr "
                      + ", ".join(f"{lr:g} {v:.4f}" for lr, v in losses.items()) + f" -> lr {best:g}")
        return out

    def run_variant(self, index: int, variant: Variant) -> dict:
        label = f"[{variant.name}] "
        self._say(f"=== variant {index}/{len(self.variants)}: {variant.name}: {variant.description}")
        preset = self.preset(variant)
        data = dag.data_steps(preset, self.corpus)
        lrs = self.choose_lrs(variant, preset, data, label)
        evaluations, runs = {}, {}
        for arm in self.grid.arms:
            arm_preset = preset.replace(lr=lrs[arm]["chosen"])
            for seed in self.seeds:
                runs[(arm, seed)] = dag.stage2(arm_preset, arm, seed, data, label)
                evaluations[(arm, seed)] = dag.evaluation(arm_preset, arm, seed, data, runs[(arm, seed)], label)
        self.pipeline.run(list(evaluations.values()))
        validation = {arm: [selection_loss(self.pipeline.directory(runs[(arm, seed)]) / "log.jsonl")
                            for seed in self.seeds] for arm in self.grid.arms}
        arms: Dict[str, Dict[str, List[float]]] = {arm: {} for arm in self.grid.arms}
        for arm in self.grid.arms:
            for seed in self.seeds:
                metrics = json.loads((self.pipeline.directory(evaluations[(arm, seed)])
                                      / "metrics.json").read_text())
                for name, value in metrics.items():
                    arms[arm].setdefault(name, []).append(value)
        names = set().union(*(a.keys() for a in arms.values()))
        return {"description": variant.description, "overrides": variant.overrides,
                "tokens_per_arm": preset.train_iters * preset.global_batch_size * preset.seq_length,
                "lr": lrs, "validation": validation, "arms": arms,
                "gap": gaps(arms, self.grid.gap_metrics(names))}

    def run(self) -> dict:
        for index, variant in enumerate(self.variants, start=1):
            self.results[variant.name] = self.run_variant(index, variant)
            self.write_report()
        return self.report()

    def report(self) -> dict:
        names = set().union(set(), *(a.keys() for v in self.results.values() for a in v["arms"].values()))
        return {"grid": self.grid.name, "setting": self.grid.base.setting, "pair": self.grid.base.pair,
                "seeds": self.seeds, "lrs": list(self.grid.lrs), "arms": list(self.grid.arms),
                "metrics": self.grid.gap_metrics(names), "plotted": self.grid.plotted(names),
                "selected": selected_variant(self.results), "variants": self.results}

    def write_report(self) -> str:
        report = self.report()
        table = markdown(report)
        plots = self.output_dir / "plots"
        plots.mkdir(parents=True, exist_ok=True)
        plot_gaps(report, plots / "sweep_gap.png")
        with atomic_open(str(self.output_dir / "sweep.md")) as f:  # complete or not at all
            f.write(table)
        with atomic_open(str(self.output_dir / "sweep.json")) as f:
            f.write(json.dumps(report, indent=1))
        return table


def _fmt(value, sign: bool = True, decimals: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, ("+" if sign else "") + f".{decimals}f")


def _mean_pm_std(values: Sequence[float], sign: bool, metric: str) -> str:
    """Perplexities with one decimal, accuracies and P@1 with three (mean and std alike)."""
    mean, std = mean_std(values)
    decimals = 1 if lower_is_better(metric) else 3
    return f"{_fmt(mean, sign, decimals)} +- {_fmt(std, False, decimals)}"


def selected_variant(variants: Dict[str, dict]) -> Optional[str]:
    """The variant whose PreAlign arm has the lowest validation loss (mean over seeds and languages;
    the first on a tie): the configuration to adopt, chosen on validation data only."""
    scored = [(statistics.fmean(v["validation"]["prealign"]), i, name)
              for i, (name, v) in enumerate(variants.items()) if v.get("validation", {}).get("prealign")]
    return min(scored)[2] if scored else None


def markdown(report: dict) -> str:
    """sweep.md: the validation table and the selected variant, the gap table (variant x metric), the
    chosen lrs, the per-arm values, the variants."""
    variants, arms, metrics = report["variants"], report["arms"], report.get("metrics", GAP_METRICS)
    pair = f" {report['pair']}" if report.get("setting") == "real" else ""
    lines = [f"# PreAlign - joint, sweep grid {report['grid']}{pair}, seeds {', '.join(map(str, report['seeds']))}",
             "", "Validation loss at the end of stage 2 (mean over the languages' validation documents "
             "and the seeds; the test metrics below play no part in the choice):", ""]
    lines += markdown_table(["variant"] + arms, [
        [name] + [_fmt(statistics.fmean(v["validation"][arm]), False, 4) if v.get("validation") else "n/a"
                  for arm in arms] for name, v in variants.items()])
    if report.get("selected"):
        lines += ["", f"Selected (lowest PreAlign validation loss): **{report['selected']}**"]
    lines += ["", "Gap = PreAlign - joint, paired by seed; mean +- std over seeds. Perplexities: "
              "negative favours PreAlign; accuracies and P@1: positive favours PreAlign.", ""]
    lines += markdown_table(["variant"] + metrics, [
        [name] + [_gap_cell(v["gap"].get(metric), metric) for metric in metrics]
        for name, v in variants.items()])
    lines += ["", "Learning rates (chosen on the first seed's validation loss):", ""]
    lines += markdown_table(["variant"] + arms, [
        [name] + [_lr_cell(v["lr"][arm]) for arm in arms] for name, v in variants.items()])
    lines += ["", "Per arm (mean +- std over seeds):", ""]
    lines += markdown_table(["variant", "metric"] + arms, [
        [name, metric] + [_mean_pm_std(v["arms"][arm].get(metric, []), sign=False, metric=metric)
                          for arm in arms]
        for name, v in variants.items() for metric in metrics])
    lines += ["", "Variants:", ""] + [f"- **{name}**: {v['description']} ({v['tokens_per_arm']:,} "
                                      "stage-2 tokens per arm)" for name, v in variants.items()]
    return "\n".join(lines) + "\n"


def _gap_cell(gap: Optional[dict], metric: str) -> str:
    return "n/a" if gap is None else _mean_pm_std(gap["per_seed"], sign=True, metric=metric)


def _lr_cell(entry: dict) -> str:
    """The chosen lr in bold, with where it came from or every candidate's validation loss."""
    detail = f"from {entry['from']}" if "from" in entry else ", ".join(
        f"{lr}: {loss:.3f}" for lr, loss in entry["candidates"].items())
    return f"**{entry['chosen']:g}** ({detail})"


def plot_gaps(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, plotted = list(report["variants"]), report.get("plotted", PLOTTED)
    if not names or not plotted:
        return
    fig, axes = plt.subplots(1, len(plotted), figsize=(3.0 * len(plotted), 0.45 * len(names) + 1.8),
                             sharey=True, constrained_layout=True, squeeze=False)
    axes = axes[0]
    for ax, metric in zip(axes, plotted):
        for row, name in enumerate(names):
            g = report["variants"][name]["gap"].get(metric)
            if g is None:
                continue
            good = (g["mean"] < 0) == lower_is_better(metric)
            ax.barh(row, g["mean"], xerr=g["std"], color="tab:green" if good else "tab:red",
                    alpha=0.7, capsize=3)
            seeds = [v for v in g["per_seed"] if v is not None]
            ax.scatter(seeds, [row] * len(seeds), color="black", s=8, zorder=3)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(metric.replace("align_p1_", "P@1 ").replace("retrieval_p1_", "retrieval ")
                     .replace("_", " "), fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(names)))
    axes[0].set_yticklabels(names)
    axes[0].invert_yaxis()
    fig.suptitle("PreAlign - joint per variant (green: PreAlign better; whiskers: std over seeds, "
                 "dots: seeds)")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", choices=sorted(GRIDS), default="cpu")
    parser.add_argument("--pair", choices=REAL_PAIRS, default=None,
                        help="Real grids: the languages (default: the preset's, en-de).")
    parser.add_argument("--seeds", default="1,2",
                        help="Comma list of distinct integer seeds (first: lr grid).")
    parser.add_argument("--output-dir", required=True, type=Path)
    parser.add_argument("--variants", default=None, help="Comma list of the grid's variants to run.")
    parser.add_argument("--arms", default=None,
                        help="Comma list of arms (default joint,prealign; both are needed for the gap).")
    parser.add_argument("--corpus", type=Path, default=None, help="JSONL corpus; default: built-in.")
    parser.add_argument("--lr-grid-every-variant", action="store_true",
                        help="Run the lr grid in every variant instead of reusing another's lrs.")
    args = parser.parse_args(argv)
    seeds = parse_list(parser, "--seeds", args.seeds, int)
    corpus = args.corpus or data_prep.DEFAULT_CORPUS
    if not corpus.is_file():
        parser.error(f"--corpus {corpus}: no such file")
    variants = parse_list(parser, "--variants", args.variants) if args.variants else None
    grid = GRIDS[args.grid]
    if args.pair:
        if grid.base.setting != "real":
            parser.error(f"--pair chooses the languages of a real grid; --grid {args.grid} is the clone setting")
        grid = dataclasses.replace(grid, base=grid.base.replace(pair=args.pair))
    if args.lr_grid_every_variant:
        grid = dataclasses.replace(grid, variants=tuple(dataclasses.replace(v, lr_from=None)
                                                        for v in grid.variants))
    if args.arms:
        arms = tuple(parse_list(parser, "--arms", args.arms))
        unknown = sorted(set(arms) - set(training_steps.ARMS))
        if unknown or not {"joint", "prealign"} <= set(arms):
            parser.error(f"--arms {args.arms}: choose from {sorted(training_steps.ARMS)}, "
                         "including joint and prealign")
        grid = dataclasses.replace(grid, arms=arms)
    try:
        sweep = Sweep(grid, seeds, args.output_dir, corpus, variants)
    except ValueError as err:
        parser.error(str(err))
    return report_errors("sweep.py", lambda: run(sweep, corpus, args.output_dir))


def run(sweep: Sweep, corpus: Path, output_dir: Path) -> int:
    data_prep.check_corpus(corpus, [sweep.preset(v) for v in sweep.variants])  # before any write
    with experiment_lock(output_dir):
        sweep.run()
        print(sweep.write_report())
    print(f"report: {output_dir / 'sweep.md'} {output_dir / 'sweep.json'} "
          f"{output_dir / 'plots' / 'sweep_gap.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
