#!/usr/bin/env python3
"""Build the German, Spanish and Chinese monolingual corpora of the real-languages setting.

Usage (from the repository root, on a Debian 12 machine that can reach apt)::

    python examples/experiment/real/build_corpora.py --output-dir examples/experiment/real/data \\
        [--cache-dir /tmp/corpora/cache]

Writes, byte-for-byte reproducibly (each to a temporary name, then renamed):

* ``de.jsonl.gz``, ``es.jsonl.gz``, ``zh.jsonl.gz``: one paragraph per line,
  ``{"text": ..., "source": ...}``, in a fixed pseudo-random order (sorted by a seeded sha256 of the text)
* ``excluded_texts.txt.gz``: a sorted list of 12-hex-digit hashes (``text_hash``) of the normalized
  test-set paragraphs kept out of the corpora (Debian Reference de/es/zh-cn, Reina-Valera 1909), so
  that tests can check the exclusion without the packages
* the section "## Monolingual corpora (de, es, zh)" of ``README.md`` (the rest of the file, written by
  other build scripts, is kept as it is)

Sources (Debian 12 "bookworm" main, versions and archive sha256 pinned in ``APT_PACKAGES``):
German man pages (manpages-de), fortunes-de, the Debian Administrator's Handbook (debian-handbook,
de-DE), maint-guide-de and debian-faq-de; Spanish man pages (manpages-es), fortunes-es, the handbook
(es-ES) and maint-guide-es; Chinese man pages (manpages-zh, zh_CN), the handbook (zh-CN),
maint-guide-zh-cn and debian-faq-zh-cn. The English handbook, maint-guide and debian-faq are read to
drop paragraphs left untranslated. Debian Reference and the Reina-Valera 1909 Bible are test sets of the
experiment: they are read only to keep their text *out* of the corpora.

Only the Python standard library (through ``packages.py``), ``apt-get download`` and ``dpkg-deb -x``
are used; nothing is installed. With ``--cache-dir DIR`` the archives are kept and reused, so a rebuild
can run offline.
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
import tempfile
import unicodedata
import zlib
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

REPO = Path(__file__).resolve().parents[3]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from examples.experiment.packages import apt_download, log, sha256_file, unpack  # noqa: E402
from megatron_prealign.errors import PreAlignError  # noqa: E402


class CorpusInputError(PreAlignError):
    """An input file of the corpus build is missing, differs from its pin or cannot be parsed."""


# --------------------------------------------------------------------------------------------------
# Pinned inputs
# --------------------------------------------------------------------------------------------------

# package -> (version, sha256 of the .deb). Debian "all" archives are the same bytes on every mirror.
APT_PACKAGES: Dict[str, Tuple[str, str]] = {
    "debian-faq": ("11.1", "427426e0cfa6888622fc1d72631071cb4b5a1f86ccde722e7820bcef284de5d0"),
    "debian-faq-de": ("11.1", "e9a8d8234f4b182660d521f80f50cea87f797b4541005a3d64fab7777766f6de"),
    "debian-faq-zh-cn": ("11.1", "3545356b1aa04d87e91dd15e8406210cf5b4f476662e597897bcb42234591758"),
    "debian-handbook": ("11.20220922", "3d5dbeac1f1afc9c094eab9d0f701f6ecff99c4927d5a4794cf6c85678134faa"),
    "fortunes-de": ("0.35-1", "03fe7a7912935bd3d4e02e38d79ef32a289097f8718d4488c409595abce067a0"),
    "fortunes-es": ("1.36", "54636edc1a4384093b68d1666c7e702ce42d1fcc8b5ab402d9646c328dcca899"),
    "maint-guide": ("1.2.53", "762c8a400a36668d2eb814a3ba356b06488fd889dfce478eb11d5cfb189a47b5"),
    "maint-guide-de": ("1.2.53", "821afc6b85ffe9cbc9b7acbcdd5876ccbb855c3876ee5524d21602fd41d979c1"),
    "maint-guide-es": ("1.2.53", "5a76b5e43285173ce4cce9284fb47b9a1851a68a9c0c0b8300c338d8890a42b6"),
    "maint-guide-zh-cn": ("1.2.53", "d605b60a034f63857bc44205aed5ad7ba6e17d0d2b1ba5e79179b4e7ec4ee4bc"),
    "manpages-de": ("4.18.1-1", "37d2e7ee51f22952aecec3af93647ff59194a3c74bb7a694560f49c7f7ab3978"),
    "manpages-es": ("4.18.1-1", "d21e9f85e487f149ae45b5c525b2b1a70ae7fd38d4b05b47c8753042c66f4c2b"),
    "manpages-zh": ("1.6.4.0-1", "81bae29495f6445db290e3f329f1203eb19b651c2a7ea165b74ebdc853a32ac1"),
    # test sets: read only to exclude their text
    "debian-reference-de": ("2.100", "3b0ce65fd63e75ddf8eb07ca36293425135080e690a07e06a6ac8bc8040ef0aa"),
    "debian-reference-es": ("2.100", "a59b68c96f83d3cf29a476c847aee38364764603ea62eee592791e0a843a269e"),
    "debian-reference-zh-cn": ("2.100", "6d2d8d9a646397e28b04cdff23d2e4374101ebf9be348e35961af62c8a2d0977"),
    "sword-text-sparv": ("2.60-1", "5c87f9b2bc97457e8a872f5bae7ea7ce59cb3de1dcee73e4d4740451863694cf"),
}

LANGS = ("de", "es", "zh")
# corpus "source" id -> (description, package per language, licence)
SOURCES: Dict[str, Tuple[str, Dict[str, str], str]] = {
    "handbook": ("The Debian Administrator's Handbook (HTML, Debian 11 edition)",
                 {"de": "debian-handbook (de-DE)", "es": "debian-handbook (es-ES)", "zh": "debian-handbook (zh-CN)"},
                 "GPL-2+ or CC-BY-SA-3.0"),
    "maint-guide": ("Debian New Maintainers' Guide (HTML)",
                    {"de": "maint-guide-de", "es": "maint-guide-es", "zh": "maint-guide-zh-cn"},
                    "GPL-2+"),
    "faq": ("The Debian GNU/Linux FAQ (plain text)", {"de": "debian-faq-de", "zh": "debian-faq-zh-cn"},
            "verbatim and modified copies and translations permitted (SPI permission notice)"),
    "fortunes": ("Fortune-cookie sayings, quotations, jokes, recipes (the offensive `off/` files left out)",
                 {"de": "fortunes-de", "es": "fortunes-es"},
                 "GPL-2+ (fortunes-de); texts presumed public domain (fortunes-es)"),
    "manpages": ("Translated manual pages (roff)",
                 {"de": "manpages-de", "es": "manpages-es", "zh": "manpages-zh (zh_CN)"},
                 "GPL-3+ (manpages-de, manpages-es); GFDL-1.2+ (manpages-zh)"),
}
# Earlier sources win a duplicate: the edited documents before the fortunes and the man pages.
SOURCE_ORDER = ("handbook", "maint-guide", "faq", "fortunes", "manpages")
HANDBOOK_DIR = {"de": "de-DE", "es": "es-ES", "zh": "zh-CN", "en": "en-US"}
DOC_SUFFIX = {"de": "de", "es": "es", "zh": "zh-cn", "en": "en"}
MAN_DIR = {"de": "de", "es": "es", "zh": "zh_CN"}

SEED = "real-languages-corpora-v1"
MIN_CHARS = {"de": 40, "es": 40, "zh": 16}     # shorter paragraphs (headings, option tags) are dropped
MIN_IDEOGRAPHS = 8                # zh: at least this many CJK ideographs,
MIN_IDEOGRAPH_SHARE = 0.2         # and this share of the non-space characters
MIN_SENTENCE_CHARS = {"de": 30, "es": 30, "zh": 15}  # sentences this long are matched against test sets
# Man pages are the large "fill" source: a sample ranked by a seeded hash, capped in characters,
# keeps each gzipped file near 2.5 MB. None: all of it.
MANPAGE_CHAR_CAPS: Dict[str, Optional[int]] = {"de": 2_000_000, "es": None, "zh": None}
MAX_GZ_BYTES = 3_000_000

FUNCTION_WORDS = {
    "en": set("the and of to is in that for it with as be on are this by not or an you can if from which "
              "will when be has have".split()),
    "de": set("der die das und ist nicht zu den mit von sie ein eine es im für auf dem werden wird sich des "
              "als auch an oder bei aus wenn nur kann dass ich wir sind diese dieser einen einem zum zur "
              "wie nach".split()),
    "es": set("el la los las de que y en un una es se no por con para del al lo su sus como más o pero "
              "este esta son si está ser hay puede cuando".split()),
}


# --------------------------------------------------------------------------------------------------
# Normalization and filters (pure functions; the tests call them on hand-made fixtures)
# --------------------------------------------------------------------------------------------------

_CJK = "\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_CJK_GAP = re.compile(f"(?<=[{_CJK}]) (?=[{_CJK}])")
_IDEOGRAPH = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_SPACES = {"\u00a0": " ", "\u202f": " ", "\u2009": " ", "\u200b": "", "\ufeff": "", "\u00ad": ""}
_SPACES_RE = re.compile("|".join(map(re.escape, _SPACES)))


def normalize(text: str, lang: str) -> str:
    """Unicode NFC, odd spaces and soft hyphens removed, whitespace collapsed; for Chinese also the
    spaces between two CJK characters (left by line wrapping) removed."""
    text = unicodedata.normalize("NFC", _SPACES_RE.sub(lambda m: _SPACES[m.group()], text))
    text = " ".join(text.split())
    if lang == "zh":
        text = _CJK_GAP.sub("", text)
    return text


def dedup_key(text: str) -> str:
    """Duplicate key: case, punctuation and spacing ignored."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def text_hash(text: str) -> str:
    """12 hex digits of the sha256 of ``dedup_key(text)``: the form of ``excluded_texts.txt.gz``."""
    return hashlib.sha256(dedup_key(text).encode("utf-8")).hexdigest()[:12]


_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|(?<=[。！？；])")


def sentences(text: str, lang: str) -> List[str]:
    """The sentences of a paragraph long enough to be matched against a test set."""
    return [s.strip() for s in _SENTENCE_END.split(text) if len(s.strip()) >= MIN_SENTENCE_CHARS[lang]]


def is_mostly_english(text: str) -> bool:
    """More English function words than German or Spanish ones: an untranslated paragraph."""
    words = re.findall(r"[^\W\d_]+", text.lower())
    en = sum(w in FUNCTION_WORDS["en"] for w in words)
    other = sum(w in FUNCTION_WORDS["de"] or w in FUNCTION_WORDS["es"] for w in words)
    return en >= 2 and en > other


def reject_reason(text: str, lang: str) -> Optional[str]:
    """Why a normalized paragraph is not kept (``None``: keep it)."""
    if len(text) < MIN_CHARS[lang]:
        return "short"
    chars = len(text.replace(" ", ""))
    if lang == "zh":
        ideographs = len(_IDEOGRAPH.findall(text))
        if ideographs < MIN_IDEOGRAPHS or ideographs < MIN_IDEOGRAPH_SHARE * chars:
            return "not_chinese"          # untranslated (mostly ASCII), code, tables
        return None
    letters = sum(ch.isalpha() for ch in text)
    if letters < 0.6 * chars:
        return "not_prose"                # code, tables, option lists, ASCII art
    if _IDEOGRAPH.search(text):
        return "not_prose"
    words = re.findall(r"[^\W\d_]+", text.lower())
    if is_mostly_english(text):
        return "english"
    if not any(w in FUNCTION_WORDS[lang] for w in words):
        return "no_function_word"         # lists of names, commands, headings
    return None


# --------------------------------------------------------------------------------------------------
# roff (man pages)
# --------------------------------------------------------------------------------------------------

ROFF_GLYPHS = {
    "em": "\u2014", "en": "\u2013", "hy": "-", "lq": "\u201c", "rq": "\u201d", "oq": "\u2018", "cq": "\u2019",
    "aq": "'", "dq": '"', "bu": "\u2022", "co": "\u00a9", "rg": "\u00ae", "tm": "\u2122", "ha": "^",
    "ti": "~", "mu": "\u00d7", "di": "\u00f7", "->": "\u2192", "<-": "\u2190", ">=": "\u2265",
    "<=": "\u2264", "Fo": "\u00ab", "Fc": "\u00bb", "fo": "\u2039", "fc": "\u203a", "bv": "|", "ga": "`",
    "aa": "\u00b4", "ss": "\u00df", "de": "\u00b0", "+-": "\u00b1", "sl": "/", "rs": "\\", "at": "@",
    "sh": "#", "Do": "$", "ps": "\u00b6", "sc": "\u00a7", "ct": "\u00a2", "Eu": "\u20ac", "eu": "\u20ac",
    ":a": "\u00e4", ":o": "\u00f6", ":u": "\u00fc", ":A": "\u00c4", ":O": "\u00d6", ":U": "\u00dc",
    "'e": "\u00e9", "'a": "\u00e1", "'i": "\u00ed", "'o": "\u00f3", "'u": "\u00fa", "~n": "\u00f1",
    "~N": "\u00d1", "`a": "\u00e0", "`e": "\u00e8", "lB": "[", "rB": "]", "lC": "{", "rC": "}",
    "la": "\u27e8", "ra": "\u27e9", "dg": "\u2020", "or": "|", "pl": "+", "mi": "-", "eq": "=",
}
ROFF_STRINGS = {"lq": "\u201c", "rq": "\u201d", "R": "\u00ae", "Tm": "\u2122", "Eu": "\u20ac"}
_ROFF_ESCAPE = re.compile(
    r"\\(?:"
    r"f(?:\([^\n]{2}|\[[^\]\n]*\]|.)"          # font
    r"|s(?:[-+]?\d|\([-+]?\d\d|\[[^\]\n]*\])"  # size
    r"|\((?P<glyph2>[^\n]{2})"                  # \(xx
    r"|\[(?P<glyphn>[^\]\n]*)\]"                # \[xxx]
    r"|\*(?:\((?P<str2>[^\n]{2})|\[(?P<strn>[^\]\n]*)\]|(?P<str1>.))"   # strings
    r"|n(?:\([^\n]{2}|\[[^\]\n]*\]|.)"          # number registers
    r"|[NhvwolLbxXDZCSAR]'[^'\n]*'"             # escapes with a quoted argument
    r"|k.|z|\$\d|\"[^\n]*"                     # mark, zero-width, macro argument, comment
    r"|(?P<other>.)"
    r")")
_ROFF_SIMPLE = {"-": "-", "e": "\\", "\\": "\\", "&": "", ")": "", "c": "", "~": " ", " ": " ", "0": " ",
                "|": "", "^": "", ",": "", "/": "", ":": "", "%": "", "'": "'", "`": "`", ".": ".",
                "t": " ", "d": "", "u": "", "p": "", "!": "", "{": "", "}": "", "E": "\\"}


def _glyph(name: str) -> str:
    if name in ROFF_GLYPHS:
        return ROFF_GLYPHS[name]
    m = re.fullmatch(r"u([0-9A-Fa-f]{4,6})(?:_[0-9A-Fa-f]{4,6})*", name)
    if m:
        return chr(int(m.group(1), 16))
    return ""


def roff_unescape(line: str) -> str:
    """Plain text of one roff text line or macro argument: fonts, sizes and comments removed, glyphs
    and strings replaced by their characters."""
    def sub(m: re.Match) -> str:
        g = m.groupdict()
        if g["glyph2"] is not None:
            return _glyph(g["glyph2"])
        if g["glyphn"] is not None:
            return _glyph(g["glyphn"])
        for key in ("str2", "strn", "str1"):
            if g[key] is not None:
                return ROFF_STRINGS.get(g[key], "")
        if g["other"] is not None:
            return _ROFF_SIMPLE.get(g["other"], g["other"])
        return ""
    return _ROFF_ESCAPE.sub(sub, line)


def _macro_args(rest: str) -> List[str]:
    """Arguments of a macro line: blank-separated, double quotes group ("" is a quote)."""
    return [q.replace('""', '"') if q else w for q, w in re.findall(r'"((?:[^"]|"")*)"?|(\S+)', rest)]


_BREAK_MACROS = {"PP", "LP", "P", "sp", "br", "TP", "TQ", "IP", "HP", "SH", "SS", "RS", "RE", "Pp", "Sh", "Ss",
                 "It", "Bl", "El", "Lp", "Dl", "TH", "Dt", "Dd", "Os", "bp", "ne", "in", "ti", "YS", "SY"}
_FONT_MACROS = {"B", "I", "R", "SM", "SB", "BR", "BI", "IB", "IR", "RB", "RI", "OP"}
_SKIP_BLOCKS = {"nf": "fi", "EX": "EE", "TS": "TE", "Bd": "Ed", "de": "..", "ig": "..", "am": "..",
                "EQ": "EN", "PS": "PE", "Vb": "Ve"}
_MDOC_JOIN = {"Ns", "Pf"}


def roff_paragraphs(text: str) -> List[str]:
    """Paragraphs of a man page: text lines joined between paragraph and section macros; headings
    and ``.TP`` tags become paragraphs of their own (the length filter drops them); no-fill
    (``.nf``/``.EX``) blocks, tables, displays and macro definitions are skipped as code."""
    paras: List[str] = []
    buf: List[str] = []

    def flush() -> None:
        if buf:
            paras.append(" ".join(" ".join(buf).split()))
            buf.clear()

    skip_until: Optional[str] = None
    tag_next = False
    for raw in text.split("\n"):
        line = raw.rstrip()
        if skip_until is not None:
            if re.match(r"^[.']\s*" + re.escape(skip_until) + r"\b", line) or (
                    skip_until == ".." and line.strip() == ".."):
                skip_until = None
            continue
        if line.startswith((".\\\"", "'\\\"", '.\\"')) or line.strip() in (".", "'"):
            continue
        if line.startswith((".", "'")):
            m = re.match(r"^[.']\s*(\S+)\s*(.*)$", line)
            if not m:
                continue
            name, rest = m.group(1), m.group(2)
            if name in _SKIP_BLOCKS:
                if name == "Bd" and "-literal" not in rest and "-unfilled" not in rest:
                    flush()
                    continue
                flush()
                skip_until = _SKIP_BLOCKS[name]
                continue
            if name in _BREAK_MACROS:
                flush()
                if name in ("SH", "SS", "Sh", "Ss") and rest:
                    paras.append(roff_unescape(" ".join(_macro_args(rest))).strip())
                tag_next = name in ("TP", "TQ")
                continue
            if name in _FONT_MACROS:
                args = [roff_unescape(a) for a in _macro_args(rest)]
                buf.append(("" if len(name) == 2 and name not in ("SM", "SB", "OP") else " ").join(args))
            elif name in ("UR", "MT"):
                continue
            elif name in ("UE", "ME"):
                if buf and rest:
                    buf[-1] += roff_unescape(rest.strip())
            elif re.fullmatch(r"[A-Z][a-z]", name):        # mdoc inline macros: keep their words
                args = [a for a in _macro_args(rest) if not re.fullmatch(r"[A-Z][a-z]", a)]
                if name == "Fl":
                    args = ["-" + a for a in args] or ["-"]
                elif name == "Xr" and len(args) >= 2:
                    args = [f"{args[0]}({args[1]})", *args[2:]]
                if name in _MDOC_JOIN and buf:
                    buf[-1] += roff_unescape("".join(args))
                else:
                    buf.append(roff_unescape(" ".join(args)))
            continue                                         # any other request: dropped
        content = roff_unescape(line).strip()
        if not content:
            flush()
            continue
        if tag_next:
            tag_next = False
            paras.append(content)
            continue
        buf.append(content)
    flush()
    return [p for p in paras if p]


# --------------------------------------------------------------------------------------------------
# HTML (DocBook output of the handbook and maint-guide; Debian Reference)
# --------------------------------------------------------------------------------------------------

class _BlockText(HTMLParser):
    BLOCK = {"p", "li", "dd", "dt", "h1", "h2", "h3", "h4", "h5", "h6", "td", "th", "div", "title",
             "caption", "blockquote", "tr", "table", "ul", "ol", "dl", "br", "section", "header", "footer",
             "figure", "figcaption", "body", "head", "html", "hr"}
    SKIP = {"pre", "script", "style"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paras: List[str] = []
        self.buf: List[str] = []
        self.skip = 0

    def _flush(self) -> None:
        text = " ".join("".join(self.buf).split())
        if text:
            self.paras.append(text)
        self.buf = []

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self._flush()
            self.skip += 1
        elif tag in self.BLOCK:
            self._flush()

    def handle_startendtag(self, tag, attrs):
        if tag in self.BLOCK:
            self._flush()

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.skip = max(0, self.skip - 1)
            self.buf = []
        elif tag in self.BLOCK:
            self._flush()

    def handle_data(self, data):
        if not self.skip:
            self.buf.append(data)

    def close(self):
        super().close()
        self._flush()


def html_paragraphs(text: str) -> List[str]:
    """The text of each block element (``p``, ``li``, ``td``, headings, ...) in document order;
    ``pre``, ``script`` and ``style`` (program listings, screens) are skipped."""
    parser = _BlockText()
    parser.feed(text)
    parser.close()
    return parser.paras


# --------------------------------------------------------------------------------------------------
# Plain text (the FAQ) and fortunes
# --------------------------------------------------------------------------------------------------

_SECTION_NUMBER = re.compile(r"^\s*\d+(?:\.\d+)*\.\s")


def faq_paragraphs(text: str, lang: str) -> List[str]:
    """Blank-line separated blocks of the FAQ's text rendering, lines joined. Numbered headings and
    table-of-contents blocks are dropped; URLs repeated in parentheses and bare URLs are removed."""
    out = []
    for block in re.split(r"\n[ \t\u00a0]*\n", text.replace("\r\n", "\n")):
        lines = [ln.strip(" \t\u00a0") for ln in block.split("\n") if ln.strip(" \t\u00a0")]
        if not lines or _SECTION_NUMBER.match(lines[0]):
            continue
        joined = ""
        for ln in lines:
            if not joined:
                joined = ln
            elif joined.endswith(("/", "#", "(https://", "(http://")) or (lang == "zh" and _cjk_end(joined, ln)):
                joined += ln
            else:
                joined += " " + ln
        joined = re.sub(r"\s*\((?:https?|ftp)://[^)\s]*\)", "", joined)
        joined = re.sub(r"(?:https?|ftp)://\S+", "", joined)
        joined = re.sub(r"\s+([.,;:])", r"\1", joined)
        out.append(joined)
    return out


def _cjk_end(left: str, right: str) -> bool:
    return bool(re.match(f"[{_CJK}]", left[-1:]) and re.match(f"[{_CJK}]", right[:1]))


def fortune_entries(text: str) -> List[str]:
    """Entries of a fortune file (separated by lines holding only ``%``), lines joined."""
    out = []
    for entry in re.split(r"^%[ \t]*$", text.replace("\r\n", "\n"), flags=re.M):
        joined = " ".join(ln.strip() for ln in entry.split("\n") if ln.strip())
        if joined:
            out.append(joined)
    return out


def decode(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


# --------------------------------------------------------------------------------------------------
# SWORD zText (Reina-Valera 1909, only for the exclusion list)
# --------------------------------------------------------------------------------------------------

def sword_verses(module_dir: Path) -> List[str]:
    """Verse texts of a zText module: ``<t>.bzs`` holds 12-byte (offset, size, uncompressed size)
    records of zlib blocks in ``.bzz``; ``.bzv`` 10-byte (block, offset, size) records per verse."""
    out: List[str] = []
    for testament in ("ot", "nt"):
        base = module_dir / f"{testament}.bz"
        bzs, bzv, bzz = (Path(str(base) + s) for s in "svz")
        for p in (bzs, bzv, bzz):
            if not p.is_file():
                raise CorpusInputError(f"{p}: missing SWORD module file")
        index, data, verses = bzs.read_bytes(), bzz.read_bytes(), bzv.read_bytes()
        blocks = []
        for i in range(len(index) // 12):
            off, size, _ = struct.unpack_from("<III", index, 12 * i)
            blocks.append(zlib.decompress(data[off:off + size]) if size else b"")
        if len(verses) % 10:
            raise CorpusInputError(f"{bzv}: size {len(verses)} is not a multiple of 10-byte records")
        for i in range(0, len(verses), 10):
            block, offset, size = struct.unpack_from("<IIH", verses, i)
            if size and block < len(blocks):
                raw = blocks[block][offset:offset + size].decode("utf-8", "replace")
                raw = re.sub(r"<(note|title)\b.*?</\1>", " ", raw, flags=re.S)
                text = html.unescape(re.sub(r"<[^>]+>", "", raw))
                text = re.sub(r"\s+([,.;:!?\u2019\u201d)\]])", r"\1", " ".join(text.split()))
                if text:
                    out.append(text)
    return out


# --------------------------------------------------------------------------------------------------
# Reading the packages
# --------------------------------------------------------------------------------------------------

def _files(root: Path, pattern: str) -> List[Path]:
    return sorted(p for p in root.glob(pattern) if p.is_file() and not p.is_symlink())


def _read(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise CorpusInputError(f"{path}: not a gzip file ({exc})") from exc
    return decode(data, path)


def handbook_raw(root: Path, lang: str) -> List[str]:
    d = root / "usr/share/doc/debian-handbook/html" / HANDBOOK_DIR[lang]
    files = _files(d, "*.html")
    if not files:
        raise CorpusInputError(f"{d}: no handbook HTML pages")
    return [p for f in files for p in html_paragraphs(_read(f))]


def maint_guide_raw(root: Path, lang: str) -> List[str]:
    pkg = "maint-guide" if lang == "en" else f"maint-guide-{DOC_SUFFIX[lang]}"
    d = root / "usr/share/doc" / pkg / "html"
    files = _files(d, f"*.{DOC_SUFFIX[lang]}.html")
    if not files:
        raise CorpusInputError(f"{d}: no maint-guide HTML pages")
    return [p for f in files for p in html_paragraphs(_read(f))]


def faq_raw(root: Path, lang: str) -> List[str]:
    path = root / f"usr/share/doc/debian/FAQ/debian-faq.{DOC_SUFFIX[lang]}.txt.gz"
    if not path.is_file():
        raise CorpusInputError(f"{path}: missing")
    return faq_paragraphs(_read(path), lang)


def fortunes_raw(root: Path, lang: str) -> List[str]:
    d = root / "usr/share/games/fortunes" / lang
    files = [f for f in _files(d, "*") if not f.name.endswith((".dat", ".u8"))]
    if not files:
        raise CorpusInputError(f"{d}: no fortune files")
    return [e for f in files for e in fortune_entries(_read(f))]


def manpages_raw(root: Path, lang: str) -> List[str]:
    d = root / "usr/share/man" / MAN_DIR[lang]
    files = _files(d, "man*/*")
    if not files:
        raise CorpusInputError(f"{d}: no man pages")
    out = []
    for f in files:
        text = _read(f)
        if re.match(r"^\.so\s", text.lstrip()):
            continue                                      # a link to another page
        out.extend(roff_paragraphs(text))
    if lang == "zh":      # some Chinese pages were converted from HTML and kept its entities
        out = [_ZH_ENTITIES.sub(lambda m: html.unescape(m.group()), p) for p in out]
    return out


_ZH_ENTITIES = re.compile(r"&(?:amp|lt|gt|quot|nbsp);")


READERS = {"handbook": handbook_raw, "maint-guide": maint_guide_raw, "faq": faq_raw,
           "fortunes": fortunes_raw, "manpages": manpages_raw}


def english_keys(root: Path) -> Set[str]:
    """Keys of the English handbook, maint-guide and FAQ paragraphs: a translated document's paragraph
    with one of these keys was left untranslated."""
    paras = handbook_raw(root, "en") + maint_guide_raw(root, "en") + faq_raw(root, "en")
    return {dedup_key(normalize(p, "en")) for p in paras}


def test_set_texts(root: Path) -> Dict[str, List[str]]:
    """Normalized test-set paragraphs per language: Debian Reference (de, es, zh-cn) and the
    Reina-Valera 1909 verses (es)."""
    out: Dict[str, List[str]] = {}
    for lang in LANGS:
        files = _files(root / "usr/share/debian-reference", f"*.{DOC_SUFFIX[lang]}.html")
        if not files:
            raise CorpusInputError(f"{root / 'usr/share/debian-reference'}: no *.{DOC_SUFFIX[lang]}.html")
        out[lang] = [normalize(p, lang) for f in files for p in html_paragraphs(_read(f))]
    out["es"] += [normalize(v, "es") for v in
                  sword_verses(root / "usr/share/sword/modules/texts/ztext/spaRV1909eb")]
    for lang in LANGS:
        out[lang] = [p for p in out[lang] if len(p) >= MIN_SENTENCE_CHARS[lang]]
    return out


# --------------------------------------------------------------------------------------------------
# Assembly
# --------------------------------------------------------------------------------------------------

def rank(text: str, salt: str = "") -> str:
    return hashlib.sha256(f"{SEED}\0{salt}\0{text}".encode("utf-8")).hexdigest()


def test_keys(texts: Iterable[str], lang: str) -> Set[str]:
    """Keys of the test-set paragraphs and of their sentences."""
    keys = set()
    for t in texts:
        keys.add(dedup_key(t))
        keys.update(dedup_key(s) for s in sentences(t, lang))
    return keys


def clean_language(raw: Dict[str, List[str]], lang: str, english: Set[str],
                   excluded: Set[str]) -> Tuple[Dict[str, List[str]], Counter]:
    """Normalized, filtered paragraphs per source, each key once across the language's sources, none
    that is (or contains a sentence of) a test-set text. Returns (kept per source, drops per reason)."""
    seen: Set[str] = set()
    kept: Dict[str, List[str]] = {}
    dropped: Counter = Counter()
    for source in SOURCE_ORDER:
        if source not in raw:
            continue
        kept[source] = []
        for p in raw[source]:
            text = normalize(p, lang)
            reason = reject_reason(text, lang)
            key = dedup_key(text)
            if reason is None and source != "fortunes" and key in english:
                reason = "untranslated"
            if reason is None and (key in excluded or any(dedup_key(s) in excluded
                                                          for s in sentences(text, lang))):
                reason = "test_set"
            if reason is None and key in seen:
                reason = "duplicate"
            if reason:
                dropped[f"{source}:{reason}"] += 1
                continue
            seen.add(key)
            kept[source].append(text)
    return kept, dropped


def sample_up_to(paragraphs: List[str], cap: Optional[int], salt: str) -> List[str]:
    """Paragraphs in seeded hash order, each kept while the total stays within ``cap`` characters;
    returned in their original order. ``cap`` None keeps all."""
    if cap is None:
        return list(paragraphs)
    chosen, total = set(), 0
    for i in sorted(range(len(paragraphs)), key=lambda i: rank(paragraphs[i], salt)):
        n = len(paragraphs[i])
        if total + n > cap:
            continue
        chosen.add(i)
        total += n
    return [p for i, p in enumerate(paragraphs) if i in chosen]


def write_jsonl_gz(path: Path, records: Iterable[dict]) -> None:
    """Deterministic gzip: no file name in the header, mtime 0, level 9."""
    with open(path, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz:
            with io.TextIOWrapper(gz, encoding="utf-8", newline="\n") as f:
                for rec in records:
                    f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def write_lines_gz(path: Path, lines: Iterable[str]) -> None:
    with open(path, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz:
            gz.write("".join(line + "\n" for line in lines).encode("utf-8"))


# --------------------------------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------------------------------

def build(output_dir: Path, cache_dir: Optional[Path], keep_work: bool = False) -> dict:
    output_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="real_corpora."))
    try:
        archives = apt_download(cache_dir or work / "archives", {p: v for p, (v, _) in APT_PACKAGES.items()},
                                sha256={p: sha for p, (_, sha) in APT_PACKAGES.items()})
        root = work / "root"
        root.mkdir()
        unpack(archives, root)
        english = english_keys(root)
        tests = test_set_texts(root)
        stats: dict = {"languages": {}, "files": {}, "archives": {}, "excluded": {}}
        tmp: Dict[str, Path] = {}
        excluded_hashes: Set[str] = set()
        for lang in LANGS:
            raw = {s: READERS[s](root, lang) for s in SOURCE_ORDER if lang in SOURCES[s][1]}
            excluded = test_keys(tests[lang], lang)
            excluded_hashes.update(text_hash(t) for t in tests[lang])
            kept, dropped = clean_language(raw, lang, english, excluded)
            before = {s: len(v) for s, v in kept.items()}
            kept["manpages"] = sample_up_to(kept["manpages"], MANPAGE_CHAR_CAPS[lang], salt=lang)
            records = [{"text": p, "source": s} for s, ps in kept.items() for p in ps]
            records.sort(key=lambda r: rank(r["text"], lang))
            name = f"{lang}.jsonl.gz"
            tmp[name] = output_dir / (name + ".tmp")
            write_jsonl_gz(tmp[name], records)
            stats["languages"][lang] = {
                s: {"paragraphs": len(ps), "words": sum(len(p.split()) for p in ps),
                    "chars": sum(len(p) for p in ps), "before_sampling": before[s]}
                for s, ps in kept.items()}
            stats["languages"][lang]["_dropped"] = dict(sorted(dropped.items()))
            stats["languages"][lang]["_candidates"] = {s: len(v) for s, v in raw.items()}
            stats["excluded"][lang] = len(tests[lang])
        tmp["excluded_texts.txt.gz"] = output_dir / "excluded_texts.txt.gz.tmp"
        write_lines_gz(tmp["excluded_texts.txt.gz"], sorted(excluded_hashes))
        stats["excluded_hashes"] = len(excluded_hashes)
        for name, path in tmp.items():
            stats["files"][name] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
        too_big = [n for n, f in stats["files"].items() if f["bytes"] >= MAX_GZ_BYTES]
        if too_big:
            for path in tmp.values():
                path.unlink(missing_ok=True)
            raise CorpusInputError(f"{too_big}: over {MAX_GZ_BYTES:,d} bytes; lower MANPAGE_CHAR_CAPS")
        stats["archives"] = {p: {"file": a.name, "version": APT_PACKAGES[p][0], "sha256": APT_PACKAGES[p][1]}
                             for p, a in sorted(archives.items())}
        readme = output_dir / "README.md"
        old = readme.read_text(encoding="utf-8") if readme.exists() else None
        new_readme = replace_section(old, render_section(stats))
        for name, path in tmp.items():
            os.replace(path, output_dir / name)
        readme.write_text(new_readme, encoding="utf-8")
        return stats
    finally:
        if keep_work:
            log(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# README section
# --------------------------------------------------------------------------------------------------

SECTION_TITLE = "## Monolingual corpora (de, es, zh)"
README_TITLE = "# Real-language data (German, Spanish, Chinese)"


def replace_section(old: Optional[str], section: str) -> str:
    """The README with our section replaced (or appended); other sections are kept byte for byte."""
    if not old:
        return f"{README_TITLE}\n\n{section}"
    lines = old.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.rstrip("\n") == SECTION_TITLE), None)
    if start is None:
        sep = "" if old.endswith("\n\n") else ("\n" if old.endswith("\n") else "\n\n")
        return old + sep + section
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    tail = "".join(lines[end:])
    return "".join(lines[:start]) + section + ("\n" + tail if tail else "")


def _n(x: int) -> str:
    return f"{x:,d}"


def render_section(stats: dict) -> str:
    """Our README section: files, counts per language and source, cleaning, sources, licences,
    rebuild, archives. No timings, so that a rebuild reproduces it byte for byte."""
    out: List[str] = []
    add = out.append
    files = stats["files"]
    langs = stats["languages"]
    names = {"de": "German", "es": "Spanish", "zh": "Chinese"}
    add(SECTION_TITLE)
    add("")
    add("Generated by `examples/experiment/real/build_corpora.py` (do not edit by hand; rebuild). Target-language "
        "text for LM pretraining: one paragraph per line, `{\"text\": \"...\", \"source\": \"manpages\"}`, UTF-8 "
        "JSON Lines, gzip -9 (no file name, mtime 0). Lines are in a fixed pseudo-random order (sorted by the "
        "sha256 of a seed, the language and the text), so any contiguous slice is a random sample of all sources.")
    add("")
    add("| file | lines | words | characters | bytes (gzip) | sha256 |")
    add("|---|---:|---:|---:|---:|---|")
    for lang in LANGS:
        src = {k: v for k, v in langs[lang].items() if not k.startswith("_")}
        name = f"{lang}.jsonl.gz"
        add(f"| `{name}` | {_n(sum(v['paragraphs'] for v in src.values()))} | "
            f"{_n(sum(v['words'] for v in src.values()))} | {_n(sum(v['chars'] for v in src.values()))} | "
            f"{_n(files[name]['bytes'])} | `{files[name]['sha256']}` |")
    ex = "excluded_texts.txt.gz"
    add(f"| `{ex}` | {_n(stats['excluded_hashes'])} | | | {_n(files[ex]['bytes'])} | `{files[ex]['sha256']}` |")
    add("")
    add("Words are whitespace-separated tokens (`len(text.split())`; for Chinese, which is written without "
        "spaces, count characters instead); characters are Unicode code points (`len(text)`).")
    add("")
    for lang in LANGS:
        add(f"### {names[lang]} (`{lang}.jsonl.gz`)")
        add("")
        add("| source | text | package | paragraphs | words | characters |")
        add("|---|---|---|---:|---:|---:|")
        src = {k: v for k, v in langs[lang].items() if not k.startswith("_")}
        for s in SOURCE_ORDER:
            if s not in src:
                continue
            desc, pkgs, _ = SOURCES[s]
            v = src[s]
            note = ""
            if v["paragraphs"] != v["before_sampling"]:
                note = f" (seeded sample of {_n(v['before_sampling'])} clean paragraphs)"
            add(f"| `{s}` | {desc}{note} | {pkgs[lang]} | {_n(v['paragraphs'])} | {_n(v['words'])} | "
                f"{_n(v['chars'])} |")
        add(f"| **total** | | | **{_n(sum(v['paragraphs'] for v in src.values()))}** | "
            f"**{_n(sum(v['words'] for v in src.values()))}** | **{_n(sum(v['chars'] for v in src.values()))}** |")
        add("")
        dropped = langs[lang]["_dropped"]
        add("Dropped paragraphs (source:reason): " + ", ".join(f"{k} {_n(v)}" for k, v in dropped.items()) + ".")
        add("")
    add("### Cleaning")
    add("")
    add("- Man pages: roff stripped by the script's own reader: `.\\\"` comments, requests and macro "
        "definitions dropped; the words of font and mdoc macros (`.B`, `.IR`, `.Nm`, `.Xr` ...) kept; "
        "escapes (`\\fB`, `\\(em`, `\\[u00E4]`, `\\-` ...) replaced by their characters; no-fill blocks "
        "(`.nf`/`.fi`, `.EX`/`.EE`, literal `.Bd`), tables (`.TS`) and equations skipped as code; "
        "section headings and `.TP` tags become their own (short, dropped) paragraphs; `.so` link pages skipped; "
        "in the Chinese pages the HTML entities `&amp; &lt; &gt; &quot; &nbsp;` left by a conversion are decoded.")
    add("- Handbook, maint-guide: the text of each HTML block element (`p`, `li`, `td`, headings ...); "
        "`pre` (program listings, screens), `script`, `style` skipped. FAQ: the text rendering's blank-line "
        "separated blocks, lines joined, numbered headings and the table of contents dropped, URLs removed.")
    add("- Fortunes: entries separated by `%` lines, lines joined; the offensive `off/` files are not read.")
    add("- Every paragraph: Unicode NFC, non-breaking and zero-width spaces and soft hyphens removed, "
        "whitespace collapsed; for Chinese, spaces between two CJK characters removed. Kept when it has at "
        f"least {MIN_CHARS['de']} characters (de, es) or {MIN_CHARS['zh']} (zh); for de/es at least 60% letters, no "
        "CJK, at least one German/Spanish function word and not more English than German/Spanish function "
        f"words (untranslated text); for zh at least {MIN_IDEOGRAPHS} CJK ideographs making up at least "
        f"{MIN_IDEOGRAPH_SHARE:.0%} of the non-space characters (else untranslated ASCII text or code). "
        "A paragraph of the handbook, maint-guide or FAQ whose key equals the key of an "
        "English paragraph of the same document (en-US handbook, `maint-guide`, `debian-faq`) was left "
        "untranslated and is dropped. Keys are the text lower-cased with punctuation and spacing ignored.")
    add("- Exact duplicates (same key) are removed within each language, the first kept in the order "
        "handbook, maint-guide, FAQ, fortunes, man pages.")
    add(f"- Test sets kept out: every paragraph of Debian Reference 2.100 in the same language "
        f"(`debian-reference-de`, `-es`, `-zh-cn`; {_n(stats['excluded']['de'])} de, "
        f"{_n(stats['excluded']['es'])} es incl. verses, {_n(stats['excluded']['zh'])} zh texts of at least "
        f"{MIN_SENTENCE_CHARS['de']}/{MIN_SENTENCE_CHARS['zh']} characters) and every verse of the Reina-Valera "
        "1909 Bible (`sword-text-sparv`, for es). A corpus paragraph is dropped when its key, or the key of "
        f"one of its sentences of at least {MIN_SENTENCE_CHARS['de']} (zh: {MIN_SENTENCE_CHARS['zh']}) characters, "
        "equals the key of a test-set text or of one of its sentences. `excluded_texts.txt.gz` lists "
        "the 12-hex-digit sha256 prefix of the key of every test-set text, one per line, sorted "
        "(`build_corpora.text_hash`): the tests check that no corpus paragraph has one of them.")
    caps = ", ".join(f"{lang}: {_n(c)} characters" for lang, c in MANPAGE_CHAR_CAPS.items() if c)
    add(f"- Size: the man pages are sampled where a language would exceed about 2.5 MB of gzip ({caps}): "
        "paragraphs ranked by the sha256 of a seed, the language and the text, each taken while the total "
        "stays within the cap (a random sample of paragraphs, not of pages). Every other source is kept whole.")
    add("")
    add("### Sources and licences")
    add("")
    add("| source | licence |")
    add("|---|---|")
    for s in SOURCE_ORDER:
        add(f"| `{s}` | {SOURCES[s][2]} |")
    add("")
    add("Licences as stated in each package's `/usr/share/doc/<package>/copyright`; all are free and allow "
        "redistribution of modified copies. Each line keeps its `source`, so every paragraph's licence is known: "
        "the files are aggregates of separately licensed texts, not one relicensed work.")
    add("")
    add("### Rebuild")
    add("")
    add("```bash")
    add("python examples/experiment/real/build_corpora.py --output-dir examples/experiment/real/data "
        "[--cache-dir DIR]")
    add("```")
    add("")
    add("Needs Debian 12 (bookworm, main) with `apt-get download` and `dpkg-deb`, and Python 3.10+ (standard "
        "library only; nothing is installed). The archives are downloaded with `apt-get download NAME=VERSION` "
        "into a temporary directory (or `--cache-dir DIR`, reused offline later), checked against their pinned "
        "sha256 and unpacked with `dpkg-deb -x`. A rebuild writes the same bytes (checked by building twice); a "
        "different zlib could change the gzip stream but not the decompressed lines. Only this section of the "
        "README is rewritten.")
    add("")
    add("| package | version | archive sha256 |")
    add("|---|---|---|")
    for p, a in stats["archives"].items():
        add(f"| `{p}` | {a['version']} | `{a['sha256']}` |")
    add("")
    return "\n".join(out)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--output-dir", type=Path, default=Path(__file__).resolve().parent / "data")
    ap.add_argument("--cache-dir", type=Path, default=None, help="keep and reuse the downloaded archives here")
    ap.add_argument("--keep-work", action="store_true", help="keep the unpacked packages (for debugging)")
    args = ap.parse_args(argv)
    try:
        stats = build(args.output_dir, args.cache_dir, args.keep_work)
    except PreAlignError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for lang, per in stats["languages"].items():
        for s, v in per.items():
            if not s.startswith("_"):
                print(f"{lang} {s:12s} {v['paragraphs']:8,d} paragraphs {v['words']:10,d} words "
                      f"{v['chars']:11,d} chars (of {v['before_sampling']:,d})")
        print(f"{lang} dropped {per['_dropped']}")
    for name, f in stats["files"].items():
        print(f"{name}: {f['bytes']:,d} bytes sha256 {f['sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
