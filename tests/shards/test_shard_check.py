"""shard_check: every way a shard can be damaged is found at start and named, a whole shard passes,
and the layout it reads is Megatron-Core's."""

import json
import os
import struct

import numpy as np
import pytest

from megatron_prealign.shards import check as shard_check
from megatron_prealign.shards.check import (
    HEADER_BYTES,
    ShardError,
    check_shard,
    preprocess_vocabulary,
    read_index,
)
from tests.fixtures.shard_factory import make_shard, overwrite, random_documents, truncate

DOCS = random_documents(40)
LENGTHS = [len(d) for d in DOCS]


@pytest.fixture
def shard(tmp_path):
    return make_shard(tmp_path / "s_text_document", DOCS)


def test_dtype_codes_are_megatrons():
    from megatron_prealign.shards.writer import indexed_dataset_module

    DType = indexed_dataset_module().DType
    assert shard_check.DTYPE_CODES == {d.value: getattr(np, d.name) for d in DType}


@pytest.mark.parametrize("dtype", [np.uint16, np.int32])
def test_whole_shard_passes_and_is_read_as_megatron_reads_it(tmp_path, dtype):
    from megatron_prealign.shards.writer import indexed_dataset_module

    prefix = make_shard(tmp_path / "s", DOCS + [[]], dtype=dtype)  # an empty last document too
    index = check_shard(prefix)
    theirs = indexed_dataset_module().IndexedDataset(prefix)
    assert index.dtype == dtype and index.num_sequences == len(DOCS) + 1 == index.num_documents
    assert np.array_equal(index.sequence_lengths, theirs.sequence_lengths)
    assert np.array_equal(index.document_indices, theirs.document_indices)
    assert index.tokens() == sum(LENGTHS) and index.tokens(0, 2) == LENGTHS[0] + LENGTHS[1]


def test_empty_shard_is_whole(tmp_path):
    """A 0-document shard is well formed (training refuses it for having no token, elsewhere)."""
    index = check_shard(make_shard(tmp_path / "e", []))
    assert index.num_sequences == index.num_documents == index.tokens() == 0


def idx_offset(field: str, i: int = 0) -> int:
    """Byte offset of element ``i`` of an ``.idx`` array of the 40-document shard."""
    n = len(DOCS)
    return {"lengths": HEADER_BYTES + 4 * i, "pointers": HEADER_BYTES + 4 * n + 8 * i,
            "documents": HEADER_BYTES + 12 * n + 8 * i}[field]


def pack64(value: int) -> bytes:
    return struct.pack("<q", value)


# (what is done to the shard, the file the message must name, words it must contain)
DAMAGE = {
    "bin-cut-short": (lambda p: truncate(p + ".bin", 5), ".bin", ["cut short", f"{sum(LENGTHS)} tokens"]),
    "bin-too-long": (lambda p: open(p + ".bin", "ab").write(b"\0\0"), ".bin", ["2 bytes too many"]),
    "bin-missing": (lambda p: os.remove(p + ".bin"), ".bin", ["no such file"]),
    "idx-garbage": (lambda p: overwrite(p + ".idx", 40, b"\xff" * 200), ".idx", ["negative length"]),
    "idx-cut-short": (lambda p: truncate(p + ".idx", 100), ".idx", ["cut short", "40 sequences"]),
    "idx-header-cut": (lambda p: truncate(p + ".idx", os.path.getsize(p + ".idx") - 20), ".idx",
                       ["20 bytes, less than the 34-byte header"]),
    "idx-bad-magic": (lambda p: overwrite(p + ".idx", 0, b"NOTANIDX!"), ".idx", ["not a Megatron index"]),
    "idx-bad-version": (lambda p: overwrite(p + ".idx", 9, struct.pack("<Q", 2)), ".idx", ["version 2"]),
    "idx-bad-dtype": (lambda p: overwrite(p + ".idx", 17, b"\x09"), ".idx", ["dtype code 9"]),
    "idx-bad-count": (lambda p: overwrite(p + ".idx", 18, struct.pack("<Q", 41)), ".idx", ["cut short"]),
    "idx-pointer": (lambda p: overwrite(p + ".idx", idx_offset("pointers", 7), pack64(12)), ".idx",
                    ["sequence 7 points to byte 12"]),
    "idx-length": (lambda p: overwrite(p + ".idx", idx_offset("lengths", 3), struct.pack("<i", 7)),
                   ".idx", ["sequence 4 points to byte"]),
    "idx-documents-fall": (lambda p: overwrite(p + ".idx", idx_offset("documents", 5), pack64(2)),
                           ".idx", ["document 5 starts at sequence 2, before document 4"]),
    "idx-documents-end": (lambda p: overwrite(p + ".idx", idx_offset("documents", 40), pack64(39)),
                          ".idx", ["runs from 0 to 39"]),
}


@pytest.mark.parametrize("name", sorted(DAMAGE))
def test_damaged_shard_is_named_with_the_fix(shard, name):
    damage, suffix, words = DAMAGE[name]
    damage(shard)
    with pytest.raises(ShardError) as err:
        check_shard(shard)
    message = str(err.value)
    assert message.startswith(shard + suffix), message
    for word in words + ["tools/preprocess_data.py"]:
        assert word in message, message


def test_chunk_boundaries(shard, monkeypatch):
    """The chunked passes see every element: damage past the first chunks is still found."""
    monkeypatch.setattr(shard_check, "CHUNK", 3)
    assert read_index(shard).tokens() == sum(LENGTHS)
    overwrite(shard + ".idx", idx_offset("documents", 38), pack64(2))
    with pytest.raises(ShardError, match="document 38 starts at sequence 2, before document 37"):
        read_index(shard)
    make_shard(shard, DOCS)
    overwrite(shard + ".idx", idx_offset("pointers", 31), pack64(0))
    with pytest.raises(ShardError, match="sequence 31 points to byte 0"):
        read_index(shard)


def test_companion_must_match_and_be_whole(shard):
    companion = shard + "_targets"
    make_shard(companion, DOCS)
    check_shard(shard)
    make_shard(companion, DOCS[:-1])
    with pytest.raises(ShardError, match="belongs to another run"):
        check_shard(shard)
    make_shard(companion, DOCS)
    truncate(companion + ".bin", 2)
    with pytest.raises(ShardError, match="_targets.bin: .* cut short"):
        check_shard(shard)
    os.remove(companion + ".bin")
    with pytest.raises(ShardError, match=r"_targets\.bin: missing, but .*_targets\.idx exists"):
        check_shard(shard)


def test_preprocess_vocabulary_finds_the_stats_of_this_shard(tmp_path):
    from megatron_prealign.preprocess.pipeline import PreprocessConfig, run_preprocess

    text = tmp_path / "in.jsonl"
    text.write_text("".join(json.dumps({"text": "1 2 900 3"}) + "\n" for _ in range(3)))
    report = run_preprocess(PreprocessConfig(input=[str(text)], output_prefix=str(tmp_path / "my_run"),
                                             tokenizer_type="NullTokenizer", vocab_size=1000,
                                             append_eod=True, progress="none"))
    prefix = report["outputs"]["text"]["prefix"]
    made = preprocess_vocabulary(prefix)
    assert made["vocab_size"] == 1001 and made["tokenizer_type"] == "NullTokenizer"
    assert made["stats_path"] == str(tmp_path / "my_run_preprocess_stats.json")
    # another run's stats with a stem that is a prefix of the name do not answer for this shard
    other = make_shard(tmp_path / "my_run_text_document_2", DOCS)
    assert preprocess_vocabulary(other) is None
    assert preprocess_vocabulary(make_shard(tmp_path / "alone", DOCS)) is None
