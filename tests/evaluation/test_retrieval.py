"""Sentence retrieval: P@1 both ways on hand-made vectors, padding-free pooling on a tiny Llama, and
``tools/evaluate.py --retrieval`` end to end. (Its bad inputs are rows of
``tests/hostile/cases_eval_run.py``.)"""

import json

import pytest
import torch

from megatron_prealign.evaluation.models import HFEvalModel
from megatron_prealign.evaluation.retrieval import (
    embed_texts,
    evaluate_retrieval,
    first_duplicate,
    retrieval_p_at_1,
    truncate_texts,
)
from tests.conversion.checkpoints import run_tool
from tests.evaluation.helpers import tiny_llama
from tests.hostile.cases_eval_run import tiny_model, write_lines


def random_vectors(n=8, h=16, seed=0):
    return torch.randn(n, h, generator=torch.Generator().manual_seed(seed))


def test_partners_nearest_to_each_other_give_one_both_ways():
    source = random_vectors()
    target = 3.0 * source + 0.01 * random_vectors(seed=1)  # cosine ignores the scale
    result = retrieval_p_at_1(source, target)
    assert (result.source_to_target, result.target_to_source, result.p_at_1) == (1.0, 1.0, 1.0)


def test_permuted_partners_are_missed_both_ways():
    source = random_vectors()
    shifted = source[torch.tensor([1, 2, 3, 4, 5, 6, 7, 0])]  # every partner elsewhere
    result = retrieval_p_at_1(source, shifted)
    assert (result.source_to_target, result.target_to_source, result.p_at_1) == (0.0, 0.0, 0.0)
    half = source[torch.tensor([1, 0, 3, 2, 4, 5, 6, 7])]  # 0<->1 and 2<->3 swapped, 4..7 in place
    result = retrieval_p_at_1(source, half)
    assert (result.source_to_target, result.target_to_source, result.p_at_1) == (0.5, 0.5, 0.5)


def test_a_hub_makes_the_two_directions_differ():
    """Target 1 lies next to source 0: each source still finds its partner first, but target 1's
    nearest source is source 0, not its partner."""
    source = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    target = torch.tensor([[1.0, 0.0], [1.0, 0.1]])
    result = retrieval_p_at_1(source, target)
    assert result.source_to_target == 1.0
    assert result.target_to_source == 0.5
    assert result.p_at_1 == 0.75
    swapped = retrieval_p_at_1(target, source)  # the directions trade places
    assert (swapped.source_to_target, swapped.target_to_source) == (0.5, 1.0)


def test_fewer_than_two_pairs_or_unequal_sides_are_refused():
    with pytest.raises(ValueError, match="n >= 2"):
        retrieval_p_at_1(random_vectors(1), random_vectors(1))
    with pytest.raises(ValueError, match="same shape"):
        retrieval_p_at_1(random_vectors(4), random_vectors(3))


def test_a_text_pools_the_same_alone_and_beside_a_longer_one():
    """Mean over the text's own tokens: right padding (to the longer text) changes nothing, and the
    vector is exactly the normalized mean of the text's hidden states at every level."""
    model = HFEvalModel(tiny_llama(50, layers=2))
    short, long = (3, 4, 5), (6, 7, 8, 9, 10, 11, 12, 13, 14)
    alone = embed_texts(model, [short])
    batched = embed_texts(model, [long, short], batch_size=2)
    states = model.hidden_levels(torch.tensor([short]), list(alone))
    assert list(alone) == ["embedding", "layer1", "layer2", "final_norm"]
    for level, vectors in alone.items():
        assert torch.allclose(batched[level][1], vectors[0], atol=1e-6), level
        mean = states[level][0].mean(dim=0)
        assert torch.allclose(vectors[0], mean / mean.norm(), atol=1e-6), level


def test_rows_follow_the_input_whatever_the_batching():
    model = HFEvalModel(tiny_llama(50))
    texts = [(1, 2, 3, 4, 5), (6,), (7, 8, 9), (10, 11), (12, 13, 14, 15)]
    one_by_one = embed_texts(model, texts, batch_size=1)
    together = embed_texts(model, texts, batch_size=3)  # batched in length order, rows put back
    for level in one_by_one:
        assert torch.allclose(one_by_one[level], together[level], atol=1e-6), level
    with pytest.raises(ValueError, match="1..64 tokens"):
        embed_texts(model, [(1, 2), ()])


def test_long_texts_are_cut_and_counted():
    assert truncate_texts([(1, 2, 3, 4), (5, 6)], 3) == ([(1, 2, 3), (5, 6)], 1)
    assert first_duplicate([(1, 2), (3,), (1, 2)]) == (0, 2) and first_duplicate([(1,), (2,)]) is None
    model = HFEvalModel(tiny_llama(50))
    sources, targets = [(1, 2, 3, 4), (5, 6)], [(7, 8), (9, 10, 11, 12, 13)]
    result = evaluate_retrieval(model, sources, targets, max_tokens=3)
    assert (result.pairs, result.truncated) == (2, 2)
    assert list(result.levels) == ["embedding", "layer1", "final_norm"]
    assert evaluate_retrieval(model, sources, targets, max_tokens=1000).truncated == 0  # <= 64 positions
    with pytest.raises(ValueError, match="source texts 0 and 1 have the same ids"):
        evaluate_retrieval(model, [(1, 2, 3), (1, 2, 4)], targets, max_tokens=2)


def test_evaluate_writes_retrieval_per_level_and_identical_texts_score_one(tmp_path):
    tiny_model(tmp_path)  # a 1-layer Llama over the words w0 .. w61
    texts = ["w1 w2 w3", "w4 w5", "w6 w7 w8 w9 w10", "w11", "w12 w13 w14 w15", "w16 w17 w18"]
    write_lines(tmp_path / "same.jsonl", [{"source": t, "target": t} for t in texts])
    write_lines(tmp_path / "other.jsonl", [{"source": t, "target": f"w{40 + i} w{50 + i}"}
                                           for i, t in enumerate(texts)])
    out = tmp_path / "eval"
    proc = run_tool("evaluate.py", "--model", f"m={tmp_path / 'hf'}", "--retrieval",
                    f"same={tmp_path / 'same.jsonl'}", f"other={tmp_path / 'other.jsonl'}",
                    "--retrieval-max-tokens", "4", "--batch-size", "4", "--output", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run, = json.loads((out / "results.json").read_text())["runs"]
    assert list(run["retrieval"]) == ["same", "other"]
    same = run["retrieval"]["same"]
    assert (same["pairs"], same["truncated"]) == (6, 2)  # "w6 .. w10" on both sides
    assert list(same["levels"]) == ["embedding", "layer1", "final_norm"]
    for level, scores in same["levels"].items():
        assert scores == {"source_to_target": 1.0, "target_to_source": 1.0, "p_at_1": 1.0}, level
    other = run["retrieval"]["other"]
    assert (other["pairs"], other["truncated"]) == (6, 1)
    for scores in other["levels"].values():
        assert set(scores) == {"source_to_target", "target_to_source", "p_at_1"}
        assert scores["p_at_1"] == pytest.approx((scores["source_to_target"] + scores["target_to_source"]) / 2)
    markdown = (out / "results.md").read_text()
    assert "## Sentence retrieval on `same`" in markdown and "## Sentence retrieval on `other`" in markdown
    assert "| m | 6 | 2 | 1.000 (1.000 / 1.000) | 1.000 (1.000 / 1.000) | 1.000 (1.000 / 1.000) |" in markdown
    assert "[m] retrieval same: P@1 embedding 1.00 layer1 1.00 final_norm 1.00 (6 pairs, 2 texts truncated)" \
        in proc.stdout


@pytest.mark.parametrize("lines, message", [
    (["", "  "], "{path}: the file is empty"),
    ([{"source": "w1", "target": "w2"}, {"source": "w3", "translation": "w4"}], '{path}:2: no "target" field'),
    ([{"source": ["w1"], "target": "w2"}, {"source": "w3", "target": "w4"}],
     '{path}:1: "source" must be a string, got list'),
    ([{"source": "w1", "target": "w2"}], "{path}: a single pair; retrieval needs at least two"),
    ([{"source": "w1", "target": "w2"}, {"source": "w3", "target": "w4"}, {"source": "w5", "target": "w2"}],
     "{path}:3: the same target text as on line 1"),
    ([{"source": "w1", "target": "w2"}, {"source": " ", "target": "w4"}], '{path}:2: the "source" text is empty'),
])
def test_a_bad_retrieval_file_is_refused_naming_file_and_line(tmp_path, lines, message):
    """What ``tools/evaluate.py --retrieval`` checks before any model loads (the CLI rows of these
    errors, with exit status and no traceback, are in tests/hostile/cases_eval_run.py)."""
    from megatron_prealign.evaluation.inputs import EvalDataError
    from tools.evaluate import _retrieval_pairs

    path = tmp_path / "pairs.jsonl"
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    with pytest.raises(EvalDataError) as error:
        _retrieval_pairs(str(path))
    assert message.format(path=path) in str(error.value)


def test_a_collision_after_cutting_names_the_limit_even_when_only_the_first_text_was_cut():
    """``a b c`` cut to 2 tokens equals ``a b``: the texts differ, so the message must name the cut,
    not claim that they have the same ids."""
    from megatron_prealign.evaluation.inputs import EvalDataError
    from tools.evaluate import _retrieval_ids

    class Words:
        def tokenize(self, text):
            return [ord(word) - ord("a") + 1 for word in text.split()]

    with pytest.raises(EvalDataError, match="pairs.jsonl:2: the source text has the same first 2 tokens"):
        _retrieval_ids("pairs.jsonl", "source", [(1, "a b c"), (2, "a b")], Words(), 10, 2)
    with pytest.raises(EvalDataError, match="pairs.jsonl:2: the source text has the same ids as on line 1"):
        _retrieval_ids("pairs.jsonl", "source", [(1, "a b"), (2, "a b")], Words(), 10, 5)
