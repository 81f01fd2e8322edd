#!/usr/bin/env python
"""Preprocessing throughput, side by side: code-switching off, on, and the raw tokenizer floor.

Measures, on the same text and worker count, in one run (interleaved repeats, best of each):

* ``raw tokenizer``: the tokenizer alone (``tokenize_batch`` on the documents' texts, split evenly
  over ``--workers`` forked processes); the floor no preprocessor can beat;
* ``preprocess off``: ``tools/preprocess_data.py`` without code-switching (Megatron-identical shards);
* ``preprocess on``: with code-switching, p = 0.05, and an English<->Clone dictionary of at least
  20k entries built from the corpus' own words (``--english-clone``); its time includes loading
  and compiling the dictionary (``--no-dictionary-cache``: a cold start);
* ``on, cached``: the same with the compiled dictionary already in the cache, as in every job but
  the first of a corpus preprocessed in several jobs with one dictionary;
* ``off, 1 worker``: the same as ``preprocess off`` with one worker, to show scaling with
  ``--workers`` (skip with ``--no-scaling``).

Without ``--input`` it generates a deterministic synthetic English-like corpus (Zipf-distributed
pseudo-words, sentences, paragraphs) and, without ``--tokenizer-model``, trains a SentencePiece BPE
model (16k) on it. Example::

    python benchmarks/preprocess_throughput.py --workers 2 --mb 40

prints a table and, last, the ratios (goals: on/off >= 0.8, preprocess/raw >= 0.7; the
``pipeline_only`` ratio leaves out the dictionary load entirely)::

    ratio codeswitch_on_vs_off = 0.9
    ratio codeswitch_on_vs_off_cached_dictionary = 0.95
    ratio codeswitch_on_vs_off_pipeline_only = 0.97
    ratio preprocess_off_vs_raw_tokenizer = 0.95
    ratio preprocess_on_vs_raw_tokenizer = 0.85
    ratio preprocess_on_cached_vs_raw_tokenizer = 0.9
    ratio scaling_2_workers_vs_1 = 1.8
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), os.path.pardir)))

from megatron_prealign.preprocess import english_clone as ec
from megatron_prealign.preprocess.lexicon import save_multiway
from megatron_prealign.preprocess.pipeline import PreprocessConfig, load_codeswitch_table, run_preprocess
from megatron_prealign.text.tokenizers import build_tokenizer

_TEXTS = None
_TOKENIZER = None


def synthetic_corpus(path: str, megabytes: float, seed: int = 0) -> None:
    """Write a JSONL corpus of Zipf-distributed pseudo-English words."""
    rng = np.random.default_rng(seed)
    onsets = ["", "b", "c", "d", "f", "g", "h", "l", "m", "n", "p", "r", "s", "t", "w", "st", "th",
              "ch", "br", "tr", "gr", "pl", "sh", "wh"]
    vowels = ["a", "e", "i", "o", "u", "ea", "ou", "ai", "ee", "oo"]
    codas = ["", "", "n", "r", "s", "t", "l", "d", "ng", "nd", "st", "ck", "m"]
    n_types = 60000
    words = set()
    while len(words) < n_types:
        k = int(rng.integers(1, 4))
        w = "".join(onsets[rng.integers(len(onsets))] + vowels[rng.integers(len(vowels))]
                    + codas[rng.integers(len(codas))] for _ in range(k))
        words.add(w)
    vocab = sorted(words)
    rng.shuffle(vocab)
    cdf = np.cumsum(1.0 / np.arange(1, n_types + 1) ** 1.05)
    cdf /= cdf[-1]
    target = int(megabytes * 1e6)
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        while written < target:
            lengths = rng.integers(6, 25, size=int(rng.integers(2, 12)))
            ids = np.minimum(np.searchsorted(cdf, rng.random(int(lengths.sum()))), n_types - 1)
            ends = rng.choice([".", ".", ".", "?", "!"], size=len(lengths))
            sents, k = [], 0
            for n, end in zip(lengths.tolist(), ends.tolist()):
                ws = [vocab[i] for i in ids[k:k + n].tolist()]
                k += n
                ws[0] = ws[0].capitalize()
                if n > 8:
                    ws[n // 2] += ","
                sents.append(" ".join(ws) + end)
            line = json.dumps({"text": " ".join(sents)}) + "\n"
            f.write(line)
            written += len(line)


def train_sentencepiece(corpus: str, model_prefix: str, vocab_size: int) -> str:
    import sentencepiece as spm

    def texts():
        with open(corpus, encoding="utf-8") as f:
            for i, line in enumerate(f):
                if i >= 20000:
                    break
                yield json.loads(line)["text"]

    spm.SentencePieceTrainer.train(sentence_iterator=texts(), model_prefix=model_prefix,
                                   vocab_size=vocab_size, model_type="bpe", num_threads=2,
                                   character_coverage=1.0, minloglevel=2,
                                   max_sentence_length=1 << 16)
    return model_prefix + ".model"


def _raw_worker(bounds):
    start, end = bounds
    n = 0
    texts = _TEXTS
    step = 256
    for i in range(start, end, step):
        n += sum(len(ids) for ids in _TOKENIZER.tokenize_batch(texts[i:min(i + step, end)]))
    return n


def raw_tokenizer(texts, tokenizer, workers: int):
    """(seconds, tokens) for tokenizing ``texts`` with ``workers`` forked processes."""
    global _TEXTS, _TOKENIZER
    _TEXTS, _TOKENIZER = texts, tokenizer
    bounds = [(len(texts) * w // workers, len(texts) * (w + 1) // workers) for w in range(workers)]
    if workers == 1:
        t0 = time.perf_counter()
        tokens = _raw_worker(bounds[0])
        return time.perf_counter() - t0, tokens
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers) as pool:
        pool.map(abs, range(workers))  # start the processes before timing
        t0 = time.perf_counter()
        tokens = sum(pool.map(_raw_worker, bounds))
        return time.perf_counter() - t0, tokens


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", help="JSONL corpus with a 'text' key (default: synthetic).")
    parser.add_argument("--mb", type=float, default=40.0, help="Synthetic corpus size in MB.")
    parser.add_argument("--tokenizer-type", default="SentencePieceTokenizer")
    parser.add_argument("--tokenizer-model", help="Default: SentencePiece BPE trained on the corpus.")
    parser.add_argument("--vocab-size", type=int, default=16000, help="Of the trained model.")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="Best of this many runs each.")
    parser.add_argument("--ratio", type=float, default=0.05, help="Code-switching p.")
    parser.add_argument("--min-entries", type=int, default=20000)
    parser.add_argument("--workdir", help="Default: a temporary directory (deleted).")
    parser.add_argument("--no-scaling", action="store_true",
                        help="Skip the 1-worker run that measures scaling with --workers.")
    args = parser.parse_args(argv)

    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    work = args.workdir or tempfile.mkdtemp(prefix="prealign_bench_")
    os.makedirs(work, exist_ok=True)
    try:
        corpus = args.input
        if not corpus:
            corpus = os.path.join(work, "corpus.jsonl")
            print(f"generating a {args.mb:g} MB synthetic corpus ...", file=sys.stderr)
            synthetic_corpus(corpus, args.mb)
        model = args.tokenizer_model
        if not model:
            print(f"training SentencePiece BPE {args.vocab_size} ...", file=sys.stderr)
            model = train_sentencepiece(corpus, os.path.join(work, "spm"), args.vocab_size)
        size = os.path.getsize(corpus)
        with open(corpus, encoding="utf-8") as f:
            texts = [json.loads(line)["text"] for line in f]
        tokenizer = build_tokenizer(args.tokenizer_type, model)

        def config(prefix, **kw):
            kw.setdefault("workers", args.workers)
            return PreprocessConfig(input=[corpus], output_prefix=os.path.join(work, prefix),
                                    tokenizer_type=args.tokenizer_type, tokenizer_model=model,
                                    append_eod=True, progress="none", **kw)

        # The dictionary: English <-> Clone for the corpus' most frequent words.
        report = run_preprocess(config("dict_src"))
        words, _ = ec.words_from_shard(os.path.join(work, "dict_src_text_document"), tokenizer)
        entries, _ = ec.build_clone_dictionary(words, tokenizer)
        if len(entries) < args.min_entries:
            print(f"error: only {len(entries)} dictionary entries (< {args.min_entries}); use a "
                  "larger or more varied corpus", file=sys.stderr)
            return 1
        dictionary = os.path.join(work, "en_clone.jsonl")
        save_multiway(entries, dictionary)
        print(f"corpus {size / 1e6:.1f} MB, {len(texts)} documents, "
              f"{report['outputs']['text']['tokens']} tokens; dictionary {len(entries)} entries; "
              f"workers {args.workers}", file=sys.stderr)

        cache = os.path.join(work, "dictionary_cache")
        on_flags = dict(english_clone=True, dictionary=dictionary, codeswitch_ratio=args.ratio)
        load_codeswitch_table(config("prime", dictionary_cache_dir=cache, **on_flags),
                              build_tokenizer(args.tokenizer_type, model, english_clone=True))
        best = {"raw": None, "off": None, "on": None, "cached": None, "off1": None}
        pipeline = {"off": None, "on": None}
        dict_s = cached_dict_s = None
        tokens = {}
        on_report = None
        for rep in range(args.repeats):
            seconds, n = raw_tokenizer(texts, tokenizer, args.workers)
            best["raw"] = min(best["raw"] or seconds, seconds)
            tokens["raw"] = n
            t0 = time.perf_counter()
            r = run_preprocess(config("off"))
            t_off = time.perf_counter() - t0
            best["off"] = min(best["off"] or t_off, t_off)
            tokens["off"] = r["outputs"]["text"]["tokens"]
            p = r["timing"]["pipeline_s"]
            pipeline["off"] = min(pipeline["off"] or p, p)
            t0 = time.perf_counter()
            on_report = run_preprocess(config("on", no_dictionary_cache=True, codeswitch_seed=rep,
                                              **on_flags))
            t = time.perf_counter() - t0
            best["on"] = min(best["on"] or t, t)
            tokens["on"] = on_report["outputs"]["text"]["tokens"]
            p = on_report["timing"]["pipeline_s"]
            pipeline["on"] = min(pipeline["on"] or p, p)
            d = on_report["timing"]["dictionary_s"]
            dict_s = min(dict_s or d, d)
            t0 = time.perf_counter()
            r = run_preprocess(config("cached", dictionary_cache_dir=cache, codeswitch_seed=rep,
                                      **on_flags))
            tc = time.perf_counter() - t0
            assert r["dictionary"]["compiled_cache"]["status"] == "hit"
            best["cached"] = min(best["cached"] or tc, tc)
            tokens["cached"] = r["outputs"]["text"]["tokens"]
            d = r["timing"]["dictionary_s"]
            cached_dict_s = min(cached_dict_s or d, d)
            t1 = None
            if args.workers > 1 and not args.no_scaling:
                t0 = time.perf_counter()
                run_preprocess(config("off1", workers=1))
                t1 = time.perf_counter() - t0
                best["off1"] = min(best["off1"] or t1, t1)
            print(f"repeat {rep + 1}: raw {seconds:.2f}s off {t_off:.2f}s on {t:.2f}s "
                  f"on, cached {tc:.2f}s"
                  + ("" if t1 is None else f" off/1 worker {t1:.2f}s"), file=sys.stderr)

        out = on_report["outputs"]["text"]
        print(f"{'run':<16}{'seconds':>9}{'MB/s':>9}{'Mtokens/s':>11}")
        rows = [("raw", "raw tokenizer"), ("off", "preprocess off"), ("on", "preprocess on"),
                ("cached", "on, cached")]
        if best["off1"]:
            rows.append(("off1", "off, 1 worker"))
            tokens["off1"] = tokens["off"]
        for name, label in rows:
            s = best[name]
            print(f"{label:<16}{s:>9.2f}{size / s / 1e6:>9.2f}{tokens[name] / s / 1e6:>11.3f}")
        print(f"code-switching: coverage {100 * out['dictionary_coverage']:.1f}% of words, switched "
              f"{100 * out['switched_rate']:.2f}% of dictionary words (p = {args.ratio}); "
              f"dictionary load + compile {dict_s:.2f}s cold, {cached_dict_s:.2f}s from the cache; "
              f"pipeline only: off "
              f"{pipeline['off']:.2f}s, on {pipeline['on']:.2f}s")
        print(f"ratio codeswitch_on_vs_off = {best['off'] / best['on']:.3f}")
        print(f"ratio codeswitch_on_vs_off_cached_dictionary = {best['off'] / best['cached']:.3f}")
        print(f"ratio codeswitch_on_vs_off_pipeline_only = {pipeline['off'] / pipeline['on']:.3f}")
        print(f"ratio preprocess_off_vs_raw_tokenizer = {best['raw'] / best['off']:.3f}")
        print(f"ratio preprocess_on_vs_raw_tokenizer = {best['raw'] / best['on']:.3f}")
        print(f"ratio preprocess_on_cached_vs_raw_tokenizer = {best['raw'] / best['cached']:.3f}")
        if best["off1"]:
            print(f"ratio scaling_{args.workers}_workers_vs_1 = {best['off1'] / best['off']:.3f}")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
