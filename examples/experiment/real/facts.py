"""Invented facts for the knowledge-application probe in the real-languages setting.

The facts are English-Clone's (``clone/facts.py``): invented two-part subjects, one object per
relation, the groups ``en_only`` (rendered into English documents only: the test of cross-lingual
transfer), ``both`` (English and target documents: the upper bound) and ``never`` (the chance
floor). What changes is the target language, German (``de``), Spanish (``es``) or Chinese (``zh``)
instead of the clone: each relation has hand-written templates and its English objects translated
per language, and a fact in a target language is the English ``Fact`` with its object translated.

Objects are translated *through the dictionary*: each translation is one of the committed
dictionary's translations of the English object (``data/dictionaries/en-<lang>.tsv.gz``), the natural
one among them, so the probe asks about words the code-switcher can substitute; the three exceptions
are in ``DICTIONARY_HEADWORDS`` and ``NOT_IN_DICTIONARY``. The objects stand alone in every
template (no article that would have to agree with them), so one template serves all eight.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Iterable, List, Sequence

from examples.experiment.clone import facts as clone
from examples.experiment.clone.facts import GROUPS, RELATIONS, invent_subjects, make_facts  # noqa: F401
from megatron_prealign.evaluation.facts import Fact, knowledge_record

LANGUAGES = ("de", "es", "zh")

# Per language and relation: the objects in the order of ``RELATIONS[relation]["objects"]`` (the
# English word in the comment), and three templates ending with ``{object}``.
#
# German: nouns are capitalized in running text (the dictionary is lowercased); the colours are
# capitalized too, because every colour template uses them as nouns ("trug immer Blau").
# Chinese: one space before ``{object}`` and around the Latin-script subject. Chinese has no spaces,
# but the probe encodes a candidate as a continuation in word-initial form (a leading space, i.e.
# SentencePiece's "▁"); with the space in the training sentence the object is tokenized there exactly
# as the probe's candidate is (``Fact.prompt`` drops the space from the prompt).
TARGETS: Dict[str, Dict[str, dict]] = {
    "de": {
        "trade": {
            "objects": ["Bauer",  # farmer
                        "Seemann",  # sailor
                        "Arzt",  # doctor
                        "Soldat",  # soldier
                        "Händler",  # merchant ("Kaufmann" is missing; only "Großkaufmann")
                        "Lehrer",  # teacher
                        "Maler",  # painter
                        "Bäcker"],  # baker
            "templates": ["{subject} arbeitete sein Leben lang als {object}", "Von Beruf war {subject} {object}",
                          "Jeder wusste: {subject} war {object}"],
        },
        "colour": {
            "objects": ["Rot", "Blau", "Grün", "Weiß", "Schwarz", "Gelb", "Braun",
                        "Grau"],  # grey: see DICTIONARY_HEADWORDS
            "templates": ["Die Lieblingsfarbe von {subject} war {object}", "{subject} trug immer {object}",
                          "Von allen Farben liebte {subject} am meisten {object}"],
        },
        "home": {
            # "Richtung X" takes a bare noun, so the gender of the place does not matter.
            "objects": ["Fluss", "Meer", "Berg", "Wald", "Dorf", "Stadt", "Kirche", "Burg"],
            "templates": ["{subject} wohnte draußen Richtung {object}",
                          "Vom Haus von {subject} ging der Blick Richtung {object}",
                          "Jeden Morgen ging {subject} Richtung {object}"],
        },
    },
    "es": {
        "trade": {
            # Spanish drops the article before a trade after "ser" and "como".
            "objects": ["campesino",  # farmer ("agricultor" is missing)
                        "marinero",  # sailor
                        "médico",  # doctor
                        "soldado",  # soldier: see NOT_IN_DICTIONARY
                        "comerciante",  # merchant
                        "maestro",  # teacher ("profesor" is missing)
                        "pintor",  # painter
                        "panadero"],  # baker
            "templates": ["{subject} trabajó toda su vida como {object}", "De oficio, {subject} era {object}",
                          "Todos sabían que {subject} era {object}"],
        },
        "colour": {
            # Colour nouns are all masculine ("el rojo"), so "el" agrees with every object.
            "objects": ["rojo", "azul", "verde", "blanco", "negro", "amarillo", "marrón", "gris"],
            "templates": ["El color favorito de {subject} era el {object}", "{subject} siempre vestía de {object}",
                          "De todos los colores, {subject} amaba sobre todo el {object}"],
        },
        "home": {
            # "de" + bare noun ("hombre de mar", "vida de pueblo"): no article to agree.
            "objects": ["río", "mar", "montaña", "bosque", "pueblo", "ciudad", "iglesia", "castillo"],
            "templates": ["{subject} era un hombre de {object}",
                          "Para {subject}, su hogar era sinónimo de {object}",
                          "La vida de {subject} era una vida de {object}"],
        },
    },
    "zh": {
        "trade": {
            "objects": ["农民",  # farmer
                        "水手",  # sailor
                        "医生",  # doctor
                        "士兵",  # soldier
                        "商人",  # merchant
                        "老师",  # teacher
                        "画家",  # painter
                        "面包师傅"],  # baker ("面包师" is missing)
            "templates": ["{subject} 一辈子都在当 {object}", "{subject} 的职业是 {object}",
                          "大家都知道 {subject} 是一名 {object}"],
        },
        "colour": {
            "objects": ["红色", "蓝色", "绿色", "白色", "黑色", "黄色", "棕色",
                        "灰色"],  # grey: see DICTIONARY_HEADWORDS
            "templates": ["{subject} 最喜欢的颜色是 {object}", "{subject} 总是穿 {object}",
                          "在所有颜色中，{subject} 最爱 {object}"],
        },
        "home": {
            "objects": ["河", "大海", "山", "森林", "村庄", "城市", "教堂", "城堡"],
            "templates": ["{subject} 的家紧挨着 {object}", "{subject} 的房子靠近 {object}",
                          "每天早上，{subject} 都会走向 {object}"],
        },
    },
}

# Where a translation is listed under another English headword than the object itself. "grey" has
# no German translation and only the name 格雷 (Grey) in Chinese; "grau" is listed under
# "grizzled" (and "dull"), 灰色 under the American spelling "gray".
DICTIONARY_HEADWORDS: Dict[str, Dict[str, str]] = {"de": {"grey": "grizzled"}, "zh": {"grey": "gray"}}
# Translations the dictionary lacks altogether: FreeDict eng-spa has no "soldado" (nor "militar",
# "guerrero"), so the natural word is used as it is.
NOT_IN_DICTIONARY: Dict[str, Dict[str, str]] = {"es": {"soldier": "soldado"}}


def objects(relation: str, lang: str) -> List[str]:
    """The relation's objects in ``lang`` (the probe's candidates), in the English objects' order."""
    return list(RELATIONS[relation]["objects"] if lang == "en" else TARGETS[lang][relation]["objects"])


def templates(relation: str, lang: str) -> List[str]:
    """The relation's templates in ``lang``."""
    return list(RELATIONS[relation]["templates"] if lang == "en" else TARGETS[lang][relation]["templates"])


def translated(fact: Fact, lang: str) -> Fact:
    """The English ``fact`` with its object in ``lang`` (``"en"``: the fact itself)."""
    if lang == "en":
        return fact
    index = RELATIONS[fact.relation]["objects"].index(fact.object)
    return dataclasses.replace(fact, object=objects(fact.relation, lang)[index])


def renderings(fact: Fact, lang: str) -> List[str]:
    """The English ``fact`` as a ``lang`` sentence per template (the text put into training
    documents), ending with "." (Chinese "。")."""
    if lang == "en":
        return clone.renderings(fact)
    stop = "。" if lang == "zh" else "."
    target = translated(fact, lang)
    return [target.sentence(t) + stop for t in templates(fact.relation, lang)]


def insert_facts(documents: List[str], facts: Sequence[Fact], repetitions: int, seed: int,
                 lang: str) -> List[str]:
    """Append each fact's ``lang`` renderings ``repetitions`` times (templates in turn) to random
    documents, as English-Clone does."""
    return clone.insert_facts(documents, facts, repetitions, seed, render=lambda f: renderings(f, lang))


def knowledge_records(facts: Iterable[Fact], lang: str) -> List[dict]:
    """The evaluation's ``--knowledge`` records: every fact probed in ``lang`` with each of its
    templates (its own group), and the ``en_only`` facts in English too (``en_only_in_english``:
    did the model learn them at all?). The candidates are all objects of the relation, in that
    language; no language tag (the languages differ by their words)."""
    records = []
    for fact in facts:
        target = translated(fact, lang)
        for template in templates(fact.relation, lang):
            records.append(knowledge_record(target, template, objects(fact.relation, lang)))
        if fact.group == "en_only":
            for template in templates(fact.relation, "en"):
                records.append(knowledge_record(fact, template, objects(fact.relation, "en"),
                                                group="en_only_in_english"))
    return records
