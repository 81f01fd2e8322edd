"""Fixtures for the data tests (paths and helpers live in ``tests/data/helpers.py``)."""

import pytest

from megatron_prealign.data.tokenizer import build_tokenizer
from tests.data.helpers import HF_DIR, SP_MODEL, toy_boundaries


@pytest.fixture(scope="session")
def sp_tokenizer():
    return build_tokenizer("SentencePieceTokenizer", SP_MODEL)


@pytest.fixture(scope="session")
def hf_tokenizer():
    return build_tokenizer("HuggingFaceTokenizer", HF_DIR)


@pytest.fixture(scope="session")
def clone_tokenizer():
    return build_tokenizer("SentencePieceTokenizer", SP_MODEL, english_clone=True)


@pytest.fixture(scope="session")
def toy():
    return toy_boundaries()
