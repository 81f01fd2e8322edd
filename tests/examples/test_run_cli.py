"""``run.py`` as a user meets it: one run per output directory, and a failed step that never looks
complete and is redone cleanly by the next run. (Bad ``--corpus`` and ``--seeds`` values are rows of
``tests/hostile/cases_eval_run.py``.)"""

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

HOLDER = """
import sys, time
from megatron_prealign.files import output_lock
with output_lock(sys.argv[1], "a test's experiment"):
    print("locked", flush=True)
    time.sleep(600)
"""


def python(*args, **kwargs):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, *map(str, args)], cwd=REPO_ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            **kwargs)


def test_a_second_run_on_the_same_output_dir_is_refused(tmp_path):
    """Another process holds OUTPUT_DIR/.lock (as a running run.py does): run.py must refuse at
    once, naming the directory and the holder's pid, and write nothing there."""
    out = tmp_path / "run"
    holder = python("-c", HOLDER, out / ".lock")
    try:
        assert holder.stdout.readline().strip() == "locked"
        second = python("examples/experiment/run.py", "--output-dir", out, "--seeds", "1")
        try:
            stdout, stderr = second.communicate(timeout=120)  # old code: trains into the same dir
        finally:
            if second.poll() is None:
                os.killpg(second.pid, signal.SIGKILL)
                second.wait()
        assert second.returncode == 1, stdout[-2000:] + stderr[-2000:]
        assert f"pid {holder.pid}" in stderr and str(out) in stderr, stderr
        assert "Traceback" not in stderr
        assert sorted(os.listdir(out)) == [".lock"]  # no steps/, nothing of a second run
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()


def test_a_failed_step_is_never_complete_and_the_next_run_redoes_it(tmp_path, capsys):
    """A failing ordinary step leaves its ``.partial`` directory (with its log) and no done.json;
    the next run deletes the ``.partial`` and starts the step afresh."""
    from examples.experiment.pipeline import Pipeline, Step, StepFailed

    def failing(out, inputs):
        (out / "half.bin").write_bytes(b"half")
        raise StepFailed("tool exited 1; log somewhere")

    def working(out, inputs):
        (out / "whole.bin").write_bytes(b"whole")
        return {"ok": True}

    pipeline = Pipeline(tmp_path / "root")
    with pytest.raises(StepFailed):
        pipeline.run([Step("data", "data | shards", {"n": 1}, failing)])
    step = Step("data", "data | shards", {"n": 1}, working)
    final = pipeline.directory(step)
    partial = final.with_name(final.name + ".partial")
    assert "step did not finish: data | shards" in capsys.readouterr().out
    assert not final.exists() and not pipeline.is_done(step)
    assert (partial / "half.bin").exists() and not (partial / "done.json").exists()
    pipeline.run([step])
    assert not partial.exists()
    assert sorted(p.name for p in final.iterdir()) == ["done.json", "params.json", "whole.bin"]
    assert json.loads((final / "done.json").read_text())["ok"] is True


def tiny_results(seeds=(1,), **arms):
    """A results.json as report.collect writes it: per arm, per metric, one value per seed."""
    return {"preset": "tiny", "seeds": list(seeds), "embeddings": "untied", "stage2_lr": 0.003,
            "arms": arms, "curves": {arm: {} for arm in arms}}


JOINT = {"clone_ppl": [281.79433509649317], "english_ppl": [146.28807752398424],
         "knowledge_en_only": [0.16666666666666666], "knowledge_both": [0.3], "transfer_english": [0.435],
         "transfer_clone": [0.26], "align_p1_embedding_heldout": [0.0], "align_p1_middle_layer_heldout": [0.0],
         "align_p1_last_layer_heldout": [0.0], "align_p1_layer1_unseen": [0.0007739938080495357]}
PREALIGN = {"clone_ppl": [181.38792332912928], "english_ppl": [114.65507614258331],
            "knowledge_en_only": [0.16666666666666666], "knowledge_both": [0.3333333333333333],
            "transfer_english": [0.41], "transfer_clone": [0.28], "align_p1_embedding_heldout": [0.9566666666666667],
            "align_p1_middle_layer_heldout": [0.78], "align_p1_last_layer_heldout": [0.14333333333333334],
            "align_p1_layer1_unseen": [0.6207430340557275]}


def test_the_headline_has_the_seven_numbers_per_arm_and_the_path_of_results_md(tmp_path):
    """The values of a finished tiny run (/tmp/qs_before): seven rows in a fixed order, one column
    per arm in results.json's order, nothing else of results.md, then where the full report is."""
    from examples.experiment.run import headline

    text = headline(tiny_results(joint=JOINT, prealign=PREALIGN), tmp_path)
    lines = text.splitlines()
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines[:9]]
    assert cells[0] == ["tiny, seed 1", "joint", "prealign"]
    assert set(lines[1]) == {"|", "-"} and len(lines[1]) == len(lines[0])  # aligned columns
    assert cells[2:] == [
        ["clone PPL", "281.8", "181.4"],
        ["English PPL", "146.3", "114.7"],
        ["knowledge: English-only facts, clone", "0.167", "0.167"],
        ["transfer: fine-tuned on English, clone", "0.260", "0.280"],
        ["P@1 held-out words, embedding", "0.000", "0.957"],
        ["P@1 held-out words, middle layer", "0.000", "0.780"],
        ["P@1 held-out words, last layer", "0.000", "0.143"],
    ]
    assert len(lines) <= 13  # not results.md's ~60 lines
    assert "knowledge_both" not in text and "layer1" not in text and "0.621" not in text
    assert lines[-1].startswith(f"full results: {tmp_path / 'results.md'} ")


def test_the_headline_over_several_seeds_gives_mean_and_std_and_says_what_is_missing(tmp_path):
    from examples.experiment.run import headline

    prealign = {"clone_ppl": [174.0, 169.0, 170.0], "english_ppl": [113.0, float("nan"), 112.0],
                "transfer_clone": [0.25, 0.25, 0.28]}
    text = headline(tiny_results((1, 2, 3), prealign=prealign, joint={}), tmp_path)
    rows = {c[0]: c[1:] for c in ([x.strip() for x in line.strip("|").split("|")]
                                  for line in text.splitlines() if line.startswith("| "))}
    assert rows["tiny, seeds 1, 2, 3: mean +- std"] == ["prealign", "joint"]
    assert rows["clone PPL"] == ["171.0 +- 2.6", "n/a"]  # sample std: sqrt(7)
    assert rows["English PPL"] == ["112.5 +- 0.7", "n/a"]  # a NaN seed is left out, as results.md does
    assert rows["transfer: fine-tuned on English, clone"] == ["0.260 +- 0.017", "n/a"]
    assert rows["P@1 held-out words, last layer"] == ["n/a", "n/a"]


def test_run_prints_the_headline_last_not_the_full_table(tmp_path, monkeypatch, capsys):
    """run() ends with the headline read back from results.json, and results.json/results.md are the
    report's own (the headline changes what is printed, never what is written)."""
    from examples.experiment import report, run
    from examples.experiment.clone import data_prep
    from examples.experiment.presets import PRESETS

    results = tiny_results(joint=JOINT, prealign=PREALIGN)

    def write_report(output_dir, preset, pipeline, evaluations):
        (output_dir / "results.md").write_text(report.markdown(results))
        (output_dir / "results.json").write_text(json.dumps(results, indent=1))
        return report.markdown(results)  # what run() printed before the headline

    monkeypatch.setattr(data_prep, "check_corpus", lambda corpus, presets: None)
    monkeypatch.setattr(run, "build_steps", lambda preset, corpus: [])
    monkeypatch.setattr(report, "write_report", write_report)
    out = tmp_path / "run"
    assert run.run(PRESETS["tiny"], data_prep.DEFAULT_CORPUS, out) == 0
    printed = capsys.readouterr().out
    headline_text = run.headline(results, out)
    assert printed.rstrip().endswith(headline_text)
    assert "| clone_ppl |" not in printed and "Per seed" not in printed, printed
    assert headline_text.splitlines()[2].split("|")[2].strip() == "281.8"
    assert json.loads((out / "results.json").read_text()) == results
