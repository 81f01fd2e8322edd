"""Checks of the committed German, Spanish and Chinese corpora (no network, no rebuilding), and of the
text-cleaning functions of ``examples/experiment/real/build_corpora.py`` on hand-made fixtures.

``examples/experiment/real/data/`` holds ``{de,es,zh}.jsonl.gz`` (one paragraph per line with its source),
``excluded_texts.txt.gz`` (hashes of the test-set texts kept out of them) and the README section
"## Monolingual corpora (de, es, zh)" that documents them. These tests read the committed bytes and check
them against each other, against the README's numbers and against the build's own filters.
"""

import gzip
import hashlib
import json
import re
import struct
import zlib
from collections import defaultdict
from pathlib import Path

import pytest

from examples.experiment.real import build_corpora as bc
from megatron_prealign.errors import PreAlignError

DATA = Path(__file__).resolve().parents[2] / "examples" / "experiment" / "real" / "data"
README = DATA / "README.md"
EXCLUDED = DATA / "excluded_texts.txt.gz"
LANG_SOURCES = {
    "de": {"handbook", "maint-guide", "faq", "fortunes", "manpages"},
    "es": {"handbook", "maint-guide", "fortunes", "manpages"},
    "zh": {"handbook", "maint-guide", "faq", "manpages"},
}


_HTML_TAG = re.compile(r"</?(?:p|div|span|a|li|ul|ol|td|tr|th|table|em|strong|code|pre|br|h[1-6]|html|body)"
                       r"(?:\s[^>]*)?/?>|&(?:amp|lt|gt|quot|nbsp);")
_ROFF = re.compile(r"\\f[BIRP]|\\\(\w\w|^\.[A-Z]{2}\b")


def _int(cell):
    return int(cell.strip().strip("*").replace(",", ""))


def _section(text):
    """Our section of the shared README: from its title to the next level-2 heading."""
    lines = text.splitlines()
    start = lines.index(bc.SECTION_TITLE)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start:end]


def _table_rows(lines, header_start, after=None):
    """Cells of the first markdown table whose header starts with ``header_start`` (after the line
    ``after``, when given)."""
    begin = lines.index(after) if after else 0
    start = next(i for i in range(begin, len(lines)) if lines[i].startswith(header_start))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


@pytest.fixture(scope="module")
def corpora():
    out = {}
    for lang in bc.LANGS:
        with gzip.open(DATA / f"{lang}.jsonl.gz", "rt", encoding="utf-8") as f:
            out[lang] = [json.loads(line) for line in f]
    return out


@pytest.fixture(scope="module")
def section():
    return _section(README.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def excluded():
    return set(gzip.decompress(EXCLUDED.read_bytes()).decode("ascii").split())


# --------------------------------------------------------------------------------------------------
# The committed data
# --------------------------------------------------------------------------------------------------

def test_files_exist_and_are_small():
    total = 0
    for name in ("de.jsonl.gz", "es.jsonl.gz", "zh.jsonl.gz", "excluded_texts.txt.gz"):
        path = DATA / name
        assert path.is_file(), f"{path} missing: run examples/experiment/real/build_corpora.py"
        assert path.stat().st_size < bc.MAX_GZ_BYTES
        raw = path.read_bytes()
        assert raw[:2] == b"\x1f\x8b" and raw[3] == 0 and raw[4:8] == b"\0\0\0\0"  # no name, mtime 0
        total += path.stat().st_size
    assert total < 8_000_000


def test_readme_files_table_matches_data(section, corpora, excluded):
    rows = {r[0].strip("`"): r for r in _table_rows(section, "| file |")}
    assert set(rows) == {f"{lang}.jsonl.gz" for lang in bc.LANGS} | {"excluded_texts.txt.gz"}
    for lang, records in corpora.items():
        path = DATA / f"{lang}.jsonl.gz"
        row = rows[path.name]
        assert _int(row[1]) == len(records)
        assert _int(row[2]) == sum(len(r["text"].split()) for r in records)
        assert _int(row[3]) == sum(len(r["text"]) for r in records)
        assert _int(row[4]) == path.stat().st_size
        assert row[5].strip("`") == hashlib.sha256(path.read_bytes()).hexdigest()
    row = rows["excluded_texts.txt.gz"]
    assert _int(row[1]) == len(excluded)
    assert _int(row[4]) == EXCLUDED.stat().st_size
    assert row[5].strip("`") == hashlib.sha256(EXCLUDED.read_bytes()).hexdigest()


@pytest.mark.parametrize("lang", bc.LANGS)
def test_readme_per_source_counts_match_data(section, corpora, lang):
    names = {"de": "German", "es": "Spanish", "zh": "Chinese"}
    rows = _table_rows(section, "| source |", after=f"### {names[lang]} (`{lang}.jsonl.gz`)")
    table = {r[0].strip("`"): tuple(_int(c) for c in r[3:6]) for r in rows if r[0].startswith("`")}
    got = defaultdict(lambda: [0, 0, 0])
    for rec in corpora[lang]:
        c = got[rec["source"]]
        c[0] += 1
        c[1] += len(rec["text"].split())
        c[2] += len(rec["text"])
    assert {k: tuple(v) for k, v in got.items()} == table
    assert set(table) == LANG_SOURCES[lang]


@pytest.mark.parametrize("lang", bc.LANGS)
def test_records_pass_the_build_filters(corpora, lang):
    records = corpora[lang]
    assert len(records) > 10_000
    for rec in records:
        assert set(rec) == {"text", "source"}
        assert rec["source"] in LANG_SOURCES[lang]
        text = rec["text"]
        assert bc.normalize(text, lang) == text, text[:80]
        assert bc.reject_reason(text, lang) is None, text[:80]
    # markup left over: only in the rare paragraphs that are about HTML or roff itself
    markup = [r["text"] for r in records if _HTML_TAG.search(r["text"]) or _ROFF.search(r["text"])]
    assert len(markup) <= 0.001 * len(records), markup[:5]


def test_languages_look_right(corpora):
    def share(records, words):
        tokens = [w for r in records for w in re.findall(r"[^\W\d_]+", r["text"].lower())]
        return sum(w in words for w in tokens) / len(tokens)

    assert share(corpora["de"], bc.FUNCTION_WORDS["de"]) > 0.15
    assert share(corpora["es"], bc.FUNCTION_WORDS["es"]) > 0.15
    for lang in ("de", "es"):
        assert share(corpora[lang], bc.FUNCTION_WORDS["en"]) < 0.03
    text = "".join(r["text"] for r in corpora["zh"])
    assert len(bc._IDEOGRAPH.findall(text)) > 0.5 * len(text.replace(" ", ""))


@pytest.mark.parametrize("lang", bc.LANGS)
def test_no_duplicates_and_fixed_order(corpora, lang):
    keys = [bc.dedup_key(r["text"]) for r in corpora[lang]]
    assert len(set(keys)) == len(keys)
    ranks = [bc.rank(r["text"], lang) for r in corpora[lang]]
    assert ranks == sorted(ranks)


@pytest.mark.parametrize("lang", bc.LANGS)
def test_no_test_set_text_in_the_corpora(corpora, excluded, lang):
    assert len(excluded) > 40_000 and all(len(h) == 12 for h in excluded)
    for rec in corpora[lang]:
        assert bc.text_hash(rec["text"]) not in excluded, rec["text"][:80]
        for s in bc.sentences(rec["text"], lang):
            assert bc.text_hash(s) not in excluded, s[:80]


def test_the_excluded_list_holds_known_test_texts(excluded):
    """Texts that must be in the list: Genesis 1:1-2 of Reina-Valera 1909 and Debian Reference paragraphs
    (German preface, Chinese chapter 1)."""
    assert bc.text_hash("EN el principio crió Dios los cielos y la tierra.") in excluded
    assert bc.text_hash("Y la tierra estaba desordenada y vacía, y las tinieblas estaban sobre la haz del "
                        "abismo, y el Espíritu de Dios se movía sobre la haz de las aguas.") in excluded
    assert bc.text_hash("Es spricht diejenigen Leser an, die bereit sind, Shell-Skripte zu lernen, aber nicht "
                        "bereit sind, alle C-Quellen zu lesen, um herauszufinden, wie das GNU/Linux-System "
                        "genau funktioniert.") in excluded
    assert bc.text_hash("我认为学习一个计算机系统，就像学习一门新的外语。虽然教程和文档是有帮助的，但你必须自己练习。"
                        "为了帮助你平滑起步，我详细说明一些基本要点。") in excluded


def test_the_build_script_describes_the_committed_files(section):
    """The README section names the build's current settings (caps, thresholds, pinned packages)."""
    text = "\n".join(section)
    for pkg, (version, sha) in bc.APT_PACKAGES.items():
        assert f"| `{pkg}` | {version} | `{sha}` |" in text
    assert f"de: {bc.MANPAGE_CHAR_CAPS['de']:,d} characters" in text
    assert f"at least {bc.MIN_CHARS['de']} characters (de, es) or {bc.MIN_CHARS['zh']} (zh)" in text


# --------------------------------------------------------------------------------------------------
# The cleaning functions, on hand-made fixtures
# --------------------------------------------------------------------------------------------------

ROFF = r""".\" -*- coding: UTF-8 -*-
.TH LS 1 "September 2022" "GNU coreutils 9.1"
.SH BEZEICHNUNG
ls \- Verzeichnisinhalte auflisten
.SH BESCHREIBUNG
.\" Add any additional description here
.PP
Auflistung von Informationen über die DATEIen (Standardvorgabe ist das
aktuelle Verzeichnis). Siehe \fBdir\fP(1) und \fI\,DATEI\/\fP \(em oder
.BR vdir (1)
für \*(lqDetails\*(rq\&.
.TP
\fB\-a\fP, \fB\-\-all\fP
Einträge nicht ignorieren, die mit \[u00BB].\[u00AB] beginnen
.nf
ls \-la /tmp
echo foo
.fi
.EX
int main(void);
.EE
.TS
l l.
a	b
.TE
.de XX
.B macro
..
.IP \(bu 2
Ein Punkt\ mit\~Leerzeichen.
"""


def test_roff_paragraphs():
    paras = bc.roff_paragraphs(ROFF)
    assert paras == [
        "BEZEICHNUNG",
        "ls - Verzeichnisinhalte auflisten",
        "BESCHREIBUNG",
        "Auflistung von Informationen über die DATEIen (Standardvorgabe ist das aktuelle Verzeichnis). "
        "Siehe dir(1) und DATEI \u2014 oder vdir(1) für \u201cDetails\u201d.",
        "-a, --all",
        "Einträge nicht ignorieren, die mit \u00bb.\u00ab beginnen",
        "Ein Punkt mit Leerzeichen.",
    ]
    joined = " ".join(paras)
    for code in ("tmp", "echo", "int main", "macro", "a b"):
        assert code not in joined


def test_roff_mdoc_and_links():
    text = ".Sh BESCHREIBUNG\n.Nm ls\nzeigt Dateien, siehe\n.Xr dir 1 .\n.Fl l\nlang.\n" \
           ".UR https://example.org\nDokumentation\n.UE .\n.Bd -literal\ncode here\n.Ed\nEnde.\n"
    assert bc.roff_paragraphs(text) == ["BESCHREIBUNG", "ls zeigt Dateien, siehe dir(1) . -l lang. Dokumentation.",
                                       "Ende."]


def test_roff_unescape():
    assert bc.roff_unescape(r"\fBfett\fR und \f(CWmono\fP \s-1klein\s+1 \(lqzitat\(rq \e \- x\"kommentar") == \
        "fett und mono klein \u201czitat\u201d \\ - x"
    assert bc.roff_unescape(r"\[u00E4]\(:o\[ss] \N'34' \h'2n'\&.") == "\u00e4\u00f6\u00df  ."


HTML = """<html><head><title>Kapitel 1</title><style>p {color: red}</style></head><body>
<div class="navheader">Zurück Weiter</div>
<h2 class="title">1.1. Was ist Debian?</h2>
<p>Debian ist ein <em>freies</em>
   Betriebssystem &amp; eine <a href="x">Gemeinschaft</a>.</p>
<pre class="screen">$ apt install foo
</pre>
<ul><li><p>Erster Punkt</p></li><li>Zweiter<br/>Punkt</li></ul>
<script>var x = 1;</script>
<table><tr><td>Zelle eins</td><td>Zelle zwei</td></tr></table>
</body></html>"""


def test_html_paragraphs():
    assert bc.html_paragraphs(HTML) == [
        "Kapitel 1", "Zurück Weiter", "1.1. Was ist Debian?",
        "Debian ist ein freies Betriebssystem & eine Gemeinschaft.",
        "Erster Punkt", "Zweiter", "Punkt", "Zelle eins", "Zelle zwei",
    ]


def test_faq_paragraphs():
    text = ("1. Definitionen\n    1.1. Was ist das?\n    1.2. Wer ist das?\n\n"
            "1.3. Eine Frage?\n\n"
            "    Debian GNU/\n    Hurd ist ein System; siehe https://www.gnu.org/\n"
            "    software/hurd (https://www.gnu.org/\n    software/hurd) .\n\n"
            "    Zweiter Absatz\n    über zwei Zeilen.\n")
    # the table of contents and the numbered question are dropped; URLs are removed
    assert bc.faq_paragraphs(text, "de") == ["Debian GNU/Hurd ist ein System; siehe.",
                                             "Zweiter Absatz über zwei Zeilen."]
    zh = "    目前，Debian 只有 Linux 版本，但随着\n    Debian GNU/Hurd 的诞生，我们也开始提\n    供非 Linux 的系统。\n"
    assert bc.faq_paragraphs(zh, "zh") == [
        "目前，Debian 只有 Linux 版本，但随着 Debian GNU/Hurd 的诞生，我们也开始提供非 Linux 的系统。"]


def test_fortune_entries():
    text = "Erster Spruch\n  über zwei Zeilen.\n\t\t-- Autor\n%\n%\nZweiter Spruch.\n% \nDritter\n"
    assert bc.fortune_entries(text) == ["Erster Spruch über zwei Zeilen. -- Autor", "Zweiter Spruch.", "Dritter"]


def test_normalize_and_keys():
    assert bc.normalize("Ein\u00a0Wort\u00adteil  und\n\tmehr\u200b ", "de") == "Ein Wortteil und mehr"
    assert bc.normalize("中文 文本 ，和 English words 与 中文", "zh") == "中文文本，和 English words 与中文"
    assert bc.normalize("e\u0301", "es") == "\u00e9"                     # NFC
    assert bc.dedup_key("Hallo, Welt!") == bc.dedup_key("hallo  welt") == "hallo welt"
    assert bc.text_hash("Hallo, Welt!") == hashlib.sha256(b"hallo welt").hexdigest()[:12]
    assert bc.sentences("Kurz. Dies ist ein Satz, der lang genug ist, um zu zählen. Ja!", "de") == [
        "Dies ist ein Satz, der lang genug ist, um zu zählen."]


@pytest.mark.parametrize("text,lang,reason", [
    ("Zu kurz.", "de", "short"),
    ("Dies ist ein deutscher Satz, der lang genug ist und bleibt.", "de", None),
    ("This paragraph was left untranslated and is in English, not in German.", "de", "english"),
    ("ls -la /tmp/foo | grep -v bar > /dev/null 2>&1 && echo 1234567", "de", "not_prose"),
    ("Dokumentation Handbuch Referenzhandbuch Paketverwaltung Systemstart", "de", "no_function_word"),
    ("Este es un párrafo en español que tiene la longitud necesaria.", "es", None),
    ("The quick brown fox jumps over the lazy dog and the cat is in the house.", "es", "english"),
    ("列出指定文件的信息，默认为当前目录。", "zh", None),
    ("然后需要修改 /etc/nsswitch.conf 文件，从而配置 NSS 来使用刚刚安装的 ldap 模块。", "zh", None),
    ("In practice, during login, the user gets a default security context.", "zh", "not_chinese"),
    ("例 10.14. Excerpt of /etc/bind/db.192.168 and more", "zh", "not_chinese"),
    ("短句。", "zh", "short"),
])
def test_reject_reason(text, lang, reason):
    assert bc.reject_reason(text, lang) == reason


def test_clean_language_drops_untranslated_test_set_and_duplicates():
    good = "Dies ist ein deutscher Satz, der lang genug ist und bleibt."
    also = "Noch ein deutscher Absatz, der in den Daten bleiben soll und wird."
    test = "Ein Absatz aus dem Testdatensatz, der nicht in die Daten darf."
    raw = {"handbook": [good, "  " + good, "Left untranslated in the German handbook of this package."],
           "manpages": [good + " ", also, "Vorher. " + test + " Nachher kommt noch mehr Text."]}
    kept, dropped = bc.clean_language(raw, "de", english={bc.dedup_key(raw["handbook"][2])},
                                      excluded=bc.test_keys([test], "de"))
    assert kept == {"handbook": [good], "manpages": [also]}
    assert dropped == {"handbook:duplicate": 1, "handbook:english": 1, "manpages:duplicate": 1,
                       "manpages:test_set": 1}
    # the exact-English rule on its own (a paragraph the language test lets through)
    german_in_english_doc = "Ein deutscher Satz, der auch im englischen Original steht."
    kept, dropped = bc.clean_language({"faq": [german_in_english_doc]}, "de",
                                      english={bc.dedup_key(german_in_english_doc)}, excluded=set())
    assert kept == {"faq": []} and dropped == {"faq:untranslated": 1}


def test_sample_up_to_is_seeded_and_capped():
    paras = [f"Absatz Nummer {i} mit etwas Text" for i in range(200)]
    a = bc.sample_up_to(paras, 1000, "de")
    assert a == bc.sample_up_to(list(paras), 1000, "de")
    assert sum(map(len, a)) <= 1000 and sum(map(len, a)) > 900
    assert a == [p for p in paras if p in set(a)]          # original order kept
    assert a != bc.sample_up_to(paras, 1000, "es")
    assert bc.sample_up_to(paras, None, "de") == paras


def test_sword_verses_reads_a_ztext_module(tmp_path):
    block = "<w>EN</w> el principio<note>nota</note> crió Dios .Y la tierra".encode()
    data = zlib.compress(block)
    (tmp_path / "ot.bzz").write_bytes(data)
    (tmp_path / "ot.bzs").write_bytes(struct.pack("<III", 0, len(data), len(block)))
    split = block.index(b".Y") + 1
    (tmp_path / "ot.bzv").write_bytes(struct.pack("<IIH", 0, 0, 0) + struct.pack("<IIH", 0, 0, split)
                                      + struct.pack("<IIH", 0, split, len(block) - split))
    for ext in ("bzz", "bzs", "bzv"):
        (tmp_path / f"nt.{ext}").write_bytes(b"")
    assert bc.sword_verses(tmp_path) == ["EN el principio crió Dios.", "Y la tierra"]


def test_bad_inputs_name_the_file(tmp_path):
    with pytest.raises(PreAlignError, match=r"ot\.bzs: missing"):
        bc.sword_verses(tmp_path)
    bad = tmp_path / "page.1.gz"
    bad.write_bytes(b"not gzip")
    with pytest.raises(bc.CorpusInputError, match=r"page\.1\.gz: not a gzip file"):
        bc._read(bad)
    with pytest.raises(PreAlignError, match="no man pages"):
        bc.manpages_raw(tmp_path, "de")


def test_replace_section_keeps_the_other_sections():
    other = "# Real-language data\n\n## Dictionaries\n\nTheirs.\n"
    mine = bc.SECTION_TITLE + "\n\nMine.\n"
    once = bc.replace_section(other, mine)
    assert once == other + "\n" + mine
    assert bc.replace_section(once, mine) == once
    around = other + "\n" + bc.SECTION_TITLE + "\n\nOld.\n\n## Labels\n\nTheirs too.\n"
    assert bc.replace_section(around, mine) == other + "\n" + mine + "\n## Labels\n\nTheirs too.\n"
    assert bc.replace_section(None, mine) == bc.README_TITLE + "\n\n" + mine
