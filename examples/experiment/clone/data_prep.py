"""Data steps of the English / English-Clone experiment, each a function ``(out_dir, inputs) -> dict``.

corpus        paragraphs (>= 40 characters) of the English corpus, shuffled once (seed 0) and cut
              into held-out English, held-out clone, a clone pool and an English pool (disjoint
              documents); invented facts rendered into the pools (``facts.py``).
tokenizer     SentencePiece BPE of ``vocab_size`` trained on the English training text (byte fallback,
              so every string tokenizes); the model's table is twice as large (English + clone).
shards        Megatron shards through ``tools/preprocess_data.py``: English train and held-out
              text, and clone train and held-out text (``--write-clone``: ids + |V|).
dictionaries  word types of the English pool seen >= ``min_word_count`` times, alphabetic only, fact
              subjects excluded; ``unseen_share`` of them are left out of every dictionary, then
              ``dev_words`` are held out of stage 1 (still code-switched); the rest align in stage 1.
              Written as English<->Clone multi-way JSONL (``{"words": "bank $ <clone>bank"}``):
              stage1, codeswitch (stage1 + dev), dev, unseen, and strict_unseen (unseen words none
              of whose tokens occurs in any dictionary word).
codeswitch    the English training shard with input-only code-switching baked in
              (``--codeswitch-ratio``), from the same text: identical document lengths, since a clone
              word has as many tokens as its English word, so every arm sees the same samples.
transfer      Brown-corpus genre paragraphs for zero-shot transfer, split by document.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Dict, List

import numpy as np

REPO = Path(__file__).resolve().parents[3]
DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_CORPUS = DATA_DIR / "corpus.jsonl.gz"
TRANSFER_DATA = DATA_DIR / "brown_genres.jsonl.gz"
WORD = re.compile(r"[A-Za-z]+")
SPLITS = ("train", "valid", "heldout")
"""Per language: training documents, validation (curves, lr selection), held-out test documents."""

sys.path.insert(0, str(REPO))
from examples.experiment.clone.facts import GROUPS, insert_facts, make_facts, renderings  # noqa: E402
from examples.experiment.pipeline import StepFailed  # noqa: E402
from megatron_prealign.files import InputFileError, iter_jsonl  # noqa: E402


class CorpusError(InputFileError):
    """A corpus or data file the experiment cannot use; the message names the file (and line)."""


def read_jsonl(path: Path, key: str = "text") -> List[dict]:
    """The records of a JSONL file (``.gz`` too), each an object with a string ``key``.

    Raises ``CorpusError`` naming the file and line of the first malformed line, or the file when
    it cannot be read (``files.iter_jsonl``).
    """
    rows = []
    for number, row in iter_jsonl(path, error=CorpusError):
        if not isinstance(row.get(key), str):
            raise CorpusError(f"{path}:{number}: expected a JSON object with a string field {key!r}, "
                              f"got {json.dumps(row, ensure_ascii=False)[:80]!r}")
        rows.append(row)
    return rows


def usable_paragraphs(path: Path) -> List[str]:
    """The corpus's distinct paragraphs of >= 40 characters, whitespace normalized, in file order."""
    rows = read_jsonl(path)
    if not rows:
        raise CorpusError(f"{path}: the corpus is empty; give one JSON object per line with a "
                          '"text" field (one paragraph each)')
    seen, paragraphs = set(), []
    for row in rows:
        text = " ".join(row["text"].split())
        if len(text) >= 40 and text not in seen:
            seen.add(text)
            paragraphs.append(text)
    return paragraphs


def _check_paragraph_count(preset, count: int, path: Path) -> None:
    h, v = preset.heldout_paragraphs, preset.valid_paragraphs
    if count < 4 * (h + v):
        raise CorpusError(f"{path}: only {count} usable paragraphs (>= 40 characters); "
                          f"the {preset.name} preset holds out {h} test and {v} validation paragraphs "
                          "per language and needs several times more")


def check_corpus(path: Path, presets) -> None:
    """Fail before any step runs if ``path`` cannot feed the corpus step of every preset."""
    count = len(usable_paragraphs(path))
    for preset in presets:
        _check_paragraph_count(preset, min(count, preset.max_paragraphs or count), path)


def write_jsonl(path: Path, texts: List[str]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for text in texts:
            f.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")


# --------------------------------------------------------------------------------------------


def corpus_step(preset, corpus_path: Path, out: Path, inputs) -> dict:
    paragraphs = usable_paragraphs(corpus_path)
    random.Random(0).shuffle(paragraphs)
    if preset.max_paragraphs:
        paragraphs = paragraphs[:preset.max_paragraphs]
    _check_paragraph_count(preset, len(paragraphs), corpus_path)
    h, v = preset.heldout_paragraphs, preset.valid_paragraphs
    # Test paragraphs (final perplexities) and validation paragraphs (curves during training and
    # learning-rate selection in the sweep) are disjoint, so no reported number chose a setting.
    held = [paragraphs[i * h:(i + 1) * h] for i in range(2)]
    valid = [paragraphs[2 * h + i * v:2 * h + (i + 1) * v] for i in range(2)]
    (en_heldout, clone_heldout), (en_valid, clone_valid) = held, valid
    rest = paragraphs[2 * (h + v):]
    n_clone = int(round(preset.clone_pool_share * len(rest)))
    clone_pool, en_pool = rest[:n_clone], rest[n_clone:]

    words = Counter(w.lower() for text in paragraphs for w in WORD.findall(text))
    facts = make_facts(preset.subjects_per_group, words, seed=0, subjects=preset.fact_subjects)
    en_facts = [f for f in facts if f.group in ("en_only", "both")]
    clone_facts = [f for f in facts if f.group == "both"]
    en_train = insert_facts(en_pool, en_facts, preset.fact_repetitions_en, seed=1)
    clone_train = insert_facts(clone_pool, clone_facts, preset.fact_repetitions_clone, seed=2)

    write_jsonl(out / "en_train.jsonl", en_train)
    write_jsonl(out / "clone_train.jsonl", clone_train)
    write_jsonl(out / "en_heldout.jsonl", en_heldout)
    write_jsonl(out / "clone_heldout.jsonl", clone_heldout)
    write_jsonl(out / "en_valid.jsonl", en_valid)
    write_jsonl(out / "clone_valid.jsonl", clone_valid)
    (out / "facts.json").write_text(json.dumps([dataclasses.asdict(f) for f in facts], indent=1))
    fact_words = sum(len(r.split()) for f in en_facts for r in renderings(f)) / 3 * preset.fact_repetitions_en
    en_words = sum(len(t.split()) for t in en_train)
    return {"paragraphs": len(paragraphs), "en_train_docs": len(en_train),
            "clone_train_docs": len(clone_train), "heldout_docs_per_language": h,
            "valid_docs_per_language": v,
            "en_train_words": en_words, "fact_share_of_english_words": round(fact_words / en_words, 4),
            "facts": {g: sum(f.group == g for f in facts) for g in GROUPS}}


def tokenizer_step(preset, out: Path, inputs) -> dict:
    import sentencepiece as spm

    texts = [row["text"] for row in read_jsonl(inputs["corpus"] / "en_train.jsonl")]
    train_file = out / "tokenizer_train.txt"
    train_file.write_text("\n".join(texts) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(train_file), model_prefix=str(out / "spm"), vocab_size=preset.vocab_size,
        model_type="bpe", byte_fallback=True, character_coverage=0.9995, num_threads=2,
        input_sentence_size=200000, shuffle_input_sentence=True, seed_sentencepiece_size=200000,
        max_sentence_length=1 << 16, minloglevel=2)
    train_file.unlink()
    return {"vocab_size": preset.vocab_size}


def preprocess(inputs_jsonl: Path, prefix: Path, spm_model: Path, log: Path, *extra: str) -> None:
    """``tools/preprocess_data.py`` with these flags, run in this process (its output goes to ``log``).

    In-process because the experiment preprocesses several small files: a fresh interpreter per
    file would spend most of its time importing Megatron-Core.
    """
    from tools.preprocess_data import main as preprocess_main

    argv = ["--input", inputs_jsonl, "--json-keys", "text", "--tokenizer-type", "SentencePieceTokenizer",
            "--tokenizer-model", spm_model, "--append-eod", "--output-prefix", prefix, "--workers", "2",
            "--progress", "none", *extra]
    argv = [str(a) for a in argv]
    with open(log, "a") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        print("$ tools/preprocess_data.py " + " ".join(argv), flush=True)
        code = preprocess_main(argv)
    if code != 0:
        tail = "".join(open(log).readlines()[-20:])
        raise StepFailed(f"tools/preprocess_data.py {' '.join(argv[:2])} ... exited {code}; "
                         f"log {log}:\n{tail}")


def shards_step(preset, out: Path, inputs) -> dict:
    corpus, spm_model = inputs["corpus"], inputs["tokenizer"] / "spm.model"
    names = [f"{language}_{split}" for split in SPLITS for language in ("en", "clone")]
    for name in names:
        preprocess(corpus / f"{name}.jsonl", out / name, spm_model, out / "preprocess.log",
                   *(["--write-clone"] if name.startswith("clone") else []))
    return {"prefixes": {name: f"{name}_text_document" for name in names}}


def dictionaries_step(preset, out: Path, inputs) -> dict:
    from megatron_prealign.preprocess.english_clone import build_clone_dictionary, words_from_shard
    from megatron_prealign.preprocess.lexicon import save_multiway
    from megatron_prealign.text.tokenizers import build_tokenizer

    tokenizer = build_tokenizer("SentencePieceTokenizer", str(inputs["tokenizer"] / "spm.model"))
    words, report = words_from_shard(str(inputs["shards"] / "en_train_text_document"), tokenizer,
                                     min_count=preset.min_word_count)
    facts = json.loads((inputs["corpus"] / "facts.json").read_text())
    # Invented subjects stay out of the dictionary (no stage-1 alignment, no code-switching of
    # them); ``dictionary`` subjects are dictionary words by design.
    subject_parts = {p.lower() for f in facts for p in f["subject"].split()} \
        if preset.fact_subjects != "dictionary" else set()
    words = [w for w in words if WORD.fullmatch(w) and w.lower() not in subject_parts]
    rng = random.Random(0)
    rng.shuffle(words)
    n_unseen = int(round(preset.unseen_share * len(words)))
    unseen, rest = words[:n_unseen], words[n_unseen:]
    dev, stage1 = rest[:preset.dev_words], rest[preset.dev_words:]

    def ids(word_list):
        return {tuple(tokenizer.word_initial_ids(w)) for w in word_list}

    dictionary_tokens = {t for seq in ids(stage1 + dev) for t in seq}
    strict_unseen = [w for w in unseen
                     if not set(tokenizer.word_initial_ids(w)) & dictionary_tokens]
    counts = {}
    for name, word_list in (("stage1", stage1), ("codeswitch", stage1 + dev), ("dev", dev),
                            ("unseen", unseen), ("strict_unseen", strict_unseen)):
        entries, _ = build_clone_dictionary(word_list, tokenizer)
        save_multiway(entries, str(out / f"{name}.jsonl"))
        counts[name] = len(entries)
    (out / "report.json").write_text(json.dumps({"words_from_shard": report, "entries": counts}, indent=1))
    return {"entries": counts}


def codeswitch_step(preset, out: Path, inputs) -> dict:
    spm_model = inputs["tokenizer"] / "spm.model"
    preprocess(inputs["corpus"] / "en_train.jsonl", out / "en_train_cs", spm_model, out / "preprocess.log",
               "--english-clone", "--dictionary", inputs["dictionaries"] / "codeswitch.jsonl",
               "--codeswitch-ratio", str(preset.codeswitch_ratio), "--codeswitch-seed", "1")
    from megatron_prealign.shards.writer import indexed_dataset_module

    IndexedDataset = indexed_dataset_module().IndexedDataset  # quiet, without TorchDynamo
    plain = IndexedDataset(str(inputs["shards"] / "en_train_text_document"))
    switched = IndexedDataset(str(out / "en_train_cs_text_document"))
    if not np.array_equal(plain.index.sequence_lengths, switched.index.sequence_lengths):
        raise RuntimeError("code-switched shard has other document lengths than the plain English "
                           "shard: the arms would not see the same samples")
    stats = json.loads((out / "en_train_cs_preprocess_stats.json").read_text()) \
        if (out / "en_train_cs_preprocess_stats.json").exists() else {}
    return {"codeswitch_stats": stats}


def transfer_step(preset, out: Path, inputs) -> dict:
    """Balanced train/test paragraphs per genre, split by Brown document (no leakage)."""
    rows = read_jsonl(TRANSFER_DATA)
    by_label: Dict[str, Dict[str, List[str]]] = {}
    for row in rows:
        by_label.setdefault(row["label"], {}).setdefault(row["doc"], []).append(row["text"])
    rng = random.Random(0)
    train, test = [], []
    for label in sorted(by_label):
        docs = sorted(by_label[label])
        rng.shuffle(docs)
        cut = max(1, len(docs) // 3)
        test_docs, train_docs = docs[:cut], docs[cut:]
        texts = by_label[label]
        pick = lambda ds, n, texts=texts: rng.sample(  # noqa: E731
            [t for d in ds for t in texts[d]], min(n, sum(len(texts[d]) for d in ds)))
        for docs_, wanted, split in ((train_docs, preset.transfer_train_per_class, "train"),
                                     (test_docs, preset.transfer_test_per_class, "test")):
            have = sum(len(texts[d]) for d in docs_)
            if have < wanted:  # said, not silently capped
                print(f"note: transfer task: genre {label!r} has {have} {split} paragraphs, fewer than the "
                      f"{wanted} asked for; all {have} are used", flush=True)
        train += [{"text": t, "label": label} for t in pick(train_docs, preset.transfer_train_per_class)]
        test += [{"text": t, "label": label} for t in pick(test_docs, preset.transfer_test_per_class)]
    (out / "train.json").write_text(json.dumps(train))
    (out / "test.json").write_text(json.dumps(test))
    return {"train": len(train), "test": len(test), "labels": Counter(r["label"] for r in train)}
