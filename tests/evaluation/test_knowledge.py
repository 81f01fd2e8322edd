"""Knowledge application on hand-made cases: memorized facts score 100%, unseen ones chance."""

import pytest
import torch
import torch.nn.functional as F

from megatron_prealign.evaluation.knowledge import (
    Fact,
    GreedyMatcher,
    KnowledgeItem,
    LikelihoodScorer,
    generation_accuracy,
    items_from_records,
    items_to_records,
    knowledge_accuracy,
    render_fact_items,
)
from megatron_prealign.evaluation.models import EvalModel, HFEvalModel
from tests.evaluation.helpers import tiny_llama

V = 40  # language A ids [0, 40); language B = A + 40
SUBJECTS, RELATIONS, IS = range(0, 24), (24, 25), 26
OBJECTS = {24: [27, 28, 29, 30], 25: [31, 32, 33, 34]}


def fact(s):
    relation = RELATIONS[s % 2]
    return s, relation, OBJECTS[relation][(s // 2) % 4]


def item(s, shift, group):
    subject, relation, obj = fact(s)
    prompt = tuple(t + shift for t in (subject, relation, IS))
    candidates = tuple((o + shift,) for o in OBJECTS[relation])
    return KnowledgeItem(prompt, candidates, OBJECTS[relation].index(obj), group)


def train_on(sequences, steps=250, seed=0):
    model = tiny_llama(2 * V, hidden=64, seed=seed)
    model.train()
    tokens = torch.tensor(sequences)  # [n, 4]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        logits = model(input_ids=tokens).logits[:, :-1]  # [n, 3, 2V]
        F.cross_entropy(logits.reshape(-1, 2 * V), tokens[:, 1:].reshape(-1)).backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def trained():
    """Facts of subjects 0-7 seen in A and B, 8-15 in A only, 16-23 never."""
    seqs = [list(fact(s)[:2]) + [IS, fact(s)[2]] for s in range(16)]
    seqs += [[t + V for t in fact(s)[:2]] + [IS + V, fact(s)[2] + V] for s in range(8)]
    return HFEvalModel(train_on(seqs))


def queries_in_b():
    return ([item(s, V, "seen") for s in range(8)] + [item(s, V, "transfer") for s in range(8, 16)]
            + [item(s, V, "unseen") for s in range(16, 24)])


def test_facts_memorized_in_both_languages_score_100_percent(trained):
    scorer = LikelihoodScorer(trained)
    both = knowledge_accuracy(scorer, [item(s, 0, "A") for s in range(8)] +
                              [item(s, V, "B") for s in range(8)])
    assert both["A"]["accuracy"] == 1.0 and both["B"]["accuracy"] == 1.0
    result = knowledge_accuracy(scorer, queries_in_b())
    assert result["seen"]["accuracy"] == 1.0  # the upper bound
    assert result["unseen"]["accuracy"] <= 0.5  # chance: 1 of 4
    assert result["unseen"]["chance"] == 0.25 and result["all"]["items"] == 24


def test_untrained_model_is_near_chance():
    result = knowledge_accuracy(LikelihoodScorer(HFEvalModel(tiny_llama(2 * V, hidden=64))),
                                queries_in_b() + [item(s, 0, "seen") for s in range(24)])
    assert result["all"]["accuracy"] <= 0.45, result["all"]  # chance 0.25 over 48 items


def test_scoring_rules_on_a_fake_scorer():
    """Summed vs length-normalized log-likelihood, ties to the first candidate, per-group chance."""
    table = {(1,): -3.0, (2, 2): -4.0, (3,): -3.0}
    scorer = lambda pairs: [table[c] for _, c in pairs]  # noqa: E731
    items = [KnowledgeItem((9,), ((1,), (2, 2)), 1, "g"), KnowledgeItem((9,), ((1,), (3,)), 1, "h")]
    assert knowledge_accuracy(scorer, items)["g"]["accuracy"] == 0.0  # -3 > -4
    assert knowledge_accuracy(scorer, items, length_normalize=True)["g"]["accuracy"] == 1.0  # -2 > -3
    result = knowledge_accuracy(scorer, items)
    assert result["h"]["accuracy"] == 0.0  # tie: first candidate wins, answer was the second
    assert result["all"] == {"accuracy": 0.0, "items": 2, "chance": 0.5}


def test_likelihood_scorer_sums_the_continuation_tokens_only():
    model = HFEvalModel(tiny_llama(2 * V))
    prompt, cont = (3, 4, 5), (6, 7)
    score = LikelihoodScorer(model)([(prompt, cont)])[0]
    logp = F.log_softmax(model.logits(torch.tensor([prompt + cont])), dim=-1)[0]
    assert score == pytest.approx(float(logp[2, 6] + logp[3, 7]), abs=1e-5)


def test_render_fact_items_from_templates():
    facts = [Fact("France", "capital", "Paris"), Fact("Italy", "capital", "Rome"),
             Fact("Spain", "capital", "Madrid"), Fact("sky", "color", "blue"),
             Fact("grass", "color", "green")]
    encode = lambda text: tuple(ord(c) for c in text)  # noqa: E731
    items = render_fact_items(facts, {"capital": "The capital of {subject} is", "color": "{subject} is"},
                              encode, lambda o: encode(" " + o),
                              group=lambda f: "seen" if f.relation == "color" else "transfer",
                              num_candidates=2, seed=1)
    assert [i.prompt for i in items[:1]] == [encode("The capital of France is")]
    assert all(len(i.candidates) == 2 for i in items)
    for item_, f in zip(items, facts):
        assert item_.candidates[item_.answer] == encode(" " + f.object)
        assert item_.group == ("seen" if f.relation == "color" else "transfer")
    assert items == render_fact_items(facts, {"capital": "The capital of {subject} is",
                                              "color": "{subject} is"}, encode,
                                      lambda o: encode(" " + o), group=lambda f: "seen"
                                      if f.relation == "color" else "transfer",
                                      num_candidates=2, seed=1)  # deterministic


def test_items_survive_the_json_file_format():
    items = queries_in_b()
    assert items_from_records(items_to_records(items)) == items
    with pytest.raises(ValueError, match="record 1"):
        items_from_records([{"prompt_ids": [1], "candidate_ids": [[2]], "answer": 3}])


def test_greedy_generation_reproduces_memorized_objects_and_nothing_unseen(trained):
    result = generation_accuracy(GreedyMatcher(trained), [item(s, 0, "A") for s in range(16)] + queries_in_b())
    assert result["A"]["accuracy"] == 1.0 and result["seen"]["accuracy"] == 1.0
    assert result["unseen"]["accuracy"] <= 0.5 and result["unseen"]["chance"] == 0.0
    assert result["all"]["items"] == 40


class PrefersAFunctionWord(EvalModel):
    """Every position's logits rank token 5 first, then the object 27, then the other objects."""

    kind, name, vocab_size, num_layers, max_length = "fake", "fake", V, 1, 16

    def logits(self, tokens):
        row = torch.zeros(V)
        row[5], row[27], row[28] = 3.0, 2.0, 1.0
        return row.expand(tokens.shape[0], tokens.shape[1], V).clone()


def test_likelihood_ranking_and_greedy_generation_can_disagree():
    """The right object outranks the other candidates, but the model would say something else first."""
    model = PrefersAFunctionWord()
    items = [KnowledgeItem((1, 2, 3), ((27,), (28,)), 0, "g"), KnowledgeItem((4, 2), ((28,), (27,)), 1, "g")]
    assert knowledge_accuracy(LikelihoodScorer(model), items)["g"]["accuracy"] == 1.0
    assert generation_accuracy(GreedyMatcher(model), items)["g"]["accuracy"] == 0.0
    # A two-token object counts only if every token is the top-1 one.
    assert GreedyMatcher(model)([((1,), (5, 5)), ((1,), (5, 27)), ((1, 2), (5,))]) == [True, False, True]
