"""Input-only code-switching: exact semantics on hand-made sentences, rates, determinism."""

import numpy as np
import pytest

from megatron_prealign.errors import PreAlignError
from megatron_prealign.text import codeswitch as cs
from megatron_prealign.text.codeswitch import IGNORE, CodeSwitchTable
from tests.fixtures.helpers import (
    C1,
    C2,
    COMMA,
    DOT,
    EOD,
    SPACE_COMMA,
    X1,
    X2,
    X3,
    A,
    B,
    D,
    E,
    Y,
)
from tests.text.codeswitch_reference import codeswitch_reference


def switch_all(docs, table, toy, ratio=1.0, seed=0):
    """Switch a list of documents (each a list of sequences) in one batch; return per-doc results."""
    seqs = [s for d in docs for s in d]
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    seq_docs = np.array([i for i, d in enumerate(docs) for _ in d], dtype=np.int64)
    tokens = np.array([t for s in seqs for t in s], dtype=np.int64)
    keys = cs.document_keys(seed, 0, np.arange(len(docs), dtype=np.uint64) * 100, 0)
    res = cs.codeswitch_batch(tokens, lengths, seq_docs, keys, table, toy, ratio)
    bounds = np.concatenate([[0], np.cumsum(res.seq_lengths)])
    out_in, out_tg = [], []
    k = 0
    for d in docs:
        xs, ys = [], []
        for _ in d:
            xs.append(res.tokens[bounds[k]:bounds[k + 1]].tolist())
            ys.append(None if res.targets is None else res.targets[bounds[k]:bounds[k + 1]].tolist())
            k += 1
        out_in.append(xs)
        out_tg.append(ys)
    return out_in, out_tg, res


def labels_of(inputs, targets):
    """Megatron's shift on a single sequence: (input position, label) pairs with IGNORE kept."""
    return list(zip(inputs[:-1], targets[1:]))


def test_method_md_example_longer_translation(toy):
    # a b [c1 c2] d  ->  a b x1 x2 x3 d ; label at b is c1, x1/x2 ignored, x3 predicts d.
    table = CodeSwitchTable([(C1, C2)], [[(X1, X2, X3)]])
    (xs,), (ys,), res = switch_all([[[A, B, C1, C2, D]]], table, toy)
    assert xs == [[A, B, X1, X2, X3, D]]
    assert ys == [[A, B, C1, IGNORE, IGNORE, D]]
    assert labels_of(xs[0], ys[0]) == [(A, B), (B, C1), (X1, IGNORE), (X2, IGNORE), (X3, D)]
    assert (res.stats.words, res.stats.dictionary_words, res.stats.switched_words) == (4, 1, 1)


def test_shorter_translation(toy):
    table = CodeSwitchTable([(C1, C2)], [[(Y,)]])
    (xs,), (ys,), res = switch_all([[[A, B, C1, C2, D]]], table, toy)
    assert xs == [[A, B, Y, D]]
    assert ys == [[A, B, C1, D]]
    assert labels_of(xs[0], ys[0]) == [(A, B), (B, C1), (Y, D)]
    assert res.seq_lengths.tolist() == [4]


def test_single_token_word_to_multi_token_at_document_end_with_eod(toy):
    table = CodeSwitchTable([(D,)], [[(X1, X2, X3)]])
    (xs,), (ys,), _ = switch_all([[[A, B, D, EOD]]], table, toy)
    assert xs == [[A, B, X1, X2, X3, EOD]]
    assert ys == [[A, B, D, IGNORE, IGNORE, EOD]]
    assert labels_of(xs[0], ys[0])[-1] == (X3, EOD)


def test_word_at_document_start(toy):
    # The first target is the label of the previous document's last token (its EOD).
    table = CodeSwitchTable([(C1, C2)], [[(X1, X2, X3)]])
    (xs, ys, _) = switch_all([[[C1, C2, D]], [[A]]], table, toy)
    assert xs[0] == [[X1, X2, X3, D]]
    assert ys[0] == [[C1, IGNORE, IGNORE, D]]
    assert xs[1] == [[A]] and ys[1] == [[A]]


def test_trailing_punctuation_is_not_part_of_the_word(toy):
    table = CodeSwitchTable([(C1, C2)], [[(Y,)]])
    (xs,), (ys,), res = switch_all([[[A, C1, C2, DOT, COMMA, D]]], table, toy)
    assert xs == [[A, Y, DOT, COMMA, D]]
    assert ys == [[A, C1, DOT, COMMA, D]]


def test_continuation_with_letters_makes_a_different_word(toy):
    # "c1 c2 x2" is one word, not the key "c1 c2": never switched.
    table = CodeSwitchTable([(C1, C2)], [[(Y,)]])
    (xs,), (ys,), res = switch_all([[[A, C1, C2, X2, D]]], table, toy)
    assert xs == [[A, C1, C2, X2, D]] and ys == xs
    assert res.stats.dictionary_words == 0


def test_words_do_not_cross_sequences_or_special_tokens(toy):
    table = CodeSwitchTable([(C1, C2)], [[(Y,)]])
    (xs,), _, res = switch_all([[[A, C1], [C2, D]]], table, toy)
    assert xs == [[A, C1], [C2, D]]
    (xs,), _, _ = switch_all([[[A, C1, EOD, C2]]], table, toy)
    assert xs == [[A, C1, EOD, C2]]
    assert res.stats.switched_words == 0


def test_runs_without_letters_are_not_words(toy):
    table = CodeSwitchTable([(SPACE_COMMA,)], [[(Y,)]])
    (xs,), _, res = switch_all([[[A, SPACE_COMMA, D]]], table, toy)
    assert xs == [[A, SPACE_COMMA, D]]
    assert res.stats.words == 2


def test_several_switches_and_sentences_keep_lengths_consistent(toy):
    table = CodeSwitchTable([(C1, C2), (D,)], [[(Y,)], [(X1, X2, X3)]])
    doc = [[A, C1, C2, D, DOT], [D, B, C1, C2]]
    (xs,), (ys,), res = switch_all([doc], table, toy)
    assert xs == [[A, Y, X1, X2, X3, DOT], [X1, X2, X3, B, Y]]
    assert ys == [[A, C1, D, IGNORE, IGNORE, DOT], [D, IGNORE, IGNORE, B, C1]]
    assert res.seq_lengths.tolist() == [6, 5]
    assert res.stats.tokens_out == 11


def test_ratio_zero_switches_nothing_but_counts_coverage(toy):
    table = CodeSwitchTable([(C1, C2)], [[(Y,)]])
    (xs,), (ys,), res = switch_all([[[A, C1, C2, D]]], table, toy, ratio=0.0)
    assert xs == [[A, C1, C2, D]] and ys == [None]
    assert res.targets is None
    assert (res.stats.words, res.stats.dictionary_words, res.stats.switched_words) == (3, 1, 0)


def test_symmetric_concepts_switch_both_ways(toy):
    table = CodeSwitchTable.from_concepts([[(C1, C2), (Y,)], [(D,), (E,), (D,)]])
    assert table.lookup((C1, C2)) == [(Y,)] and table.lookup((Y,)) == [(C1, C2)]
    assert table.lookup((D,)) == [(E,)] and table.lookup((E,)) == [(D,)]
    (xs,), _, _ = switch_all([[[Y, D, E]]], table, toy)
    assert xs == [[C1, C2, E, D]]


def test_observed_rate_matches_p_on_a_large_sample(toy):
    # 200k dictionary words in 2000 documents; switched count ~ Binomial(n, p): 5 sigma.
    table = CodeSwitchTable([(C1, C2)], [[(Y,)]])
    docs = [[[C1, C2, A] * 100] for _ in range(2000)]
    p = 0.05
    _, _, res = switch_all(docs, table, toy, ratio=p, seed=7)
    n = res.stats.dictionary_words
    assert n == 200_000
    sigma = np.sqrt(n * p * (1 - p))
    assert abs(res.stats.switched_words - n * p) < 5 * sigma
    # the rate holds inside documents too (no position bias): first vs second half of each doc
    first = sum(x[0][:150].count(Y) for x in switch_all(docs[:500], table, toy, p, 7)[0])
    second = sum(x[0][150:].count(Y) for x in switch_all(docs[:500], table, toy, p, 7)[0])
    assert abs(first - second) < 5 * np.sqrt(2 * 25_000 * p)


def test_translations_are_chosen_uniformly(toy):
    table = CodeSwitchTable([(D,)], [[(Y,), (E,), (X1, X2)]])
    docs = [[[D] * 50] for _ in range(600)]
    xs, _, res = switch_all(docs, table, toy, ratio=1.0, seed=3)
    assert res.stats.switched_words == 30_000
    flat = [t for d in xs for s in d for t in s]
    counts = np.array([flat.count(Y), flat.count(E), flat.count(X1)])
    assert counts.sum() == 30_000
    assert np.all(np.abs(counts - 10_000) < 5 * np.sqrt(30_000 * (1 / 3) * (2 / 3)))


def test_output_does_not_depend_on_batching_and_matches_reference(toy):
    rng = np.random.default_rng(0)
    table = CodeSwitchTable.from_concepts([[(C1, C2), (Y,)], [(D,), (X1, X2, X3)], [(A,), (E,)]])
    ids = [A, B, C1, C2, D, DOT, X1, X2, X3, Y, COMMA, SPACE_COMMA, E, EOD]
    docs = [[rng.choice(ids, size=int(rng.integers(1, 40))).tolist()
             for _ in range(int(rng.integers(1, 4)))] for _ in range(300)]
    together = switch_all(docs, table, toy, ratio=0.3, seed=11)
    keys = cs.document_keys(11, 0, np.arange(len(docs), dtype=np.uint64) * 100, 0)
    for i, doc in enumerate(docs):
        keys_i = keys[i:i + 1]
        lengths = np.array([len(s) for s in doc])
        alone = cs.codeswitch_batch(np.array([t for s in doc for t in s]), lengths,
                                    np.zeros(len(doc), dtype=np.int64), keys_i, table, toy, 0.3)
        bounds = np.concatenate([[0], np.cumsum(alone.seq_lengths)])
        alone_in = [alone.tokens[bounds[k]:bounds[k + 1]].tolist() for k in range(len(doc))]
        assert together[0][i] == alone_in
        ref_in, ref_tg, _ = codeswitch_reference(doc, int(keys[i]), table, toy, 0.3)
        assert together[0][i] == ref_in
        assert together[1][i] == ref_tg
    assert together[2].stats.switched_words > 0


def test_seed_changes_the_choice(toy):
    table = CodeSwitchTable([(D,)], [[(Y,)]])
    docs = [[[D] * 200]]
    a = switch_all(docs, table, toy, ratio=0.5, seed=1)[0]
    b = switch_all(docs, table, toy, ratio=0.5, seed=2)[0]
    assert a != b and a == switch_all(docs, table, toy, ratio=0.5, seed=1)[0]


def test_hash_of_runs_equals_hash_of_keys():
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 70000, size=500)
    starts = np.array([0, 5, 17, 100, 499])
    ends = np.array([3, 6, 40, 101, 500])
    got = cs._run_hashes(tokens, starts, ends)
    want = [cs.hash_key(tokens[s:e].tolist()) for s, e in zip(starts, ends)]
    assert got.tolist() == want
    assert len(set(want)) == len(want)


def test_hash_collision_is_not_switched(toy, monkeypatch):
    # Force every word to "hit" the key's hash: the token-by-token check must reject the others.
    table = CodeSwitchTable([(C1, C2)], [[(Y,)]])
    monkeypatch.setattr(cs, "_run_hashes", lambda tokens, s, e: np.full(len(s), 7, np.uint64))
    monkeypatch.setattr(table, "find", lambda h: np.zeros(len(h), dtype=np.int64))
    (xs,), _, res = switch_all([[[A, C1, C2, D]]], table, toy)
    assert xs == [[A, Y, D]]
    assert res.stats.dictionary_words == 1 and res.stats.switched_words == 1


def test_scalar_and_vector_draws_agree():
    keys = cs.document_keys(5, 3, np.array([0, 17, 123456789], dtype=np.uint64), 1)
    for k, off in zip(keys.tolist(), [0, 17, 123456789]):
        assert k == cs.document_key_int(5, 3, off, 1)
    u, v = cs._word_draws(keys, np.array([0, 4, 9]))
    for i, off in enumerate([0, 4, 9]):
        assert (u[i], v[i]) == cs.word_draws_int(int(keys[i]), off)


def test_real_tokenizer_sentence(sp_tokenizer):
    tok = sp_tokenizer
    house, school = tok.word_initial_ids("house"), tok.word_initial_ids("school")
    assert tok.word_problem(house) is None and tok.word_problem(school) is None
    assert house != school
    table = CodeSwitchTable.from_concepts([[house, school]])
    ids = tok.tokenize("I went to the house. The house was old")
    res = cs.codeswitch_batch(np.array(ids), np.array([len(ids)]), np.zeros(1, np.int64),
                              cs.document_keys(0, 0, np.zeros(1, np.uint64), 0), table,
                              tok.word_boundaries, 1.0)
    assert res.stats.switched_words == 2
    assert tok.detokenize(res.tokens.tolist()) == "I went to the school. The school was old"
    # Expected streams, built by hand from the original ids.
    expected_in, expected_tg, i = [], [], 0
    while i < len(ids):
        if tuple(ids[i:i + len(house)]) == house:
            expected_in += list(school)
            expected_tg += [house[0]] + [IGNORE] * (len(school) - 1)
            i += len(house)
        else:
            expected_in.append(ids[i])
            expected_tg.append(ids[i])
            i += 1
    assert res.tokens.tolist() == expected_in
    assert res.targets.tolist() == expected_tg


def test_table_rejects_ids_outside_the_vocabulary():
    table = CodeSwitchTable([(1, 2)], [[(900,)]])
    with pytest.raises(ValueError, match="does not fit vocabulary size 500"):
        table.check_vocab(500, "dict.jsonl")


def test_table_vocabulary_error_is_a_user_facing_error():
    table = CodeSwitchTable([(1, 2)], [[(900,)]])
    with pytest.raises(PreAlignError, match=r"^dict.jsonl: dictionary token id 900 .* Re-tokenize"):
        table.check_vocab(500, "dict.jsonl")
    table.check_vocab(901, "dict.jsonl")  # every id fits


def test_compiled_table_equals_the_naive_definition():
    rng = np.random.default_rng(4)
    vocab = [(int(a),) for a in range(40)] + [(int(a), int(b)) for a, b in rng.integers(0, 40, (60, 2))]
    concepts = [[vocab[i] for i in rng.integers(0, len(vocab), size=int(rng.integers(1, 5)))]
                for _ in range(300)]
    naive = {}
    for c in concepts:
        for w in c:
            others = {o for o in c if o != w}
            if others:
                naive.setdefault(w, set()).update(others)
    table = CodeSwitchTable.from_concepts(concepts)
    assert {k: set(t) for k, t in zip(table.keys, table.translations)} == naive
    assert all(len(t) == len(set(t)) for t in table.translations)
    # every key is found by its hash, and nothing else is
    found = table.find(cs.hash_keys(table.keys))
    assert found.tolist() == list(range(len(table)))
    absent = [(99, 99), (98,), (1, 2, 3)]
    assert table.find(cs.hash_keys(absent)).tolist() == [-1, -1, -1]
    again = CodeSwitchTable(table.keys, table.translations)
    assert again.keys == table.keys and again.translations == table.translations
