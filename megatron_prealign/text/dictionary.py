"""Bilingual and multi-way dictionaries: file formats, loading, tokenizing, compiling the switching table.

Formats
-------
A dictionary is a list of *concepts*; each concept is a list of words that translate each other
(several languages and senses allowed). Concept ids are the 0-based order of concepts in the file.

* **Pair file** (MUSE style, the k=2 special case), any name not ending in ``.jsonl``/``.json``:
  one ``source<TAB>target`` per line, or ``source target`` separated by spaces when the line has
  no tab (then both sides must be single tokens). Several lines may share a source word: all the
  lines of one source word form one concept ``[source, target1, target2, ...]``, in order of first
  appearance. Blank lines and lines starting with ``#`` are ignored.
* **Multi-way JSONL** (``.jsonl``/``.json``): one JSON object per line with a ``"words"`` field,
  either a string of words separated by ``$`` (``{"words": "bank $ Bank $ banque"}``) or a list of
  strings (``{"words": ["bank", "Bank", "banque"]}``). Other fields are ignored. Blank lines are
  ignored.

Words are stripped of surrounding whitespace; duplicate words inside a concept are merged; a
concept left with fewer than two distinct words is dropped and counted. Clone-language words are
written ``<clone>word`` (see ``text.tokenizers.english_clone``). Schema errors raise ``DictionaryError`` naming
the file, the line and the fix.

Tokenized form
--------------
``tokenize_dictionary`` turns every word into its ids in *word-initial form* (as the word appears
after a space in running text: ``▁bank`` / ``Ġbank``), each word on its own, capped at
``max_tokens`` (the PreAlign authors use 30). Words that could never be matched in text (several
words, unknown characters, English-Clone words with a plain tokenizer) are reported; if too many
words are out of the tokenizer's vocabulary the dictionary and the tokenizer do not belong together
and ``DictionaryError`` is raised instead of silently switching garbage.

Compiled form
-------------
``compile_switch_table`` tokenizes a dictionary and compiles the ``codeswitch.CodeSwitchTable``
that stage 2 switches words with. Importing lexicons (FreeDict) is ``preprocess.lexicon``.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from megatron_prealign.errors import PreAlignError
from megatron_prealign.text.codeswitch import CodeSwitchTable
from megatron_prealign.text.tokenizers.english_clone import CLONE_TAG
from megatron_prealign.text.words import WordProblem

MULTIWAY_EXTENSIONS = (".jsonl", ".json")


WORD_SEPARATOR = "$"


class DictionaryError(PreAlignError, ValueError):
    """A dictionary file that cannot be used; the message names file, line and fix."""


@dataclass
class Dictionary:
    """Concepts loaded from a dictionary file.

    Attributes:
        entries: concept id -> its words (strings).
        lines: concept id -> the 1-based line where the concept starts in ``path``.
        path: the file it came from.
        format: ``"pairs"`` or ``"multiway"``.
        dropped: concepts dropped while loading, by reason.
    """

    entries: List[List[str]]
    lines: List[int]
    path: str = ""
    format: str = ""
    dropped: Dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[List[str]]:
        return iter(self.entries)

    def where(self, concept: int) -> str:
        """``"file:line"`` of a concept, for messages."""
        return f"{self.path}:{self.lines[concept]}"

    @property
    def sources(self) -> List[str]:
        """``where`` of every concept."""
        return [f"{self.path}:{n}" for n in self.lines]

    def words(self) -> List[str]:
        """All distinct words in order of first appearance."""
        return list(dict.fromkeys(w for e in self.entries for w in e))


def detect_format(path: str) -> str:
    """``"multiway"`` for ``.jsonl``/``.json`` files, else ``"pairs"``."""
    name = path[:-3] if path.endswith(".gz") else path
    return "multiway" if name.endswith(MULTIWAY_EXTENSIONS) else "pairs"


def _open_text(path: str):
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", newline=None)
    return open(path, "r", encoding="utf-8", newline=None)


def _read_lines(path: str) -> List[Tuple[int, str]]:
    """(1-based line number, line without its end) for every line of a UTF-8 text file."""
    if not os.path.exists(path):
        raise DictionaryError(f"{path}: no such dictionary file")
    try:
        with _open_text(path) as f:
            text = f.read()
    except UnicodeDecodeError as err:
        raise DictionaryError(
            f"{path}: not valid UTF-8 ({err.reason} at byte {err.start}); re-encode the file as "
            "UTF-8 (e.g. iconv -f latin1 -t utf-8)."
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return list(enumerate(lines, start=1))


def _dedupe(words: Iterable[str]) -> List[str]:
    return list(dict.fromkeys(words))


def load_pairs(path: str) -> Dictionary:
    """Load a two-column pair file (see the module docstring)."""
    concepts: Dict[str, List[str]] = {}
    starts: Dict[str, int] = {}
    for number, line in _read_lines(path):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if "\t" in line:
            cols = [c.strip() for c in line.split("\t")]
            cols = [c for c in cols if c != ""] if len(cols) > 2 else cols
        else:
            cols = text.split()
        if len(cols) != 2 or not cols[0] or not cols[1]:
            raise DictionaryError(
                f"{path}:{number}: expected 2 columns 'source<TAB>target' (or 'source target'), "
                f"got {len(cols)}: {line[:80]!r}. Use a tab between phrases that contain spaces, "
                "or write a multi-way .jsonl dictionary."
            )
        src, tgt = cols
        if src not in concepts:
            concepts[src] = [src]
            starts[src] = number
        concepts[src].append(tgt)
    entries, lines, dropped = [], [], Counter()
    for src, words in concepts.items():
        words = _dedupe(words)
        if len(words) < 2:
            dropped["fewer than 2 distinct words"] += 1
            continue
        entries.append(words)
        lines.append(starts[src])
    return Dictionary(entries, lines, path, "pairs", dict(dropped))


def _parse_all(lines: List[Tuple[int, str]]) -> Optional[list]:
    """Parse all lines with one C-level ``json.loads`` (fast path); None if anything is off."""
    try:
        objs = json.loads("[" + ",".join(line for _, line in lines) + "]")
    except (json.JSONDecodeError, RecursionError):
        return None
    return objs if len(objs) == len(lines) else None


def load_multiway(path: str) -> Dictionary:
    """Load a multi-way JSONL dictionary (see the module docstring)."""
    entries, line_numbers, dropped = [], [], Counter()
    lines = [(n, line) for n, line in _read_lines(path) if line.strip()]
    parsed = _parse_all(lines)
    for k, (number, line) in enumerate(lines):
        if parsed is not None:
            obj = parsed[k]
        else:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise DictionaryError(
                    f"{path}:{number}: not valid JSON ({err.msg} at column {err.colno}); each line "
                    'must be an object like {"words": "bank $ Bank $ banque"}.'
                ) from None
        value = obj.get("words") if isinstance(obj, dict) else None
        if isinstance(value, str):
            words = [w.strip() for w in value.split(WORD_SEPARATOR)]
        elif isinstance(value, list) and all(isinstance(w, str) for w in value):
            words = [w.strip() for w in value]
        else:
            if not isinstance(obj, dict) or "words" not in obj:
                raise DictionaryError(
                    f'{path}:{number}: expected an object with a "words" field, like '
                    '{"words": "bank $ Bank $ banque"}; got ' + line[:80]
                )
            raise DictionaryError(
                f'{path}:{number}: "words" must be a string "w1 $ w2 $ ..." or a list of strings, '
                f"got {type(value).__name__}."
            )
        if "" in words:
            raise DictionaryError(
                f'{path}:{number}: empty word in "words" ({value!r}); remove the extra "$" '
                "separator."
            )
        if len(words) != 2:
            words = _dedupe(words)
        if len(words) < 2 or words[0] == words[1]:
            dropped["fewer than 2 distinct words"] += 1
            continue
        entries.append(words)
        line_numbers.append(number)
    return Dictionary(entries, line_numbers, path, "multiway", dict(dropped))


def load_dictionary(path: str, format: str = "auto") -> Dictionary:
    """Load a dictionary file of either format.

    Args:
        path: the file (``.gz`` allowed).
        format: ``"auto"`` (by extension), ``"pairs"`` or ``"multiway"``.

    Returns:
        A ``Dictionary``; ``entries[concept_id]`` is that concept's list of words.

    Raises:
        DictionaryError: missing file, bad encoding, schema error (with file:line), or a file
            without a single usable concept (empty, or every concept dropped).
    """
    fmt = detect_format(path) if format == "auto" else format
    if fmt == "pairs":
        dictionary = load_pairs(path)
    elif fmt == "multiway":
        dictionary = load_multiway(path)
    else:
        raise DictionaryError(f"unknown dictionary format {format!r}; use auto, pairs or multiway")
    if not dictionary.entries:
        raise DictionaryError(_no_entries(dictionary))
    return dictionary


def _no_entries(dictionary: Dictionary) -> str:
    """Why a dictionary holds no concept, in words (the message of ``load_dictionary``)."""
    path = dictionary.path
    if dictionary.dropped:
        dropped = sum(dictionary.dropped.values())
        return (f"{path}: none of its {dropped} entries has two distinct words "
                f"({dictionary.dropped}), so no dictionary word can be matched; each entry needs a "
                "word and at least one different translation")
    size = os.path.getsize(path)
    blank = "blank lines and comments" if dictionary.format == "pairs" else "blank lines"
    what = "the file is empty (0 bytes)" if size == 0 else \
        f"the file is empty: its {size} bytes hold no entry, only {blank}"
    example = ('{"words": "bank $ banque"}' if dictionary.format == "multiway"
               else "'bank<TAB>banque'")
    return (f"{path}: {what}, so no dictionary word can be matched; give a dictionary with entries "
            f"like {example}")


@dataclass
class TokenizedDictionary:
    """A dictionary with every word in word-initial token ids.

    Attributes:
        concepts: concept -> list of (word, ids) for its usable words (concepts left with fewer
            than two usable words are dropped).
        source_concepts: for each kept concept, its concept id in the ``Dictionary`` (file order).
        report: counts (concepts, words, usable words, dropped words by reason).
    """

    concepts: List[List[Tuple[str, Tuple[int, ...]]]]
    source_concepts: List[int]
    report: Dict[str, object]

    def id_concepts(self) -> List[List[Tuple[int, ...]]]:
        """Concepts as lists of id tuples (input of ``codeswitch.CodeSwitchTable.from_concepts``)."""
        return [[ids for _, ids in c] for c in self.concepts]


@dataclass
class WordTokens:
    """Many words in word-initial token ids, flat (see ``tokenize_words``).

    Attributes:
        ids: per word, its id tuple.
        flat: all ids back to back (int64).
        starts: where each word starts in ``flat``.
        lengths: each word's length.
        codes: per word, its ``WordProblem`` code (``USABLE``: 0).
    """

    ids: List[Tuple[int, ...]]
    flat: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    codes: np.ndarray


def check_clone_words(dictionary: Dictionary, tokenizer) -> None:
    """Raise if the dictionary has English-Clone words but the tokenizer is a plain one."""
    if tokenizer.english_clone:
        return
    for c, words in enumerate(dictionary.entries):
        for word in words:
            if word.startswith(CLONE_TAG):
                raise DictionaryError(
                    f"{dictionary.where(c)}: word {word!r} is an English-Clone word but the "
                    f"tokenizer is a plain {tokenizer.describe()}; pass --english-clone "
                    "(build_tokenizer(..., english_clone=True))."
                )


def tokenize_words(words: Sequence[str], tokenizer, *, max_tokens: int = 30) -> WordTokens:
    """Tokenize words on their own in word-initial form and find the unusable ones (vectorised)."""
    ids = tokenizer.word_initial_ids_batch(list(words))
    n = len(ids)
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=n)
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
    starts = np.zeros(n, dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    codes = tokenizer.word_problem_codes(flat, starts, lengths)
    codes[(codes == WordProblem.USABLE) & (lengths > max_tokens)] = WordProblem.TOO_LONG
    return WordTokens(ids, flat, starts, lengths, codes)


def word_report(dictionary: Dictionary, tokens: WordTokens, tokenizer, *, max_tokens: int,
                max_unknown_share: float) -> Dict[str, int]:
    """Dropped words by reason; raises when the dictionary does not fit the vocabulary."""
    counts = np.bincount(tokens.codes.astype(np.int64), minlength=len(WordProblem)).tolist()
    dropped = {}
    for problem in WordProblem:
        if problem != WordProblem.USABLE and counts[problem]:
            # The report names the cap in force, not the generic message.
            name = f"longer than {max_tokens} tokens" if problem == WordProblem.TOO_LONG else problem.message
            dropped[name] = counts[problem]
    total = len(tokens.codes)
    unknown = counts[WordProblem.UNKNOWN_TOKEN]
    if total and unknown / total > max_unknown_share:
        bad = np.flatnonzero(tokens.codes == WordProblem.UNKNOWN_TOKEN)[:5].tolist()
        concept_of = np.repeat(np.arange(len(dictionary.entries)),
                               [len(e) for e in dictionary.entries])
        flat_words = [w for e in dictionary.entries for w in e]
        examples = ", ".join(f"{flat_words[i]!r} ({dictionary.where(int(concept_of[i]))})" for i in bad)
        raise DictionaryError(
            f"{dictionary.path}: {unknown} of {total} dictionary words "
            f"({100.0 * unknown / total:.0f}%) contain characters outside the vocabulary of "
            f"{tokenizer.describe()}, e.g. {examples}. The dictionary and the tokenizer "
            "do not belong together: train the tokenizer on text in the dictionary's languages."
        )
    return dropped


def _usable_concepts(
    dictionary: Dictionary, tokens: WordTokens
) -> Tuple[List[List[Tuple[str, Tuple[int, ...]]]], List[int]]:
    """The concepts that keep two or more usable words with distinct ids, and their concept ids.

    Args:
        dictionary: the loaded dictionary.
        tokens: its words, concept after concept, as ``tokenize_words`` returned them.

    Returns:
        (concepts, source_concepts): each kept concept as (word, ids) pairs; the first word with
        given ids represents them.
    """
    usable_word = (tokens.codes == WordProblem.USABLE).tolist()
    concepts: List[List[Tuple[str, Tuple[int, ...]]]] = []
    source_concepts: List[int] = []
    k = 0
    for c, words in enumerate(dictionary.entries):
        usable = [(w, tokens.ids[k + i]) for i, w in enumerate(words) if usable_word[k + i]]
        k += len(words)
        if len(usable) == 2:
            if usable[0][1] != usable[1][1]:  # the common case, without the de-duplication below
                concepts.append(usable)
                source_concepts.append(c)
            continue
        seen = set()
        distinct = []
        for w, ids in usable:
            if ids not in seen:
                seen.add(ids)
                distinct.append((w, ids))
        if len(distinct) >= 2:
            concepts.append(distinct)
            source_concepts.append(c)
    return concepts, source_concepts


def tokenize_dictionary(
    dictionary: Dictionary,
    tokenizer,
    *,
    max_tokens: int = 30,
    max_unknown_share: float = 0.2,
) -> TokenizedDictionary:
    """Tokenize every word on its own in word-initial form.

    Args:
        dictionary: a loaded ``Dictionary``.
        tokenizer: a ``tokenizer.TextTokenizer`` (or English-Clone tokenizer).
        max_tokens: words longer than this many tokens are dropped (authors' cap: 30).
        max_unknown_share: if more than this share of the words contain the unknown token, the
            dictionary does not fit the tokenizer and ``DictionaryError`` is raised.

    Returns:
        A ``TokenizedDictionary``. Words that can never match text are dropped and counted by
        reason in ``report["dropped_words"]``; concepts left with fewer than two words are dropped.

    Raises:
        DictionaryError: English-Clone words with a plain tokenizer, or too many words out of the
            tokenizer's vocabulary.
    """
    _ = tokenizer.word_boundaries  # raises for tokenizers without words
    check_clone_words(dictionary, tokenizer)
    flat_words = [w for e in dictionary.entries for w in e]
    tokens = tokenize_words(flat_words, tokenizer, max_tokens=max_tokens)
    dropped = word_report(dictionary, tokens, tokenizer, max_tokens=max_tokens,
                          max_unknown_share=max_unknown_share)
    concepts, source_concepts = _usable_concepts(dictionary, tokens)
    report: Dict[str, object] = OrderedDict(
        concepts_in_file=len(dictionary.entries),
        concepts=len(concepts),
        words=len(flat_words),
        usable_words=sum(len(c) for c in concepts),
        dropped_words=dropped,
        dropped_concepts=len(dictionary.entries) - len(concepts),
    )
    return TokenizedDictionary(concepts, source_concepts, report)


def compile_switch_table(dictionary: Dictionary, tokenizer, *, max_tokens: int = 30,
                         max_unknown_share: float = 0.2) -> Tuple[CodeSwitchTable, Dict[str, object]]:
    """Tokenize a ``dictionary.Dictionary`` in word-initial form and compile it.

    Same word rules and errors as ``tokenize_dictionary``.

    Returns:
        (table, report): the report counts concepts, words and dropped words by reason.
    """
    _ = tokenizer.word_boundaries  # raises for tokenizers without words
    check_clone_words(dictionary, tokenizer)
    words = [w for e in dictionary.entries for w in e]
    tokens = tokenize_words(words, tokenizer, max_tokens=max_tokens)
    dropped = word_report(dictionary, tokens, tokenizer, max_tokens=max_tokens,
                          max_unknown_share=max_unknown_share)
    concept = np.repeat(np.arange(len(dictionary.entries)), [len(e) for e in dictionary.entries])
    ok = tokens.codes == WordProblem.USABLE
    table = CodeSwitchTable.from_word_arrays(tokens.flat, tokens.starts[ok], tokens.lengths[ok], concept[ok])
    report: Dict[str, object] = {
        "concepts_in_file": len(dictionary.entries),
        "words": len(words),
        "usable_words": int(ok.sum()),
        "dropped_words": dropped,
        "keys": len(table),
    }
    return table, report
