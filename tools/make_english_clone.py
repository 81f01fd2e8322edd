#!/usr/bin/env python
"""Make English-Clone shards and the English<->Clone dictionary (PreAlign's synthetic setting).

The clone of an English shard has every token id (EOD included) shifted by the vocabulary size
|V|: same grammar, no shared token (``megatron_prealign/data/english_clone.py`` documents the
mapping). The dictionary pairs each English word with its clone, ``{"words": "bank $ <clone>bank"}``,
for stage 1 and for code-switching English text into clone words.

Example::

    python tools/preprocess_data.py --input en.jsonl --tokenizer-type SentencePieceTokenizer \\
        --tokenizer-model spm.model --append-eod --output-prefix data/en --workers 2
    python tools/make_english_clone.py --tokenizer-type SentencePieceTokenizer \\
        --tokenizer-model spm.model --input-prefix data/en_text_document \\
        --output-prefix data/clone_text_document \\
        --dictionary-out data/en_clone.jsonl --min-count 3

prints::

    wrote data/clone_text_document.bin/.idx: 12000 documents, 2570112 tokens (uint16), ids + 8000
    wrote data/en_clone.jsonl: 21034 entries (English word <-> <clone>word) from 40211 word types
      dropped: below_min_count 19177, not_round_trip 0

Then e.g. ``tools/preprocess_data.py ... --english-clone --dictionary data/en_clone.jsonl
--codeswitch-ratio 0.05 --output-prefix data/en_cs`` and pretrain on
``--data-path 0.8 data/en_cs_text_document 0.2 data/clone_text_document``. Use the same tokenizer
with ``build_tokenizer(..., english_clone=True)`` (2|V| embeddings) everywhere.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), os.path.pardir)))

from megatron_prealign.data.tokenizer import SUPPORTED_TYPES  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="make_english_clone.py",
        description="Write English-Clone shards (ids + |V|) and the English<->Clone dictionary.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--tokenizer-type", required=True, choices=SUPPORTED_TYPES)
    parser.add_argument("--tokenizer-model", default=None)
    parser.add_argument("--vocab-size", type=int, default=None, help="NullTokenizer only.")
    parser.add_argument("--input-prefix", default=None,
                        help="English shard prefix (e.g. data/en_text_document).")
    parser.add_argument("--output-prefix", default=None,
                        help="Clone shard prefix to write (needs --input-prefix).")
    parser.add_argument("--dictionary-out", default=None,
                        help="Write the English<->Clone dictionary here (.jsonl multi-way, else pairs).")
    parser.add_argument("--word-list", default=None,
                        help="Take the English words from this file (one per line) instead of "
                        "from the words of --input-prefix.")
    parser.add_argument("--min-count", type=int, default=1,
                        help="Words from the shard: minimum number of occurrences.")
    parser.add_argument("--max-words", type=int, default=None,
                        help="Keep at most this many words (the most frequent).")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from megatron_prealign.data import english_clone as ec
    from megatron_prealign.data.dictionary import save_multiway, save_pairs
    from megatron_prealign.data.tokenizer import TokenizerError, build_tokenizer

    if args.output_prefix and not args.input_prefix:
        print("error: --output-prefix needs --input-prefix (the English shard to clone)", file=sys.stderr)
        return 2
    if not args.output_prefix and not args.dictionary_out:
        print("error: nothing to do: pass --output-prefix and/or --dictionary-out", file=sys.stderr)
        return 2
    try:
        tokenizer = build_tokenizer(args.tokenizer_type, args.tokenizer_model, vocab_size=args.vocab_size)
    except TokenizerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    v = tokenizer.vocab_size
    if args.output_prefix:
        info = ec.write_clone_shard(args.input_prefix, args.output_prefix, v)
        print(f"wrote {args.output_prefix}.bin/.idx: {info['documents']} documents, "
              f"{info['tokens']} tokens ({info['dtype']}), ids + {v}")
    if args.dictionary_out:
        if args.word_list:
            with open(args.word_list, encoding="utf-8") as f:
                words = [ln.strip() for ln in f if ln.strip()]
            source = {"word_types": len(words)}
        elif args.input_prefix:
            words, source = ec.words_from_shard(args.input_prefix, tokenizer, min_count=args.min_count,
                                                max_words=args.max_words)
        else:
            print("error: --dictionary-out needs --word-list or --input-prefix", file=sys.stderr)
            return 2
        if args.word_list and args.max_words is not None:
            words = words[: args.max_words]
        entries, report = ec.build_clone_dictionary(words, tokenizer)
        save = save_multiway if args.dictionary_out.endswith((".jsonl", ".json")) else save_pairs
        save(entries, args.dictionary_out)
        report = {"source": source, **report, "tokenizer": dict(tokenizer.fingerprint())}
        ec.save_dictionary_report(args.dictionary_out + ".report.json", report)
        print(f"wrote {args.dictionary_out}: {len(entries)} entries (English word <-> <clone>word) "
              f"from {source.get('word_types', len(words))} word types")
        dropped = {k: val for k, val in {**source, **report}.items()
                   if (k.startswith("dropped") or k in ("below_min_count", "not_round_trip"))}
        if dropped:
            print("  dropped: " + ", ".join(f"{k} {val}" for k, val in dropped.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
