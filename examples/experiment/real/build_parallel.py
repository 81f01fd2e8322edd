#!/usr/bin/env python3
"""Build the parallel text for the real-languages experiment: verse-aligned English/Spanish Bible and
position-aligned Debian Reference paragraphs in English, German, Spanish and Chinese.

Usage (from the repository root, on a Debian 12 machine that can reach apt)::

    python examples/experiment/real/build_parallel.py --output-dir examples/experiment/real/data

Writes, each atomically and byte-for-byte reproducibly:

* ``bible_en_es.jsonl.gz``       ``{"key", "book", "group", "en", "es"}``, one verse a line
* ``debian_reference.jsonl.gz``  ``{"chapter", "para", "label", "en", "de", "es", "zh"}``, one paragraph a line
* ``README.parallel.md``         the data README's section on these files (sources, licences, counts, sha256)

Sources (versions pinned; the sha256 of every data file read from them too):

* ``sword-text-kjv`` (module engKJV2006eb, King James Version) and ``sword-text-sparv`` (spaRV1909eb,
  Reina-Valera 1909), exported with ``mod2imp`` from ``libsword-utils``. The binary and the libraries
  it needs beyond a base system (``libsword1.9.0``, ``libsword-common``, ``libclucene-core1v5``) are
  fetched with ``apt-get download`` and unpacked with ``dpkg-deb -x``; ``LD_LIBRARY_PATH`` points into
  them. Nothing is installed. (``libicu72`` and ``libcurl3-gnutls`` must be on the system, as they are
  on a standard Debian 12.)
* ``debian-reference-{en,de,es,zh-cn}`` 2.100: the HTML chapters ``ch01``-``ch12``.

Alignment. Both SWORD modules use KJV versification, but RV1909 numbers some chapters differently
(Numbers 13 starts one verse earlier, Job 39-40 are shifted, ...) and leaves the verses it lacks empty.
Both modules are tagged with Strong's numbers, which makes the alignment checkable: a verse is kept
when the Strong's numbers of its English and Spanish sides overlap (Jaccard >= 0.3) and overlap more
than with either neighbouring Spanish verse; a chapter with an empty verse on either side, or with more
than 10% of its verses failing that check, is dropped whole. Debian Reference paragraphs (``<p>``) are
aligned by position per chapter; a chapter is kept only when the four languages have the same count.
"""

from __future__ import annotations

import argparse
import gzip
import html
import html.parser
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

REPO = Path(__file__).resolve().parents[3]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from examples.experiment.packages import (  # noqa: E402
    PackageError,
    apt_download,
    log,
    sha256_bytes,
    sha256_file,
    unpack,
)
from examples.experiment.real import tasks  # noqa: E402
from examples.experiment.real.tasks import ParallelDataError  # noqa: E402

# --------------------------------------------------------------------------------------------------
# Pinned inputs
# --------------------------------------------------------------------------------------------------

APT_PACKAGES: Dict[str, str] = {
    "sword-text-kjv": "14.3-1",
    "sword-text-sparv": "2.60-1",
    "libsword-utils": "1.9.0+dfsg-4+b4",        # mod2imp (architecture-specific, like the next two)
    "libsword1.9.0": "1.9.0+dfsg-4+b4",
    "libclucene-core1v5": "2.3.3.4+dfsg-1.1",
    "libsword-common": "1.9.0+dfsg-4",
    "debian-reference-en": "2.100",
    "debian-reference-de": "2.100",
    "debian-reference-es": "2.100",
    "debian-reference-zh-cn": "2.100",
}
SWORD = "usr/share/sword"
MODULES = {"en": "engKJV2006eb", "es": "spaRV1909eb"}
DEBREF = "usr/share/debian-reference"
DEBREF_LANGS = {"en": "en", "de": "de", "es": "es", "zh": "zh-cn"}   # record field -> file suffix

# sha256 of every data file read, and of mod2imp's export of each module (the exports pin the binary's
# behaviour independently of its architecture). A mismatch stops the build unless --allow-mismatch.
INPUT_SHA256: Dict[str, str] = {
    "usr/share/sword/mods.d/engKJV2006eb.conf": "e464efbf31bc4784839bb66443eae979d1b3ecfdd6ef9a37e108e53fce694a14",
    "usr/share/sword/modules/texts/ztext/engKJV2006eb/nt.bzs":
        "e7f9bc653743217cdcdf95890a708f997a03af056161d84bb540efef79e4e638",
    "usr/share/sword/modules/texts/ztext/engKJV2006eb/nt.bzv":
        "9d1daab8fb6ef43b53642cdd3276c1fa95ecfde08901bbb349be6378d1e1b972",
    "usr/share/sword/modules/texts/ztext/engKJV2006eb/nt.bzz":
        "135b6e70af49372f3a82c5d9cc3c00278f38dbb2c12af74ea8d4b54c18d0cd56",
    "usr/share/sword/modules/texts/ztext/engKJV2006eb/ot.bzs":
        "0d518856e8c6ceae0ca58bef944ba9a2809b5d4489cf81900853ad4af227510b",
    "usr/share/sword/modules/texts/ztext/engKJV2006eb/ot.bzv":
        "b4fae54cb0b979b7f3f78fe6eaa94bad1f1d408eccb4a40410402b794b5c2f0f",
    "usr/share/sword/modules/texts/ztext/engKJV2006eb/ot.bzz":
        "69f7e4e9b42ecef2e212ea957a388fccbeed1e3e333a38cf52e1b4064c6ce373",
    "usr/share/sword/mods.d/spaRV1909eb.conf": "532faab4404b9cac206084e57c006daea0f947562e7016733466b5a7a5fb39cb",
    "usr/share/sword/modules/texts/ztext/spaRV1909eb/nt.bzs":
        "b88dda1e9ab50d158262ab141af7823269acb19c581621683298be5b6e154d58",
    "usr/share/sword/modules/texts/ztext/spaRV1909eb/nt.bzv":
        "a9583ba1b4c66dfdd8bfb6a0b1833bdaa02f9e2cc3465c5a802cf19cbc2f2533",
    "usr/share/sword/modules/texts/ztext/spaRV1909eb/nt.bzz":
        "7baf6b1e798b193315fed89d0e84e8e1a033d035316f66c78d456f5fb8c87e20",
    "usr/share/sword/modules/texts/ztext/spaRV1909eb/ot.bzs":
        "0e39106ae15a29cef56feac683f8482be380536a1c456e006867f9fa94c0338e",
    "usr/share/sword/modules/texts/ztext/spaRV1909eb/ot.bzv":
        "0f23b1ebff5ecdd352a64feda5bb047cba27ce3624fa7b00717f763835d96e20",
    "usr/share/sword/modules/texts/ztext/spaRV1909eb/ot.bzz":
        "daae868e179e6cc884ad2c9429a9dfaf9745d61caa6dbb9da2a8b24ec3c01337",
    "usr/share/debian-reference/ch01.en.html": "f3b4670e5612a20772c58a6ab3ce98e35d30751e3afa742ed18a75ac96e405ed",
    "usr/share/debian-reference/ch01.de.html": "e66ed80eb88b52237a9553c701ac1fcd7de17801ab91254ab407795b92ae53d2",
    "usr/share/debian-reference/ch01.es.html": "48bc9bd3da6a7289e61d325445b01312c6eb70ad37c84f717f64b8ecc7f80f79",
    "usr/share/debian-reference/ch01.zh-cn.html": "3022b60dba788a3a27165c927d8aae14dd54676ddf6d4cf53342727a49d8dc58",
    "usr/share/debian-reference/ch02.en.html": "5d2a484e51e988116576f9518630593ca65b48d9e9d9ede30af62ab4bc05f6ee",
    "usr/share/debian-reference/ch02.de.html": "e987035c7ce845b4bc13c5200e4e0776f791b2556430984bd358cac4bd074918",
    "usr/share/debian-reference/ch02.es.html": "46ca5a4d3559ccd7bc90ba72cd6bc6c3a1d6910e0a1cbe09bf32482a87ce0768",
    "usr/share/debian-reference/ch02.zh-cn.html": "33d93626bed27476d7d5938d12680a7a34b4c73161c9070b1c2a1791d2026db3",
    "usr/share/debian-reference/ch03.en.html": "d51b80e2a3050a2d740ad1012631b7fa8035e5b87da7f1e22b4f76b0ff173951",
    "usr/share/debian-reference/ch03.de.html": "ef12e4c6b436142e1f254bfd00dc53c14ce6b1b7cd828bfe7b0956c8d4466b01",
    "usr/share/debian-reference/ch03.es.html": "5244978e8fa87b925702e4beed292fb00a9808e1eda470d6b6b5cc018e6a4a53",
    "usr/share/debian-reference/ch03.zh-cn.html": "b702ae40793a4b3483defea030fed3b9d3d9ab686e487917e1f69ef892d3b5cc",
    "usr/share/debian-reference/ch04.en.html": "fee37e8caeeb3df571d6a469d56c7d493ca1e63ebb014adc2506f01ded356c74",
    "usr/share/debian-reference/ch04.de.html": "f8293ea4674060e21eab5608cf51510873d466932b04f5aabc8337d7c195ede2",
    "usr/share/debian-reference/ch04.es.html": "850c0443a700a4c1148fbf9e5775839c6f43ffedcfaa8f053a502dcd907f3822",
    "usr/share/debian-reference/ch04.zh-cn.html": "756c443abebe0d137e98af1d7c6713d4e6aae526596de299f1a5fe56350d9f11",
    "usr/share/debian-reference/ch05.en.html": "6a2ad647dc70330ee872256b21eb93870a838946a6c4867771c98a5d42646216",
    "usr/share/debian-reference/ch05.de.html": "dc4bf94ee335a249cd81f1e37cb694d21d3976b76cd8e8c34af1fc8ba695654b",
    "usr/share/debian-reference/ch05.es.html": "1d75599894a60e5e8aa9e8511a1212895d1f2e3fc8f2f8fa91f79640205490bf",
    "usr/share/debian-reference/ch05.zh-cn.html": "9c96d4ed175e6ecf0f03675ee30643b7265b6e5fb54f9acc1579527c354d1261",
    "usr/share/debian-reference/ch06.en.html": "6523ca29b01d2af192b607672c5ee35112d3a50a5cd8dbc7ec01468e0f1cad84",
    "usr/share/debian-reference/ch06.de.html": "476c55e85c4b66d589ccdfac0dcce2b32161a44ca51554ab2bddc0bf1328f4b7",
    "usr/share/debian-reference/ch06.es.html": "a9deb32a1a6ca5198b07a24e1555aba44c3e930e4d6fa08d001fb5ac171b5bd1",
    "usr/share/debian-reference/ch06.zh-cn.html": "acdb0885f276bda6e06e9412b48dca81f147488a1d5c8bd63cefcfe403ed598a",
    "usr/share/debian-reference/ch07.en.html": "a0781d4a31fb5b3a20f0df2dd98fd3f26bb89269a7e54147d1b3b16a92be2550",
    "usr/share/debian-reference/ch07.de.html": "de8e00cf57f67dced578f91d5288a160c8952ebce16791849cf22abaae8167bc",
    "usr/share/debian-reference/ch07.es.html": "8be355f4a06443251a6d5b9c4bb2e5d72d64ba2e7514f4cb59a01fcd3110c837",
    "usr/share/debian-reference/ch07.zh-cn.html": "62d87a85c9c11ffeddaf9bbcadaa4cdaadc0f215af58660319db69eac7cd67f6",
    "usr/share/debian-reference/ch08.en.html": "c0ee6f9782d9e559d349a445341cb8a612a2e07f63e0987bf18c6748ef1cfe40",
    "usr/share/debian-reference/ch08.de.html": "35aee2e3fb760693510d501430193b64523e9106c66b7be799c16e3a838a3012",
    "usr/share/debian-reference/ch08.es.html": "06ac43b9affbb9f84bc5dc49510e6541f03c5d610953f1ab2ed3fb8687a33746",
    "usr/share/debian-reference/ch08.zh-cn.html": "fb0068f97c896f495d2559324a55da7cd66de583e11912108bc6e742b8900907",
    "usr/share/debian-reference/ch09.en.html": "2c7deef1a086b1b98fa0becb65c4b96b23d1faa0e366705ee0219a25338d0b91",
    "usr/share/debian-reference/ch09.de.html": "dad4c9126400e67c8b137211878173747e4b1a96e7d7b54b74d7ea4515b2edb3",
    "usr/share/debian-reference/ch09.es.html": "6cf754d2ec3e090e93eb59f923f09494013aa7b711e726b02dcdf10fcf6a646f",
    "usr/share/debian-reference/ch09.zh-cn.html": "f498518d4c7e19533147fbbb68921e790f105946434c9cfff233a6f48d1d4317",
    "usr/share/debian-reference/ch10.en.html": "151282ae22e01759169f42c1eb31b36782ced9e094befb191b275ba25991af12",
    "usr/share/debian-reference/ch10.de.html": "c4e2c09ca9f0f50cd95277b557db3f19c1398770df9fbc7a632b60df61913167",
    "usr/share/debian-reference/ch10.es.html": "e2bb079451017cb4e379a98a46eb81ed4478dc01522da12799a71c51f16a7d1b",
    "usr/share/debian-reference/ch10.zh-cn.html": "ff350048df1d9fe5b2b21a0f5c63a4daa484aabd24823aa606d94528077d0215",
    "usr/share/debian-reference/ch11.en.html": "b6049e65595f1b57cdd6cf9c21986360d5dad2604c729b13ae5c9a23dacdf508",
    "usr/share/debian-reference/ch11.de.html": "73dc43fab948f32f8155498dbe731bf84cefcf77f96ff68e8ea9c782ae311a69",
    "usr/share/debian-reference/ch11.es.html": "03b39fd237113690178ad983cae2d9cdbac0c2d1432f47931a5dadfe965f8ad7",
    "usr/share/debian-reference/ch11.zh-cn.html": "cf10a6e6abd8a67f69b02954ebef80857cd8e5d292f58a49ec17d84787dfcb1b",
    "usr/share/debian-reference/ch12.en.html": "0dc16a9377d90787807460fa610942621dd32df43d1d28204ac18da2d08a1483",
    "usr/share/debian-reference/ch12.de.html": "efd8fb46dc03f6e4efdf2526bd97ebb91f26843be703fa1fe773758d8f7f03f7",
    "usr/share/debian-reference/ch12.es.html": "b88a2806b58bb4bd19908482db22fbe0ce4677796311e25d520b2b69733800d6",
    "usr/share/debian-reference/ch12.zh-cn.html": "6fba5c5790a1971bdedf470286afb87ada3975977da2ab8783ef2b196f2f8c74",
}
IMP_SHA256: Dict[str, str] = {
    "engKJV2006eb": "71537a588dada6dc4fd353705d97b8c97e830d7b9e141b39303dafe5db6b6c6f",
    "spaRV1909eb": "1e97726923b1b58a2ce5122c7a7b664cf8664cd4924928ae219f3f96576ce943",
}

BIBLE_FILE = "bible_en_es.jsonl.gz"
DEBREF_FILE = "debian_reference.jsonl.gz"
README_FILE = "README.parallel.md"
MAX_GZ_BYTES = 3_000_000

MIN_STRONGS_JACCARD = 0.3
MAX_CHAPTER_FAIL_SHARE = 0.10
MIN_PARAGRAPH_CHARS = 60
MIN_LETTER_SHARE = 0.5
MIN_PROSE_WORDS = 5


def input_files(root: Path) -> List[str]:
    """The data files the build reads, relative to the unpacked root."""
    files = []
    for module in MODULES.values():
        files.append(f"{SWORD}/mods.d/{module}.conf")
        files += sorted(str(p.relative_to(root)) for p in (root / SWORD / "modules/texts/ztext" / module).iterdir())
    for chapter in tasks.DEBIAN_REFERENCE_CHAPTERS:
        files += [f"{DEBREF}/{chapter}.{suffix}.html" for suffix in DEBREF_LANGS.values()]
    return files


def verify(found: Dict[str, str], pinned: Dict[str, str], what: str, allow_mismatch: bool) -> None:
    bad = [f"{k}: sha256 {found.get(k, 'missing')}, pinned {v}" for k, v in pinned.items() if found.get(k) != v]
    bad += [f"{k}: not pinned" for k in found if k not in pinned]
    if bad:
        msg = f"{what} differ from the pinned ones:\n  " + "\n  ".join(bad)
        if not allow_mismatch:
            raise SystemExit(msg + "\n(pass --allow-mismatch to build anyway; outputs may differ)")
        log("WARNING: " + msg)


def mod2imp(root: Path, module: str) -> str:
    """The module exported by the unpacked ``mod2imp`` as raw OSIS ``$$$key`` blocks."""
    sword = root / SWORD
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root), "LC_ALL": "C.UTF-8",
           "SWORD_PATH": str(sword), "LD_LIBRARY_PATH": str(root / "usr/lib/x86_64-linux-gnu")}
    libdirs = sorted({str(p.parent) for p in (root / "usr/lib").rglob("libsword*.so*")})
    if libdirs:
        env["LD_LIBRARY_PATH"] = ":".join(libdirs)
    # libsword looks for mods.d in the current directory first, so no system module can interfere.
    log(f"+ mod2imp {module}")
    res = subprocess.run([str(root / "usr/bin/mod2imp"), module], cwd=sword, capture_output=True, env=env)
    if res.returncode != 0 or not res.stdout:
        raise SystemExit(f"mod2imp {module} failed (exit {res.returncode}):\n"
                         + res.stderr.decode("utf-8", "replace")[-2000:])
    return res.stdout.decode("utf-8")


# --------------------------------------------------------------------------------------------------
# Bible
# --------------------------------------------------------------------------------------------------

_KEY = re.compile(r"(.+) (\d+):(\d+)")


def parse_imp(text: str, source: str) -> Dict[str, str]:
    """``{key: raw OSIS}`` of the verses (chapter and verse >= 1) of a ``mod2imp`` export, in order."""
    out: Dict[str, str] = {}
    key, start, buf = None, 0, []

    def emit() -> None:
        if key is None or key.startswith("["):          # module / testament headings
            return
        m = _KEY.fullmatch(key)
        if not m:
            raise ParallelDataError(f"{source}:{start}: malformed verse key {key!r}")
        if m.group(1) not in tasks.BOOK_GROUP:
            raise ParallelDataError(f"{source}:{start}: unknown book {m.group(1)!r}")
        if int(m.group(2)) >= 1 and int(m.group(3)) >= 1:
            if key in out:
                raise ParallelDataError(f"{source}:{start}: verse {key!r} appears twice")
            out[key] = "".join(buf)

    for lineno, line in enumerate(text.splitlines(keepends=True), 1):
        if line.startswith("$$$"):
            emit()
            key, start, buf = line[3:].strip(), lineno, []
        else:
            buf.append(line)
    emit()
    return out


def osis_text(raw: str) -> str:
    """Plain text of a verse: notes and editorial titles dropped (canonical psalm titles kept, as the
    Spanish text carries them too), tags removed, entities decoded, paragraph signs dropped."""
    x = re.sub(r"<note\b.*?</note>", " ", raw, flags=re.S)
    x = re.sub(r'<title\b(?![^>]*canonical="true")[^>]*>.*?</title>', " ", x, flags=re.S)
    x = html.unescape(re.sub(r"<[^>]+>", " ", x)).replace("\u00b6", " ")
    x = " ".join(x.split())
    x = re.sub(r"\s+([,.;:!?\u2019\u201d)\]])", r"\1", x)
    return re.sub(r"([(\[\u00bf\u00a1])\s+", r"\1", x)


def strongs(raw: str) -> Set[str]:
    x = re.sub(r"<note\b.*?</note>", " ", raw, flags=re.S)
    return {m[0] + m[1:].lstrip("0") for m in re.findall(r"strong:([HG]\d+)", x)}


def _jaccard(a: Set[str], b: Set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def align_bible(en_raw: Dict[str, str], es_raw: Dict[str, str]) -> Tuple[List[dict], dict]:
    """The verse records and the alignment statistics (see the module docstring)."""
    if list(en_raw) != list(es_raw):
        raise ParallelDataError("the KJV and RV1909 exports have different verse keys (not KJV versification?)")
    keys = list(en_raw)
    en = {k: osis_text(v) for k, v in en_raw.items()}
    es = {k: osis_text(v) for k, v in es_raw.items()}
    s_en = {k: strongs(v) for k, v in en_raw.items()}
    s_es = {k: strongs(v) for k, v in es_raw.items()}
    failed = set()
    for i, k in enumerate(keys):
        own = _jaccard(s_en[k], s_es[k])
        neighbours = [_jaccard(s_en[k], s_es[keys[j]]) for j in (i - 1, i + 1) if 0 <= j < len(keys)]
        if own < MIN_STRONGS_JACCARD or own <= max(neighbours):
            failed.add(k)
    chapters: Dict[str, List[str]] = defaultdict(list)
    for k in keys:
        chapters[k.rsplit(":", 1)[0]].append(k)
    dropped_chapters = sorted(
        (c for c, ks in chapters.items()
         if any(not en[k] or not es[k] for k in ks) or sum(k in failed for k in ks) > MAX_CHAPTER_FAIL_SHARE * len(ks)),
        key=lambda c: keys.index(chapters[c][0]))
    dropped = {k for c in dropped_chapters for k in chapters[c]}
    records = []
    for k in keys:
        if k in dropped or k in failed:
            continue
        book = _KEY.fullmatch(k).group(1)
        records.append({"key": k, "book": book, "group": tasks.BOOK_GROUP[book], "en": en[k], "es": es[k]})
    stats = {"verses": len(keys), "dropped_chapters": dropped_chapters,
             "dropped_in_chapters": len(dropped), "dropped_verses": len(failed - dropped)}
    return records, stats


# --------------------------------------------------------------------------------------------------
# Debian Reference
# --------------------------------------------------------------------------------------------------

class _Paragraphs(html.parser.HTMLParser):
    """The text of every ``<p>`` element, in order; ``(class attribute, text)``."""

    SKIP = ("pre", "script", "style")

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: List[Tuple[Optional[str], str]] = []
        self._buf: Optional[List[str]] = None
        self._class: Optional[str] = None
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self._skip += 1
        elif tag == "p":
            self._buf, self._class = [], dict(attrs).get("class")

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag == "p" and self._buf is not None:
            self.out.append((self._class, " ".join("".join(self._buf).split())))
            self._buf = None

    def handle_data(self, data):
        if self._buf is not None and not self._skip:
            self._buf.append(data)


def html_paragraphs(path: Path) -> List[Tuple[Optional[str], str]]:
    parser = _Paragraphs()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser.out


_PLAIN_WORD = re.compile(r"[A-Za-z][A-Za-z'\u2019-]*[.,;:!?]?")


def is_prose(text: str) -> bool:
    """At least MIN_PARAGRAPH_CHARS characters, half of them letters, and MIN_PROSE_WORDS plain words
    (a file path or a command line has few)."""
    return (len(text) >= MIN_PARAGRAPH_CHARS and sum(c.isalpha() for c in text) >= MIN_LETTER_SHARE * len(text)
            and sum(bool(_PLAIN_WORD.fullmatch(t)) for t in text.split()) >= MIN_PROSE_WORDS)


def translated(text: str, en: str, lang: str) -> Optional[str]:
    """The target text, or None when it is empty, identical to the English, or (Chinese) has no Han
    character, i.e. was left in English apart from punctuation."""
    if not text or text == en or (lang == "zh" and not re.search(r"[\u4e00-\u9fff]", text)):
        return None
    return text


def clean_paragraph(text: str) -> str:
    return re.sub(r"^\[\d+\]\s*", "", text)       # footnote number


def align_debian_reference(root: Path) -> Tuple[List[dict], dict]:
    records, stats, seen = [], {"chapters": {}, "skipped_chapters": []}, set()
    for chapter, label in tasks.DEBIAN_REFERENCE_CHAPTERS.items():
        paras = {f: html_paragraphs(root / DEBREF / f"{chapter}.{s}.html") for f, s in DEBREF_LANGS.items()}
        counts = {f: len(p) for f, p in paras.items()}
        if len(set(counts.values())) != 1:
            stats["skipped_chapters"].append((chapter, counts))
            continue
        n = 0
        for i in range(counts["en"]):
            cls, en = paras["en"][i]
            en = clean_paragraph(en)
            if cls == "title" or not is_prose(en) or tasks.text_key(en) in seen:
                continue
            rec = {"chapter": chapter, "para": i, "label": label, "en": en}
            for f in tasks.TARGET_LANGUAGES:
                rec[f] = translated(clean_paragraph(paras[f][i][1]), en, f)
            if all(rec[f] is None for f in tasks.TARGET_LANGUAGES):
                continue
            seen.add(tasks.text_key(en))
            records.append(rec)
            n += 1
        stats["chapters"][chapter] = {"p": counts["en"], "kept": n}
    return records, stats


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------

def jsonl_gz_bytes(records: Sequence[dict]) -> bytes:
    """Deterministic gzip: no file name in the header, mtime 0, level 9."""
    raw = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz:
        for rec in records:
            gz.write((json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8"))
    return raw.getvalue()


def _n(x: int) -> str:
    return f"{x:,}"


def content_stats(bible: Sequence[dict], debref: Sequence[dict]) -> dict:
    """Counts the README states and the tests recompute from the committed files."""
    bible_groups = {g: {"books": len({r["book"] for r in bible if r["group"] == g}),
                        "verses": sum(r["group"] == g for r in bible),
                        "en_words": sum(len(r["en"].split()) for r in bible if r["group"] == g),
                        "es_words": sum(len(r["es"].split()) for r in bible if r["group"] == g)}
                    for g in tasks.BIBLE_GROUPS}
    debref_labels = {}
    for chapter, label in tasks.DEBIAN_REFERENCE_CHAPTERS.items():
        rs = [r for r in debref if r["chapter"] == chapter]
        debref_labels[label] = {"chapter": chapter, "paragraphs": len(rs),
                                **{f: sum(r[f] is not None for r in rs) for f in tasks.TARGET_LANGUAGES}}
    btask = tasks.bible_transfer_task(bible)
    dtask = tasks.debian_reference_task(debref)
    return {
        "bible_groups": bible_groups,
        "debref_labels": debref_labels,
        "bible_split": {"train_books": btask.train_units, "test_books": btask.test_units,
                        "train": len(btask.train), "test": len(btask.test["es"]), "dropped": btask.dropped_test},
        "debref_split": {"train_blocks": len(dtask.train_units), "test_blocks": len(dtask.test_units),
                         "train": len(dtask.train), "test": {k: len(v) for k, v in dtask.test.items()},
                         "dropped": dtask.dropped_test},
        "retrieval": {"bible": len(tasks.bible_retrieval_pairs(bible)),
                      **{k: len(v) for k, v in tasks.debian_reference_retrieval_pairs(debref).items()}},
    }


def render_readme(stats: dict) -> str:
    """The section of the data README about these files (merged into README.md by hand)."""
    L: List[str] = []
    add = L.append
    add("## Parallel text and labelled tasks")
    add("")
    add("Made by `examples/experiment/real/build_parallel.py`; the splits and retrieval sets are computed from "
        "these files by `examples/experiment/real/tasks.py` (seeded hashes, no random state).")
    add("")
    add("| file | lines | bytes (gzip) | sha256 |")
    add("|---|---:|---:|---|")
    for name in (BIBLE_FILE, DEBREF_FILE):
        f = stats["files"][name]
        add(f"| `{name}` | {_n(f['lines'])} | {_n(f['bytes'])} | `{f['sha256']}` |")
    add("")
    add("Both are UTF-8 JSON lines, gzip-compressed (level 9, no file name, mtime 0).")
    add("")
    add(f"### `{BIBLE_FILE}`: verse-aligned King James Version and Reina-Valera 1909")
    add("")
    add('`{"key": "Genesis 1:1", "book": "Genesis", "group": "law", "en": "In the beginning God created the heaven '
        'and the earth.", "es": "EN el principio crió Dios los cielos y la tierra."}`, in canonical order. Book names '
        'are the SWORD modules\' ("I Samuel", "Revelation of John").')
    add("")
    a = stats["bible_alignment"]
    add(f"Both modules use KJV versification ({_n(a['verses'])} verse keys), but RV1909 numbers some chapters "
        "differently and leaves the verses it lacks empty. Both are tagged with Strong's numbers, so the alignment "
        f"is checked: a verse is kept when the Strong's numbers of its two sides overlap (Jaccard >= "
        f"{MIN_STRONGS_JACCARD}) and overlap more than with either neighbouring Spanish verse. A chapter with an "
        f"empty verse, or with more than {int(MAX_CHAPTER_FAIL_SHARE * 100)}% of its verses failing the check, is "
        f"dropped whole: {len(a['dropped_chapters'])} chapters ({_n(a['dropped_in_chapters'])} verses: "
        f"{', '.join(a['dropped_chapters'])}); {_n(a['dropped_verses'])} more single verses fail the check. "
        "Text: OSIS notes and editorial headings removed (canonical psalm titles kept: the Spanish verses carry "
        "them too), KJV paragraph signs dropped, whitespace collapsed. RV1909 keeps its 1909 orthography "
        "(`á` as a preposition, `fué`).")
    add("")
    add("| group | books | verses | English words | Spanish words |")
    add("|---|---:|---:|---:|---:|")
    tot = Counter()
    for g, s in stats["bible_groups"].items():
        add(f"| `{g}` | {s['books']} | {_n(s['verses'])} | {_n(s['en_words'])} | {_n(s['es_words'])} |")
        tot.update(s)
    add(f"| **total** | **{tot['books']}** | **{_n(tot['verses'])}** | **{_n(tot['en_words'])}** | "
        f"**{_n(tot['es_words'])}** |")
    add("")
    add("Groups: law = Genesis-Deuteronomy, history = Joshua-Esther, wisdom = Job-Song of Solomon, prophets = "
        "Isaiah-Malachi, gospels_acts = Matthew-Acts, epistles_revelation = Romans-Revelation.")
    add("")
    add(f"### `{DEBREF_FILE}`: Debian Reference paragraphs in four languages")
    add("")
    add('`{"chapter": "ch02", "para": 64, "label": "package_management", "en": ..., "de": ..., "es": ..., '
        '"zh": ...}`: `para` is the position of the `<p>` element in the chapter\'s HTML (the same in all four '
        "languages; all 12 chapters have equal counts), `label` the chapter topic. Kept: prose paragraphs (not "
        f"table titles) of at least {MIN_PARAGRAPH_CHARS} characters, at least half letters and at least "
        f"{MIN_PROSE_WORDS} plain words (no file paths or command lines), English text not "
        "seen before (first occurrence kept), leading footnote numbers removed. A target is `null` when it is "
        "identical to the English (left untranslated), or for Chinese when it has no Han character (a title left in "
        "English); a paragraph with no translation at all is dropped.")
    add("")
    add("| label | chapter | paragraphs | de | es | zh |")
    add("|---|---|---:|---:|---:|---:|")
    tot = Counter()
    for label, s in stats["debref_labels"].items():
        add(f"| `{label}` | {s['chapter']} | {_n(s['paragraphs'])} | {_n(s['de'])} | {_n(s['es'])} | {_n(s['zh'])} |")
        tot.update({k: v for k, v in s.items() if k != "chapter"})
    add(f"| **total** | | **{_n(tot['paragraphs'])}** | **{_n(tot['de'])}** | **{_n(tot['es'])}** | "
        f"**{_n(tot['zh'])}** |")
    add("")
    add("### Tasks and splits (`examples/experiment/real/tasks.py`)")
    add("")
    b, d, r = stats["bible_split"], stats["debref_split"], stats["retrieval"]
    add(f"- **Bible book groups** (`bible_transfer_task`), 6 classes, split **by book**: within each group, books "
        f"in a seeded order go to test when that brings the test share of the group's verses closer to "
        f"{int(tasks.BIBLE_TEST_FRACTION * 100)}% (at least one book per group on each side). "
        f"Test books: {', '.join(b['test_books'])}. "
        f"Fine-tune on the {_n(b['train'])} English verses of the train books; test on the {_n(b['test'])} verses "
        f"of the test books in English (in-language) and Spanish (zero-shot). {_n(b['dropped'])} test verses "
        "whose English or Spanish text also occurs in a train book are left out.")
    add(f"- **Debian Reference topics** (`debian_reference_task`), 12 classes, split by **blocks of "
        f"{tasks.DEBIAN_REFERENCE_BLOCK} paragraph positions** within each chapter ({d['test_blocks']} test "
        f"blocks, {d['train_blocks']} train blocks; at least one of each per chapter), so an aligned paragraph is "
        f"never on both sides. Train on {_n(d['train'])} English paragraphs; test on "
        + ", ".join(f"{_n(v)} {k}" for k, v in d["test"].items())
        + f" paragraphs. {_n(d['dropped'])} test paragraphs equal to a train text are left out.")
    add(f"- **Sentence retrieval** from the test side only, every text unique within a set: "
        f"`bible_retrieval_pairs` gives {_n(r['bible'])} EN-ES verse pairs (a seeded sample); "
        "`debian_reference_retrieval_pairs` gives "
        + ", ".join(f"{_n(r[k])} EN-{k.upper()}" for k in tasks.TARGET_LANGUAGES) + " paragraph pairs.")
    add("")
    add("### Sources and licences")
    add("")
    add("| package | version | content | licence |")
    add("|---|---|---|---|")
    add("| `sword-text-kjv` | 14.3-1 | SWORD module engKJV2006eb, King James Version (1769 text) | public domain "
        "(`DistributionLicense=Public Domain`; the module notes that Crown letters patent restrict printing it "
        "in the UK only) |")
    add("| `sword-text-sparv` | 2.60-1 | SWORD module spaRV1909eb, Reina-Valera 1909 | public domain "
        "(`DistributionLicense=Public Domain`) |")
    add("| `debian-reference-{en,de,es,zh-cn}` | 2.100 | Osamu Aoki, *Debian Reference*, and its translations | "
        "GPL-2+ (`/usr/share/doc/debian-reference-en/copyright`, Copyright 2007-2013 Osamu Aoki); the "
        "translations under the same terms |")
    add("| `libsword-utils`, `libsword1.9.0`, `libsword-common`, `libclucene-core1v5` | see the script | "
        "`mod2imp` and its libraries, used only to export the modules | GPL-2 / LGPL-2.1 or Apache-2.0 |")
    add("")
    add("`debian_reference.jsonl.gz` is a derived work of Debian Reference and is distributed under the GPL-2+.")
    add("")
    add("### Rebuild")
    add("")
    add("```bash")
    add("python examples/experiment/real/build_parallel.py --output-dir examples/experiment/real/data "
        "--cache-dir /tmp/parallel/cache")
    add("```")
    add("")
    add("Needs Debian 12 (bookworm, main) with `apt-get` and `dpkg-deb`, `libicu72` and `libcurl3-gnutls` "
        "(standard on Debian 12), and Python 3.10+. The packages are fetched with `apt-get download NAME=VERSION` "
        "and unpacked with `dpkg-deb -x` into a temporary directory; nothing is installed. `mod2imp` runs from "
        "there with `LD_LIBRARY_PATH` pointing at the unpacked libraries. Every file read, and each module's "
        "`mod2imp` export, is checked against a pinned sha256 (`INPUT_SHA256`, `IMP_SHA256` in the script). A "
        "rebuild gives the same bytes (checked by building twice).")
    add("")
    add("| archive | sha256 |")
    add("|---|---|")
    for name, sha in sorted(stats["archives"].items()):
        add(f"| `{name}` | `{sha}` |")
    return "\n".join(L) + "\n"


def build(output_dir: Path, cache_dir: Optional[Path], allow_mismatch: bool, print_pins: bool) -> dict:
    output_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="real_languages_parallel."))
    try:
        archives = apt_download(cache_dir or work / "archives", APT_PACKAGES)
        root = work / "root"
        unpack(archives, root)
        found = {rel: sha256_file(root / rel) for rel in input_files(root)}
        exports = {lang: mod2imp(root, module) for lang, module in MODULES.items()}
        imp_found = {MODULES[lang]: sha256_bytes(text.encode("utf-8")) for lang, text in exports.items()}
        if print_pins:
            print("INPUT_SHA256 = " + json.dumps(found, indent=4))
            print("IMP_SHA256 = " + json.dumps(imp_found, indent=4))
        verify(found, INPUT_SHA256, "input files", allow_mismatch)
        verify(imp_found, IMP_SHA256, "mod2imp exports", allow_mismatch)

        bible, alignment = align_bible(*(parse_imp(exports[lang], f"mod2imp {MODULES[lang]}") for lang in ("en", "es")))
        debref, debref_stats = align_debian_reference(root)
        if debref_stats["skipped_chapters"]:
            raise SystemExit("Debian Reference chapters with unequal paragraph counts: "
                             f"{debref_stats['skipped_chapters']}")
        # The records must pass the loaders' own validation.
        for name, records, check in ((BIBLE_FILE, bible, tasks.validate_bible_record),
                                     (DEBREF_FILE, debref, tasks.validate_debian_reference_record)):
            for i, rec in enumerate(records, 1):
                check(rec, Path(name), i)

        blobs = {BIBLE_FILE: jsonl_gz_bytes(bible), DEBREF_FILE: jsonl_gz_bytes(debref)}
        for name, blob in blobs.items():
            if len(blob) >= MAX_GZ_BYTES:
                raise SystemExit(f"{name}: {len(blob)} bytes gzipped, over the {MAX_GZ_BYTES} limit")
        stats = {
            **content_stats(bible, debref),
            "bible_alignment": alignment,
            "files": {name: {"lines": n, "bytes": len(blobs[name]), "sha256": sha256_bytes(blobs[name])}
                      for name, n in ((BIBLE_FILE, len(bible)), (DEBREF_FILE, len(debref)))},
            "archives": {p.name: sha256_file(p) for p in archives.values()},
        }
        outputs = {**blobs, README_FILE: render_readme(stats).encode("utf-8")}
        for name, blob in outputs.items():
            tmp = output_dir / (name + ".tmp")
            tmp.write_bytes(blob)
            os.replace(tmp, output_dir / name)
        return stats
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: Optional[Sequence[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--output-dir", type=Path, default=Path(__file__).resolve().parent / "data")
    ap.add_argument("--cache-dir", type=Path, default=None,
                    help="keep the downloaded .deb files here and reuse them (default: a temporary directory)")
    ap.add_argument("--allow-mismatch", action="store_true", help="build even if an input's sha256 differs")
    ap.add_argument("--print-pins", action="store_true", help="print the sha256 of every input (to update the pins)")
    args = ap.parse_args(argv)
    try:
        stats = build(args.output_dir, args.cache_dir, args.allow_mismatch, args.print_pins)
    except (ParallelDataError, PackageError) as exc:
        raise SystemExit(f"error: {exc}") from None
    for name, f in stats["files"].items():
        log(f"{name}: {f['lines']} lines, {f['bytes']} bytes, sha256 {f['sha256']}")


if __name__ == "__main__":
    main()
