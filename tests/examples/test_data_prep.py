"""The experiment's corpus reader: the shared JSONL reader's errors, as CorpusError, plus its own field check."""

import gzip

import pytest

from examples.experiment.clone.data_prep import CorpusError, read_jsonl


def test_corpus_records_need_a_string_text_field_and_problems_name_the_line(tmp_path):
    path = tmp_path / "corpus.jsonl.gz"
    with gzip.open(path, "wb") as f:
        f.write(b'{"text": "a paragraph"}\n\n{"text": 3}\n')
    with pytest.raises(CorpusError, match=f"{path}:3: expected a JSON object with a string field 'text'"):
        read_jsonl(path)
    path.write_bytes(gzip.compress(b'{"text": "a"}\n{"text": \n'))
    with pytest.raises(CorpusError, match=f"{path}:2: not valid JSON"):
        read_jsonl(path)
    path.write_bytes(gzip.compress(b'{"text": "a"}\n\n{"text": "b", "label": "x"}\n'))
    assert read_jsonl(path) == [{"text": "a"}, {"text": "b", "label": "x"}]
    with pytest.raises(CorpusError, match="no such file"):
        read_jsonl(tmp_path / "missing.jsonl")
