"""``run.py`` as a user meets it: one run per output directory, and a failed step that never looks
complete and is redone cleanly by the next run. (Bad ``--corpus`` and ``--seeds`` values are rows of
``tests/hostile/cases_eval_run.py``.)"""

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

HOLDER = """
import sys, time
from megatron_prealign.files import output_lock
with output_lock(sys.argv[1], "a test's experiment"):
    print("locked", flush=True)
    time.sleep(600)
"""


def python(*args, **kwargs):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, *map(str, args)], cwd=REPO_ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            **kwargs)


def test_a_second_run_on_the_same_output_dir_is_refused(tmp_path):
    """Another process holds OUTPUT_DIR/.lock (as a running run.py does): run.py must refuse at
    once, naming the directory and the holder's pid, and write nothing there."""
    out = tmp_path / "run"
    holder = python("-c", HOLDER, out / ".lock")
    try:
        assert holder.stdout.readline().strip() == "locked"
        second = python("examples/english_clone/run.py", "--output-dir", out, "--seeds", "1")
        try:
            stdout, stderr = second.communicate(timeout=120)  # old code: trains into the same dir
        finally:
            if second.poll() is None:
                os.killpg(second.pid, signal.SIGKILL)
                second.wait()
        assert second.returncode == 1, stdout[-2000:] + stderr[-2000:]
        assert f"pid {holder.pid}" in stderr and str(out) in stderr, stderr
        assert "Traceback" not in stderr
        assert sorted(os.listdir(out)) == [".lock"]  # no steps/, nothing of a second run
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()


def test_a_failed_step_is_never_complete_and_the_next_run_redoes_it(tmp_path, capsys):
    """A failing ordinary step leaves its ``.partial`` directory (with its log) and no done.json;
    the next run deletes the ``.partial`` and starts the step afresh."""
    from examples.english_clone.pipeline import Pipeline, Step, StepFailed

    def failing(out, inputs):
        (out / "half.bin").write_bytes(b"half")
        raise StepFailed("tool exited 1; log somewhere")

    def working(out, inputs):
        (out / "whole.bin").write_bytes(b"whole")
        return {"ok": True}

    pipeline = Pipeline(tmp_path / "root")
    with pytest.raises(StepFailed):
        pipeline.run([Step("data", "data | shards", {"n": 1}, failing)])
    step = Step("data", "data | shards", {"n": 1}, working)
    final = pipeline.directory(step)
    partial = final.with_name(final.name + ".partial")
    assert "step did not finish: data | shards" in capsys.readouterr().out
    assert not final.exists() and not pipeline.is_done(step)
    assert (partial / "half.bin").exists() and not (partial / "done.json").exists()
    pipeline.run([step])
    assert not partial.exists()
    assert sorted(p.name for p in final.iterdir()) == ["done.json", "params.json", "whole.bin"]
    assert json.loads((final / "done.json").read_text())["ok"] is True
