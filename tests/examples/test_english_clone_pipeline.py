"""The English-Clone pipeline at toy scale, with the ``examined`` probes: every artifact exists and
is well formed, and an interrupted run, rerun, gives the same results.json."""

import json
import shutil
import sys

import pytest

from tests.fixtures.experiment_runs import finish, forget_arm, kill_after_first_stage2_checkpoint, start

pytestmark = pytest.mark.multiprocess  # starts torchrun jobs

TOY = dict(name="toy", max_paragraphs=1500, heldout_paragraphs=60, valid_paragraphs=30,
           vocab_size=400, dev_words=50, subjects_per_group=2, fact_repetitions_en=5,
           fact_repetitions_clone=3, num_layers=2, hidden_size=32, ffn_hidden_size=64,
           num_attention_heads=2, seq_length=64, micro_batch_size=4, global_batch_size=4,
           train_iters=12, warmup_iters=2, eval_interval=6, eval_iters=2, stage1_iters=6,
           stage1_entries=16, transfer_train_per_class=10, transfer_test_per_class=5,
           eval_max_tokens=4000, arms=["joint", "prealign"], seeds=[1], probes="examined",
           transfer_finetune_steps=3)

@pytest.fixture(scope="module")
def complete_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy") / "run"
    finish(start(out, TOY))
    return out


def test_every_artifact_is_well_formed(complete_run):
    import matplotlib.image
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    steps = complete_run / "steps"
    shards = next(steps.glob("shards-*"))
    for name in ("en_train", "en_valid", "en_heldout", "clone_train", "clone_valid", "clone_heldout"):
        data = IndexedDataset(str(shards / f"{name}_text_document"))
        assert len(data) > 0
    codeswitch = next(steps.glob("codeswitch-*"))
    assert (codeswitch / "en_train_cs_text_document_targets.bin").stat().st_size > 0
    for evaluation in steps.glob("evaluate-*"):
        hf = evaluation / "hf"
        assert (hf / "config.json").is_file() and list(hf.glob("*.safetensors"))
    results = json.loads((complete_run / "results.json").read_text())
    required = ["clone_ppl", "english_ppl", "knowledge_en_only", "knowledge_both", "knowledge_never",
                "transfer_english", "transfer_clone", "transfer_english_frozen", "transfer_clone_frozen",
                "align_p1_last_layer_heldout", "align_p1_last_layer_unseen"]
    assert set(results["arms"]) == {"joint", "prealign"}
    examined = ["knowledge_gen_en_only", "knowledge_gen_en_only_in_english", "transfer_clone_middle_layer",
                "transfer_english_embedding",
                "align_p1_middle_layer_fact_subjects", "align_p1_embedding_fact_objects"]
    for arm, metrics in results["arms"].items():
        for metric in required + examined:
            assert len(metrics[metric]) == 1 and metrics[metric][0] is not None, (arm, metric)
        assert metrics["clone_ppl"][0] > 1.0
    # PreAlign starts stage 2 aligned; joint training does not (iteration-0 evaluation).
    start_p1 = {arm: results["curves"][arm]["1"]["align/dev/embedding/p_at_1"][0] for arm in results["arms"]}
    assert start_p1["prealign"] > start_p1["joint"]
    table = (complete_run / "results.md").read_text()
    assert "| clone_ppl |" in table and "prealign" in table
    for plot in ("clone_loss", "alignment", "knowledge_transfer"):
        image = matplotlib.image.imread(complete_run / "plots" / f"{plot}.png")
        assert image.shape[0] > 200 and image.shape[1] > 400
        assert image.std() > 0.01  # not a blank canvas


def test_interrupted_run_resumes_to_the_same_results(complete_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(complete_run, out)
    # Forget the PreAlign arm's training and evaluation and the report, then interrupt the rerun
    # in the middle of that arm's stage 2 (after its first checkpoint).
    forget_arm(out, "prealign")
    kill_after_first_stage2_checkpoint(start(out, TOY), out)
    assert not (out / "results.json").exists()
    finish(start(out, TOY))
    again = json.loads((out / "results.json").read_text())
    first = json.loads((complete_run / "results.json").read_text())
    assert again == first


def test_run_logged_tees_output_and_counts_rates_from_the_first_report(tmp_path, capsys):
    """A resumed run first reports iteration 400 of 500: the bar starts there (a rate counted from
    0 would claim hundreds of iterations in no time), and a failure raises with the log's tail."""
    from examples.experiment.pipeline import StepFailed, run_logged

    script = ("import time\nfor i in (400, 420, 440):\n"
              "    print(f' iteration {i:>5}/  500 | loss 1.0', flush=True); time.sleep(0.3)\n")
    log = tmp_path / "train.log"
    run_logged([sys.executable, "-c", script], log, progress_label="arm")
    assert log.read_text().splitlines()[-3:] == [f" iteration {i:>5}/  500 | loss 1.0"
                                                 for i in (400, 420, 440)]
    bar = [seg for seg in capsys.readouterr().err.split("\r") if "it/s]" in seg][-1]  # last refresh
    assert "440/500" in bar, bar
    rate = float(bar.split(", ")[-1].split("it/s")[0])
    assert 10 < rate < 200, bar  # about 20 iterations per 0.3 s, not 400 at once
    with pytest.raises(StepFailed, match="exited 3"):
        run_logged([sys.executable, "-c", "print('boom'); raise SystemExit(3)"], log)
    assert "boom" in log.read_text()
