"""Tokenizer files: AutoTokenizer loads them offline and gives our tokenizer's ids."""

import json

import pytest

from megatron_prealign.conversion.tokenizer import check_tokenizer_parity, write_hf_tokenizer
from megatron_prealign.text.tokenizers import build_tokenizer
from tests.conftest import REPO_ROOT
from tests.conversion.checkpoints import checkpoints  # noqa: F401 (fixture)

pytestmark = pytest.mark.multiprocess  # starts torchrun jobs

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "data"


def corpus_texts():
    """The Botchan fixture documents (Unicode, odd whitespace, empty ones), minus the one with a
    literal ``</s>`` (a documented difference: Hugging Face matches special tokens in text)."""
    texts = []
    for line in open(FIXTURES / "corpus.jsonl", encoding="utf-8"):
        try:
            value = json.loads(line)["text"]
        except (json.JSONDecodeError, KeyError):
            continue
        texts += value if isinstance(value, list) else [value]
    return [t for t in texts if "</s>" not in t]


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_sentencepiece_unigram_with_nfkc_normalization_round_trips(tmp_path, offline):
    from transformers import AutoTokenizer

    ours = build_tokenizer("SentencePieceTokenizer", str(FIXTURES / "sp_unigram.model"))
    info = write_hf_tokenizer(ours, str(tmp_path))
    assert info["kind"] == "sentencepiece" and info["vocab_size"] == 500
    texts = corpus_texts()
    assert len(texts) > 40
    report = check_tokenizer_parity(ours, str(tmp_path), texts)
    assert report["mismatches"] == []
    hf = AutoTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    assert hf.eos_token_id == ours.eod and hf.unk_token_id == ours.unk
    assert hf("caf\u00e9 \uff21")["input_ids"] == ours.tokenize("caf\u00e9 \uff21")  # no BOS added


def test_english_clone_over_sentencepiece_bpe(checkpoints, offline):  # noqa: F811
    """The stage-1 English-Clone checkpoint's export: 2V tokens, the base half identical, the
    clone half named <clone>+piece, and our clone ids = HF ids + V."""
    from transformers import AutoTokenizer

    hf_dir, stdout = checkpoints.converted("tp1_tied_gqa_clone")
    spm_model, dictionary = checkpoints.language()
    ours = build_tokenizer("SentencePieceTokenizer", str(spm_model), english_clone=True)
    hf = AutoTokenizer.from_pretrained(str(hf_dir), local_files_only=True)
    assert len(hf) == ours.vocab_size == 400
    words = [json.loads(line)["words"].split(" $ ")[0] for line in open(dictionary)]
    texts = [" ".join(words[i:i + 7]) for i in range(0, 140, 7)] + corpus_texts()[:10]
    assert check_tokenizer_parity(ours, str(hf_dir), texts)["mismatches"] == []
    v = ours.base_vocab_size
    for text in texts[:5]:
        base = hf(text, add_special_tokens=False)["input_ids"]
        assert ours.tokenize("<clone>" + text) == [i + v for i in base]
        assert hf.convert_ids_to_tokens([i + v for i in base]) == \
            ["<clone>" + t for t in hf.convert_ids_to_tokens(base)]
    clone_piece = hf.convert_ids_to_tokens(v + base[0])
    assert hf(clone_piece, add_special_tokens=False)["input_ids"] == [v + base[0]]
    assert "equal ours on 7/7 sample texts" in stdout


def test_hugging_face_tokenizer_with_english_clone(tmp_path, offline):
    from transformers import AutoTokenizer

    ours = build_tokenizer("HuggingFaceTokenizer", str(FIXTURES / "hf_bytelevel"), english_clone=True)
    info = write_hf_tokenizer(ours, str(tmp_path))
    assert info["kind"] == "huggingface+english_clone" and info["vocab_size"] == 1000
    assert check_tokenizer_parity(ours, str(tmp_path), corpus_texts())["mismatches"] == []
    # the base tokenizer is kept so that evaluation rebuilds the exact English-Clone tokenizer
    base = AutoTokenizer.from_pretrained(str(tmp_path / "prealign_base_tokenizer"), local_files_only=True)
    assert len(base) == 500
