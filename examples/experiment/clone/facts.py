"""Invented facts for the cross-lingual knowledge-application probe.

Subjects are, by default, invented two-part names built from syllables and checked against the
corpus, so a subject appears nowhere but in its facts (``invented``). Two further kinds of subject
(``SUBJECT_KINDS``, the probe variants of ``docs/probes.md``) ask whether the kind decides if facts
cross languages: ``dictionary``, ordinary nouns the corpus uses ("the lantern"), so the subject is a
dictionary word, aligned in stage 1 and code-switched, in relations the corpus never states; and
``common_pieces``, invented names made of subword pieces that are frequent in text (so in clone text
too), e.g. "Manton Derwell". Each subject gets one object per relation; objects are ordinary English
words the corpus uses (so they are in the dictionary and known in both languages).

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
from typing import Callable, Dict, Iterable, List, Mapping, Sequence

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


SUBJECT_KINDS = ("invented", "dictionary", "common_pieces")

ORDINARY_NOUNS = [
    "lantern", "kettle", "anchor", "barrel", "basket", "blanket", "bottle", "bucket", "candle", "carpet",
    "chair", "clock", "coat", "cup", "desk", "drum", "feather", "fence", "flag", "glove", "hammer", "hat",
    "helmet", "jar", "knife", "ladder", "lamp", "mirror", "needle", "pillow", "pipe", "plate", "pot",
    "ribbon", "rope", "saddle", "shovel", "spoon", "stool", "sword", "table", "tent", "trumpet", "umbrella",
    "wagon", "whistle", "window", "wheel", "bell", "boot", "box", "brush", "cart", "chain", "coin", "comb",
    "crown", "curtain", "door", "fork", "gate", "jug", "lock", "mask", "nail", "net", "oar", "pen", "pencil",
    "purse", "sack", "scarf", "shelf", "shield", "shoe", "tray", "trunk", "vase", "wallet", "cushion",
    "compass", "kite", "violin", "harp", "cloak", "apron", "broom", "chest", "cradle", "loom", "mill",
]
"""Candidate ``dictionary`` subjects: concrete nouns, none an object of a relation; those the corpus
uses at least ``MIN_SUBJECT_COUNT`` times are drawn."""
MIN_SUBJECT_COUNT = 3
COMMON_PIECES = ["man", "der", "ton", "ber", "son", "ford", "well", "ham", "ley", "ver", "ter", "land",
                 "mar", "win", "dell", "ray", "field", "ing", "hol", "den", "wick", "mor"]
"""Pieces of ``common_pieces`` subjects: frequent in English words, so in the tokenizer's vocabulary
and trained in both languages."""


def sentence_case(text: str) -> str:
    """The first letter upper-cased (a ``dictionary`` subject, "the lantern", opens sentences)."""
    return text[:1].upper() + text[1:]


def renderings(fact: Fact) -> List[str]:
    """The fact as a sentence per template of its relation (the text put into training documents)."""
    return [sentence_case(fact.sentence(t)) + "." for t in RELATIONS[fact.relation]["templates"]]


def knowledge_records(facts: Iterable[Fact]) -> List[dict]:
    """The evaluation's ``--knowledge`` records: every fact probed in the clone with each template
    (its own group), and the ``en_only`` facts in English too (``en_only_in_english``: did the
    model learn them at all?). The candidates are all objects of the relation."""
    records = []
    for fact in facts:
        candidates = RELATIONS[fact.relation]["objects"]
        for template in RELATIONS[fact.relation]["templates"]:
            records.append(_sentence_cased(knowledge_record(fact, template, candidates, language_tag=CLONE_TAG),
                                           CLONE_TAG))
            if fact.group == "en_only":
                records.append(_sentence_cased(
                    knowledge_record(fact, template, candidates, group="en_only_in_english"), ""))
    return records


def _sentence_cased(record: dict, tag: str) -> dict:
    """The record with its prompt opened as the training sentence opens (``sentence_case``)."""
    return dict(record, prompt=tag + sentence_case(record["prompt"][len(tag):]))


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


def dictionary_subjects(count: int, word_counts: Mapping[str, int], seed: int) -> List[str]:
    """``count`` ordinary nouns the corpus uses (``ORDINARY_NOUNS``), as "the <noun>", drawn seeded."""
    attested = [n for n in ORDINARY_NOUNS if word_counts.get(n, 0) >= MIN_SUBJECT_COUNT]
    if len(attested) < count:
        raise ValueError(f"dictionary subjects: the corpus uses only {len(attested)} of the ordinary nouns "
                         f"at least {MIN_SUBJECT_COUNT} times; {count} are needed (3 groups x subjects_per_group)")
    return ["the " + noun for noun in random.Random(seed).sample(attested, count)]


def common_piece_subjects(count: int, forbidden_words: Iterable[str], seed: int) -> List[str]:
    """``count`` distinct two-part names, each part two ``COMMON_PIECES``, none a corpus word."""
    rng = random.Random(seed)
    forbidden = {w.lower() for w in forbidden_words}
    names, used_parts = [], set()
    for _ in range(100_000):
        if len(names) == count:
            return names
        parts = ["".join(rng.sample(COMMON_PIECES, 2)).capitalize() for _ in range(2)]
        if any(p.lower() in forbidden or p in used_parts for p in parts):
            continue
        used_parts.update(parts)
        names.append(" ".join(parts))
    raise ValueError(f"common-piece subjects: only {len(names)} of {count} names avoid the corpus's words")


def make_facts(subjects_per_group: int, corpus_words: Iterable[str], seed: int,
               subjects: str = "invented") -> List[Fact]:
    """Facts for every group: each subject has one object per relation. ``corpus_words``: the
    corpus's lower-cased words (with their counts, a mapping, for ``dictionary`` subjects);
    ``subjects``: the kind of subject (``SUBJECT_KINDS``)."""
    rng = random.Random(seed)
    count = subjects_per_group * len(GROUPS)
    if subjects == "invented":
        names = invent_subjects(count, corpus_words, seed)
    elif subjects == "dictionary":
        names = dictionary_subjects(count, corpus_words, seed)
    elif subjects == "common_pieces":
        names = common_piece_subjects(count, corpus_words, seed)
    else:
        raise ValueError(f"subjects {subjects!r}: choose from {', '.join(SUBJECT_KINDS)}")
    facts = []
    for index, subject in enumerate(names):
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
