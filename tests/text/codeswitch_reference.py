"""A plain-Python reference of ``codeswitch_batch`` (one word at a time), for the tests only.
"""

from __future__ import annotations

from typing import List, Tuple

from megatron_prealign.text.codeswitch import (
    IGNORE,
    CodeSwitchTable,
    SwitchStats,
    word_draws_int,
)
from megatron_prealign.text.words import TokenKind, WordBoundaries


def codeswitch_reference(
    sequences: List[List[int]],
    doc_key: int,
    table: CodeSwitchTable,
    boundaries: WordBoundaries,
    ratio: float,
) -> Tuple[List[List[int]], List[List[int]], SwitchStats]:
    """A slow, line-by-line twin of ``codeswitch_batch`` for one document (tests use it as spec).

    Returns:
        (input sequences, target sequences, stats).
    """
    kinds = boundaries.kinds
    stats = SwitchStats()
    out_in: List[List[int]] = []
    out_tg: List[List[int]] = []
    doc_offset = 0
    for seq in sequences:
        xs: List[int] = []
        ys: List[int] = []
        i = 0
        n = len(seq)
        stats.tokens_in += n
        while i < n:
            if kinds[seq[i]] != TokenKind.START:
                xs.append(seq[i])
                ys.append(seq[i])
                i += 1
                continue
            j = i + 1
            while j < n and kinds[seq[j]] in (TokenKind.CONT, TokenKind.PUNCT):
                j += 1
            while j > i + 1 and kinds[seq[j - 1]] == TokenKind.PUNCT:
                j -= 1
            word = tuple(seq[i:j])
            if not any(boundaries.letters[t] for t in word):
                xs.extend(word)
                ys.extend(word)
                i = j
                continue
            stats.words += 1
            translations = table.lookup(word)
            if translations is None:
                xs.extend(word)
                ys.extend(word)
                i = j
                continue
            stats.dictionary_words += 1
            u, v = word_draws_int(doc_key, doc_offset + i)
            if u < ratio:
                stats.switched_words += 1
                t = translations[min(int(v * len(translations)), len(translations) - 1)]
                xs.extend(t)
                ys.append(word[0])
                ys.extend([IGNORE] * (len(t) - 1))
            else:
                xs.extend(word)
                ys.extend(word)
            i = j
        doc_offset += n
        stats.tokens_out += len(xs)
        out_in.append(xs)
        out_tg.append(ys)
    return out_in, out_tg, stats
