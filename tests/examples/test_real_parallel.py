"""Checks of the committed parallel text and of the transfer / retrieval splits drawn from it.

``examples/experiment/real/data/`` holds ``bible_en_es.jsonl.gz`` (verse-aligned KJV / Reina-Valera
1909) and ``debian_reference.jsonl.gz`` (Debian Reference paragraphs in en/de/es/zh), made by
``examples/experiment/real/build_parallel.py`` and described in ``README.parallel.md``. The tests read
only the committed bytes (and tiny hand-made files for the error cases); nothing is downloaded.
"""

import gzip
import hashlib
import json
import re

import pytest

from examples.experiment.real import build_parallel, tasks
from megatron_prealign.errors import PreAlignError
from tests.fixtures.helpers import markdown_table_rows

DATA = tasks.DATA
README = DATA / "README.parallel.md"


def _int(cell):
    return int(cell.strip().strip("*").strip("`").replace(",", ""))


@pytest.fixture(scope="module")
def bible():
    return tasks.load_bible()


@pytest.fixture(scope="module")
def debref():
    return tasks.load_debian_reference()


@pytest.fixture(scope="module")
def readme():
    return README.read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------- files

def test_files_are_small_and_match_the_readme(readme, bible, debref):
    rows = {r[0].strip("`"): r for r in markdown_table_rows(readme, "| file |")}
    for path, records in ((tasks.BIBLE_FILE, bible), (tasks.DEBIAN_REFERENCE_FILE, debref)):
        data = path.read_bytes()
        assert len(data) < build_parallel.MAX_GZ_BYTES
        assert data[4:8] == b"\0\0\0\0" and not data[3] & 0x08     # mtime 0, no file name
        row = rows[path.name]
        assert _int(row[1]) == len(records)
        assert _int(row[2]) == len(data)
        assert row[3].strip("`") == hashlib.sha256(data).hexdigest()


def test_bible_records(bible):
    assert len(bible) > 30_000
    order = {b: i for i, b in enumerate(tasks.BOOKS)}
    keys = [(order[r["book"]], *map(int, r["key"].rsplit(" ", 1)[1].split(":"))) for r in bible]
    assert keys == sorted(keys), "verses are not in canonical order"
    assert {r["book"] for r in bible} == set(tasks.BOOKS)
    by_key = {r["key"]: r for r in bible}
    assert by_key["Genesis 1:1"]["en"] == "In the beginning God created the heaven and the earth."
    assert by_key["Genesis 1:1"]["es"] == "EN el principio crió Dios los cielos y la tierra."
    assert by_key["John 3:16"]["es"].startswith("Porque de tal manera amó Dios al mundo")
    for rec in bible:
        for lang in ("en", "es"):
            assert rec[lang] == " ".join(rec[lang].split())
            assert not re.search(r"<[a-zA-Z/]|&[a-z]+;|\u00b6", rec[lang]), rec[lang]


def test_bible_versification_shifts_are_not_in_the_data(bible):
    """RV1909 starts Numbers 13 one verse early (KJV Numbers 12:16 is its 13:1): those chapters are
    dropped, and the kept verses agree (e.g. both sides of Numbers 14:1 speak of the congregation)."""
    keys = {r["key"] for r in bible}
    assert "Numbers 13:1" not in keys and "Jonah 2:1" not in keys and "Job 39:1" not in keys
    es = {r["key"]: r["es"] for r in bible}
    assert "congregación" in es["Numbers 14:1"]


def test_bible_counts_match_readme(bible, readme):
    rows = [r for r in markdown_table_rows(readme, "| group |") if r[0].startswith("`")]
    table = {r[0].strip("`"): [_int(c) for c in r[1:]] for r in rows}
    assert list(table) == list(tasks.BIBLE_GROUPS)
    for group, (books, verses, en_words, es_words) in table.items():
        recs = [r for r in bible if r["group"] == group]
        assert books == len({r["book"] for r in recs})
        assert verses == len(recs)
        assert en_words == sum(len(r["en"].split()) for r in recs)
        assert es_words == sum(len(r["es"].split()) for r in recs)


def test_debian_reference_records(debref):
    assert len(debref) > 1_500
    assert {r["label"] for r in debref} == set(tasks.DEBIAN_REFERENCE_LABELS)
    assert len({tasks.text_key(r["en"]) for r in debref}) == len(debref)
    for rec in debref:
        assert len(rec["en"]) >= build_parallel.MIN_PARAGRAPH_CHARS
        assert build_parallel.is_prose(rec["en"]), rec["en"]
        assert any(rec[lang] for lang in tasks.TARGET_LANGUAGES)
        if rec["zh"]:
            assert re.search(r"[\u4e00-\u9fff]", rec["zh"]), rec["zh"]
    positions = [(r["chapter"], r["para"]) for r in debref]
    assert positions == sorted(positions)


def test_debian_reference_counts_match_readme(debref, readme):
    rows = [r for r in markdown_table_rows(readme, "| label |") if r[0].startswith("`")]
    assert [r[0].strip("`") for r in rows] == list(tasks.DEBIAN_REFERENCE_LABELS)
    for label, chapter, n, de, es, zh in rows:
        recs = [r for r in debref if r["label"] == label.strip("`")]
        assert {r["chapter"] for r in recs} == {chapter}
        assert [_int(n), _int(de), _int(es), _int(zh)] == [
            len(recs), *(sum(r[lang] is not None for r in recs) for lang in tasks.TARGET_LANGUAGES)]


# ---------------------------------------------------------------------------------------------- splits

def test_bible_split_by_book_without_leaks(bible):
    task = tasks.bible_transfer_task(bible)
    train_books, test_books = set(task.train_units), set(task.test_units)
    assert not train_books & test_books
    assert train_books | test_books == set(tasks.BOOKS)
    for side in (train_books, test_books):
        assert {tasks.BOOK_GROUP[b] for b in side} == set(tasks.BIBLE_GROUPS)
    # every class on both sides, in every test language
    assert {label for _, label in task.train} == set(tasks.BIBLE_GROUPS)
    for lang in ("en", "es"):
        assert {label for _, label in task.test[lang]} == set(tasks.BIBLE_GROUPS)
    assert len(task.test["en"]) == len(task.test["es"])
    assert 0.15 < len(task.test["es"]) / len(bible) < 0.35
    # no key on both sides, and no test text (either language) equal to any train text
    side = {r["key"]: r["book"] in test_books for r in bible}
    train_texts = {tasks.text_key(r[lang]) for r in bible if not side[r["key"]] for lang in ("en", "es")}
    for lang in ("en", "es"):
        assert not {tasks.text_key(t) for t, _ in task.test[lang]} & train_texts
    assert task.dropped_test > 0        # the Bible does repeat verses across books: the filter is used
    assert {t for t, _ in task.train} == {r["en"] for r in bible if not side[r["key"]]}


def test_debian_reference_split_by_position_blocks_without_leaks(debref):
    task = tasks.debian_reference_task(debref)
    assert not set(task.train_units) & set(task.test_units)
    block = tasks.DEBIAN_REFERENCE_BLOCK
    test_blocks = set(task.test_units)
    is_test = {(r["chapter"], r["para"]): f"{r['chapter']}/{r['para'] // block}" in test_blocks for r in debref}
    test_recs = [r for r in debref if is_test[(r["chapter"], r["para"])]]
    train_recs = [r for r in debref if not is_test[(r["chapter"], r["para"])]]
    assert len(task.train) == len(train_recs) and train_recs and test_recs
    train_texts = {tasks.text_key(r[lang]) for r in train_recs for lang in ("en",) + tasks.TARGET_LANGUAGES
                   if r[lang]}
    assert {label for _, label in task.train} == set(tasks.DEBIAN_REFERENCE_LABELS)
    for lang in ("en",) + tasks.TARGET_LANGUAGES:
        assert {label for _, label in task.test[lang]} == set(tasks.DEBIAN_REFERENCE_LABELS), lang
        assert not {tasks.text_key(t) for t, _ in task.test[lang]} & train_texts, lang
        expected = [r for r in test_recs if r[lang] is not None]
        assert [t for t, _ in task.test[lang]] == [r[lang] for r in expected]


def test_retrieval_sets_come_from_the_test_side_and_are_unique(bible, debref):
    test_books = set(tasks.bible_transfer_task(bible).test_units)
    pairs = tasks.bible_retrieval_pairs(bible)
    assert len(pairs) == 1000
    test_pairs = {(r["en"], r["es"]) for r in bible if r["book"] in test_books}
    assert set(pairs) <= test_pairs
    for i in (0, 1):
        assert len({tasks.text_key(p[i]) for p in pairs}) == len(pairs)
    dtask = tasks.debian_reference_task(debref)
    for lang, lang_pairs in tasks.debian_reference_retrieval_pairs(debref).items():
        assert len(lang_pairs) > 300
        test_texts = {t for t, _ in dtask.test[lang]}
        assert {t for _, t in lang_pairs} <= test_texts
        for i in (0, 1):
            assert len({tasks.text_key(p[i]) for p in lang_pairs}) == len(lang_pairs)


def test_splits_are_deterministic_and_depend_on_the_salt(bible, debref):
    assert tasks.bible_split(bible) == tasks.bible_split(list(bible))
    assert tasks.bible_split(bible) != tasks.bible_split(bible, salt="another salt")
    assert tasks.debian_reference_split(debref) == tasks.debian_reference_split(list(reversed(debref)))
    assert tasks.bible_retrieval_pairs(bible) == tasks.bible_retrieval_pairs(bible)


def test_a_leak_is_filtered():
    """A test verse whose translation also sits in a train book is removed from the test side."""
    def rec(key, group, en, es):
        return {"key": key, "book": key.rsplit(" ", 1)[0], "group": group, "en": en, "es": es}
    records = []
    for group in tasks.BIBLE_GROUPS:
        books = [b for b in tasks.BOOKS if tasks.BOOK_GROUP[b] == group][:2]
        records += [rec(f"{b} 1:{v}", group, f"{b} {v} en", f"{b} {v} es") for b in books for v in (1, 2)]
    split = tasks.bible_split(records)
    test_book = split["test"][0]
    train_rec = next(r for r in records if r["book"] not in split["test"])
    leaking = next(r for r in records if r["book"] == test_book)
    leaking["es"] = train_rec["es"].upper()                  # same text up to case
    task = tasks.bible_transfer_task(records)
    assert task.dropped_test == 1
    assert leaking["en"] not in {t for t, _ in task.test["en"]}


# ---------------------------------------------------------------------------------------------- errors

def _write(path, lines):
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")
    return path


def test_bad_input_names_file_and_line(tmp_path):
    good = {"key": "Genesis 1:1", "book": "Genesis", "group": "law", "en": "x", "es": "y"}
    cases = {
        "not json": ["{oops"],
        "wrong group": [json.dumps({**good, "group": "history"})],
        "key/book": [json.dumps({**good, "key": "Exodus 1:1"})],
        "repeat": [json.dumps(good), json.dumps(good)],
        "empty text": [json.dumps({**good, "es": " "})],
    }
    for name, lines in cases.items():
        path = _write(tmp_path / f"{name.replace('/', '_')}.jsonl.gz", lines)
        with pytest.raises(PreAlignError, match=rf"{re.escape(str(path))}:{len(lines)}: "):
            tasks.load_bible(path)
    rec = {"chapter": "ch01", "para": 3, "label": "tutorials", "en": "a" * 60, "de": "a" * 60, "es": None, "zh": None}
    path = _write(tmp_path / "untranslated.jsonl.gz", [json.dumps(rec)])
    with pytest.raises(tasks.ParallelDataError, match=r"untranslated.jsonl.gz:1: 'de' is identical"):
        tasks.load_debian_reference(path)
    with pytest.raises(tasks.ParallelDataError, match="file not found"):
        tasks.load_bible(tmp_path / "missing.jsonl.gz")


def test_imp_parser_and_osis_text():
    imp = ("$$$[ Module Heading ]\n\n$$$Genesis 1:0\n<chapter n=\"1\"/>\n$$$Genesis 1:1\n"
           "In the <w lemma=\"strong:H7225\">beginning</w>.<note placement=\"foot\">a note</note>\n")
    raw = build_parallel.parse_imp(imp, "test.imp")
    assert list(raw) == ["Genesis 1:1"]
    assert build_parallel.osis_text(raw["Genesis 1:1"]) == "In the beginning."
    assert build_parallel.strongs(raw["Genesis 1:1"]) == {"H7225"}
    assert build_parallel.osis_text('<title canonical="true" type="psalm">A Psalm.</title> <title>ALEPH.</title>'
                                    " \u00b6 The LORD &amp; me ;") == "A Psalm. The LORD & me;"
    with pytest.raises(tasks.ParallelDataError, match=r"bad.imp:3: unknown book 'Genesys'"):
        build_parallel.parse_imp("$$$Genesis 1:1\nx\n$$$Genesys 1:2\ny\n", "bad.imp")


def test_bible_alignment_check_drops_shifted_chapters():
    """A chapter whose Spanish verses are shifted by one (as RV1909's Numbers 13) is dropped whole."""
    def verse(n):
        return f'<w lemma="strong:H{n}">w</w> <w lemma="strong:H{n + 1000}">v</w>'
    en = {f"Ruth 1:{v}": verse(v) for v in range(1, 21)}
    en.update({f"Ruth 2:{v}": verse(100 + v) for v in range(1, 21)})
    es = dict(en)
    es.update({f"Ruth 2:{v}": verse(100 + v - 1) for v in range(2, 21)})    # shifted
    records, stats = build_parallel.align_bible(en, es)
    assert stats["dropped_chapters"] == ["Ruth 2"]
    assert [r["key"] for r in records] == [f"Ruth 1:{v}" for v in range(1, 21)]


def test_debian_reference_readme_is_rendered_from_the_data(bible, debref, readme):
    """The script's README renderer, given the statistics of the committed files, writes the committed
    section byte for byte (archive hashes and alignment counts are taken from the README itself)."""
    archives = {row[0].strip("`"): row[1].strip("`") for row in markdown_table_rows(readme, "| archive |")}
    m = re.search(r"verification \(([\d,]+) verse keys\).*?dropped whole: \d+ chapters \(([\d,]+) verses: (.*?)\); "
                  r"([\d,]+) more", readme.replace("KJV versification", "verification"), re.S)
    stats = {
        **build_parallel.content_stats(bible, debref),
        "bible_alignment": {"verses": _int(m.group(1)), "dropped_in_chapters": _int(m.group(2)),
                            "dropped_chapters": m.group(3).split(", "), "dropped_verses": _int(m.group(4))},
        "files": {p.name: {"lines": n, "bytes": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
                  for p, n in ((tasks.BIBLE_FILE, len(bible)), (tasks.DEBIAN_REFERENCE_FILE, len(debref)))},
        "archives": archives,
    }
    assert build_parallel.render_readme(stats) == readme
    assert _int(m.group(1)) == len(bible) + _int(m.group(2)) + _int(m.group(4))
