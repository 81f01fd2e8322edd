"""The real-languages pipeline (English + Spanish) at toy scale, through the same DAG as the clone
setting: every language's shards, code-switching into Spanish, both transfer tasks (Debian Reference
topics and Bible book groups), sentence retrieval and the report; an interrupted run, rerun, gives
the same results.json."""

import json
import shutil

import pytest

from tests.fixtures.experiment_runs import finish, forget_arm, kill_after_first_stage2_checkpoint, start

pytestmark = pytest.mark.multiprocess  # starts torchrun jobs

TOY = dict(name="toy", pair="en-es", max_paragraphs=1500, target_paragraphs=900, heldout_paragraphs=60,
           valid_paragraphs=30, vocab_size=1000, dev_words=40, subjects_per_group=2,
           fact_repetitions_en=5, fact_repetitions_clone=3, num_layers=2, hidden_size=32,
           ffn_hidden_size=64, num_attention_heads=2, seq_length=64, micro_batch_size=4,
           global_batch_size=4, train_iters=12, warmup_iters=2, eval_interval=6, eval_iters=2,
           stage1_iters=6, stage1_entries=16, transfer_train_per_class=10, transfer_test_per_class=5,
           eval_max_tokens=4000, retrieval_pairs=40, arms=["joint", "prealign"], seeds=[1],
           transfer_finetune_steps=3)


@pytest.fixture(scope="module")
def complete_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("real") / "run"
    finish(start(out, TOY, setting="real"))
    return out


def test_every_metric_of_the_real_setting_is_reported(complete_run):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    shards = next((complete_run / "steps").glob("shards-*"))
    for name in ("en_train", "en_heldout", "es_train", "es_valid", "es_heldout"):
        assert len(IndexedDataset(str(shards / f"{name}_text_document"))) > 0
    results = json.loads((complete_run / "results.json").read_text())
    assert results["setting"] == "real" and results["pair"] == "en-es"
    required = ["es_ppl", "english_ppl", "knowledge_en_only", "knowledge_both", "knowledge_never",
                "knowledge_en_only_in_english", "transfer_debian_reference_es_english",
                "transfer_debian_reference_es", "transfer_bible_es_english", "transfer_bible_es",
                "transfer_bible_es_frozen", "transfer_debian_reference_es_english_frozen",
                "retrieval_p1_middle_layer_bible_es", "retrieval_p1_last_layer_debian_reference_es",
                "align_p1_embedding_heldout", "align_p1_last_layer_unseen"]
    for arm, metrics in results["arms"].items():
        for metric in required:
            assert len(metrics[metric]) == 1 and metrics[metric][0] is not None, (arm, metric)
            assert metrics[metric][0] >= 0.0
        assert metrics["es_ppl"][0] > 1.0
    # Validation curves per language. PreAlign starts stage 2 from its stage-1 checkpoint, joint from
    # a fresh model with the same seed: their iteration-0 losses differ. (How well six toy stage-1
    # steps align held-out real words is not a pipeline property; the presets measure it.)
    curves = results["curves"]
    assert "lm_loss_es_valid" in curves["joint"]["1"] and "lm_loss_en_valid" in curves["joint"]["1"]
    start = {arm: curves[arm]["1"]["lm_loss_es_valid"][0] for arm in results["arms"]}
    assert start["prealign"] != start["joint"]
    assert "align/dev/embedding/p_at_1" in curves["prealign"]["1"]
    table = (complete_run / "results.md").read_text()
    assert table.startswith("# English / Spanish: toy preset") and "| es_ppl |" in table
    assert {p.name for p in (complete_run / "plots").glob("*.png")} >= {"loss.png", "alignment.png",
                                                                       "knowledge_transfer.png"}


def test_interrupted_real_run_resumes_to_the_same_results(complete_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(complete_run, out)
    forget_arm(out, "prealign")
    kill_after_first_stage2_checkpoint(start(out, TOY, setting="real"), out)
    assert not (out / "results.json").exists()
    finish(start(out, TOY, setting="real"))
    assert json.loads((out / "results.json").read_text()) == json.loads((complete_run / "results.json").read_text())
