#!/usr/bin/env python
"""Tokenize text into Megatron ``.bin``/``.idx`` shards, optionally with PreAlign code-switching.

A superset of Megatron-LM's ``tools/preprocess_data.py``: with code-switching off the shards are
byte-for-byte what Megatron-LM (core_v0.16.1) writes for the same input, tokenizer and flags.
PreAlign's input-only code-switching and the English-Clone language are baked in here, offline, so
that pretraining pays nothing for them.

Example (one process; use ``--workers $(nproc)`` on real data)::

    python tools/preprocess_data.py \\
        --input corpus/*.jsonl --json-keys text \\
        --tokenizer-type SentencePieceTokenizer --tokenizer-model spm.model \\
        --append-eod --output-prefix data/en --workers 2

prints progress to stderr (a bar on a terminal; lines like these otherwise) and, at the end, what
it wrote::

    Processed 1000 documents (1187.3 docs/s, 5.21 MB/s), 214903 tokens, 0 problems.
    ...
    wrote data/en_text_document.bin/.idx: 12000 documents, 12000 sequences, 2570112 tokens (uint16)
      text: 1921554 words
    stats: data/en_preprocess_stats.json (12000 documents read, 0 skipped, 0 problems)

Problems in the input (malformed JSON, missing keys, invalid UTF-8, empty documents, gigantic
lines, ...) are skipped or kept as Megatron keeps them, counted, and listed with file:line.

Code-switching (PreAlign stage 2, p = 0.05) with a multi-way or pair dictionary::

    python tools/preprocess_data.py --input corpus/*.jsonl --tokenizer-type SentencePieceTokenizer \\
        --tokenizer-model spm.model --append-eod --output-prefix data/en_cs --workers 2 \\
        --dictionary dict/en-de.pairs --codeswitch-ratio 0.05 --codeswitch-seed 1

adds ``data/en_cs_text_document_targets.bin/.idx`` (the original words as labels) and prints
``text: 1921554 words, dictionary coverage 84.10% of words, switched 5.02% of dictionary words
(81121 words; p = 0.05)``.
English-Clone: ``--write-clone`` writes clone text (every id + |V|); ``--english-clone`` keeps
English text but uses the doubled vocabulary, e.g. to switch English words into clone words with
the dictionary from ``tools/make_english_clone.py``. Pretrain on the prefixes with
``megatron_prealign.datasets.gpt.PreAlignGPTDataset`` (ordinary ``--data-path`` blends).

Exit status: 0 on success; 1 when the run failed or found more than ``--max-errors`` problems
(nothing is published then); 2 for bad flags.

Refused with exit 1, publishing nothing and leaving older outputs as they were: a second run on
an ``--output-prefix`` that another run is writing (``<prefix>.lock`` names its pid); an output
prefix that cannot be written (a regular file in its path, a read-only directory, a full disk);
an input that cannot be read to its end (a truncated ``.gz``); and an input whose every line is
bad (malformed, a missing key, ...), which leaves no token to write. An empty input (or one of
empty documents only) is written as Megatron-LM writes it, with a warning: a shard without tokens
cannot be trained on. NullTokenizer text with an id outside ``0..--vocab-size`` is an input
problem like malformed JSON: the line is skipped and reported, never wrapped into the shard's dtype.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), os.path.pardir)))

from megatron_prealign.errors import PreAlignError
from megatron_prealign.files import describe_os_error
from megatron_prealign.preprocess.pipeline import PreprocessConfig, run_preprocess
from megatron_prealign.text.tokenizers import SUPPORTED_TYPES


def config_defaults() -> dict:
    """``PreprocessConfig``'s defaults, one per field: every flag takes its field's default, so
    that the command line and the config cannot disagree."""
    return {f.name: f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
            for f in dataclasses.fields(PreprocessConfig)}


def build_parser() -> argparse.ArgumentParser:
    """The command line: Megatron-LM's flags plus a PreAlign group.

    Every flag's ``dest`` is a ``PreprocessConfig`` field (``PreprocessConfig.from_args``).
    """
    parser = argparse.ArgumentParser(
        prog="preprocess_data.py",
        description="Tokenize JSONL/plain text into Megatron .bin/.idx shards, with optional "
        "PreAlign code-switching and English-Clone.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    defaults = config_defaults()
    _add_megatron_flags(parser, defaults)
    _add_input_flags(parser, defaults)
    _add_codeswitch_flags(parser, defaults)
    return parser


def _add_megatron_flags(parser: argparse.ArgumentParser, defaults: dict) -> None:
    """Megatron-LM's flags, in its groups and with its help texts where they fit."""
    g = parser.add_argument_group("tokenizer (Megatron-LM flags)")
    g.add_argument("--tokenizer-type", required=True, choices=SUPPORTED_TYPES,
                   help="What type of tokenizer to use.")
    g.add_argument("--tokenizer-model", default=defaults["tokenizer_model"],
                   help="SentencePiece .model file or local Hugging Face tokenizer directory.")
    g.add_argument("--vocab-size", type=int, default=defaults["vocab_size"],
                   help="NullTokenizer: ids 0..V-1 plus EOD V. Others: checked against the model.")

    g = parser.add_argument_group("input data (Megatron-LM flags)")
    g.add_argument("--input", required=True, nargs="+",
                   help="Input files or globs: JSONL (.jsonl/.json/.ndjson) or plain text; .gz ok.")
    g.add_argument("--json-keys", nargs="+", default=defaults["json_keys"],
                   help="Space-separated keys to extract from each JSON object.")
    g.add_argument("--split-sentences", action="store_true",
                   help="Split documents into sentences (one sequence per sentence).")
    g.add_argument("--keep-newlines", action="store_true",
                   help="Keep newlines between sentences when splitting.")

    g = parser.add_argument_group("tokenization process (Megatron-LM flags)")
    g.add_argument("--append-eod", action="store_true",
                   help="Append an <eod> token to the end of a document.")
    g.add_argument("--lang", default=defaults["lang"],
                   help="Language of the Punkt sentence splitter.")

    g = parser.add_argument_group("output data (Megatron-LM flags)")
    g.add_argument("--output-prefix", required=True,
                   help="Path prefix of the outputs: {prefix}_{key}_{document|sentence}.bin/.idx.")

    g = parser.add_argument_group("runtime (Megatron-LM flags)")
    g.add_argument("--workers", type=int, default=defaults["workers"],
                   help="Worker processes; throughput scales with them (use about the core count).")
    g.add_argument("--partitions", type=int, default=defaults["partitions"],
                   help="Independent pipelines over contiguous parts of the input, merged in order.")
    g.add_argument("--log-interval", type=int, default=defaults["log_interval"],
                   help="Documents between progress lines when stderr is not a terminal.")
    g.add_argument("--keep-sequential-samples", action="store_true",
                   help="Accepted for compatibility: the output always keeps input order.")


def _add_input_flags(parser: argparse.ArgumentParser, defaults: dict) -> None:
    g = parser.add_argument_group("PreAlign: input and errors")
    g.add_argument("--input-format", choices=("auto", "jsonl", "text"), default=defaults["input_format"],
                   help="auto: by file name (.jsonl/.json/.ndjson are JSONL, the rest plain text).")
    g.add_argument("--text-unit", choices=("line", "paragraph", "file"), default=defaults["text_unit"],
                   help="What one plain-text document is.")
    g.add_argument("--punkt-model", default=defaults["punkt_model"],
                   help="Punkt parameters (punkt_tab directory) for --split-sentences; default: "
                   "installed nltk data, else Punkt trained on the input (and saved).")
    g.add_argument("--punkt-train-bytes", type=int, default=defaults["punkt_train_bytes"],
                   help="Bytes of input text to train Punkt on when none is installed.")
    g.add_argument("--max-errors", type=int, default=defaults["max_errors"],
                   help="Fail (exit 1, publish nothing) after more input problems than this; "
                   "default: no limit, problems are only reported.")
    g.add_argument("--max-line-bytes", type=int, default=defaults["max_line_bytes"],
                   help="Skip (and report) lines longer than this.")
    g.add_argument("--chunk-bytes", type=int, default=defaults["chunk_bytes"],
                   help="Input bytes per work item (no effect on the output).")
    g.add_argument("--progress", choices=("auto", "bar", "log", "none"), default=defaults["progress"],
                   help="auto: a bar on a terminal, log lines otherwise.")


def _add_codeswitch_flags(parser: argparse.ArgumentParser, defaults: dict) -> None:
    g = parser.add_argument_group("PreAlign: code-switching and English-Clone")
    g.add_argument("--dictionary", default=defaults["dictionary"],
                   help="Pair file (src<TAB>tgt) or multi-way JSONL ({\"words\": \"a $ b\"}).")
    g.add_argument("--dictionary-format", choices=("auto", "pairs", "multiway"),
                   default=defaults["dictionary_format"])
    g.add_argument("--dictionary-cache-dir", default=defaults["dictionary_cache_dir"],
                   help="Cache of compiled dictionaries, keyed by the dictionary's bytes and the "
                   "tokenizer (default: $PREALIGN_CACHE_DIR/codeswitch or "
                   "~/.cache/megatron-prealign/codeswitch).")
    g.add_argument("--no-dictionary-cache", action="store_true",
                   help="Compile the dictionary every time; neither read nor write the cache.")
    g.add_argument("--codeswitch-ratio", type=float, default=defaults["codeswitch_ratio"],
                   help="Probability of switching a dictionary word (paper: 0.05); 0: off.")
    g.add_argument("--codeswitch-seed", type=int, default=defaults["codeswitch_seed"],
                   help="Seed of the switch decisions and translation choices.")
    g.add_argument("--english-clone", action="store_true",
                   help="Use the doubled English/English-Clone vocabulary (2|V| ids).")
    g.add_argument("--write-clone", action="store_true",
                   help="Write documents as English-Clone text (every id + |V|); implies "
                   "--english-clone.")


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def print_summary(report: dict) -> None:
    """The counts a data tool owes its user, on stdout."""
    for key, out in report["outputs"].items():
        print(f"wrote {out['prefix']}.bin/.idx: {out['documents']} documents, {out['sequences']} "
              f"sequences, {out['tokens']} tokens ({out['dtype']})")
        if out["companion"]:
            print(f"wrote {out['companion']}.bin/.idx (code-switching targets)")
        if out["words"]:
            line = f"  {key}: {out['words']} words"
            if report["dictionary"]:
                line += (f", dictionary coverage {_pct(out['dictionary_coverage'])} of words, "
                         f"switched {_pct(out['switched_rate'])} of dictionary words "
                         f"({out['switched_words']} words; p = {report['codeswitch']['ratio']})")
            print(line)
    for warning in report["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    problems = report["problems"]
    print(f"stats: {report['config']['output_prefix']}_preprocess_stats.json "
          f"({report['documents_read']} documents read, {report['documents_skipped']} skipped, "
          f"{problems['total']} problems)")
    if problems["total"]:
        reasons = ", ".join(f"{k} {v}" for k, v in problems["by_reason"].items())
        print(f"problems by reason: {reasons}", file=sys.stderr)
        for ex in problems["examples"][:5]:
            print(f"  {ex['file']}:{ex['line']}: {ex['reason']}: {ex['detail']}", file=sys.stderr)


def main(argv=None) -> int:
    """Run the preprocessor; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        config = PreprocessConfig.from_args(args)
        report = run_preprocess(config, argv=argv)
    except PreAlignError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # a file that vanished or cannot be read: name it, no traceback
        where = describe_os_error(err, err.filename) if err.filename else str(err)
        print(f"error: {where}", file=sys.stderr)
        return 1
    print_summary(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
