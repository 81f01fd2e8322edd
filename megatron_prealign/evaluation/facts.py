"""Facts as text: the (subject, relation, object) triples of the knowledge probe, and their rendering.

Plain Python, no model: an experiment builds its facts and probe records with it before anything
trains; ``knowledge.py`` scores the records.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence


@dataclasses.dataclass(frozen=True)
class Fact:
    """A (subject, relation, object) triple, as text, and the set it belongs to.

    A *template* renders a fact: ``{subject}`` stands for the subject and, in a whole sentence,
    ``{object}`` for the object, at the end (``"{subject} lived near the {object}"``). ``sentence``
    fills in both (training text); ``prompt`` is what comes before the object (the probe, whose
    candidates are objects). A template without ``{object}`` is a prompt as it is
    (``"The capital of {subject} is"``).
    """

    subject: str
    relation: str
    object: str
    group: str = "all"
    """Which set the fact belongs to (e.g. ``transfer``, ``seen``, ``unseen``)."""

    def sentence(self, template: str) -> str:
        """The template with the subject and the object filled in."""
        return template.format(subject=self.subject, object=self.object)

    def prompt(self, template: str) -> str:
        """The template up to ``{object}``, subject filled in, without the space before the object
        (an object is encoded as a continuation, with its own leading space)."""
        before, cut, _ = template.partition("{object}")
        text = before.format(subject=self.subject)
        return text.rstrip() if cut else text


def knowledge_record(fact: Fact, template: str, candidates: Sequence[str], *, language_tag: str = "",
                     group: Optional[str] = None) -> dict:
    """One text record of the ``--knowledge`` file format (``items_from_records``): ``fact``
    probed with ``template``, choosing among ``candidates`` (the fact's object one of them).

    ``language_tag`` is prepended to the prompt and to every candidate (``CLONE_TAG`` queries
    English-Clone); ``group`` defaults to the fact's.
    """
    return {"prompt": language_tag + fact.prompt(template),
            "candidates": [language_tag + c for c in candidates],
            "answer": list(candidates).index(fact.object),
            "group": fact.group if group is None else group}
