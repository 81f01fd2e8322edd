"""Offline Punkt: parameter files, lookup order, training on the input, Megatron's splitting."""

import os

import pytest

from megatron_prealign.preprocess import sentences
from tests.fixtures.helpers import PUNKT

TEXT = ("Mr. Smith went to Washington. He arrived at 5 p.m. on Monday! Did he stay?\n"
        "Yes.\nHe stayed.")


def test_punkt_tab_round_trip(tmp_path):
    params = sentences.load_punkt_params(PUNKT)
    assert params.abbrev_types and params.ortho_context
    out = sentences.save_punkt_params(params, str(tmp_path / "english"))
    again = sentences.load_punkt_params(out)
    assert again.abbrev_types == params.abbrev_types
    assert again.collocations == params.collocations
    assert again.sent_starters == params.sent_starters
    assert dict(again.ortho_context) == dict(params.ortho_context)
    # the three ways to point at the same parameters
    for path in (PUNKT, os.path.join(PUNKT, "english")):
        assert sentences.load_punkt_params(path).abbrev_types == params.abbrev_types
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no punkt_tab parameters found"):
        sentences.load_punkt_params(str(tmp_path / "empty"))


def test_keep_newlines_keeps_them():
    params = sentences.load_punkt_params(PUNKT)
    plain = sentences.split_text(sentences.make_splitter(params, False), TEXT)
    kept = sentences.split_text(sentences.make_splitter(params, True), TEXT)
    assert "".join(kept).count("\n") == 2 and "".join(plain).count("\n") == 0
    assert plain[-2:] == ["Yes.", "He stayed."]
    assert [s.strip() for s in kept] == plain


def test_long_texts_are_cut_in_megatron_pieces(monkeypatch):
    params = sentences.load_punkt_params(PUNKT)
    splitter = sentences.make_splitter(params, False)
    monkeypatch.setattr(sentences, "MAX_CHARS", 10)
    assert sentences.split_text(splitter, "abcdefghij klmno") == ["abcdefghij", " klmno"]


def test_resolve_order_and_training_fallback(monkeypatch):
    params, source = sentences.resolve_punkt(PUNKT, "english", None)
    assert source.kind == "path"
    monkeypatch.setattr(sentences, "find_installed_punkt", lambda lang: None)
    with pytest.raises(FileNotFoundError, match="pass --punkt-model"):
        sentences.resolve_punkt(None, "english", None)
    texts = [TEXT * 20, "Dr. Who met Mr. Jones. They talked."]
    params, source = sentences.resolve_punkt(None, "english", iter(texts))
    assert source.kind == "trained-on-input" and source.train_bytes == sum(len(t) for t in texts)
    assert sentences.split_text(sentences.make_splitter(params, False), "It rained. We stayed home.") \
        == ["It rained.", "We stayed home."]
