"""The real-languages setting's data steps at toy scale: disjoint splits per language, facts in each
language's documents, one tokenizer for all languages, corpus-attested dictionaries in the spellings
text uses, code-switching into the target, and leak-free transfer and retrieval files."""

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from examples.experiment.clone import data_prep as clone_data
from examples.experiment.dag import data_steps
from examples.experiment.pipeline import Pipeline
from examples.experiment.presets import REAL_PRESETS
from examples.experiment.real import data_prep as real_data
from examples.experiment.real import facts as real_facts
from megatron_prealign.evaluation.facts import Fact

TOY = dict(max_paragraphs=1500, target_paragraphs=900, heldout_paragraphs=60, valid_paragraphs=30,
           vocab_size=1000, dev_words=40, subjects_per_group=2, fact_repetitions_en=5,
           fact_repetitions_clone=3, transfer_train_per_class=10, transfer_test_per_class=5,
           retrieval_pairs=40)


def read(path: Path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


@pytest.fixture(scope="module")
def de_es(tmp_path_factory):
    """The multi-way en-de-es data (two targets exercise every per-language path)."""
    preset = REAL_PRESETS["tiny"].replace(pair="en-de-es", **TOY)
    steps = data_steps(preset, clone_data.DEFAULT_CORPUS)
    pipeline = Pipeline(tmp_path_factory.mktemp("real") / "run", quiet=True)
    pipeline.run([steps.shards, steps.codeswitch, steps.transfer])
    return preset, steps, pipeline


def test_each_language_splits_into_disjoint_documents_with_facts_in_its_own_language(de_es):
    preset, steps, pipeline = de_es
    corpus = pipeline.directory(steps.corpus)
    for language in ("en", "de", "es"):
        texts = {s: [r["text"] for r in read(corpus / f"{language}_{s}.jsonl")]
                 for s in ("train", "valid", "heldout")}
        assert len(texts["heldout"]) == 60 and len(texts["valid"]) == 30
        assert not set(texts["heldout"]) & set(texts["train"]) and not set(texts["valid"]) & set(texts["train"])
    facts = [Fact(**f) for f in json.loads((corpus / "facts.json").read_text())]
    both = next(f for f in facts if f.group == "both")
    en_only = next(f for f in facts if f.group == "en_only")
    german = " ".join(r["text"] for r in read(corpus / "de_train.jsonl"))
    english = " ".join(r["text"] for r in read(corpus / "en_train.jsonl"))
    assert any(sentence in german for sentence in real_facts.renderings(both, "de"))
    assert not any(sentence in german for sentence in real_facts.renderings(en_only, "de"))
    assert any(sentence in english for sentence in real_facts.renderings(en_only, "en"))


def test_dictionaries_are_attested_in_both_corpora_and_split_without_overlap(de_es):
    preset, steps, pipeline = de_es
    corpus, dictionaries = pipeline.directory(steps.corpus), pipeline.directory(steps.dictionaries)
    words = {lang: Counter(w for r in read(corpus / f"{lang}_train.jsonl")
                           for w in real_data.LETTERS.findall(r["text"]))
             for lang in ("en", "de", "es")}
    entries = {name: [r["words"].split(" $ ") for r in read(dictionaries / f"{name}.jsonl")]
               for name in ("stage1", "dev", "unseen", "codeswitch", "dev_de", "unseen_es")}
    assert entries["stage1"] and len(entries["dev"]) == 40
    for concept in entries["stage1"]:
        assert len(concept) == 3
        for language, word in zip(("en", "de", "es"), concept):
            assert words[language][word] >= 1, (language, word)  # this exact spelling occurs
    english = {name: {c[0] for c in entries[name]} for name in ("stage1", "dev", "unseen")}
    assert not english["stage1"] & english["dev"] and not english["unseen"] & (english["stage1"] | english["dev"])
    assert entries["codeswitch"] == entries["stage1"] + entries["dev"]
    assert entries["dev_de"] == [c[:2] for c in entries["dev"]]
    assert entries["unseen_es"] == [[c[0], c[2]] for c in entries["unseen"]]
    # German nouns keep their capital letter when the corpus writes them so.
    assert any(c[1][0].isupper() for c in entries["stage1"])
    # No translation belongs to two concepts (a held-out word's translation is never trained in stage 1).
    for index in (1, 2):
        words = [c[index] for name in ("codeswitch", "unseen") for c in entries[name]]
        assert len(words) == len(set(words))


def test_codeswitched_shard_puts_target_words_into_english_input(de_es):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    preset, steps, pipeline = de_es
    switched = pipeline.directory(steps.codeswitch)
    stats = json.loads((switched / "en_train_cs_preprocess_stats.json").read_text())["outputs"]["text"]
    assert 0.01 < stats["switched_rate"] < 0.15  # p = 0.05 of the dictionary words
    plain = IndexedDataset(str(pipeline.directory(steps.shards) / "en_train_text_document"))
    cs = IndexedDataset(str(switched / "en_train_cs_text_document"))
    assert len(plain) == len(cs)  # the same documents, switched (lengths may differ: real translations)


def test_transfer_and_retrieval_files_have_no_translation_leak(de_es):
    preset, steps, pipeline = de_es
    transfer = pipeline.directory(steps.transfer)
    names = sorted(p.name for p in transfer.glob("*.jsonl"))
    assert names == ["bible_es.jsonl", "debian_reference_de.jsonl", "debian_reference_es.jsonl",
                     "retrieval_bible_es.jsonl", "retrieval_debian_reference_de.jsonl",
                     "retrieval_debian_reference_es.jsonl"]
    with gzip.open(real_data.tasks.DEBIAN_REFERENCE_FILE, "rt", encoding="utf-8") as f:
        aligned = [json.loads(line) for line in f]
    translation_of = {r[lang]: r["en"] for r in aligned for lang in ("de", "es") if r.get(lang)}
    for name in ("debian_reference_de", "debian_reference_es"):
        records = read(transfer / f"{name}.jsonl")
        train = {r["text"] for r in records if r["split"] == "train"}
        target = [r for r in records if r["split"] == "target"]
        assert target and {r["split"] for r in records} == {"train", "source", "target"}
        assert not any(translation_of[r["text"]] in train for r in target)
        assert len(Counter(r["label"] for r in records if r["split"] == "train")) >= 6
    # English and zero-shot scores are measured on the same aligned units.
    bible = {r["es"]: r["en"] for r in real_data.tasks.load_bible()}
    records = read(transfer / "bible_es.jsonl")
    source = [r["text"] for r in records if r["split"] == "source"]
    assert [bible[r["text"]] for r in records if r["split"] == "target"] == source
    pairs = read(transfer / "retrieval_bible_es.jsonl")
    assert len(pairs) == 40 and len({p["source"] for p in pairs}) == 40
    bible_train = {r["text"] for r in read(transfer / "bible_es.jsonl") if r["split"] == "train"}
    assert not {p["source"] for p in pairs} & bible_train  # retrieval is drawn from the test books


def test_every_data_step_key_names_the_pair():
    de = data_steps(REAL_PRESETS["tiny"].replace(pair="en-de"), clone_data.DEFAULT_CORPUS)
    es = data_steps(REAL_PRESETS["tiny"].replace(pair="en-es"), clone_data.DEFAULT_CORPUS)
    for name in ("corpus", "tokenizer", "shards", "dictionaries", "codeswitch", "transfer"):
        assert getattr(de, name).key != getattr(es, name).key, name


def test_held_out_count_keeps_the_preset_count_where_stage1_keeps_as_many_else_a_fifth():
    assert real_data.held_out_count(1000, 5436) == 1000  # en-de cpu: as before
    assert real_data.held_out_count(1000, 2000) == 1000  # the boundary: stage 1 keeps as many
    assert real_data.held_out_count(1000, 1999) == 399
    assert real_data.held_out_count(1000, 1297) == 259  # en-es cpu
    assert real_data.held_out_count(40, 3) == 0


def test_a_dictionary_too_small_for_dev_words_holds_out_a_fifth_and_says_so(de_es, tmp_path, capsys):
    preset, steps, pipeline = de_es
    inputs = {"corpus": pipeline.directory(steps.corpus)}
    report = real_data.dictionaries_step(preset.replace(dev_words=100_000), tmp_path, inputs)
    kept = report["entries"]["stage1"] + report["entries"]["dev"]
    assert report["entries"]["dev"] == kept // 5 > 0
    assert "a fifth" in report["held_out"] and "a fifth" in capsys.readouterr().out
    # The preset's count where the dictionary can spare it: no note, and the fixture's own split.
    (tmp_path / "again").mkdir()
    report = real_data.dictionaries_step(preset, tmp_path / "again", inputs)
    assert report["entries"]["dev"] == 40 and "held_out" not in report
    assert (tmp_path / "again" / "stage1.jsonl").read_bytes() == \
        (pipeline.directory(steps.dictionaries) / "stage1.jsonl").read_bytes()
