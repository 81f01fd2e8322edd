"""``tools/evaluate.py``'s error handling, in process: user-facing problems are refused before any
model is loaded or named with their file and line; a bug keeps its traceback. (The bad inputs a
user meets are rows of ``tests/hostile/cases_eval_run.py``.)"""

import importlib.util

import pytest

from tests.conftest import REPO_ROOT


@pytest.fixture
def evaluate_tool():
    spec = importlib.util.spec_from_file_location("evaluate_tool", REPO_ROOT / "tools" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def model_dir_and_text(tmp_path):
    (tmp_path / "model").mkdir()  # never loaded: evaluate_model is replaced in these tests
    (tmp_path / "en.jsonl").write_text('{"text": "a b c"}\n')
    return ["--model", f"m={tmp_path / 'model'}", "--perplexity", f"en={tmp_path / 'en.jsonl'}"]


def test_a_bug_keeps_its_traceback(evaluate_tool, tmp_path, monkeypatch):
    """Only ``PreAlignError`` is turned into ``error: ...``; a KeyError from a bug must surface."""
    def buggy(name, path, args, log=print):
        return {}["missing"]

    monkeypatch.setattr(evaluate_tool, "evaluate_model", buggy)
    with pytest.raises(KeyError, match="missing"):
        evaluate_tool.main([*model_dir_and_text(tmp_path), "--output", str(tmp_path / "out")])


def test_an_output_that_is_a_file_is_refused_before_any_evaluation(evaluate_tool, tmp_path, monkeypatch,
                                                                   capsys):
    def must_not_run(*args, **kwargs):
        raise AssertionError("a model was evaluated before the output was checked")

    monkeypatch.setattr(evaluate_tool, "evaluate_model", must_not_run)
    (tmp_path / "out").write_text("keep me\n")
    assert evaluate_tool.main([*model_dir_and_text(tmp_path), "--output", str(tmp_path / "out")]) == 1
    assert f"--output {tmp_path / 'out'}" in capsys.readouterr().err
    assert (tmp_path / "out").read_text() == "keep me\n"


def test_jsonl_problems_name_the_file_and_line(tmp_path):
    from megatron_prealign.evaluation.inputs import EvalDataError, read_jsonl

    path = tmp_path / "items.jsonl"
    path.write_bytes(b'{"a": 1}\n\n["not", "an", "object"]\n')
    with pytest.raises(EvalDataError, match=f"{path}:3: expected a JSON object"):
        read_jsonl(str(path))
    path.write_bytes(b'{"a": 1}\n{"a": "\xff"}\n')
    with pytest.raises(EvalDataError, match=f"{path}:2: not UTF-8"):
        read_jsonl(str(path))
    with pytest.raises(EvalDataError, match="no such file"):
        read_jsonl(str(tmp_path / "nope.jsonl"))
