"""PreAlignGPTDataset: identical to GPTDataset without a companion; switched inputs, original
labels and masked spans with one; blendable with ordinary weights."""

import dataclasses
import os
import pickle
import shutil

import numpy as np
import pytest
import torch
from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

from megatron_prealign.datasets.gpt import (
    CodeSwitchedIndexedDataset,
    PreAlignGPTDataset,
    has_companion,
    pack_pair,
    unpack_pair,
)
from megatron_prealign.preprocess import english_clone as ec
from megatron_prealign.preprocess.lexicon import save_multiway
from megatron_prealign.preprocess.pipeline import PreprocessConfig, run_preprocess
from megatron_prealign.shards.writer import companion_prefix
from tests.fixtures.helpers import CORPUS, SP_MODEL


@pytest.fixture(scope="module")
def shards(tmp_path_factory, clone_tokenizer):
    d = tmp_path_factory.mktemp("shards")
    common = dict(input=[CORPUS], tokenizer_type="SentencePieceTokenizer", tokenizer_model=SP_MODEL,
                  append_eod=True, progress="none")
    en = run_preprocess(PreprocessConfig(output_prefix=str(d / "en"), **common))
    words, _ = ec.words_from_shard(en["outputs"]["text"]["prefix"], clone_tokenizer.base)
    entries, _ = ec.build_clone_dictionary(words, clone_tokenizer)
    save_multiway(entries, str(d / "en_clone.jsonl"))
    cs = run_preprocess(PreprocessConfig(output_prefix=str(d / "cs"), english_clone=True,
                                         dictionary=str(d / "en_clone.jsonl"), codeswitch_ratio=0.3,
                                         codeswitch_seed=5, **common))
    assert cs["outputs"]["text"]["switched_words"] > 100
    return {"dir": d, "en": en["outputs"]["text"]["prefix"], "cs": cs["outputs"]["text"]["prefix"]}


def make_config(tokenizer, blend, cache, **overrides):
    kwargs = dict(random_seed=1234, sequence_length=64, blend=blend, split="100,0,0",
                  path_to_cache=None if cache is None else str(cache), tokenizer=tokenizer, reset_position_ids=False,
                  reset_attention_mask=False, eod_mask_loss=False)
    kwargs.update(overrides)
    return GPTDatasetConfig(**kwargs)


def build(cls, config, samples=None):
    sizes = [samples, None, None] if samples is None else [samples, 0, 0]
    return BlendedMegatronDatasetBuilder(cls, sizes, lambda: True, config).build()[0]


def items_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(torch.as_tensor(a[key]), torch.as_tensor(b[key])), key


@pytest.mark.parametrize("overrides", [
    {},
    {"eod_mask_loss": True, "reset_position_ids": True, "reset_attention_mask": True},
    {"create_attention_mask": False, "add_extra_token_to_sequence": False},
])
def test_without_companion_it_is_gpt_dataset(shards, clone_tokenizer, tmp_path, overrides):
    assert not has_companion(shards["en"])
    config = make_config(clone_tokenizer, ([shards["en"]], None), tmp_path, **overrides)
    ours, theirs = build(PreAlignGPTDataset, config), build(GPTDataset, config)
    assert not ours.code_switched and len(ours) == len(theirs) > 10
    for i in range(len(ours)):
        items_equal(ours[i], theirs[i])
    items_equal(ours[None], theirs[None])


@pytest.mark.parametrize("overrides", [{}, {"eod_mask_loss": True},
                                       {"add_extra_token_to_sequence": False}])
def test_with_companion_inputs_are_switched_and_labels_original(shards, clone_tokenizer, tmp_path,
                                                                 overrides):
    cs = shards["cs"]
    assert has_companion(cs)
    config = make_config(clone_tokenizer, ([cs], None), tmp_path, **overrides)
    ours = build(PreAlignGPTDataset, config)
    assert ours.code_switched and isinstance(ours.dataset, CodeSwitchedIndexedDataset)
    # Independent view: Megatron's own GPTDataset over the token shard and over the target stream
    # (the companion read as if it were tokens): same sample index, so positions line up.
    on_tokens = build(GPTDataset, config)
    on_targets = build(GPTDataset, make_config(clone_tokenizer, ([companion_prefix(cs)], None),
                                               tmp_path, **overrides))
    masked_total = relabelled = 0
    for i in range(len(ours)):
        item, x, y = ours[i], on_tokens[i], on_targets[i]
        assert torch.equal(item["tokens"], x["tokens"])
        assert torch.equal(item["position_ids"], x["position_ids"])
        raw = y["labels"].clone()
        ignore = raw == 65535
        expected_labels = torch.where(ignore, torch.zeros_like(raw), raw)
        assert torch.equal(item["labels"], expected_labels)
        expected_mask = x["loss_mask"].clone()
        expected_mask[ignore] = 0
        if overrides.get("eod_mask_loss"):
            expected_mask[item["tokens"] == clone_tokenizer.clone_eod] = 0
        assert torch.equal(item["loss_mask"], expected_mask)
        masked_total += int(ignore.sum())
        relabelled += int(((item["labels"] != x["labels"]) & ~ignore).sum())
        # every label the model learns from is an English (original) id
        assert int(item["labels"][item["loss_mask"] > 0].max()) < 500
    assert masked_total > 0 and relabelled > 0
    padding = ours[None]  # Megatron's batch-padding sample: same tokens, no loss
    assert torch.equal(padding["tokens"], on_tokens[None]["tokens"])
    assert float(padding["loss_mask"].sum()) == 0.0


def test_blend_with_ordinary_weights(shards, clone_tokenizer, tmp_path):
    # No cache path: BlendedDataset only caches under torch.distributed.
    config = make_config(clone_tokenizer, ([shards["en"], shards["cs"]], [0.7, 0.3]), None)
    blended = build(PreAlignGPTDataset, config, samples=60)
    seen = {0: 0, 1: 0}
    for i in range(len(blended)):
        item = blended[i]
        seen[int(item["dataset_id"])] += 1
        if int(item["dataset_id"]) == 0:
            assert float(item["loss_mask"].min()) == 1.0
            assert int(item["tokens"].max()) < 500
    assert seen[0] > seen[1] > 0


def test_mismatched_companion_is_an_error(shards, tmp_path):
    fake = str(tmp_path / "fake_text_document")
    for ext in (".bin", ".idx"):
        shutil.copy(shards["en"] + ext, fake + ext)
        shutil.copy(companion_prefix(shards["cs"]) + ext, companion_prefix(fake) + ext)
    # English-Clone switches keep word lengths, so these two files agree in shape: change one
    # sequence length to make the companion belong to "another run".
    with open(companion_prefix(fake) + ".idx", "r+b") as f:
        data = bytearray(f.read())
    lengths_at = 34
    data[lengths_at] = (data[lengths_at] + 1) % 256
    with open(companion_prefix(fake) + ".idx", "wb") as f:
        f.write(bytes(data))
    with pytest.raises(ValueError, match="belongs to another run"):
        CodeSwitchedIndexedDataset(fake)


def test_pack_unpack_round_trip():
    t = np.array([0, 5, 2**31 - 1, 7, 3])
    y = np.array([0, -1, 2**31 - 1, 9, -1])
    packed = pack_pair(t, y)
    tt, yy = unpack_pair(np.concatenate([packed, [-1, 0, 17]]))
    assert tt.tolist() == t.tolist() + [-1, 0, 17]
    assert yy.tolist() == y.tolist() + [-1, 0, 17]


def test_low_level_dataset_pickles(shards):
    ds = CodeSwitchedIndexedDataset(shards["cs"])
    again = pickle.loads(pickle.dumps(ds))
    assert np.array_equal(again.get(3, offset=1, length=5), ds.get(3, offset=1, length=5))
    assert os.path.exists(companion_prefix(shards["cs"]) + ".bin")


@pytest.mark.parametrize("companion", [False, True])
def test_ids_outside_the_vocabulary_are_named(tmp_path, companion):
    """A sample with an id the run's embedding does not have: the shard, the id and the run's
    vocabulary are named (before: an IndexError deep in the embedding, or silent padding rows)."""
    from megatron_prealign.datasets.gpt import PreAlignDatasetConfig
    from megatron_prealign.shards.check import ShardError
    from megatron_prealign.text.tokenizers import build_tokenizer
    from tests.fixtures.shard_factory import make_shard, random_documents

    tokenizer = build_tokenizer("NullTokenizer", None, vocab_size=512)  # ids 0..512 (EOD 512)
    docs = random_documents(30, vocab=500)
    bad = [d.copy() for d in docs]
    bad[7][3] = 700
    prefix = make_shard(tmp_path / "v_text_document", docs if companion else bad)
    if companion:  # inputs fit; one target (a label) does not
        make_shard(companion_prefix(prefix), bad)
    config = PreAlignDatasetConfig(random_seed=1, sequence_length=64, blend=([prefix], None),
                                   split="100,0,0", path_to_cache=str(tmp_path / "cache"),
                                   tokenizer=tokenizer, reset_position_ids=False,
                                   reset_attention_mask=False, eod_mask_loss=False, padded_vocab_size=640)
    ds = build(PreAlignGPTDataset, config)
    assert ds.code_switched == companion
    with pytest.raises(ShardError) as err:
        for i in range(len(ds)):
            ds[i]
    kind = "label" if companion else "input"
    assert str(err.value).startswith(f"{prefix}: {kind} id 700 in a sample of document"), err.value
    assert "(513 ids, padded to 640)" in str(err.value) and "tools/preprocess_data.py" in str(err.value)
    whole = make_shard(tmp_path / "ok", docs)
    good = build(PreAlignGPTDataset, dataclasses.replace(config, blend=([whole], None)))
    assert all(int(good[i]["tokens"].max()) < 513 for i in range(len(good)))
