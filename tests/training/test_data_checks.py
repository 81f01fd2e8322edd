"""What training checks before it builds a dataset: each split gets tokens (else Megatron-Core hangs),
every shard is whole and fits the vocabulary; and stage 1's dictionary gives entries to train on."""

import json
import re
from argparse import Namespace

import numpy as np
import pytest

from megatron_prealign.shards.check import ShardError, check_shard
from megatron_prealign.text.tokenizers import build_tokenizer
from megatron_prealign.training.data import check_training_data, split_ranges
from tests.fixtures.shard_factory import make_shard, random_documents, truncate

TOKENIZER = build_tokenizer("NullTokenizer", None, vocab_size=512)


def run_args(data_path, split="969,30,1", eval_interval=None, valid_data_path=None):
    return Namespace(mock_data=False, data_path=[str(p) for p in data_path], split=split,
                     valid_data_path=[str(p) for p in valid_data_path] if valid_data_path else None,
                     eval_interval=eval_interval, padded_vocab_size=640)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """400 documents, as in the issue: the default --split's test share rounds to no document."""
    return make_shard(tmp_path_factory.mktemp("small") / "i_text_document", random_documents(400))


@pytest.mark.parametrize("split", ["969,30,1", "98,2,0", "1,1,1", "50,50", "7.5,2.5,90", "1"])
@pytest.mark.parametrize("n", [7, 400, 1001])
def test_split_ranges_are_megatron_cores(tmp_path, split, n):
    """The same documents per split as Megatron-Core's builder gives its datasets."""
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    prefix = make_shard(tmp_path / "s", random_documents(n, low=30, high=31))
    config = GPTDatasetConfig(random_seed=1, sequence_length=8, blend=([prefix], None), split=split,
                              path_to_cache=str(tmp_path / "cache"), tokenizer=TOKENIZER,
                              reset_position_ids=False, reset_attention_mask=False, eod_mask_loss=False)
    ours = split_ranges(split, n)
    # No sample counts (one epoch each): Megatron-Core then builds even the empty splits, no hang.
    built = BlendedMegatronDatasetBuilder(GPTDataset, [None] * 3, lambda: True, config).build()
    assert [None if r is None else list(range(*r)) for r in ours] == \
        [None if ds is None else ds.indices.tolist() for ds in built]


def test_default_split_on_a_small_shard_names_the_empty_split_and_the_fix(small):
    with pytest.raises(ShardError) as err:
        check_training_data(run_args([small]), TOKENIZER)
    message = str(err.value)
    assert message.startswith(f"--split 969,30,1 gives the test split of {small} no token"), message
    assert "400 documents" in message and "[400, 400)" in message
    suggested = re.search(r"Pass --split (\S+)\.", message).group(1)
    assert suggested == "969,30,0"
    check_training_data(run_args([small], suggested), TOKENIZER)  # the advice works


@pytest.mark.parametrize("split, eval_interval, name", [
    ("99.9,0.1,0", 10, "validation"),  # validation is needed: a larger share is suggested
    ("99.9,0.1,0", None, "validation"),  # not evaluated: a weight of 0 is enough
    ("0.1,99.9,0", None, "train"),
])
def test_every_built_split_needs_a_token(small, split, eval_interval, name):
    with pytest.raises(ShardError, match=f"gives the {name} split of .* no token") as err:
        check_training_data(run_args([small], split, eval_interval), TOKENIZER)
    suggested = re.search(r"Pass --split (\S+?)[. ]", str(err.value)).group(1)
    check_training_data(run_args([small], suggested, eval_interval), TOKENIZER)


def test_a_split_of_empty_documents_has_no_token(tmp_path):
    """Documents are there but hold no token (e.g. text the tokenizer dropped): still a hang."""
    prefix = make_shard(tmp_path / "z", random_documents(90) + [[]] * 10)
    with pytest.raises(ShardError, match=r"validation split .* \[90, 97\), which hold 0 tokens"):
        check_training_data(run_args([prefix], "90,7,3"), TOKENIZER)


def test_fewer_tokens_than_a_sequence_is_accepted(tmp_path):
    """Megatron-Core repeats such a shard for as many epochs as the samples need: no hang."""
    prefix = make_shard(tmp_path / "few", [[1, 2, 3]] * 3)
    check_training_data(run_args([prefix], "1,0,0"), TOKENIZER)


def test_train_split_without_weight_and_bad_split(small):
    with pytest.raises(ShardError, match="gives the train split no share"):
        check_training_data(run_args([small], "0,1,0"), TOKENIZER)
    for split in ("0,0,0", "1,2,3,4", "1.2.3,1"):
        with pytest.raises(ShardError, match=f"--split {split}: expected up to three"):
            check_training_data(run_args([small], split), TOKENIZER)


def test_every_blend_prefix_and_validation_shard_is_checked(tmp_path, small):
    other = make_shard(tmp_path / "few_text_document", random_documents(20))
    with pytest.raises(ShardError, match=f"validation split of {other} no token.*--split 98,0,0"):
        check_training_data(run_args(["0.5", small, "0.5", other], "98,1,1"), TOKENIZER)
    empty = make_shard(tmp_path / "e_text_document", [])
    with pytest.raises(ShardError, match=f"--valid-data-path {empty}: the shard holds no token"):
        check_training_data(run_args([small], eval_interval=5, valid_data_path=[empty]), TOKENIZER)
    check_training_data(run_args([small], valid_data_path=[empty]), TOKENIZER)  # never evaluated
    with pytest.raises(ShardError, match=f"--data-path {empty}: the shard holds no token"):
        check_training_data(run_args([empty], "98,2,0"), TOKENIZER)
    truncate(other + ".bin", 1)
    with pytest.raises(ShardError, match=f"{other}.bin: .* cut short"):
        check_training_data(run_args([small], eval_interval=5, valid_data_path=[other]), TOKENIZER)


def test_a_shard_of_a_larger_vocabulary_is_refused_at_start(tmp_path, small):
    """The preprocessor's stats name the vocabulary; nothing of the .bin is read."""
    prefix = make_shard(tmp_path / "v_text_document", random_documents(50))
    stats = {"tokenizer": {"tokenizer_type": "NullTokenizer", "vocab_size": 1025},
             "outputs": {"text": {"prefix": prefix}}}
    (tmp_path / "v_preprocess_stats.json").write_text(json.dumps(stats))
    with pytest.raises(ShardError) as err:
        check_training_data(run_args([prefix], "98,2,0"), TOKENIZER)
    message = str(err.value)
    for words in (f"{prefix}: made with a vocabulary of 1025 ids", "v_preprocess_stats.json",
                  "(513 ids, padded to 640)", "--vocab-size 1024"):
        assert words in message, message
    stats["tokenizer"]["vocab_size"] = 513
    (tmp_path / "v_preprocess_stats.json").write_text(json.dumps(stats))
    check_training_data(run_args([prefix], "98,2,0"), TOKENIZER)


def test_the_bin_is_never_read(tmp_path, monkeypatch):
    """Only the .bin's size is looked at, so the check costs the same on a TB shard."""
    import builtins

    from megatron_prealign.shards import check as shard_check
    from megatron_prealign.shards.writer import indexed_dataset_module

    prefix = str(tmp_path / "big")
    with indexed_dataset_module()._IndexWriter(prefix + ".idx", np.uint16) as writer:
        writer.write(np.full(1000, 2**20, dtype=np.int32), None, np.arange(1001, dtype=np.int64))
    with open(prefix + ".bin", "wb") as f:
        f.truncate(2 * 2**20 * 1000)  # 2 GiB, sparse
    opened = []
    real_open, real_memmap = builtins.open, np.memmap
    monkeypatch.setattr(builtins, "open", lambda path, *a, **k: opened.append(str(path)) or
                        real_open(path, *a, **k))
    monkeypatch.setattr(shard_check.np, "memmap", lambda path, *a, **k: opened.append(str(path)) or
                        real_memmap(path, *a, **k))
    assert check_shard(prefix).tokens() == 1000 * 2**20
    assert opened and not [p for p in opened if p.endswith(".bin")], opened


# -- stage 1 ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sp_tokenizer():
    from tests.fixtures.helpers import SP_MODEL

    return build_tokenizer("SentencePieceTokenizer", SP_MODEL)


def test_dictionary_with_every_word_dropped_names_the_file_and_counts(tmp_path, sp_tokenizer):
    from megatron_prealign.text.dictionary import DictionaryError
    from megatron_prealign.training.align import load_entries

    path = tmp_path / "long.jsonl"
    path.write_text("".join(json.dumps({"words": f"{a}information $ {b}international"}) + "\n"
                            for a, b in [("", ""), ("dis", "super"), ("mis", "inter")]))
    with pytest.raises(DictionaryError) as err:
        load_entries(str(path), sp_tokenizer, max_tokens=1, log=lambda *a: None)
    message = str(err.value)
    for words in (f"{path}: none of its 3 entries", "6 words", "6 longer than 1 tokens",
                  "--alignment-max-word-tokens (now 1)"):
        assert words in message, message
    assert len(load_entries(str(path), sp_tokenizer, max_tokens=30, log=lambda *a: None)) == 3


def test_held_out_fraction_that_leaves_no_training_entry(tmp_path):
    from megatron_prealign.text.dictionary import DictionaryError
    from megatron_prealign.training.align import training_split

    args = Namespace(alignment_heldout_fraction=0.9, seed=1, alignment_dictionary="d.jsonl")
    with pytest.raises(DictionaryError, match="d.jsonl: --alignment-heldout-fraction 0.9 holds out all"):
        training_split(1, args)
    train, heldout = training_split(20, args)
    assert len(train) == 2 and len(heldout) == 18
