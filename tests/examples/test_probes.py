"""The ``examined`` probes in the experiment: their own evaluation steps (training shared), the fact
dictionaries they align, and their metric names, on hand-made evaluation results."""

import json

import pytest

from examples.experiment import evaluate_step
from examples.experiment.clone import data_prep as clone_data
from examples.experiment.clone import facts
from examples.experiment.dag import build_steps
from examples.experiment.presets import PRESETS, REAL_PRESETS
from examples.experiment.real import facts as real_facts
from examples.experiment.report import default_transfer_metrics


@pytest.mark.parametrize("preset", [PRESETS["cpu"], REAL_PRESETS["cpu"]], ids=["clone", "real"])
def test_examined_probes_have_their_own_evaluations_and_reuse_the_training(preset):
    basic = build_steps(preset, clone_data.DEFAULT_CORPUS)
    examined = build_steps(preset.replace(probes="examined"), clone_data.DEFAULT_CORPUS)
    assert len(basic) == len(examined)
    for b, e in zip(basic, examined):
        assert b.key != e.key and e.params["probes"] == "examined" and "probes" not in b.params
        assert b.inputs["stage2"].key == e.inputs["stage2"].key
    # The fine-tuned transfer is in every evaluation (the default probe): its steps are in every key.
    for probes, steps in (("basic", basic), ("examined", examined)):
        fewer = build_steps(preset.replace(probes=probes, transfer_finetune_steps=10), clone_data.DEFAULT_CORPUS)
        assert fewer[0].key != steps[0].key and fewer[0].inputs["stage2"].key == steps[0].inputs["stage2"].key
    with pytest.raises(ValueError, match="probes 'fancy'"):
        preset.replace(probes="fancy")
    with pytest.raises(ValueError, match="transfer_finetune_steps 0"):
        preset.replace(transfer_finetune_steps=0)


def test_fact_dictionaries_pair_every_object_with_its_translation(tmp_path):
    preset = REAL_PRESETS["cpu"].replace(pair="en-de-es", probes="examined")
    paths = evaluate_step.fact_dictionaries(preset, tmp_path, inputs={})
    assert [p.name for p in paths] == ["fact_objects_de.jsonl", "fact_objects_es.jsonl"]
    german = [json.loads(line)["words"].split(" $ ") for line in open(paths[0], encoding="utf-8")]
    assert len(german) == sum(len(spec["objects"]) for spec in facts.RELATIONS.values())
    assert ["doctor", "Arzt"] in german and ["river", "Fluss"] in german
    assert [g[1] for g in german[:8]] == real_facts.TARGETS["de"]["trade"]["objects"]
    assert evaluate_step.fact_dictionaries(preset.replace(probes="basic"), tmp_path, {}) == []


def levels(*values):
    names = ["embedding", "layer1", "layer2", "layer3", "layer4", "final_norm"]
    return {name: {"p_at_1": v, "source_accuracy": v, "target_accuracy": v / 2} for name, v in zip(names, values)}


def test_examined_metrics_are_named_per_level_and_variant():
    transfer = {"source_accuracy": 0.8, "target_accuracy": 0.3, "level": "final_norm",
                "levels": levels(0.5, 0.6, 0.7, 0.8, 0.9, 0.8),
                "finetuned": {"source_accuracy": 0.95, "target_accuracy": 0.4}}
    run = {"perplexity": {"en": {"perplexity": 30.0}, "de": {"perplexity": 90.0}},
           "knowledge": {"en_only": {"accuracy": 0.2}, "all": {"accuracy": 0.3}},
           "knowledge_generation": {"en_only": {"accuracy": 0.1}, "all": {"accuracy": 0.05}},
           "transfer": {"debian_reference_de": transfer},
           "alignment": {"fact_objects": {"levels": levels(0.1, 0.2, 0.3, 0.4, 0.5, 0.6)}}}
    metrics = evaluate_step.real_metrics(REAL_PRESETS["cpu"].replace(probes="examined"), run)
    assert metrics["knowledge_gen_en_only"] == 0.1 and "knowledge_gen_all" not in metrics
    # The default transfer probe is the fine-tuned model; the frozen final-norm probe is named so.
    assert metrics["transfer_debian_reference_de"] == 0.4
    assert metrics["transfer_debian_reference_de_english"] == 0.95
    assert metrics["transfer_debian_reference_de_frozen"] == 0.3
    assert metrics["transfer_debian_reference_de_english_frozen"] == 0.8
    assert metrics["transfer_debian_reference_de_layer2"] == 0.35
    assert metrics["transfer_debian_reference_de_english_layer2"] == 0.7
    assert metrics["transfer_debian_reference_de_middle_layer"] == 0.35  # layer 2 of 4
    assert not any(m.endswith("_finetuned") for m in metrics)
    assert metrics["align_p1_embedding_fact_objects"] == 0.1
    assert metrics["align_p1_middle_layer_fact_objects"] == 0.3 and metrics["align_p1_last_layer_fact_objects"] == 0.6
    # A basic run has none of the examined ones.
    basic = {k: v for k, v in run.items() if k != "knowledge_generation"}
    basic["transfer"] = {"debian_reference_de": {k: transfer[k] for k in ("source_accuracy", "target_accuracy",
                                                                          "finetuned")}}
    basic["alignment"] = {}
    basic_metrics = evaluate_step.real_metrics(REAL_PRESETS["cpu"], basic)
    assert set(basic_metrics) == {
        "english_ppl", "de_ppl", "knowledge_en_only", "transfer_debian_reference_de",
        "transfer_debian_reference_de_english", "transfer_debian_reference_de_frozen",
        "transfer_debian_reference_de_english_frozen"}
    assert default_transfer_metrics(basic_metrics) == ["transfer_debian_reference_de",
                                                       "transfer_debian_reference_de_english"]


def test_clone_transfer_metrics_are_the_fine_tuned_model_with_the_frozen_probe_beside():
    genres = {"source_accuracy": 0.5, "target_accuracy": 0.25,
              "finetuned": {"source_accuracy": 0.48, "target_accuracy": 0.33}}
    run = {"perplexity": {"en": {"perplexity": 110.0}, "clone": {"perplexity": 170.0}},
           "knowledge": {group: {"accuracy": 0.125} for group in ("en_only", "both", "never", "en_only_in_english")},
           "transfer": {"genres": genres}}
    metrics = evaluate_step.metrics_from_results(run)
    assert (metrics["transfer_english"], metrics["transfer_clone"]) == (0.48, 0.33)
    assert (metrics["transfer_english_frozen"], metrics["transfer_clone_frozen"]) == (0.5, 0.25)


def test_dictionary_subjects_are_attested_nouns_and_open_their_sentences_capitalized():
    counts = {noun: 5 for noun in facts.ORDINARY_NOUNS[:70]} | {"lantern": 2, "zorvek": 9}
    made = facts.make_facts(20, counts, seed=0, subjects="dictionary")
    subjects = sorted({f.subject for f in made})
    assert len(subjects) == 60 and all(s.startswith("the ") for s in subjects)
    assert all(counts[s[4:]] >= facts.MIN_SUBJECT_COUNT for s in subjects)  # "lantern" seen twice: not drawn
    fact = next(f for f in made if f.relation == "home")
    first, second = facts.renderings(fact)[:2]
    assert first == f"The {fact.subject[4:]} lived near the {fact.object}."
    assert second == f"The house of {fact.subject} stood by the {fact.object}."
    prompts = [r["prompt"] for r in facts.knowledge_records([fact])]
    assert prompts[0] == f"{facts.CLONE_TAG}The {fact.subject[4:]} lived near the"  # as the sentence opens
    with pytest.raises(ValueError, match="only 10 of the ordinary nouns"):
        facts.make_facts(20, {noun: 5 for noun in facts.ORDINARY_NOUNS[:10]}, seed=0, subjects="dictionary")


def test_common_piece_subjects_are_made_of_common_pieces_and_are_no_corpus_word():
    corpus = {"manton": 4, "derwell": 2}
    made = facts.make_facts(5, corpus, seed=3, subjects="common_pieces")
    parts = [p for f in made for p in f.subject.split()]
    assert len(set(f.subject for f in made)) == 15 and len(set(parts)) == 30
    for part in parts:
        assert part.lower() not in corpus
        assert any(part.lower().startswith(a) and part.lower()[len(a):] in facts.COMMON_PIECES
                   for a in facts.COMMON_PIECES)
    # The default kind is today's probe: invented syllable names, drawn exactly as before.
    assert facts.make_facts(5, corpus, seed=3)[0].subject == facts.invent_subjects(15, corpus, 3)[0]
    with pytest.raises(ValueError, match="subjects 'nouns'"):
        facts.make_facts(5, corpus, seed=3, subjects="nouns")


def test_subject_kinds_have_their_own_corpus_and_are_clone_only():
    invented = build_steps(PRESETS["tiny"], clone_data.DEFAULT_CORPUS)[0]
    nouns = build_steps(PRESETS["tiny"].replace(fact_subjects="dictionary"), clone_data.DEFAULT_CORPUS)[0]
    corpus = [step.inputs["corpus"] for step in (invented, nouns)]
    assert corpus[0].key != corpus[1].key and corpus[1].params["subject_kind"] == "dictionary"
    assert "subject_kind" not in corpus[0].params
    with pytest.raises(ValueError, match="the real setting's facts have invented subjects"):
        REAL_PRESETS["cpu"].replace(fact_subjects="dictionary")


def test_the_probes_grid_changes_one_registered_knob_per_variant_and_shares_the_rest():
    from examples.experiment import dag
    from examples.experiment.sweep import GRIDS

    grid = GRIDS["probes"]
    assert grid.arms == ("joint", "prealign", "lm_init") and grid.base.probes == "examined"
    today = dag.data_steps(grid.base, clone_data.DEFAULT_CORPUS)
    for variant in grid.variants[1:]:
        assert variant.lr_from == "today" and len(variant.overrides) == 1
        data = dag.data_steps(grid.base.replace(**variant.overrides), clone_data.DEFAULT_CORPUS)
        (knob,) = variant.overrides
        assert knob in ("fact_subjects", "fact_repetitions_en", "transfer_train_per_class")
        # More transfer examples: new transfer data, the same training data; facts: a new corpus.
        assert (data.corpus.key == today.corpus.key) == (knob == "transfer_train_per_class")
        assert (data.transfer.key == today.transfer.key) == (knob != "transfer_train_per_class")
