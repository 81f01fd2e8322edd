"""megatron_prealign.files: locks, atomic files and directory publishing lose nothing; the JSONL
reader names the file and the line of every problem."""

import gzip
import os
import subprocess
import sys

import pytest

from megatron_prealign.errors import PreAlignError
from megatron_prealign.files import (
    InputFileError,
    OutputError,
    atomic_open,
    check_output_parent,
    iter_jsonl,
    output_lock,
    publish_dir,
)

HOLD_LOCK = """
import sys, time
from megatron_prealign.files import output_lock
with output_lock(sys.argv[1], "test output"):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_second_holder_is_refused_with_the_first_holders_pid(tmp_path):
    lock = tmp_path / "out.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputError, match=f"pid {holder.pid}"):
            with output_lock(str(lock), "test output"):
                pass
    finally:
        holder.kill()
        holder.wait()
    # The kernel released the dead holder's lock: the next run takes it, and removes the file.
    with output_lock(str(lock), "test output"):
        assert lock.read_text() == str(os.getpid())
    assert not lock.exists()


def test_lock_errors_are_user_errors(tmp_path):
    with output_lock(str(tmp_path / "a.lock"), "x"):
        with pytest.raises(PreAlignError):
            with output_lock(str(tmp_path / "a.lock"), "x"):
                pass


def test_atomic_open_publishes_only_on_success(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(str(path)) as f:
            f.write("half")
            raise RuntimeError("interrupted")
    assert path.read_text() == "old"
    with atomic_open(str(path)) as f:
        f.write("new")
    assert path.read_text() == "new"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_publish_dir_refuses_a_non_empty_target_without_the_flag(tmp_path):
    target = tmp_path / "hf"
    target.mkdir()
    (target / "old.json").write_text("{}")
    with pytest.raises(OutputError, match="--overwrite"):
        with publish_dir(str(target), overwrite=False, flag="--overwrite"):
            pytest.fail("must refuse before any work")
    assert os.listdir(target) == ["old.json"]


def test_publish_dir_swaps_whole_directories_and_keeps_the_old_one_on_failure(tmp_path):
    target = tmp_path / "hf"
    target.mkdir()
    (target / "tokenizer.model").write_text("old tokenizer")
    with pytest.raises(ValueError):
        with publish_dir(str(target), overwrite=True, flag="--overwrite") as work:
            (tmp_path / "x").write_text("")
            open(os.path.join(work, "model.safetensors"), "w").close()
            raise ValueError("verification failed")
    assert sorted(os.listdir(tmp_path)) == ["hf", "x"]
    assert os.listdir(target) == ["tokenizer.model"]
    with publish_dir(str(target), overwrite=True, flag="--overwrite") as work:
        open(os.path.join(work, "model.safetensors"), "w").close()
    assert os.listdir(target) == ["model.safetensors"]  # no stale tokenizer beside the new model
    assert sorted(os.listdir(tmp_path)) == ["hf", "x"]


def test_check_output_parent_names_a_file_in_the_way(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("")
    with pytest.raises(OutputError, match="afile is a regular file"):
        check_output_parent(str(blocker / "sub" / "prefix"), "--output-prefix")
    check_output_parent(str(tmp_path / "new" / "prefix"), "--output-prefix")
    assert (tmp_path / "new").is_dir()


def test_lock_survives_a_quick_release_race(tmp_path):
    """Many short-lived holders in a row: each one gets the lock, none sees a stale file."""
    lock = str(tmp_path / "r.lock")
    for _ in range(50):
        with output_lock(lock, "x"):
            assert open(lock).read() == str(os.getpid())
    assert not os.path.exists(lock)


def test_published_outputs_follow_the_umask_not_the_temp_files_0600(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_open(str(tmp_path / "f.json")) as f:
            f.write("{}")
        with publish_dir(str(tmp_path / "d"), overwrite=False, flag="--overwrite"):
            pass
    finally:
        os.umask(old)
    assert (tmp_path / "f.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755


def test_iter_jsonl_reads_objects_with_their_line_numbers_plain_or_gzipped(tmp_path):
    text = b'{"text": "a"}\n\n  \n{"text": "b", "n": 2}\n'
    (tmp_path / "plain.jsonl").write_bytes(text)
    with gzip.open(tmp_path / "packed.jsonl.gz", "wb") as f:
        f.write(text)
    expected = [(1, {"text": "a"}), (4, {"text": "b", "n": 2})]
    assert list(iter_jsonl(tmp_path / "plain.jsonl")) == expected
    assert list(iter_jsonl(str(tmp_path / "packed.jsonl.gz"))) == expected


class CallersError(InputFileError):
    pass


@pytest.mark.parametrize("content, message", [
    (b'{"a": 1}\n[1, 2]\n', ":2: expected a JSON object, got list"),
    (b'{"a": 1}\n\n{"a": \n', ":3: not valid JSON"),
    (b'{"a": 1}\n{"a": "\xff"}\n', ":2: not UTF-8 text"),
])
def test_iter_jsonl_names_the_line_of_a_malformed_record(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(InputFileError, match=f"{path}{message}") as raised:
        list(iter_jsonl(path))
    assert isinstance(raised.value, PreAlignError)
    with pytest.raises(CallersError, match=f"{path}{message}"):  # the caller's own error class
        list(iter_jsonl(path, error=CallersError))


def test_iter_jsonl_names_a_missing_file_and_a_corrupt_gz(tmp_path):
    with pytest.raises(InputFileError, match="nope.jsonl: no such file or directory"):
        list(iter_jsonl(tmp_path / "nope.jsonl"))
    (tmp_path / "fake.jsonl.gz").write_bytes(b'{"text": "not gzipped"}\n')
    with pytest.raises(InputFileError, match="fake.jsonl.gz: a truncated or corrupt .gz file"):
        list(iter_jsonl(tmp_path / "fake.jsonl.gz"))
    whole = gzip.compress(b'{"text": "a"}\n' * 1000)
    (tmp_path / "cut.jsonl.gz").write_bytes(whole[:len(whole) // 2])
    with pytest.raises(InputFileError, match="cut.jsonl.gz: a truncated or corrupt .gz file"):
        list(iter_jsonl(tmp_path / "cut.jsonl.gz"))
