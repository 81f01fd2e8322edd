"""English-Clone data: clone shards and the English<->Clone dictionary, made offline.

The clone language itself (ids ``i + V``, the ``<clone>`` spelling, the doubled tokenizer) is
``text.tokenizers.english_clone``.

Clone dictionary
----------------
The generated English<->Clone dictionary is an ordinary multi-way JSONL dictionary
(``text.dictionary``) with one concept per English word, e.g.
``{"words": "bank $ <clone>bank"}``: stage 1 aligns the pair, and code-switching replaces an English
word by its clone (and a clone word by its English original).

Clone shards
------------
A clone shard is an English shard with every id (EOD included) plus ``V``: same ``.idx`` lengths
and document boundaries, token dtype chosen for ``2V``. ``write_clone_shard`` makes one from an
English shard without re-tokenizing; ``tools/preprocess_data.py --write-clone`` writes the same
bytes directly from text. It refuses an output that is one of its inputs (the English shard or its
code-switching companion, whatever the spelling or symlink that leads there), and removes a stale
companion left at the output prefix by an older dataset, which training would otherwise pair with
the clone.
"""

from __future__ import annotations

import glob
import json
import os
from collections import Counter
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from megatron_prealign.errors import PreAlignError
from megatron_prealign.files import atomic_open
from megatron_prealign.shards.writer import (
    TARGETS_SUFFIX,
    ShardWriter,
    commit_outputs,
    companion_prefix,
    indexed_dataset_module,
    optimal_token_dtype,
)
from megatron_prealign.text.tokenizers.base import TextTokenizer
from megatron_prealign.text.tokenizers.english_clone import (
    EnglishCloneTokenizer,
    clone_word,
    is_clone_word,
    to_clone_ids,
)
from megatron_prealign.text.words import WordBoundaries, find_words


class PathError(PreAlignError, ValueError):
    """An input file that is missing, or an output that would overwrite an input; names both."""


def check_shard_exists(prefix: str, flag: str = "--input-prefix") -> None:
    """Raise ``PathError`` naming the missing ``.bin``/``.idx`` of the shard ``prefix``."""
    missing = [prefix + ext for ext in (".bin", ".idx") if not os.path.isfile(prefix + ext)]
    if not missing:
        return

    if len(missing) == 1:
        hint = "the shard is incomplete; write it again with tools/preprocess_data.py"
    else:
        hint = "pass the shard prefix that tools/preprocess_data.py printed, without .bin/.idx"
        stem = prefix[:-4] if prefix.endswith((".bin", ".idx")) else prefix
        found = [f[: -len(".idx")] for f in sorted(glob.glob(glob.escape(stem) + "*.idx"))]
        found = [f for f in found if not f.endswith(TARGETS_SUFFIX)]
        if found:
            hint = "did you mean " + " or ".join(found[:3]) + "?"
    raise PathError(f"{flag} {prefix}: {' and '.join(missing)} not found; {hint}")


def _same_file(a: str, b: str) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):  # any spelling, symlinks in any component
        return True
    try:
        return os.path.samefile(a, b)  # one file under two mounts (bind mounts), or hard links
    except OSError:
        return False


def check_outputs_apart(inputs: Sequence[Tuple[str, str]], outputs: Sequence[Tuple[str, str]]) -> None:
    """Refuse an output file that is an input file, or another output (before anything is written).

    Args:
        inputs, outputs: (what the file is, e.g. ``"--input-prefix"``, its path) pairs.

    Raises:
        PathError: naming both files and the flag to change.
    """
    for k, (what, path) in enumerate(outputs):
        for other, other_path in list(inputs) + list(outputs[:k]):
            if _same_file(path, other_path):
                why = ("writing it would replace that file" if os.path.exists(other_path) else
                       "the two must be different files")
                raise PathError(f"{what} {path} is the same file as {other} {other_path}: {why}; "
                                "choose another output path")


def words_in_ids(
    tokens: np.ndarray, seq_lengths: np.ndarray, boundaries: WordBoundaries
) -> Counter:
    """Count the distinct word id-sequences in a batch of sequences (see ``codeswitch.find_words``)."""
    starts, ends = find_words(np.asarray(tokens, dtype=np.int64), seq_lengths, boundaries)
    counts: Counter = Counter()
    toks = tokens.tolist()
    for s, e in zip(starts.tolist(), ends.tolist()):
        counts[tuple(toks[s:e])] += 1
    return counts


def words_from_shard(
    prefix: str, tokenizer: TextTokenizer, *, min_count: int = 1, max_words: Optional[int] = None
) -> Tuple[List[str], Dict[str, int]]:
    """The English words of a shard, most frequent first, as strings that round-trip.

    A word is kept only if ``tokenizer.word_initial_ids(detokenized word)`` gives back exactly the
    ids seen in the shard, so that code-switching will find it again.

    Args:
        prefix: the shard prefix (``..._text_document``).
        tokenizer: the English tokenizer the shard was written with.
        min_count: minimum number of occurrences.
        max_words: keep at most this many (the most frequent).

    Returns:
        (words, report): the words and counts of what was dropped and why.
    """
    check_shard_exists(prefix)
    data = indexed_dataset_module().IndexedDataset(prefix)
    boundaries = tokenizer.word_boundaries
    counts: Counter = Counter()
    lengths = data.index.sequence_lengths
    batch = 4096
    for first in range(0, len(lengths), batch):
        last = min(first + batch, len(lengths))
        total = int(lengths[first:last].sum())
        if total == 0:
            continue
        ptr = int(data.index.sequence_pointers[first])
        toks = np.asarray(data.bin_reader.read(data.index.dtype, total, ptr), dtype=np.int64)
        tokenizer.check_ids(toks, f"{prefix}.bin")
        counts.update(words_in_ids(toks, lengths[first:last].astype(np.int64), boundaries))
    report = {"word_types": len(counts), "below_min_count": 0, "not_round_trip": 0}
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    frequent = [ids for ids, n in ranked if n >= min_count]
    report["below_min_count"] = len(ranked) - len(frequent)
    texts = [tokenizer.detokenize(ids).strip() for ids in frequent]
    again = tokenizer.word_initial_ids_batch([t for t in texts if t])
    again_iter = iter(again)
    words: List[str] = []
    seen = set()
    for ids, word in zip(frequent, texts):
        back = next(again_iter) if word else None
        if not word or word in seen or back != ids:
            report["not_round_trip"] += 1
            continue
        seen.add(word)
        words.append(word)
        if max_words is not None and len(words) >= max_words:
            break
    report["words"] = len(words)
    return words, report


def clone_dictionary_entries(words: Iterable[str]) -> List[List[str]]:
    """One concept per English word: ``[word, <clone>word]``."""
    out = []
    seen = set()
    for w in words:
        if w in seen or is_clone_word(w):
            continue
        seen.add(w)
        out.append([w, clone_word(w)])
    return out


def build_clone_dictionary(
    words: Iterable[str], tokenizer: TextTokenizer
) -> Tuple[List[List[str]], Dict[str, int]]:
    """The English<->Clone dictionary for a word list, keeping words the tokenizer can match.

    Args:
        words: English words.
        tokenizer: the English tokenizer (or its English-Clone wrapper).

    Returns:
        (entries, report): ``[[word, "<clone>word"], ...]`` and counts of dropped words by reason.
    """
    base = tokenizer.base if isinstance(tokenizer, EnglishCloneTokenizer) else tokenizer
    candidates = clone_dictionary_entries(words)
    problems = base.word_problems(base.word_initial_ids_batch([e[0] for e in candidates]))
    entries: List[List[str]] = []
    report: Dict[str, int] = Counter()
    for entry, problem in zip(candidates, problems):
        if problem is not None:
            report[f"dropped: {problem}"] += 1
            continue
        entries.append(entry)
    report = dict(report)
    report["entries"] = len(entries)
    return entries, report


def write_clone_shard(
    input_prefix: str, output_prefix: str, base_vocab_size: int, *, block_tokens: int = 1 << 22
) -> Dict[str, object]:
    """Write the clone of an English shard: every id + V, atomically (see ``shards.writer``).

    Args:
        input_prefix: the English shard prefix (``.bin``/``.idx`` must exist).
        output_prefix: the clone shard prefix to write.
        base_vocab_size: V, the English vocabulary size.
        block_tokens: tokens converted per block (bounds memory).

    Returns:
        A small report (documents, sequences, tokens, dtype).
    """
    check_shard_exists(input_prefix)
    check_outputs_apart(shard_files("the English shard", input_prefix),
                        shard_files("the clone shard", output_prefix))
    data = indexed_dataset_module().IndexedDataset(input_prefix)
    dtype = optimal_token_dtype(2 * base_vocab_size)
    in_dtype = data.index.dtype
    lengths = np.asarray(data.index.sequence_lengths, dtype=np.int64)
    total = int(lengths.sum())
    writer = ShardWriter(output_prefix, dtype)
    try:
        done = 0
        while done < total:
            n = min(block_tokens, total - done)
            block = np.asarray(
                data.bin_reader.read(in_dtype, n, done * np.dtype(in_dtype).itemsize), dtype=np.int64
            )
            writer.write_tokens(to_clone_ids(block, base_vocab_size))
            done += n
        writer.set_index(lengths, np.asarray(data.index.document_indices, dtype=np.int64))
        writer.finalize()
        commit_outputs([writer], stale_prefixes=[companion_prefix(output_prefix)])
    except BaseException:
        writer.abort()
        raise
    return {
        "documents": int(len(data.index.document_indices) - 1),
        "sequences": int(len(lengths)),
        "tokens": total,
        "dtype": np.dtype(dtype).name,
    }


def shard_files(what: str, prefix: str) -> List[Tuple[str, str]]:
    """(label, path) of the ``.bin``/``.idx`` of a shard and of its code-switching companion, for
    ``check_outputs_apart``."""
    return [(label, path + ext)
            for label, path in ((what, prefix), (f"{what}'s companion", companion_prefix(prefix)))
            for ext in (".bin", ".idx")]


def save_dictionary_report(path: str, report: Dict[str, object]) -> None:
    """Write a JSON report next to a generated dictionary."""
    with atomic_open(path) as f:
        json.dump(report, f, indent=2, sort_keys=True)
        f.write("\n")
