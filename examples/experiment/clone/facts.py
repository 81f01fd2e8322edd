"""Invented facts for the cross-lingual knowledge-application probe.

Subjects are invented two-part names built from syllables and checked against the corpus, so a
subject appears nowhere but in its facts. Each subject gets one object per relation; objects are
ordinary English words the corpus uses (so they are in the dictionary and known in both languages).

Groups (sizes and repetitions come from the preset):
    en_only   rendered into English training documents only: the test of transfer to the clone
    both      rendered into English and clone documents: the upper bound
    never     never rendered: the chance floor

A fact is rendered from several templates; every rendering ends with the object, so a probe is
"template prefix" -> candidate objects of that relation, ranked by the model's likelihood. Facts,
their rendering and the probe records are the evaluation library's (``evaluation.knowledge``):
this module only invents them and puts them into the documents.
"""

from __future__ import annotations

import random
from typing import Callable, Dict, Iterable, List, Sequence

from megatron_prealign.evaluation.facts import Fact, knowledge_record
from megatron_prealign.text.tokenizers.english_clone import CLONE_TAG

RELATIONS: Dict[str, dict] = {
    "trade": {
        "objects": ["farmer", "sailor", "doctor", "soldier", "merchant", "teacher", "painter", "baker"],
        "templates": ["{subject} worked all his life as a {object}", "By trade {subject} was a {object}",
                      "Everyone knew that {subject} was a {object}"],
    },
    "colour": {
        "objects": ["red", "blue", "green", "white", "black", "yellow", "brown", "grey"],
        "templates": ["The favourite colour of {subject} was {object}", "{subject} always wore {object}",
                      "Above all colours {subject} loved {object}"],
    },
    "home": {
        "objects": ["river", "sea", "mountain", "forest", "village", "city", "church", "castle"],
        "templates": ["{subject} lived near the {object}", "The house of {subject} stood by the {object}",
                      "Every morning {subject} walked to the {object}"],
    },
}
GROUPS = ("en_only", "both", "never")
_SYLLABLES = ["zor", "vek", "quil", "dran", "myr", "thal", "oxen", "brix", "yul", "kesh", "vorn",
              "plim", "zath", "grel", "ulm", "fen", "drak", "wyx", "jor", "naz"]


def renderings(fact: Fact) -> List[str]:
    """The fact as a sentence per template of its relation (the text put into training documents)."""
    return [fact.sentence(t) + "." for t in RELATIONS[fact.relation]["templates"]]


def knowledge_records(facts: Iterable[Fact]) -> List[dict]:
    """The evaluation's ``--knowledge`` records: every fact probed in the clone with each template
    (its own group), and the ``en_only`` facts in English too (``en_only_in_english``: did the
    model learn them at all?). The candidates are all objects of the relation."""
    records = []
    for fact in facts:
        candidates = RELATIONS[fact.relation]["objects"]
        for template in RELATIONS[fact.relation]["templates"]:
            records.append(knowledge_record(fact, template, candidates, language_tag=CLONE_TAG))
            if fact.group == "en_only":
                records.append(knowledge_record(fact, template, candidates, group="en_only_in_english"))
    return records


def invent_subjects(count: int, forbidden_words: Iterable[str], seed: int) -> List[str]:
    """``count`` distinct two-part names none of whose parts is a corpus word."""
    rng = random.Random(seed)
    forbidden = {w.lower() for w in forbidden_words}
    names, used_parts = [], set()
    while len(names) < count:
        parts = ["".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()
                 for _ in range(2)]
        if any(p.lower() in forbidden or p in used_parts for p in parts):
            continue
        used_parts.update(parts)
        names.append(" ".join(parts))
    return names


def make_facts(subjects_per_group: int, corpus_words: Iterable[str], seed: int) -> List[Fact]:
    """Facts for every group: each subject has one object per relation."""
    rng = random.Random(seed)
    subjects = invent_subjects(subjects_per_group * len(GROUPS), corpus_words, seed)
    facts = []
    for index, subject in enumerate(subjects):
        group = GROUPS[index // subjects_per_group]
        for relation, spec in RELATIONS.items():
            facts.append(Fact(subject, relation, rng.choice(spec["objects"]), group))
    return facts


def insert_facts(documents: List[str], facts: Sequence[Fact], repetitions: int, seed: int,
                 render: Callable[[Fact], List[str]] = renderings) -> List[str]:
    """Append each fact's renderings ``repetitions`` times (templates in turn) to random documents
    (``render``: another language's renderings, for the real-languages setting)."""
    rng = random.Random(seed)
    docs = list(documents)
    for fact in facts:
        sentences = render(fact)
        for rep in range(repetitions):
            i = rng.randrange(len(docs))
            docs[i] = docs[i] + " " + sentences[rep % len(sentences)]
    return docs
