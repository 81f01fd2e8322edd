"""The compute-matched control arms (lm_init, lm_init_cs): PreAlign's stage 1 with the contrastive
term off, everything else (steps, entries, schedule, data order) the same."""

import pytest

from examples.experiment import dag, training_steps
from examples.experiment.clone import data_prep
from examples.experiment.pipeline import Pipeline
from examples.experiment.presets import PRESETS, REAL_PRESETS


def _flags(command) -> dict:
    """``--flag value...`` pairs of a command line (values joined), positional parts dropped."""
    out, current = {}, None
    for part in map(str, command):
        if part.startswith("--"):
            current = part
            out[current] = []
        elif current is not None:
            out[current].append(part)
    return {k: " ".join(v) for k, v in out.items()}


@pytest.mark.parametrize("preset", [PRESETS["cpu"], REAL_PRESETS["cpu"]], ids=["clone", "real"])
def test_control_stage1_is_prealigns_with_alpha_zero(preset, tmp_path):
    data = dag.data_steps(preset, data_prep.DEFAULT_CORPUS)
    runs = {arm: dag.stage2(preset, arm, 1, data) for arm in training_steps.ARMS}
    prealign_s1, control_s1 = runs["prealign"].inputs["stage1"], runs["lm_init"].inputs["stage1"]
    assert preset.alignment_alpha > 0
    assert control_s1.params["alpha"] == 0.0
    assert {k: v for k, v in control_s1.params.items() if k != "alpha"} == \
        {k: v for k, v in prealign_s1.params.items() if k != "alpha"}
    assert control_s1.key != prealign_s1.key and "LM-only" in control_s1.label
    # Both control arms share one stage 1 per seed; PreAlign and init_only share theirs.
    assert runs["lm_init_cs"].inputs["stage1"].key == control_s1.key
    assert runs["init_only"].inputs["stage1"].key == prealign_s1.key
    # Code-switching as in the arm each control mirrors; every stage 2 is its own run.
    assert "codeswitch" in runs["lm_init_cs"].inputs and "codeswitch" not in runs["lm_init"].inputs
    assert len({run.key for run in runs.values()}) == len(training_steps.ARMS)

    # The command lines differ in --alignment-alpha only: the same dictionary, seed, batch and
    # schedule flags, from which stage 1 draws its entries in order (EntryStream).
    pipeline = Pipeline(tmp_path)
    commands = {}
    for name, step in (("prealign", prealign_s1), ("control", control_s1)):
        inputs = {k: pipeline.directory(s) for k, s in step.inputs.items()}
        commands[name] = _flags(step.command(tmp_path / "same_out", inputs))
    differing = {k for k in commands["prealign"] if commands["prealign"][k] != commands["control"].get(k)}
    assert differing == {"--alignment-alpha"} and commands["control"]["--alignment-alpha"] == "0.0"
    assert set(commands["prealign"]) == set(commands["control"])


def test_existing_arms_keep_their_step_keys():
    """Adding the controls changed no existing arm's run (so finished runs stay found)."""
    preset = PRESETS["tiny"]
    data = dag.data_steps(preset, data_prep.DEFAULT_CORPUS)
    stage1 = dag.stage2(preset, "prealign", 1, data).inputs["stage1"]
    assert stage1.label.endswith("stage 1 (alignment init)")
    assert set(stage1.params) == {"model", "seed", "iters", "entries", "lr", "levels", "alpha",
                                  "lm_weight", "wd", "clip"}
