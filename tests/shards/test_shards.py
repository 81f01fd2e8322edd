"""Shard writing: same bytes as IndexedDatasetBuilder.add_document, atomic commit, cleanup."""

import json
import os

import numpy as np
import pytest

from megatron_prealign.files import OutputError
from megatron_prealign.shards import writer as shards
from tests.fixtures.helpers import read_dataset


def builder_reference(tmp_path, docs, dtype):
    """The same documents written the plain Megatron way, one add_document per document."""
    idx = shards.indexed_dataset_module()
    prefix = str(tmp_path / "ref")
    b = idx.IndexedDatasetBuilder(prefix + ".bin", dtype=dtype)
    for seqs in docs:
        flat = [t for s in seqs for t in s]
        b.add_document(np.array(flat, dtype=np.int64), [len(s) for s in seqs])
    b.finalize(prefix + ".idx")
    return prefix


DOCS = [[[1, 2, 3], [4]], [], [[5, 6]], [[7]], [], [[8, 9, 10], [11, 12], [13]]]


@pytest.mark.parametrize("dtype", [np.uint16, np.int32])
def test_bulk_append_equals_add_document(tmp_path, dtype):
    ref = builder_reference(tmp_path, DOCS, dtype)
    w = shards.ShardWriter(str(tmp_path / "ours"), dtype)
    for part in (DOCS[:2], DOCS[2:5], DOCS[5:]):
        seqs = [s for d in part for s in d]
        w.append(np.array([t for s in seqs for t in s], dtype=np.int64),
                 [len(s) for s in seqs], [len(d) for d in part])
    shards.commit_outputs([w])
    for ext in (".bin", ".idx"):
        assert open(str(tmp_path / "ours") + ext, "rb").read() == open(ref + ext, "rb").read()
    assert not any(name.endswith(".partial") for name in os.listdir(tmp_path))


def test_merging_shards_equals_writing_once(tmp_path):
    parts = []
    for i, part in enumerate((DOCS[:3], DOCS[3:])):
        w = shards.ShardWriter(str(tmp_path / f"part{i}"), np.uint16)
        seqs = [s for d in part for s in d]
        w.append(np.array([t for s in seqs for t in s]), [len(s) for s in seqs], [len(d) for d in part])
        shards.commit_outputs([w])
        parts.append(w.prefix)
    merged = shards.ShardWriter(str(tmp_path / "merged"), np.uint16)
    for p in parts:
        merged.append_shard(p)
    shards.commit_outputs([merged])
    ref = builder_reference(tmp_path, DOCS, np.uint16)
    for ext in (".bin", ".idx"):
        assert open(merged.prefix + ext, "rb").read() == open(ref + ext, "rb").read()


def test_commit_replaces_old_outputs_and_removes_stale_companions(tmp_path):
    prefix = str(tmp_path / "d_text_document")
    old = shards.ShardWriter(prefix, np.uint16)
    old.append(np.array([1, 2, 3]), [3], [1])
    comp = shards.ShardWriter(shards.companion_prefix(prefix), np.uint16)
    comp.append(np.array([1, 2, 3]), [3], [1])
    shards.commit_outputs([comp, old], json_files=[(str(tmp_path / "stats.json"), {"run": 1})])
    assert os.path.exists(shards.companion_prefix(prefix) + ".idx")
    new = shards.ShardWriter(prefix, np.uint16)
    new.append(np.array([4, 5]), [2], [1])
    new.finalize()
    # Before the rename, the old pair is still complete and untouched.
    assert read_dataset(prefix)[0] == [[1, 2, 3]]
    shards.commit_outputs([new], json_files=[(str(tmp_path / "stats.json"), {"run": 2})],
                          stale_prefixes=[shards.companion_prefix(prefix)])
    assert read_dataset(prefix)[0] == [[4, 5]]
    assert not os.path.exists(shards.companion_prefix(prefix) + ".idx")
    assert not os.path.exists(shards.companion_prefix(prefix) + ".bin")
    assert open(tmp_path / "stats.json").read().strip().endswith("}")


def test_abort_leaves_nothing(tmp_path):
    w = shards.ShardWriter(str(tmp_path / "x"), np.uint16)
    w.append(np.array([1]), [1], [1])
    w.abort()
    assert os.listdir(tmp_path) == []


def test_finalize_checks_the_index_covers_the_tokens(tmp_path):
    w = shards.ShardWriter(str(tmp_path / "x"), np.uint16)
    w.write_tokens(np.array([1, 2, 3]))
    w.set_index(np.array([2]), np.array([0, 1]))
    with pytest.raises(RuntimeError, match="index covers 2 tokens but 3 were written"):
        w.finalize()
    w.abort()


def test_ignore_value_round_trip():
    assert shards.ignore_value(np.uint16) == 65535 and shards.ignore_value(np.int32) == -1
    t = np.array([5, -1, 7])
    assert shards.targets_to_disk(t, np.uint16).tolist() == [5, 65535, 7]
    assert shards.targets_to_disk(t, np.int32).tolist() == [5, -1, 7]


def test_a_full_disk_during_the_commit_leaves_the_old_outputs_complete(tmp_path):
    """The stats report is the last thing written: a full disk there (a real ENOSPC, from a link
    to /dev/full) must fail with the file's name before any old output is removed."""
    prefix = str(tmp_path / "d_text_document")
    stats = str(tmp_path / "stats.json")
    old = shards.ShardWriter(prefix, np.uint16)
    old.append(np.array([1, 2, 3]), [3], [1])
    shards.commit_outputs([old], json_files=[(stats, {"run": 1})])
    new = shards.ShardWriter(prefix, np.uint16)
    new.append(np.array([4, 5]), [2], [1])
    os.symlink("/dev/full", stats + ".partial")
    with pytest.raises(OutputError, match=f"cannot write {stats}.partial: no space left on the device"):
        shards.commit_outputs([new], json_files=[(stats, {"run": 2})])
    new.abort()
    assert read_dataset(prefix)[0] == [[1, 2, 3]]
    assert json.load(open(stats)) == {"run": 1}
    assert sorted(os.listdir(tmp_path)) == ["d_text_document.bin", "d_text_document.idx", "stats.json"]
