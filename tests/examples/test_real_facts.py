"""The real-languages facts: objects translated through the committed dictionaries, templates that
end with the object, probe records that point at the translated object."""

import gzip
import random
from collections import defaultdict
from pathlib import Path

import pytest

from examples.experiment.clone import facts as clone
from examples.experiment.real import facts as real
from megatron_prealign.evaluation.facts import Fact, knowledge_record

DICTIONARIES = Path(real.__file__).parent / "data" / "dictionaries"
WORDS = ["zorvek", "quil"]


def read_dictionary(lang):
    """English word -> its translations, from the committed pair file."""
    translations = defaultdict(set)
    with gzip.open(DICTIONARIES / f"en-{lang}.tsv.gz", "rt", encoding="utf-8") as f:
        for line in f:
            english, target = line.rstrip("\n").split("\t")
            translations[english].add(target)
    return translations


def cases():
    return [(lang, relation) for lang in real.LANGUAGES for relation in clone.RELATIONS]


@pytest.mark.parametrize("lang", real.LANGUAGES)
def test_objects_are_dictionary_translations(lang):
    dictionary = read_dictionary(lang)
    for relation, spec in clone.RELATIONS.items():
        targets = real.objects(relation, lang)
        assert len(targets) == len(spec["objects"])
        for english, target in zip(spec["objects"], targets):
            if english in real.NOT_IN_DICTIONARY.get(lang, {}):
                assert real.NOT_IN_DICTIONARY[lang][english] == target
                assert target.lower() not in dictionary[english]  # the gap is real
                continue
            headword = real.DICTIONARY_HEADWORDS.get(lang, {}).get(english, english)
            assert target.lower() in dictionary[headword], (lang, english, target)


@pytest.mark.parametrize("lang,relation", cases())
def test_objects_distinct_and_no_prefix(lang, relation):
    targets = [o.lower() for o in real.objects(relation, lang)]
    assert len(set(targets)) == len(targets)
    for a in targets:
        for b in targets:
            assert a == b or not b.startswith(a), (a, b)


@pytest.mark.parametrize("lang,relation", cases())
def test_templates_end_with_object(lang, relation):
    fact = Fact("Zorvek Quil", relation, clone.RELATIONS[relation]["objects"][3])
    target = real.translated(fact, lang)
    assert len(real.templates(relation, lang)) == 3
    for template, sentence in zip(real.templates(relation, lang), real.renderings(fact, lang)):
        assert template.endswith("{object}") and template.count("{object}") == 1
        assert template.count("{subject}") == 1
        assert sentence == target.sentence(template) + ("。" if lang == "zh" else ".")
        assert sentence[:-1].endswith(target.object) and "Zorvek Quil" in sentence


def test_translated():
    fact = Fact("Zorvek Quil", "trade", "baker", "both")
    assert real.translated(fact, "en") is fact
    assert real.translated(fact, "de") == Fact("Zorvek Quil", "trade", "Bäcker", "both")
    assert real.translated(fact, "es").object == "panadero"
    assert real.translated(fact, "zh").object == "面包师傅"
    assert real.renderings(fact, "en") == clone.renderings(fact)


def test_german_nouns_capitalized():
    fact_objects = [o for relation in clone.RELATIONS for o in real.objects(relation, "de")]
    assert all(o[0].isupper() for o in fact_objects)
    sentences = real.renderings(Fact("Zorvek Quil", "home", "church"), "de")
    assert all(s.endswith(" Kirche.") for s in sentences)


def test_chinese_space_before_object():
    for relation in clone.RELATIONS:
        for template in real.templates(relation, "zh"):
            assert template.endswith(" {object}") and not template.endswith("  {object}")
            # the Latin-script subject is separated from Chinese characters by spaces
            before, _, after = template.partition("{subject}")
            assert after.startswith(" ") and (not before or before[-1] in " ，")


@pytest.mark.parametrize("lang", real.LANGUAGES)
def test_knowledge_records(lang):
    facts = clone.make_facts(2, WORDS, seed=0)
    records = real.knowledge_records(facts, lang)
    en_only = [f for f in facts if f.group == "en_only"]
    assert len(records) == 3 * len(facts) + 3 * len(en_only)
    by_group = defaultdict(list)
    for record in records:
        by_group[record["group"]].append(record)
    assert set(by_group) == set(clone.GROUPS) | {"en_only_in_english"}
    target_records = [r for r in records if r["group"] != "en_only_in_english"]
    for fact, chunk in zip(facts, [target_records[i:i + 3] for i in range(0, len(target_records), 3)]):
        target = real.translated(fact, lang)
        for record, template in zip(chunk, real.templates(fact.relation, lang)):
            assert record["candidates"] == real.objects(fact.relation, lang)
            assert record["candidates"][record["answer"]] == target.object
            assert record["prompt"] == target.prompt(template) and record["group"] == fact.group
    english = by_group["en_only_in_english"]
    assert english == [knowledge_record(f, t, clone.RELATIONS[f.relation]["objects"], group="en_only_in_english")
                       for f in en_only for t in clone.RELATIONS[f.relation]["templates"]]
    assert all(r["prompt"].isascii() and all(c.isascii() for c in r["candidates"]) for r in english)


@pytest.mark.parametrize("lang", real.LANGUAGES)
def test_insert_facts(lang):
    documents = [f"Document {i}." for i in range(5)]
    facts = clone.make_facts(1, WORDS, seed=0)
    docs = real.insert_facts(documents, facts, repetitions=4, seed=1, lang=lang)
    text = "\n".join(docs)
    for fact in facts:
        sentences = real.renderings(fact, lang)
        assert text.count(sentences[0]) >= 2 and text.count(sentences[1]) >= 1


def test_clone_insert_facts_unchanged():
    """The ``render`` parameter's default keeps English-Clone's documents as they were."""
    documents = [f"Document {i}." for i in range(5)]
    facts = clone.make_facts(1, WORDS, seed=0)
    expected = list(documents)
    rng = random.Random(3)
    for fact in facts:
        sentences = clone.renderings(fact)
        for rep in range(2):
            i = rng.randrange(len(expected))
            expected[i] = expected[i] + " " + sentences[rep % len(sentences)]
    assert clone.insert_facts(documents, facts, 2, seed=3) == expected


def test_deterministic():
    for lang in real.LANGUAGES:
        first = clone.make_facts(3, WORDS, seed=5)
        second = clone.make_facts(3, WORDS, seed=5)
        assert first == second
        assert real.knowledge_records(first, lang) == real.knowledge_records(second, lang)
        docs = ["a.", "b.", "c."]
        assert real.insert_facts(docs, first, 3, 7, lang) == real.insert_facts(docs, second, 3, 7, lang)
