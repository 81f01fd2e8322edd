"""Shared helpers for the data and tools tests: fixture paths and a hand-made vocabulary."""

import os
from pathlib import Path

import numpy as np

from megatron_prealign.data.tokenizer import TokenKind, WordBoundaries

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"
SP_MODEL = str(FIXTURES / "sp_unigram.model")
HF_DIR = str(FIXTURES / "hf_bytelevel")
CORPUS = str(FIXTURES / "corpus.jsonl")
CORPUS_SENTENCES = str(FIXTURES / "corpus_sentences.jsonl")
PUNKT = str(FIXTURES / "punkt_tab")
GOLDEN = FIXTURES / "golden"

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# A hand-made vocabulary for exact code-switching cases: ids and their kinds.
TOY = {
    0: ("<eod>", TokenKind.SPECIAL, False),
    1: ("▁a", TokenKind.START, True),
    2: ("▁b", TokenKind.START, True),
    3: ("▁c1", TokenKind.START, True),
    4: ("c2", TokenKind.CONT, True),
    5: ("▁d", TokenKind.START, True),
    6: (".", TokenKind.PUNCT, False),
    7: ("▁x1", TokenKind.START, True),
    8: ("x2", TokenKind.CONT, True),
    9: ("x3", TokenKind.CONT, True),
    10: ("▁y", TokenKind.START, True),
    11: (",", TokenKind.PUNCT, False),
    12: ("▁,", TokenKind.START, False),
    13: ("▁e", TokenKind.START, True),
}
A, B, C1, C2, D, DOT, X1, X2, X3, Y, COMMA, SPACE_COMMA, E = range(1, 14)
EOD = 0


def toy_boundaries():
    """WordBoundaries of the hand-made vocabulary ``TOY``."""
    kinds = np.array([TOY[i][1] for i in range(len(TOY))], dtype=np.uint8)
    letters = np.array([TOY[i][2] for i in range(len(TOY))], dtype=bool)
    return WordBoundaries(kinds=kinds, letters=letters, marker="▁")


def read_dataset(prefix):
    """(tokens per sequence, document index) of an indexed dataset, via megatron-core."""
    from megatron_prealign.data.shards import indexed_dataset_module

    ds = indexed_dataset_module().IndexedDataset(prefix)
    seqs = [np.asarray(ds[i]).astype(np.int64).tolist() for i in range(len(ds))]
    return seqs, np.asarray(ds.document_indices).tolist()
