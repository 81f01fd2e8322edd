"""Perplexity on hand-made cases, and the two input formats."""

import json
import math

import numpy as np
import pytest
import torch

from megatron_prealign.evaluation.models import HFEvalModel
from megatron_prealign.evaluation.perplexity import (
    EvalDataError,
    load_sequences,
    perplexity,
    read_shard_sequences,
)
from megatron_prealign.text.tokenizers import build_tokenizer
from tests.conftest import REPO_ROOT
from tests.evaluation.helpers import tiny_llama

SP_MODEL = str(REPO_ROOT / "tests" / "fixtures" / "data" / "sp_unigram.model")


def uniform_model(vocab):
    model = tiny_llama(vocab)
    with torch.no_grad():
        model.lm_head.weight.zero_()  # every logit 0: the uniform distribution
    return HFEvalModel(model)


def test_uniform_model_has_perplexity_equal_to_the_vocabulary():
    sequences = [list(range(10)), list(range(5, 50))]
    result = perplexity(uniform_model(60), sequences, seq_length=16, batch_size=2)
    assert result.perplexity == pytest.approx(60.0, rel=1e-6)
    assert result.nll == pytest.approx(math.log(60.0), rel=1e-6)
    # windows of 16: 10 -> 9 predicted; 45 -> 16+16+13 -> 15+15+12 predicted
    assert result.tokens == 9 + 15 + 15 + 12 and result.sequences == 2


def test_perplexity_is_the_exponentiated_mean_token_loss():
    model = HFEvalModel(tiny_llama(60))
    seq = list(range(3, 23))
    logp = torch.log_softmax(model.logits(torch.tensor([seq])), dim=-1)[0]
    nll = -float(sum(logp[i, seq[i + 1]] for i in range(len(seq) - 1))) / (len(seq) - 1)
    assert perplexity(model, [seq]).nll == pytest.approx(nll, rel=1e-5)
    with pytest.raises(EvalDataError, match="outside the model's vocabulary"):
        perplexity(model, [[1, 2, 99]])


def test_jsonl_text_is_tokenized_with_eod_and_clone_tag(tmp_path):
    tok = build_tokenizer("SentencePieceTokenizer", SP_MODEL, english_clone=True)
    path = tmp_path / "valid.jsonl"
    path.write_text(json.dumps({"text": "the house"}) + "\n\n" +
                    json.dumps({"text": ["<clone>the house", ""]}) + "\n")
    seqs = load_sequences(str(path), tok)
    english = tok.tokenize("the house")
    assert seqs == [english + [tok.eod], [i + 500 for i in english] + [tok.clone_eod]]


def test_shards_are_read_as_stored_and_code_switched_ones_refused(tmp_path):
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    prefix = str(tmp_path / "valid_text_document")
    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=np.uint16)
    for doc in ([5, 6, 7, 2], [8, 9, 2]):
        builder.add_document(torch.tensor(doc), [len(doc)])
    builder.finalize(prefix + ".idx")
    assert read_shard_sequences(prefix) == [[5, 6, 7, 2], [8, 9, 2]]
    assert load_sequences(prefix, None) == [[5, 6, 7, 2], [8, 9, 2]]
    for suffix in (".bin", ".idx"):  # a companion marks a code-switched shard
        (tmp_path / f"valid_text_document_targets{suffix}").write_bytes(b"")
    with pytest.raises(EvalDataError, match="code-switched"):
        read_shard_sequences(prefix)
    with pytest.raises(EvalDataError, match="does not exist"):
        read_shard_sequences(str(tmp_path / "missing"))
