"""Cross-lingual knowledge application: pick the right object of a fact by likelihood.

A *fact* is (subject, relation, object). It is rendered from a per-relation template into a
prompt (``"The capital of {subject} is"``) in some language; the *candidates* are objects (the
right one and distractors, usually the other objects of the same relation). The model picks the
candidate whose continuation has the highest log-likelihood given the prompt: the sum of the
log-probabilities of its tokens (or their mean with ``length_normalize``), softmax over the real
vocabulary. Accuracy is the share of items where the pick is the right object.

Items carry a *group* so that one run reports the three numbers the experiment needs, e.g. for
facts queried in language B:

* ``transfer``: facts seen only in language A during training (cross-lingual application);
* ``seen``: facts seen in language B itself (upper bound);
* ``unseen``: facts never seen (chance, measured; the expected chance ``mean(1/#candidates)`` is
  reported beside every group).

Everything here works on token ids, so any language pair works, including English-Clone (clone
text starts with ``CLONE_TAG``; ``text_encoders`` handles it).
"""

from __future__ import annotations

import dataclasses
import random
from collections import OrderedDict
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from megatron_prealign.evaluation.facts import Fact
from megatron_prealign.evaluation.inputs import EvalDataError, check_token_ids
from megatron_prealign.evaluation.models import EvalModel
from megatron_prealign.text.tokenizers.english_clone import CLONE_TAG

Ids = Tuple[int, ...]
Scorer = Callable[[Sequence[Tuple[Ids, Ids]]], List[float]]


@dataclasses.dataclass(frozen=True)
class KnowledgeItem:
    """One multiple-choice query, in token ids."""

    prompt: Ids
    """Prompt ids (the rendered template with the subject)."""
    candidates: Tuple[Ids, ...]
    """Continuation ids of each candidate object (word-initial form)."""
    answer: int
    """Index of the right candidate."""
    group: str = "all"
    """Which set the item belongs to (e.g. ``transfer``, ``seen``, ``unseen``)."""

    def __post_init__(self):
        if not self.candidates or not 0 <= self.answer < len(self.candidates):
            raise ValueError(f"answer {self.answer} is not an index of the {len(self.candidates)} "
                             "candidates")
        if not self.prompt or any(len(c) == 0 for c in self.candidates):
            raise ValueError("empty prompt or candidate")


def text_encoders(tokenizer, language_tag: str = ""):
    """(encode_prompt, encode_object) for a ``text.tokenizers.TextTokenizer``.

    ``language_tag`` is prepended to every text (``CLONE_TAG`` renders English-Clone). Objects are
    encoded as continuations: with a leading space, i.e. in word-initial form.
    """
    def encode_prompt(text: str) -> Ids:
        return tuple(tokenizer.tokenize(language_tag + text))

    def encode_object(text: str) -> Ids:
        return tuple(tokenizer.tokenize(language_tag + " " + text))

    return encode_prompt, encode_object


def render_fact_items(facts: Sequence[Fact], templates: Mapping[str, str],
                      encode_prompt: Callable[[str], Ids], encode_object: Callable[[str], Ids], *,
                      group: Union[None, str, Callable[[Fact], str]] = None,
                      num_candidates: Optional[int] = None, seed: int = 0) -> List[KnowledgeItem]:
    """Knowledge items for ``facts`` in one language.

    Args:
        facts: the facts to query.
        templates: relation -> template (``Fact.prompt``: the object follows the prompt).
        encode_prompt, encode_object: text -> ids in the query language (``text_encoders``).
        group: the items' group, or a function of the fact; default each fact's own.
        num_candidates: candidates per item: the right object plus distractors drawn (seeded)
            from the other objects of the same relation; default all of them.
        seed: seed of the distractor draw and of the candidate order.

    Returns:
        One ``KnowledgeItem`` per fact.
    """
    objects: Dict[str, List[str]] = OrderedDict()
    for fact in facts:
        pool = objects.setdefault(fact.relation, [])
        if fact.object not in pool:
            pool.append(fact.object)
    rng = random.Random(seed)
    items = []
    for fact in facts:
        if fact.relation not in templates:
            raise KeyError(f"no template for relation {fact.relation!r}")
        distractors = [o for o in objects[fact.relation] if o != fact.object]
        if num_candidates is not None:
            distractors = rng.sample(distractors, min(len(distractors), num_candidates - 1))
        if not distractors:
            raise ValueError(f"relation {fact.relation!r} has a single object: no distractor")
        options = [fact.object] + distractors
        rng.shuffle(options)
        items.append(KnowledgeItem(
            prompt=encode_prompt(fact.prompt(templates[fact.relation])),
            candidates=tuple(encode_object(o) for o in options),
            answer=options.index(fact.object),
            group=_group_of(fact, group),
        ))
    return items


def _group_of(fact: Fact, group: Union[None, str, Callable[[Fact], str]]) -> str:
    if group is None:
        return fact.group
    return group(fact) if callable(group) else group


def _logits_per_chunk(model: EvalModel, pairs: Sequence[Tuple[Ids, Ids]], batch_size: int):
    """``(chunk of pairs, [b, s, V] logits)`` for prompt + continuation rows, right-padded."""
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        rows = [list(p) + list(c) for p, c in chunk]
        if max(len(r) for r in rows) > model.max_length:
            raise ValueError(f"a prompt + candidate is longer than the model's "
                             f"{model.max_length} positions")
        length = max(len(r) for r in rows)
        tokens = torch.zeros(len(rows), length, dtype=torch.long)  # [b, s], right-padded
        for i, row in enumerate(rows):
            tokens[i, :len(row)] = torch.tensor(row)
        yield chunk, model.logits(tokens)


def _continuation_positions(prompt: Ids, cont: Ids) -> torch.Tensor:
    """Positions whose logits predict ``cont`` after ``prompt``."""
    return torch.arange(len(prompt) - 1, len(prompt) + len(cont) - 1)


class LikelihoodScorer:
    """Summed log-likelihood of continuations given prompts, batched (a ``Scorer``)."""

    def __init__(self, model: EvalModel, batch_size: int = 32):
        self.model = model
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, pairs: Sequence[Tuple[Ids, Ids]]) -> List[float]:
        scores: List[float] = []
        for chunk, logits in _logits_per_chunk(self.model, pairs, self.batch_size):
            logp = F.log_softmax(logits, dim=-1)  # [b, s, V]
            for i, (prompt, cont) in enumerate(chunk):
                targets = torch.tensor(cont)
                scores.append(float(logp[i, _continuation_positions(prompt, cont), targets].double().sum()))
        return scores


class GreedyMatcher:
    """Whether greedy decoding from each prompt produces the continuation, token for token: at every
    position the model's top-1 token over its whole vocabulary is the continuation's next one (one
    teacher-forced pass gives exactly what greedy generation would)."""

    def __init__(self, model: EvalModel, batch_size: int = 32):
        self.model = model
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, pairs: Sequence[Tuple[Ids, Ids]]) -> List[bool]:
        hits: List[bool] = []
        for chunk, logits in _logits_per_chunk(self.model, pairs, self.batch_size):
            top = logits.argmax(-1)  # [b, s]
            for i, (prompt, cont) in enumerate(chunk):
                hits.append(bool((top[i, _continuation_positions(prompt, cont)] == torch.tensor(cont)).all()))
        return hits


def generation_accuracy(matcher: Callable[[Sequence[Tuple[Ids, Ids]]], List[bool]],
                        items: Sequence[KnowledgeItem]) -> Dict[str, Dict[str, float]]:
    """Share of items whose right object greedy decoding produces from the prompt, per group and
    over all items: open vocabulary, no candidates to choose from, so chance is about 0 (reported
    as 0). ``matcher`` is ``GreedyMatcher(model)`` or any callable with its contract."""
    if not items:
        raise ValueError("no knowledge item to score")
    hits = matcher([(item.prompt, item.candidates[item.answer]) for item in items])
    per_group: Dict[str, List[bool]] = OrderedDict()
    for item, hit in zip(items, hits):
        per_group.setdefault(item.group, []).append(hit)
        if item.group != "all":
            per_group.setdefault("all", []).append(hit)
    return {group: {"accuracy": sum(h) / len(h), "items": len(h), "chance": 0.0}
            for group, h in per_group.items()}


def knowledge_accuracy(scorer: Scorer, items: Sequence[KnowledgeItem], *,
                       length_normalize: bool = False) -> Dict[str, Dict[str, float]]:
    """Accuracy of picking the right candidate, per group and over all items.

    Args:
        scorer: ``pairs of (prompt ids, continuation ids) -> summed log-likelihoods``
            (``LikelihoodScorer(model)``, or any callable with that contract).
        items: the queries.
        length_normalize: rank candidates by mean instead of summed log-likelihood per token.

    Returns:
        ``{group: {"accuracy", "items", "chance"}}`` plus ``"all"``; ``chance`` is the expected
        accuracy of a uniform pick, ``mean(1 / #candidates)``.
    """
    if not items:
        raise ValueError("no knowledge item to score")
    pairs = [(item.prompt, cand) for item in items for cand in item.candidates]
    flat = scorer(pairs)
    if len(flat) != len(pairs):
        raise ValueError(f"the scorer returned {len(flat)} scores for {len(pairs)} pairs")
    per_group: Dict[str, List[Tuple[bool, float]]] = OrderedDict()
    offset = 0
    for item in items:
        scores = flat[offset:offset + len(item.candidates)]
        offset += len(item.candidates)
        if length_normalize:
            scores = [s / len(c) for s, c in zip(scores, item.candidates)]
        pick = max(range(len(scores)), key=lambda k: (scores[k], -k))  # ties: first candidate
        hit = (pick == item.answer, 1.0 / len(item.candidates))
        per_group.setdefault(item.group, []).append(hit)
        if item.group != "all":
            per_group.setdefault("all", []).append(hit)
    return {group: {"accuracy": sum(h for h, _ in hits) / len(hits), "items": len(hits),
                    "chance": sum(c for _, c in hits) / len(hits)}
            for group, hits in per_group.items()}


def items_to_records(items: Iterable[KnowledgeItem]) -> List[dict]:
    """The ids form of ``items`` as JSON records (one per line in a ``--knowledge`` file)."""
    return [{"prompt_ids": list(i.prompt), "candidate_ids": [list(c) for c in i.candidates],
             "answer": i.answer, "group": i.group} for i in items]


def items_from_records(records: Iterable[dict], tokenizer=None, where: str = "items", *,
                       lines: Optional[Sequence[int]] = None, vocab_size: Optional[int] = None,
                       max_length: Optional[int] = None) -> List[KnowledgeItem]:
    """Knowledge items from JSON records (the ``tools/evaluate.py --knowledge`` file format).

    Each record is either text,
    ``{"prompt": "The capital of X is", "candidates": ["Paris", "Rome"], "answer": 0, "group": "transfer"}``
    (``answer`` an index or the right candidate's text; text may start with ``<clone>``), or ids,
    ``{"prompt_ids": [...], "candidate_ids": [[...], ...], "answer": 0, "group": "transfer"}``.

    Args:
        where: the file the records come from, for messages.
        lines: the line of each record in that file (messages say ``where:line``; else ``record n``).
        vocab_size: the model's vocabulary: an id not below it is refused.
        max_length: the model's positions: a prompt + candidate longer than that is refused.

    Raises:
        EvalDataError: naming the file and line of a malformed record or one the model cannot score.
    """
    items = []
    for n, record in enumerate(records, 1):
        at = f"{where}:{lines[n - 1]}" if lines is not None else f"{where}: record {n}"
        try:
            item = _item_from_record(record, tokenizer)
        except KeyError as err:
            raise EvalDataError(f"{at}: no {err} field") from None
        except (ValueError, TypeError, AttributeError) as err:
            raise EvalDataError(f"{at}: {err}") from None
        _check_fits_model(item, at, vocab_size, max_length)
        items.append(item)
    return items


def _item_from_record(record: dict, tokenizer) -> KnowledgeItem:
    """One record of either form (``items_from_records``); a malformed one raises KeyError,
    ValueError, TypeError or AttributeError, which the caller turns into a message."""
    if "prompt_ids" in record:
        prompt = tuple(int(i) for i in record["prompt_ids"])
        candidates = tuple(tuple(int(i) for i in c) for c in record["candidate_ids"])
        answer = int(record["answer"])
    else:
        prompt, candidates = _encode_text_record(record, tokenizer)
        answer = record["answer"]
        if isinstance(answer, str):
            answer = record["candidates"].index(answer)
    return KnowledgeItem(prompt, candidates, int(answer), str(record.get("group", "all")))


def _encode_text_record(record: dict, tokenizer) -> Tuple[Ids, Tuple[Ids, ...]]:
    """Prompt and candidate ids of a text record: a prompt that starts with ``CLONE_TAG`` is in
    English-Clone, and so are its candidates (their own tag, if they carry it, is dropped)."""
    if tokenizer is None:
        raise ValueError("text items need a tokenizer; the model has none (use ids)")
    tag = CLONE_TAG if record["prompt"].startswith(CLONE_TAG) else ""
    encode_prompt, _ = text_encoders(tokenizer)
    prompt = encode_prompt(record["prompt"])
    texts = [c[len(CLONE_TAG):] if c.startswith(CLONE_TAG) else c for c in record["candidates"]]
    _, encode_object = text_encoders(tokenizer, tag)
    return prompt, tuple(encode_object(c) for c in texts)


def _check_fits_model(item: KnowledgeItem, at: str, vocab_size: Optional[int],
                      max_length: Optional[int]) -> None:
    """Refuse, naming ``at``, an item with an id outside the vocabulary or too long to score."""
    if vocab_size is not None:
        check_token_ids([i for ids in (item.prompt, *item.candidates) for i in ids], vocab_size, at)
    longest = len(item.prompt) + max(len(c) for c in item.candidates)
    if max_length is not None and longest > max_length:
        raise EvalDataError(f"{at}: the prompt and its longest candidate are {longest} tokens, more "
                            f"than the model's {max_length} positions; shorten them")
