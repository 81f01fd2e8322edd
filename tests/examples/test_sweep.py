"""The sweep's orchestration: per-arm lr selection, sharing, resume and the report.

Training and evaluation are replaced by fast stand-ins whose validation loss has a known best lr per
arm and whose metrics are a known function of (arm, seed, lr); the real steps are exercised by the
pipeline test. Everything else (the DAG, step keys and reuse, selection, gaps, report) is real.
"""

import json
import math

import matplotlib.image
import pytest

from examples.experiment import evaluate_step, sweep, training_steps
from examples.experiment.clone import data_prep
from examples.experiment.presets import PRESETS

BEST_LR = {"joint": 4e-3, "prealign": 1e-3}
GRID = sweep.Grid(
    "toy", PRESETS["tiny"].replace(train_iters=10),
    (sweep.Variant("base", "the defaults"),
     sweep.Variant("cs_0.2", "more switching", {"codeswitch_ratio": 0.2}),
     sweep.Variant("fresh_head", "fresh output layer", {"stage2_reinit": "output_layer"}),
     sweep.Variant("longer", "more tokens", {"train_iters": 50}, lr_from="base")),
    lrs=(1e-3, 2e-3, 4e-3))


class Interrupt(Exception):
    pass


class StandIns:
    """Records every training and evaluation call; can fail the n-th stage-2 call."""

    def __init__(self, monkeypatch, fail_at=None):
        self.stage1_calls, self.stage2_calls, self.evaluate_calls, self.reinit = [], [], [], []
        self.fail_at = fail_at
        for name in ("corpus_step", "tokenizer_step", "shards_step", "dictionaries_step",
                     "codeswitch_step", "transfer_step"):
            monkeypatch.setattr(data_prep, name, lambda preset, *a: {})
        monkeypatch.setattr(training_steps, "stage1_step", self.stage1)
        monkeypatch.setattr(training_steps, "stage2_step", self.stage2)
        monkeypatch.setattr(evaluate_step, "evaluate", self.evaluate)

    def stage1(self, preset, seed, out, inputs):
        self.stage1_calls.append((preset.codeswitch_ratio, seed))
        return {}

    def stage2(self, preset, arm, seed, out, inputs):
        self.stage2_calls.append((arm, seed, preset.lr, preset.train_iters, preset.codeswitch_ratio))
        self.reinit.append(preset.stage2_reinit if arm == "prealign" else None)
        if self.fail_at is not None and len(self.stage2_calls) == self.fail_at:
            (out / "log.jsonl").write_text('{"event": "train", "iteration": 5, "lm_loss": 9.0}\n')
            raise Interrupt()
        loss = 5.0 + math.log(preset.lr / BEST_LR[arm]) ** 2 + 0.01 * seed
        (out / "log.jsonl").write_text(json.dumps(
            {"event": "eval", "iteration": preset.train_iters, "lm_loss_en_valid": loss,
             "lm_loss_clone_valid": loss + 0.5}) + "\n")
        return {"arm": arm, "lr": preset.lr}

    def evaluate(self, preset, arm, seed, out, inputs, iteration=None):
        self.evaluate_calls.append((arm, seed, preset.lr))
        bonus = 1.0 if arm == "prealign" else 0.0
        metrics = {"clone_ppl": 100.0 - 3 * bonus * preset.codeswitch_ratio * 20 + seed,
                   "english_ppl": 80.0 + 2 * bonus + seed, "knowledge_en_only": 0.1 + 0.05 * bonus * seed,
                   "transfer_clone": 0.25, "align_p1_middle_layer_heldout": 0.01 + 0.2 * bonus,
                   "lr_seen": preset.lr, "iteration_seen": -1 if iteration is None else iteration}
        (out / "metrics.json").write_text(json.dumps(metrics))
        return {}


def run_sweep(tmp_path, name="sweep", seeds=(1, 2)):
    s = sweep.Sweep(GRID, list(seeds), tmp_path / name, data_prep.DEFAULT_CORPUS, quiet=True)
    s.run()
    return json.loads((tmp_path / name / "sweep.json").read_text())


def test_each_arm_gets_its_own_lr_and_every_seed_uses_it(tmp_path, monkeypatch):
    calls = StandIns(monkeypatch)
    report = run_sweep(tmp_path)
    base = report["variants"]["base"]
    assert {arm: base["lr"][arm]["chosen"] for arm in BEST_LR} == BEST_LR
    assert set(base["lr"]["joint"]["candidates"]) == {"0.001", "0.002", "0.004"}
    for variant in ("base", "cs_0.2", "fresh_head", "longer"):
        for arm, lr in BEST_LR.items():  # the evaluated runs of every seed are at the chosen lr
            assert report["variants"][variant]["arms"][arm]["lr_seen"] == [lr, lr]
    assert report["variants"]["longer"]["lr"]["joint"] == {"chosen": 4e-3, "from": "base"}

    # Grid on seed 1 only (3 lrs x 2 arms), seed 2 at the chosen lr; the seed-1 grid run at the
    # chosen lr is reused, not rerun. cs_0.2 changes only PreAlign's data, so its joint runs are
    # base's (same step keys) and only PreAlign trains again; the same for fresh_head. longer: no
    # grid, 2 arms x 2 seeds.
    per_variant = {"base": 3 * 2 + 2, "cs_0.2": 3 + 1, "fresh_head": 3 + 1, "longer": 4}
    assert len(calls.stage2_calls) == sum(per_variant.values())
    assert sorted(c for c in calls.stage2_calls if c[3] == 50) == sorted(
        (arm, seed, lr, 50, 0.05) for arm, lr in BEST_LR.items() for seed in (1, 2))
    assert calls.reinit.count("output_layer") == 4 and calls.reinit.count("") == 3 + 1 + 3 + 1 + 2
    # One stage 1 per (stage-1 settings, seed): shared by the lr candidates and by the variants
    # that change only stage 2.
    assert sorted(calls.stage1_calls) == [(0.05, 1), (0.05, 2)]


def test_gaps_are_paired_by_seed_and_the_report_is_written(tmp_path, monkeypatch):
    StandIns(monkeypatch)
    report = run_sweep(tmp_path)
    gap = report["variants"]["base"]["gap"]
    assert gap["english_ppl"]["per_seed"] == [2.0, 2.0] and gap["english_ppl"]["std"] == 0.0
    assert gap["knowledge_en_only"]["per_seed"] == pytest.approx([0.05, 0.10])
    assert gap["knowledge_en_only"]["mean"] == pytest.approx(0.075)
    assert report["variants"]["cs_0.2"]["gap"]["clone_ppl"]["mean"] == pytest.approx(-12.0)
    table = (tmp_path / "sweep" / "sweep.md").read_text()
    assert "| base |" in table and "| cs_0.2 |" in table and "**0.004**" in table
    image = matplotlib.image.imread(tmp_path / "sweep" / "plots" / "sweep_gap.png")
    assert image.shape[1] > 400 and image.std() > 0.01


def test_an_interrupted_sweep_resumes_to_the_same_report(tmp_path, monkeypatch):
    StandIns(monkeypatch)
    straight = run_sweep(tmp_path, "straight")
    StandIns(monkeypatch, fail_at=9)  # in cs_0.2's grid, after base was reported
    with pytest.raises(Interrupt):
        run_sweep(tmp_path, "resumed")
    partial = json.loads((tmp_path / "resumed" / "sweep.json").read_text())
    assert list(partial["variants"]) == ["base"]
    calls = StandIns(monkeypatch)
    assert run_sweep(tmp_path, "resumed") == straight
    # Only the unfinished work ran again: cs_0.2's PreAlign grid (the interrupted run included) and
    # its seed 2, then fresh_head's and the longer variant's runs.
    assert len(calls.stage2_calls) == 4 + 4 + 4


def test_lr_from_needs_its_source_variant(tmp_path):
    with pytest.raises(ValueError, match="takes its lrs from base"):
        sweep.Sweep(GRID, [1], tmp_path, data_prep.DEFAULT_CORPUS, variants=["longer"])
    with pytest.raises(ValueError, match="unknown variant"):
        sweep.Sweep(GRID, [1], tmp_path, data_prep.DEFAULT_CORPUS, variants=["nope"])


def test_selection_loss_reads_the_last_validation(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(json.dumps(r) for r in [
        {"event": "eval", "iteration": 0, "lm_loss_en_valid": 9.0, "lm_loss_clone_valid": 9.0},
        {"event": "eval", "iteration": 10, "lm_loss_en_valid": 4.0, "lm_loss_clone_valid": 5.0},
        {"event": "train", "iteration": 10, "lm_loss": 3.0}]) + "\n")
    assert sweep.selection_loss(log) == 4.5
    log.write_text(json.dumps({"event": "eval", "iteration": 10, "lm_loss_en_valid": float("nan"),
                               "lm_loss_clone_valid": 5.0}) + "\n")
    assert sweep.selection_loss(log) == float("inf")


def test_checkpoint_evaluations_give_metrics_against_tokens(tmp_path, monkeypatch):
    from examples.experiment import report
    from examples.experiment.dag import build_steps
    from examples.experiment.pipeline import Pipeline

    calls = StandIns(monkeypatch)
    preset = PRESETS["long"].replace(train_iters=30, eval_interval=5, checkpoint_evals=10)
    pipeline = Pipeline(tmp_path, quiet=True)
    evaluations = build_steps(preset, data_prep.DEFAULT_CORPUS)
    pipeline.run(evaluations)
    assert len(calls.stage2_calls) == 2  # checkpoints of one run, not new runs
    assert sorted(calls.evaluate_calls) == sorted((arm, 1, preset.lr) for arm in ("joint", "prealign")
                                                  for _ in range(3))
    iterations = sorted(json.loads((pipeline.directory(s) / "params.json").read_text())["params"]
                        .get("iteration", 30) for s in evaluations)
    assert iterations == [10, 10, 20, 20, 30, 30]
    report.write_report(tmp_path, preset, pipeline, evaluations)
    results = json.loads((tmp_path / "results.json").read_text())
    tokens = preset.global_batch_size * preset.seq_length
    assert sorted(results["checkpoints"]["prealign"]["1"], key=int) == [str(k * tokens) for k in (10, 20, 30)]
    by_tokens = results["checkpoints"]["prealign"]["1"]
    assert [by_tokens[str(k * tokens)]["iteration_seen"] for k in (10, 20)] == [10, 20]
    assert by_tokens[str(30 * tokens)]["iteration_seen"] == -1  # the final checkpoint, evaluated last
    assert results["arms"]["prealign"]["iteration_seen"] == [-1]  # per-arm metrics: final only
    assert results["stage2_lr"] == preset.lr and results["embeddings"] == "untied"
    assert (f"Untied input/output embeddings; stage-2 lr {preset.lr:g}."
            in (tmp_path / "results.md").read_text())
    image = matplotlib.image.imread(tmp_path / "plots" / "metrics_vs_tokens.png")
    assert image.shape[1] > 800 and image.std() > 0.01
    with pytest.raises(ValueError, match="multiple of eval_interval"):
        preset.replace(checkpoint_evals=7)


def test_cli_rejects_arms_without_the_gap(tmp_path, capsys):
    for arms in ("joint", "joint,prealign,nope"):
        with pytest.raises(SystemExit):
            sweep.main(["--output-dir", str(tmp_path), "--arms", arms])
        assert "including joint and prealign" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sweep.main(["--output-dir", str(tmp_path), "--variants", "nope"])
    assert "unknown variant" in capsys.readouterr().err


def test_cpu_grid_runs_the_lr_grid_once_unless_asked_for_every_variant(tmp_path, monkeypatch, capsys):
    calls = StandIns(monkeypatch)
    common = ["--grid", "cpu", "--seeds", "1", "--variants", "authors_code,reinit_head"]
    assert sweep.main(common + ["--output-dir", str(tmp_path / "shared")]) == 0
    lrs = sweep.GRIDS["cpu"].lrs
    # The grid in authors_code; reinit_head reuses it and only its PreAlign arm runs (joint is
    # the same run as authors_code's).
    assert len(calls.stage2_calls) == 2 * len(lrs) + 1
    report = json.loads((tmp_path / "shared" / "sweep.json").read_text())
    assert report["variants"]["reinit_head"]["lr"]["joint"] == {
        "chosen": report["variants"]["authors_code"]["lr"]["joint"]["chosen"], "from": "authors_code"}
    calls.stage2_calls.clear()
    assert sweep.main(common + ["--output-dir", str(tmp_path / "every"), "--lr-grid-every-variant"]) == 0
    assert len(calls.stage2_calls) == 2 * len(lrs) + len(lrs)  # reinit_head's PreAlign grid too
    assert "candidates" in json.loads((tmp_path / "every" / "sweep.json").read_text()
                                      )["variants"]["reinit_head"]["lr"]["prealign"]
    capsys.readouterr()


def test_cpu_grid_second_round_changes_one_knob_on_top_of_paper_weights():
    variants = {v.name: v for v in sweep.GRIDS["cpu"].variants}
    # Own grids: the references, and the tied variants (tying changes the joint arm too).
    assert sorted(n for n, v in variants.items() if v.lr_from is None) == [
        "authors_code", "paper_weights", "paper_weights+tied", "tied"]
    round_two = [n for n in variants if n.startswith("paper_weights+")]
    assert len(round_two) >= 6
    for name in round_two:
        overrides = variants[name].overrides
        assert overrides.items() >= sweep.PAPER_WEIGHTS.items(), name
        changed = set(overrides) - set(sweep.PAPER_WEIGHTS)
        assert changed and (len(changed) == 1 or name.endswith("tokens_x5")), (name, changed)
        assert variants[name].lr_from in (None, "paper_weights")



# ---- the real setting's grid --------------------------------------------------------------------

REAL_METRICS = ["english_ppl", "de_ppl", "transfer_debian_reference_english", "transfer_debian_reference_de",
                "knowledge_en_only", "knowledge_en_only_in_english", "knowledge_both", "knowledge_never",
                "align_p1_embedding_heldout", "align_p1_layer1_heldout", "align_p1_middle_layer_heldout",
                "align_p1_last_layer_heldout", "align_p1_middle_layer_unseen",
                "retrieval_p1_embedding_debian_reference_de", "retrieval_p1_layer2_debian_reference_de",
                "retrieval_p1_middle_layer_debian_reference_de", "retrieval_p1_last_layer_debian_reference_de"]


def test_real_gap_metrics_are_the_headline_ones_of_any_pair():
    grid = sweep.GRIDS["real-cpu"]
    assert grid.gap_metrics(REAL_METRICS) == [
        "de_ppl", "english_ppl", "knowledge_both", "knowledge_en_only", "knowledge_en_only_in_english",
        "transfer_debian_reference_de", "transfer_debian_reference_english",
        "align_p1_embedding_heldout", "align_p1_last_layer_heldout", "align_p1_middle_layer_heldout",
        "retrieval_p1_embedding_debian_reference_de", "retrieval_p1_last_layer_debian_reference_de",
        "retrieval_p1_middle_layer_debian_reference_de"]
    assert grid.plotted(REAL_METRICS) == [
        "de_ppl", "english_ppl", "knowledge_en_only", "transfer_debian_reference_de",
        "align_p1_middle_layer_heldout", "retrieval_p1_middle_layer_debian_reference_de"]
    # Several targets: the per-language names.
    many = ["es_ppl", "de_ppl", "knowledge_en_only_de", "knowledge_en_only_es", "knowledge_never_es",
            "align_p1_middle_layer_heldout_es", "transfer_bible_es", "transfer_bible_english"]
    assert grid.gap_metrics(many) == ["de_ppl", "es_ppl", "knowledge_en_only_de", "knowledge_en_only_es",
                                      "transfer_bible_english", "transfer_bible_es",
                                      "align_p1_middle_layer_heldout_es"]
    assert sweep.GRIDS["cpu"].gap_metrics(REAL_METRICS) == sweep.GAP_METRICS  # clone: fixed


def test_real_grid_changes_one_knob_of_the_real_cpu_preset_and_reuses_its_lr():
    grid = sweep.GRIDS["real-cpu"]
    # The preset as the sweep measured it; the real cpu preset adopted the winner, authors_weights.
    assert grid.base == sweep.REAL_PRESETS["cpu"].replace(**sweep.PAPER_WEIGHTS) and grid.lrs == (grid.base.lr,)
    winner = next(v for v in grid.variants if v.name == "authors_weights")
    assert grid.base.replace(**winner.overrides) == sweep.REAL_PRESETS["cpu"]
    first, *others = grid.variants
    assert first.overrides == {} and first.lr_from is None
    for variant in others:
        assert variant.lr_from == first.name
        assert all(getattr(grid.base, k) != v for k, v in variant.overrides.items()), variant.name
        assert len(variant.overrides) <= 2 and variant.overrides  # one knob (the loss weights are a pair)


class RealStandIns(StandIns):
    """Stand-ins for the real setting: validation losses per language; the shorter stage 1 is best."""

    def __init__(self, monkeypatch):
        super().__init__(monkeypatch)
        from examples.experiment.real import data_prep as real_data
        for name in ("corpus_step", "tokenizer_step", "shards_step", "dictionaries_step",
                     "codeswitch_step", "transfer_step"):
            monkeypatch.setattr(real_data, name, lambda preset, *a: {})

    def stage2(self, preset, arm, seed, out, inputs):
        self.stage2_calls.append((arm, seed, preset.lr, preset.train_iters, preset.codeswitch_ratio))
        loss = 5.0 + (preset.stage1_iters / 1000 if arm == "prealign" else 0.2) + 0.01 * seed
        (out / "log.jsonl").write_text(json.dumps(
            {"event": "eval", "iteration": preset.train_iters, "lm_loss_en_valid": loss,
             "lm_loss_de_valid": loss + 1.0}) + "\n")
        return {}

    def evaluate(self, preset, arm, seed, out, inputs, iteration=None):
        metrics = {name: 1.0 + (arm == "prealign") * 0.5 + seed for name in REAL_METRICS}
        (out / "metrics.json").write_text(json.dumps(metrics))
        return {}


def test_real_grid_selects_on_validation_loss_and_reports_the_pairs_metrics(tmp_path, monkeypatch):
    calls = RealStandIns(monkeypatch)
    base = sweep.REAL_PRESETS["tiny"].replace(train_iters=10, **sweep.PAPER_WEIGHTS)  # as the sweep ran
    grid = sweep.Grid("toy-real", base, sweep._real_cpu_variants(base), lrs=(base.lr,))
    s = sweep.Sweep(grid, [1, 2], tmp_path / "real", data_prep.DEFAULT_CORPUS, quiet=True)
    s.run()
    report = json.loads((tmp_path / "real" / "sweep.json").read_text())
    # joint does not depend on stage 1 or switching: 2 seeds once; PreAlign 2 seeds per variant.
    assert len(calls.stage2_calls) == 2 + 2 * len(grid.variants)
    assert report["selected"] == "stage1_short"
    short = report["variants"]["stage1_short"]
    assert short["validation"]["prealign"] == pytest.approx(
        [5.5 + base.stage1_iters // 4 / 1000 + 0.01 * seed for seed in (1, 2)])
    assert short["gap"]["de_ppl"]["per_seed"] == [0.5, 0.5]
    assert "knowledge_never" not in short["gap"] and "align_p1_layer1_heldout" not in short["gap"]
    table = (tmp_path / "real" / "sweep.md").read_text()
    assert "grid toy-real en-de" in table and "**stage1_short**" in table and "| de_ppl |" in table
    image = matplotlib.image.imread(tmp_path / "real" / "plots" / "sweep_gap.png")
    assert image.shape[1] > 400 and image.std() > 0.01


def test_selection_loss_averages_every_language(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text(json.dumps({"event": "eval", "iteration": 5, "lm_loss_en_valid": 4.0,
                               "lm_loss_de_valid": 6.0, "lm_loss_es_valid": 8.0, "align/dev/x": 0.5}) + "\n")
    assert sweep.selection_loss(log) == 6.0
    log.write_text(json.dumps({"event": "eval", "iteration": 5, "align/dev/x": 0.5}) + "\n")
    with pytest.raises(RuntimeError, match="no lm_loss_<language>_valid"):
        sweep.selection_loss(log)


def test_cli_pair_belongs_to_real_grids(tmp_path, capsys):
    with pytest.raises(SystemExit):
        sweep.main(["--output-dir", str(tmp_path), "--grid", "cpu", "--pair", "en-de"])
    assert "--grid cpu is the clone setting" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sweep.main(["--output-dir", str(tmp_path), "--grid", "real-cpu", "--pair", "en-fr"])
    assert "invalid choice" in capsys.readouterr().err
