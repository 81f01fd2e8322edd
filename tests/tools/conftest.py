"""The tools tests use the data tests' fixtures (committed tiny tokenizers and corpora)."""

from tests.data.conftest import clone_tokenizer, hf_tokenizer, sp_tokenizer  # noqa: F401
