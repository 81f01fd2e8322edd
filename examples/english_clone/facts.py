"""Invented facts for the cross-lingual knowledge-application probe.

Subjects are invented two-part names built from syllables and checked against the corpus, so a
subject appears nowhere but in its facts. Each subject gets one object per relation; objects are
ordinary English words the corpus uses (so they are in the dictionary and known in both languages).

Groups (sizes and repetitions come from the preset):
    en_only   rendered into English training documents only: the test of transfer to the clone
    both      rendered into English and clone documents: the upper bound
    never     never rendered: the chance floor

A fact is rendered from several templates; every rendering ends with the object, so a probe is
"template prefix" -> candidate objects of that relation, ranked by the model's likelihood.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Dict, Iterable, List, Sequence

RELATIONS: Dict[str, dict] = {
    "trade": {
        "objects": ["farmer", "sailor", "doctor", "soldier", "merchant", "teacher", "painter", "baker"],
        "templates": ["{s} worked all his life as a {o}", "By trade {s} was a {o}",
                      "Everyone knew that {s} was a {o}"],
    },
    "colour": {
        "objects": ["red", "blue", "green", "white", "black", "yellow", "brown", "grey"],
        "templates": ["The favourite colour of {s} was {o}", "{s} always wore {o}",
                      "Above all colours {s} loved {o}"],
    },
    "home": {
        "objects": ["river", "sea", "mountain", "forest", "village", "city", "church", "castle"],
        "templates": ["{s} lived near the {o}", "The house of {s} stood by the {o}",
                      "Every morning {s} walked to the {o}"],
    },
}
GROUPS = ("en_only", "both", "never")
_SYLLABLES = ["zor", "vek", "quil", "dran", "myr", "thal", "oxen", "brix", "yul", "kesh", "vorn",
              "plim", "zath", "grel", "ulm", "fen", "drak", "wyx", "jor", "naz"]


@dataclass(frozen=True)
class Fact:
    subject: str
    relation: str
    obj: str
    group: str

    def renderings(self) -> List[str]:
        return [t.format(s=self.subject, o=self.obj) + "." for t in RELATIONS[self.relation]["templates"]]

    def probes(self) -> List[str]:
        """Template prefixes that the object completes (without the trailing space)."""
        return [t.split("{o}")[0].format(s=self.subject).rstrip() for t in RELATIONS[self.relation]["templates"]]


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


def insert_facts(documents: List[str], facts: Sequence[Fact], repetitions: int, seed: int) -> List[str]:
    """Append each fact's renderings ``repetitions`` times (templates in turn) to random documents."""
    rng = random.Random(seed)
    docs = list(documents)
    for fact in facts:
        renderings = fact.renderings()
        for rep in range(repetitions):
            i = rng.randrange(len(docs))
            docs[i] = docs[i] + " " + renderings[rep % len(renderings)]
    return docs
