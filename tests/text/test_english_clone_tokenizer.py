"""The English-Clone tokenizer (``text.tokenizers.english_clone``): id mapping, the doubled vocabulary."""

import numpy as np
import pytest

from megatron_prealign.text.tokenizers.base import TokenizerError
from megatron_prealign.text.tokenizers.english_clone import (
    EnglishCloneTokenizer,
    from_clone_ids,
    to_clone_ids,
)
from megatron_prealign.text.words import TokenKind


def test_id_mapping():
    assert to_clone_ids(np.array([0, 5, 499]), 500).tolist() == [500, 505, 999]
    assert from_clone_ids(np.array([500, 7, 999]), 500).tolist() == [0, 7, 499]
    with pytest.raises(ValueError, match="only English text can be cloned"):
        to_clone_ids(np.array([500]), 500)


def test_clone_tokenizer_doubles_the_vocabulary(sp_tokenizer, clone_tokenizer):
    tok = clone_tokenizer
    assert tok.vocab_size == 1000 and tok.base_vocab_size == 500
    assert tok.eod == sp_tokenizer.eod and tok.clone_eod == sp_tokenizer.eod + 500
    english = sp_tokenizer.tokenize("The house was old.")
    assert tok.tokenize("The house was old.") == english
    assert tok.tokenize("<clone>The house was old.") == [i + 500 for i in english]
    assert tok.tokenize_batch(["<clone>The house was old.</clone>", "The house"])[0] == \
        [i + 500 for i in english]
    assert set(english).isdisjoint(i + 500 for i in english)
    assert tok.detokenize([i + 500 for i in english]) == "<clone>The house was old.</clone>"
    mixed = sp_tokenizer.tokenize("the old") + [i + 500 for i in sp_tokenizer.word_initial_ids("house")]
    assert tok.detokenize(mixed) == "the old <clone>house</clone>"
    kinds = tok.word_boundaries.kinds
    assert len(kinds) == 1000 and kinds[tok.clone_eod] == TokenKind.SPECIAL
    assert np.array_equal(kinds[:500], kinds[500:])
    house = tok.word_initial_ids("house")
    assert tok.word_initial_ids("<clone>house") == tuple(i + 500 for i in house)
    assert tok.word_problem(house[:1] + (house[-1] + 500,)) == "mixes English and clone ids"
    with pytest.raises(TokenizerError, match="already an English-Clone"):
        EnglishCloneTokenizer(tok)
