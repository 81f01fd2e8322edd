#!/usr/bin/env python
"""Make English-Clone shards and the English<->Clone dictionary (PreAlign's synthetic setting).

The clone of an English shard has every token id (EOD included) shifted by the vocabulary size
|V|: same grammar, no shared token (``megatron_prealign/text/tokenizers/english_clone.py`` and
``megatron_prealign/preprocess/english_clone.py`` document the
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

Before any work the inputs must exist and no output may be an input: ``--output-prefix`` equal to
``--input-prefix`` (however spelled, through symlinks too), or to the name of its companion, and
``--dictionary-out`` over an input file are refused. Exit status: 0 on success, 1 for an unusable
input or output, 2 for a flag combination that does nothing.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), os.path.pardir)))

from megatron_prealign.errors import PreAlignError
from megatron_prealign.files import check_output_parent, output_lock
from megatron_prealign.preprocess import english_clone
from megatron_prealign.preprocess.lexicon import save_multiway, save_pairs
from megatron_prealign.text.tokenizers import SUPPORTED_TYPES, build_tokenizer


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


def check_files(args) -> None:
    """Before any work: the inputs exist, the outputs can be created, and no output is an input
    (or another output), whatever the spelling, symlink or hard link that leads there."""
    inputs, outputs = [], []
    if args.input_prefix:
        english_clone.check_shard_exists(args.input_prefix)
        inputs += english_clone.shard_files("--input-prefix", args.input_prefix)
    if args.word_list:
        if not os.path.isfile(args.word_list):
            raise english_clone.PathError(f"--word-list {args.word_list}: no such file")
        inputs.append(("--word-list", args.word_list))
    if args.tokenizer_model and os.path.isfile(args.tokenizer_model):
        inputs.append(("--tokenizer-model", args.tokenizer_model))
    if args.output_prefix:
        check_output_parent(args.output_prefix, "--output-prefix")
        outputs += english_clone.shard_files("--output-prefix", args.output_prefix)
    if args.dictionary_out:
        check_output_parent(args.dictionary_out, "--dictionary-out")
        outputs += [("--dictionary-out", args.dictionary_out),
                    ("the report of --dictionary-out", args.dictionary_out + ".report.json")]
    english_clone.check_outputs_apart(inputs, outputs)


def write_clone_shard(args, vocab_size: int) -> None:
    with output_lock(args.output_prefix + ".lock", f"the clone shard {args.output_prefix}"):
        info = english_clone.write_clone_shard(args.input_prefix, args.output_prefix, vocab_size)
    print(f"wrote {args.output_prefix}.bin/.idx: {info['documents']} documents, "
          f"{info['tokens']} tokens ({info['dtype']}), ids + {vocab_size}")


def write_dictionary(args, tokenizer) -> None:
    if args.word_list:
        with open(args.word_list, encoding="utf-8") as f:
            words = [ln.strip() for ln in f if ln.strip()]
        source = {"word_types": len(words)}
        if args.max_words is not None:
            words = words[: args.max_words]
    else:
        words, source = english_clone.words_from_shard(args.input_prefix, tokenizer, min_count=args.min_count,
                                            max_words=args.max_words)
    entries, report = english_clone.build_clone_dictionary(words, tokenizer)
    save = save_multiway if args.dictionary_out.endswith((".jsonl", ".json")) else save_pairs
    save(entries, args.dictionary_out)
    report = {"source": source, **report, "tokenizer": dict(tokenizer.fingerprint())}
    english_clone.save_dictionary_report(args.dictionary_out + ".report.json", report)
    print(f"wrote {args.dictionary_out}: {len(entries)} entries (English word <-> <clone>word) "
          f"from {source.get('word_types', len(words))} word types")
    dropped = {k: val for k, val in {**source, **report}.items()
               if (k.startswith("dropped") or k in ("below_min_count", "not_round_trip"))}
    if dropped:
        print("  dropped: " + ", ".join(f"{k} {val}" for k, val in dropped.items()))


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    usage = None
    if args.output_prefix and not args.input_prefix:
        usage = "--output-prefix needs --input-prefix (the English shard to clone)"
    elif not args.output_prefix and not args.dictionary_out:
        usage = "nothing to do: pass --output-prefix and/or --dictionary-out"
    elif args.dictionary_out and not (args.word_list or args.input_prefix):
        usage = "--dictionary-out needs --word-list or --input-prefix"
    if usage:
        print(f"error: {usage}", file=sys.stderr)
        return 2
    try:
        check_files(args)
        tokenizer = build_tokenizer(args.tokenizer_type, args.tokenizer_model, vocab_size=args.vocab_size)
        if args.output_prefix:
            write_clone_shard(args, tokenizer.vocab_size)
        if args.dictionary_out:
            write_dictionary(args, tokenizer)
    except PreAlignError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
