"""Tokenizers: Megatron-identical ids, derived word boundaries, errors, GPTDataset compatibility."""

import json

import numpy as np
import pytest

from megatron_prealign.shards.writer import optimal_token_dtype
from megatron_prealign.text.tokenizers import build_tokenizer
from megatron_prealign.text.tokenizers.base import TokenizerError
from megatron_prealign.text.tokenizers.huggingface import HuggingFaceTextTokenizer
from megatron_prealign.text.words import WORD_PROBLEM_MESSAGES, TokenKind, WordProblem
from tests.fixtures.helpers import CORPUS, HF_DIR, SP_MODEL

TEXTS = [
    "Hello world, this is a test.",
    "  double  spaces\tand\nnewlines ",
    "Unicode: caf\u00e9 na\u00efve \u4e2d\u6587 \U0001f600 </s> <|endoftext|> <|pad|>x",
    "",
    "   ",
]


def corpus_texts():
    out = []
    with open(CORPUS, encoding="utf-8", newline=None) as f:
        for line in f:
            value = json.loads(line)["text"]
            out.extend(value if isinstance(value, list) else [value])
    return out + TEXTS


def test_sentencepiece_ids_equal_megatron_core(sp_tokenizer):
    from megatron.core.tokenizers import MegatronTokenizer

    ref = MegatronTokenizer.from_pretrained(tokenizer_path=SP_MODEL,
                                            metadata_path={"library": "sentencepiece"})
    texts = corpus_texts()
    assert sp_tokenizer.tokenize_batch(texts) == [ref.tokenize(t) for t in texts]
    assert sp_tokenizer.vocab_size == ref.vocab_size == 500
    assert sp_tokenizer.eod == ref.eod


def test_huggingface_ids_equal_transformers_convert_tokens(hf_tokenizer):
    from transformers import AutoTokenizer

    ref = AutoTokenizer.from_pretrained(HF_DIR)
    texts = corpus_texts()
    want = [ref.convert_tokens_to_ids(ref.tokenize(t)) for t in texts]
    assert hf_tokenizer.tokenize_batch(texts) == want
    assert [hf_tokenizer.tokenize(t) for t in texts] == want
    assert hf_tokenizer.vocab_size == len(ref)
    assert hf_tokenizer.eod == ref.convert_tokens_to_ids("<|endoftext|>")
    assert hf_tokenizer.pad == ref.convert_tokens_to_ids("<|pad|>")
    special = hf_tokenizer.tokenize("a<|endoftext|>b")
    assert hf_tokenizer.eod in special


def test_huggingface_without_transformers_gives_the_same_ids(hf_tokenizer, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_transformers(name, *args, **kwargs):
        if name == "transformers" or name.startswith("transformers."):
            raise ImportError("blocked for the test")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_transformers)
    light = HuggingFaceTextTokenizer(HF_DIR)
    assert light._hf is None
    texts = corpus_texts()
    assert light.tokenize_batch(texts) == hf_tokenizer.tokenize_batch(texts)
    assert (light.vocab_size, light.eod, light.pad) == (
        hf_tokenizer.vocab_size, hf_tokenizer.eod, hf_tokenizer.pad)


def test_word_markers_are_derived(sp_tokenizer, hf_tokenizer):
    sp = sp_tokenizer.word_boundaries
    hf = hf_tokenizer.word_boundaries
    assert sp.marker == "\u2581" and hf.marker == "\u0120"
    strings = sp_tokenizer.token_strings()
    for i, s in enumerate(strings):
        if i == sp_tokenizer.eod:
            assert sp.kinds[i] == TokenKind.SPECIAL
        elif s.startswith("\u2581") and not sp_tokenizer._sp.is_control(i):
            assert sp.kinds[i] == TokenKind.START
    the = sp_tokenizer.word_initial_ids("the")
    assert len(the) == 1 and strings[the[0]] == "\u2581the"
    dot = sp_tokenizer.tokenize("a.")[-1]
    assert strings[dot] == "." and sp.kinds[dot] == TokenKind.PUNCT and not sp.letters[dot]
    hf_strings = hf_tokenizer.token_strings()
    word = hf_tokenizer.word_initial_ids("the")
    assert hf_strings[word[0]].startswith("\u0120")
    assert hf.kinds[hf_tokenizer.eod] == TokenKind.SPECIAL
    comma = hf_tokenizer.tokenize(",")[0]
    assert hf.kinds[comma] == TokenKind.PUNCT


def test_word_initial_form_and_problems(sp_tokenizer, hf_tokenizer):
    for tok in (sp_tokenizer, hf_tokenizer):
        ids = tok.word_initial_ids("house")
        assert tok.word_problem(ids) is None
        assert list(ids) == tok.tokenize(" house")[-len(ids):]
        assert tok.word_problem(tok.word_initial_ids("ice cream")) == "tokenizes as several words"
        assert tok.word_problem(()) == "no tokens"
        batch = tok.word_initial_ids_batch(["house", "ice cream", "house"])
        assert batch[0] == batch[2] == ids
    # SentencePiece maps characters outside the vocabulary to <unk>.
    assert sp_tokenizer.word_problem(sp_tokenizer.word_initial_ids("\u4e2d\u6587")) == \
        "contains the unknown token (out of vocabulary)"


def test_word_problem_codes_and_messages_are_fixed():
    """Reports and the preprocess stats JSON count dropped words under these exact messages."""
    assert [(int(p), p.message) for p in WordProblem] == [
        (0, None),
        (1, "no tokens"),
        (2, "does not start with a word-initial token"),
        (3, "tokenizes as several words"),
        (4, "ends in punctuation (stripped from words in text)"),
        (5, "contains the unknown token (out of vocabulary)"),
        (6, "mixes English and clone ids"),
        (7, "longer than the token cap"),
    ]
    assert WORD_PROBLEM_MESSAGES == tuple(p.message for p in WordProblem)


def test_word_problem_codes_name_the_most_basic_problem(sp_tokenizer):
    house = sp_tokenizer.word_initial_ids("house")
    dot = (sp_tokenizer.tokenize("house.")[-1],)  # a punctuation continuation token
    assert sp_tokenizer.word_boundaries.kinds[dot[0]] == TokenKind.PUNCT
    unknown = sp_tokenizer.word_initial_ids("\u4e2d\u6587")
    words = [(), house, house + house, dot, house + dot, unknown]
    lengths = np.array([len(w) for w in words], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    flat = np.array([t for w in words for t in w], dtype=np.int64)
    codes = sp_tokenizer.word_problem_codes(flat, starts, lengths)
    assert codes.tolist() == [WordProblem.NO_TOKENS, WordProblem.USABLE, WordProblem.SEVERAL_WORDS,
                              WordProblem.NOT_WORD_INITIAL, WordProblem.ENDS_IN_PUNCTUATION,
                              WordProblem.UNKNOWN_TOKEN]


def test_null_tokenizer_matches_megatron():
    tok = build_tokenizer("NullTokenizer", None, vocab_size=100)
    assert tok.vocab_size == 101 and tok.eod == 100 == tok.vocab_size - 1
    assert tok.tokenize("5 6 7") == [5, 6, 7]
    assert tok.detokenize([5, 6]) == "5 6"
    with pytest.raises(TokenizerError, match="NullTokenizer has no words"):
        _ = tok.word_boundaries
    with pytest.raises(TokenizerError, match="needs --vocab-size"):
        build_tokenizer("NullTokenizer", None)


@pytest.mark.parametrize("args, match", [
    (("GPT2BPETokenizer", SP_MODEL), "unknown --tokenizer-type 'GPT2BPETokenizer'"),
    (("SentencePieceTokenizer", "/nonexistent/spm.model"), "does not exist"),
    (("SentencePieceTokenizer", None), "needs --tokenizer-model"),
    (("SentencePieceTokenizer", HF_DIR), "is a directory"),
    (("HuggingFaceTokenizer", "gpt2"), "does not exist"),
])
def test_clear_errors(args, match):
    with pytest.raises(TokenizerError, match=match):
        build_tokenizer(*args)


def test_vocab_size_is_checked(sp_tokenizer):
    assert build_tokenizer("GPTSentencePieceTokenizer", SP_MODEL, vocab_size=500).vocab_size == 500
    with pytest.raises(TokenizerError, match="does not match"):
        build_tokenizer("SentencePieceTokenizer", SP_MODEL, vocab_size=32000)
    with pytest.raises(TokenizerError, match="another tokenizer"):
        sp_tokenizer.check_ids(np.array([1, 600]), "x.bin")


def test_dtype_threshold_is_megatrons():
    assert optimal_token_dtype(65499) is np.uint16
    assert optimal_token_dtype(65500) is np.int32


def test_usable_as_gpt_dataset_config_tokenizer(sp_tokenizer, clone_tokenizer):
    from megatron.core.datasets.gpt_dataset import GPTDatasetConfig

    for tok in (sp_tokenizer, clone_tokenizer):
        config = GPTDatasetConfig(random_seed=1, sequence_length=8, tokenizer=tok,
                                  reset_position_ids=False, reset_attention_mask=False,
                                  eod_mask_loss=False)
        assert config.tokenizer.eod == 2
        json.dumps(tok.unique_identifiers)
        assert tok.pad == -1
    assert clone_tokenizer.unique_identifiers["english_clone"] is True
    assert clone_tokenizer.fingerprint()["model_sha256"] == sp_tokenizer.fingerprint()["model_sha256"]


def test_tokenizers_pickle(sp_tokenizer, hf_tokenizer, clone_tokenizer):
    import pickle

    for tok in (sp_tokenizer, hf_tokenizer, clone_tokenizer):
        again = pickle.loads(pickle.dumps(tok))
        assert again.tokenize("Hello there.") == tok.tokenize("Hello there.")
        assert again.vocab_size == tok.vocab_size


def test_null_tokenizer_refuses_ids_outside_its_vocabulary():
    from megatron_prealign.text.tokenizers import build_tokenizer
    from megatron_prealign.text.tokenizers.base import TextRejected

    tok = build_tokenizer("NullTokenizer", None, vocab_size=512)
    assert tok.tokenize("0 511 512") == [0, 511, 512] and tok.tokenize("") == []
    for text, reason, message in [("1 70000", "id_out_of_vocab", "id 70000 is outside the vocabulary"),
                                  ("513", "id_out_of_vocab", "allows ids 0..511 and EOD 512"),
                                  ("-1 2", "id_out_of_vocab", "id -1 is outside"),
                                  ("1 x", "not_an_id", "'x' is not an integer id"),
                                  ("1  2", "not_an_id", "'' is not an integer id")]:
        with pytest.raises(TextRejected, match=message) as info:
            tok.tokenize(text)
        assert info.value.reason == reason
