"""Input reading: universal newlines, chunking, partitions, gigantic lines, parsing problems."""

import gzip
import json

import pytest

from megatron_prealign.preprocess import inputs as inp


def read_all(files, chunk_bytes=64, max_line_bytes=1 << 20, parts=1, text_unit="line"):
    chunks, problems = [], []
    for group in inp.split_segments(files, parts):
        for item in inp.read_chunks(group, chunk_bytes=chunk_bytes, max_line_bytes=max_line_bytes,
                                    text_unit=text_unit):
            (problems if isinstance(item, inp.Problem) else chunks).append(item)
    return chunks, problems


def lines_of(chunks):
    """(file index, line number, byte offset, raw line) for every line in the chunks."""
    out = []
    for c in chunks:
        offset, number = c.offset, c.first_line
        for raw in c.data.splitlines(keepends=True):
            out.append((c.file_index, number, offset, raw))
            offset += len(raw)
            number += 1
    return out


def python_lines(path):
    """What Python's text mode (Megatron's reader) sees."""
    with open(path, encoding="utf-8", newline=None) as f:
        return [ln.rstrip("\n") for ln in f]


@pytest.fixture
def mixed(tmp_path):
    data = b'{"text": "a"}\r\n{"text": "b"}\r{"text": "c"}\n\n{"text": "d"}\r\n\r\n{"text": "e"}'
    p = tmp_path / "m.jsonl"
    p.write_bytes(data)
    return p


def test_universal_newlines_like_text_mode(mixed):
    files = inp.expand_inputs([str(mixed)])
    want = python_lines(mixed)
    for chunk_bytes in (1, 3, 7, 64, 1 << 20):
        for parts in (1, 2, 3):
            chunks, problems = read_all(files, chunk_bytes=chunk_bytes, parts=parts)
            got = lines_of(chunks)
            assert [raw.rstrip(b"\r\n").decode() for *_, raw in got] == want, (chunk_bytes, parts)
            assert [n for _, n, _, _ in got] == list(range(1, len(want) + 1))
            assert not problems
    # offsets point at the lines in the file
    data = mixed.read_bytes()
    for _, _, offset, raw in lines_of(read_all(files, chunk_bytes=5)[0]):
        assert data[offset:offset + len(raw)] == raw


def test_split_segments_covers_the_input_in_order(tmp_path):
    paths = []
    for i, n in enumerate((0, 50, 3, 400)):
        p = tmp_path / f"f{i}.jsonl"
        p.write_text("".join(json.dumps({"text": f"{i}-{k}"}) + "\n" for k in range(n)))
        paths.append(str(p))
    gz = tmp_path / "g.jsonl.gz"
    with gzip.open(gz, "wt") as f:
        f.write("".join(json.dumps({"text": f"g-{k}"}) + "\n" for k in range(30)))
    files = inp.expand_inputs(paths + [str(gz)])
    whole = [(f, n, raw) for f, n, _, raw in lines_of(read_all(files)[0])]
    for parts in (1, 2, 3, 5, 16):
        groups = inp.split_segments(files, parts)
        assert len(groups) == parts
        got = [(f, n, raw) for f, n, _, raw in lines_of(read_all(files, parts=parts)[0])]
        assert got == whole


def test_expand_inputs_globs_sorted_and_errors(tmp_path):
    for name in ("b.jsonl", "a.jsonl", "c.txt"):
        (tmp_path / name).write_text("x\n")
    files = inp.expand_inputs([str(tmp_path / "*.jsonl"), str(tmp_path / "c.txt")])
    assert [f.path.rsplit("/", 1)[1] for f in files] == ["a.jsonl", "b.jsonl", "c.txt"]
    assert [f.format for f in files] == ["jsonl", "jsonl", "text"]
    assert [f.index for f in files] == [0, 1, 2]
    with pytest.raises(inp.InputError, match="matches no file"):
        inp.expand_inputs([str(tmp_path / "*.parquet")])
    with pytest.raises(inp.InputError, match="no such file"):
        inp.expand_inputs([str(tmp_path / "missing.jsonl")])
    with pytest.raises(inp.InputError, match="is not a file"):
        inp.expand_inputs([str(tmp_path)])


def test_gigantic_lines_are_skipped_and_reported(tmp_path):
    p = tmp_path / "big.jsonl"
    big = json.dumps({"text": "x" * 5000})
    p.write_text(f'{{"text": "a"}}\n{big}\n{{"text": "b"}}\n{big}')
    files = inp.expand_inputs([str(p)])
    for chunk_bytes in (16, 1000, 1 << 20):
        chunks, problems = read_all(files, chunk_bytes=chunk_bytes, max_line_bytes=1000)
        docs = []
        for c in chunks:  # what the reader could hold, the parser skips
            d, q, _ = inp.parse_chunk(c, files[0], ["text"], max_line_bytes=1000)
            docs += d
            problems += q
        problems.sort(key=lambda q: q.line)
        assert [(q.reason, q.line) for q in problems] == [("line_too_long", 2), ("line_too_long", 4)]
        assert [f"{n} bytes" in q.detail for q, n in zip(problems, (5013, 5012))] == [True, True]
        assert [(d.line, d.values) for d in docs] == [(1, [["a"]]), (3, [["b"]])]


def parse(tmp_path, data: bytes, keys=("text",), name="x.jsonl", unit="line"):
    p = tmp_path / name
    p.write_bytes(data)
    files = inp.expand_inputs([str(p)])
    docs, problems, blank = [], [], 0
    for c in read_all(files, chunk_bytes=1 << 20, text_unit=unit)[0]:
        d, q, b = inp.parse_chunk(c, files[0], list(keys), unit)
        docs += d
        problems += q
        blank += b
    return docs, problems, blank


def test_parse_problems_name_lines(tmp_path):
    data = b"\n".join([
        b'\xef\xbb\xbf{"text": "bom first"}',
        b'{"text": "ok", "title": "t"}',
        b'{"text": broken}',
        b'["not", "an", "object"]',
        b'{"title": "no text"}',
        b'{"text": null}',
        b'{"text": 42}',
        b'{"text": ["a", 3]}',
        b'{"text": "caf\xe9"}',
        b'   ',
        b'{"text": "lone \\ud800 surrogate"}',
        b'{"text": ["x", "", "y"]}',
    ]) + b"\n"
    docs, problems, _ = parse(tmp_path, data)
    assert [(d.line, d.values) for d in docs] == [
        (1, [["bom first"]]), (2, [["ok"]]), (12, [["x", "", "y"]])]
    assert [(q.line, q.reason) for q in problems] == [
        (3, "malformed_json"), (4, "not_an_object"), (5, "missing_key"), (6, "bad_value"),
        (7, "bad_value"), (8, "bad_value"), (9, "invalid_utf8"), (10, "blank_line"),
        (11, "invalid_unicode")]
    assert all(q.file.endswith("x.jsonl") and q.skipped for q in problems)
    assert "no key 'text'" in problems[2].detail and "is null" in problems[3].detail
    assert "0xe9" in problems[6].detail


def test_plain_text_units(tmp_path):
    data = b"First line.\nSecond line\r\n\r\n  \nThird\nfourth\n"
    docs, problems, blank = parse(tmp_path, data, name="x.txt")
    assert [(d.line, d.values[0][0]) for d in docs] == [
        (1, "First line."), (2, "Second line"), (5, "Third"), (6, "fourth")]
    assert blank == 2 and not problems
    docs, _, _ = parse(tmp_path, data, name="x.txt", unit="paragraph")
    assert [(d.line, d.values[0][0]) for d in docs] == [
        (1, "First line.\nSecond line"), (5, "Third\nfourth")]
    docs, _, _ = parse(tmp_path, data, name="x.txt", unit="file")
    assert [d.values[0][0] for d in docs] == ["First line.\nSecond line\n\n  \nThird\nfourth\n"]


def test_multi_line_documents_are_never_cut(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("".join(f"line {i}\n" + ("\n" if i % 3 == 2 else "") for i in range(300)))
    files = inp.expand_inputs([str(p)])
    groups = inp.split_segments(files, 4, text_unit="paragraph")
    assert [len(g) for g in groups].count(1) == 1 and sum(len(g) for g in groups) == 1
    assert len([s for g in inp.split_segments(files, 4, text_unit="line") for s in g]) == 4
