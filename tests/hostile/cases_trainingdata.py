"""Hostile inputs to training: shards and flags a user gets wrong, each refused at start by name.

The runs are the issue's tiny model (``TR``) in one process: ``pretrain_prealign.py`` runs without
torchrun exactly as rank 0 of a torchrun job does, and its error is the one a torchrun user reads
(torchrun itself then adds its own launcher traceback, which is not the program's output).
"""

import json
from pathlib import Path

from tests.fixtures.shard_factory import make_shard, overwrite, random_documents, truncate
from tests.hostile.harness import Case

TR = ["pretrain_prealign.py", "--num-layers", "2", "--hidden-size", "64", "--num-attention-heads", "4",
      "--seq-length", "64", "--micro-batch-size", "2", "--tokenizer-type", "NullTokenizer",
      "--vocab-size", "512", "--train-iters", "6"]


def shard(name: str, documents: int = 400):
    """A setup writing the issue's shard (400 documents of 20..200 ids) as ``{tmp}/{name}``."""
    return lambda tmp: make_shard(tmp / name, random_documents(documents))


def train_on(name: str, *flags: str):
    return lambda tmp: [*TR, "--data-path", tmp / name, "--data-cache-path", tmp / "cache", *flags]


def damaged(damage):
    def setup(tmp: Path) -> None:
        damage(make_shard(tmp / "s_text_document", random_documents(400)))
    return setup


def larger_vocabulary(tmp: Path) -> None:
    from megatron_prealign.preprocess.pipeline import PreprocessConfig, run_preprocess

    text = tmp / "v.jsonl"
    text.write_text("".join(json.dumps({"text": " ".join(str(i) for i in range(j, j + 90))}) + "\n"
                            for j in range(0, 900, 9)))
    run_preprocess(PreprocessConfig(input=[str(text)], output_prefix=str(tmp / "v"), progress="none",
                                    tokenizer_type="NullTokenizer", vocab_size=1024, append_eod=True))


def empty_dictionary(tmp: Path) -> None:
    (tmp / "d.jsonl").write_text("")


CASES = [
    # Issue case 4: stuck for ever in Megatron-Core's GPTDataset._get_num_epochs (the default
    # --split's test share rounds to none of 400 documents).
    Case("train-default-split-small-shard", train_on("s_text_document"), 1,
         ["test split of {tmp}/s_text_document no token", "400 documents", "--split 969,30,0"],
         setup=shard("s_text_document"), timeout=120),
    # Issue case 5: a .bin 5 bytes short trained and exited 0.
    Case("train-bin-cut-short", train_on("s_text_document", "--split", "98,2,0"), 1,
         ["{tmp}/s_text_document.bin: ", "the .bin is cut short", "tools/preprocess_data.py"],
         setup=damaged(lambda p: truncate(p + ".bin", 5))),
    # Issue case 6: 200 x 0xff from offset 40 of the .idx trained 36 iterations, then IndexError.
    Case("train-idx-garbage", train_on("s_text_document", "--split", "98,2,0"), 1,
         ["{tmp}/s_text_document.idx: ", "negative length", "tools/preprocess_data.py"],
         setup=damaged(lambda p: overwrite(p + ".idx", 40, b"\xff" * 200))),
    Case("train-idx-cut-short", train_on("s_text_document", "--split", "98,2,0"), 1,
         ["{tmp}/s_text_document.idx: cut short", "tools/preprocess_data.py"],
         setup=damaged(lambda p: truncate(p + ".idx", 1000))),
    Case("train-zero-document-shard", train_on("e_text_document", "--split", "98,2,0"), 1,
         ["--data-path {tmp}/e_text_document: the shard holds no token"],
         setup=lambda tmp: make_shard(tmp / "e_text_document", [])),
    Case("train-shard-of-larger-vocabulary", train_on("v_text_document", "--split", "98,2,0"), 1,
         ["{tmp}/v_text_document: made with a vocabulary of 1025 ids", "513 ids, padded to 640",
          "--vocab-size 1024"], setup=larger_vocabulary),
    Case("train-micro-batch-size-0",
         lambda tmp: [*TR, "--mock-data", "--micro-batch-size", "0"], 2,
         ["--micro-batch-size must be >= 1, got 0"]),
    Case("align-empty-dictionary",
         lambda tmp: ["pretrain_prealign.py", "--stage", "align", "--num-layers", "2", "--hidden-size",
                      "64", "--num-attention-heads", "4", "--seq-length", "64", "--micro-batch-size",
                      "2", "--train-iters", "2", "--tokenizer-type", "SentencePieceTokenizer",
                      "--tokenizer-model", "tests/fixtures/data/sp_unigram.model",
                      "--alignment-dictionary", tmp / "d.jsonl"], 1,
         ["{tmp}/d.jsonl: ", "empty"], setup=empty_dictionary),
]
