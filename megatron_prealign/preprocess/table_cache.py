"""A disk cache of compiled code-switching dictionaries.

Compiling a dictionary (parse the file, tokenize every word in word-initial form, build the hash
table) costs seconds for a 100k-entry lexicon, which is most of the extra time code-switching adds
to a job over a few hundred MB of text. A corpus is usually preprocessed in many jobs (one per
input file, shard or language) with the same dictionary and tokenizer, so the compiled table is
saved once and loaded in milliseconds afterwards.

An entry is keyed by everything the compiled table depends on: the dictionary file's bytes
(SHA-256), its format, the tokenizer's fingerprint (type, model digest, sizes, clone flag), the
word rules (``max_tokens``, ``max_unknown_share``) and ``CACHE_VERSION``. Editing the dictionary or
switching tokenizer therefore misses the cache; nothing is ever invalidated by time. Entries are
written under a temporary name and renamed, so a killed job leaves no half-written entry; an
unreadable entry is reported, recompiled and replaced. A cache that cannot be written (read-only
directory, full disk) only costs the speed-up.

Location: ``--dictionary-cache-dir``, else ``$PREALIGN_CACHE_DIR/codeswitch``, else
``~/.cache/megatron-prealign/codeswitch``. ``--no-dictionary-cache`` turns it off.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from typing import Callable, Dict, Optional, Tuple

import numpy as np

from megatron_prealign.files import sha256_file
from megatron_prealign.text.codeswitch import CodeSwitchTable

CACHE_VERSION = 1
"""Bump when the compiled layout or the word rules change."""


def default_cache_dir() -> str:
    root = os.environ.get("PREALIGN_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "megatron-prealign")
    return os.path.join(root, "codeswitch")


def cache_key(dictionary_path: str, dictionary_format: str, tokenizer, **word_rules) -> str:
    """The hex key of a compiled table (see the module docstring for what it covers)."""
    ident = {
        "version": CACHE_VERSION,
        "dictionary_sha256": sha256_file(dictionary_path),
        "dictionary_format": dictionary_format,
        "tokenizer": tokenizer.fingerprint(),
        "word_rules": word_rules,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode("utf-8")).hexdigest()[:32]


def _save(path: str, table: CodeSwitchTable, report: dict) -> None:
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, *table.state_arrays(), report=np.array(json.dumps(report)))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _load(path: str) -> Tuple[CodeSwitchTable, dict]:
    with np.load(path, allow_pickle=False) as z:
        arrays = [z[f"arr_{i}"] for i in range(len(z.files) - 1)]
        report = json.loads(str(z["report"]))
    return CodeSwitchTable.from_state_arrays(arrays), report


def load_or_compile(
    dictionary_path: str,
    dictionary_format: str,
    tokenizer,
    compile_fn: Callable[[], Tuple[CodeSwitchTable, dict]],
    cache_dir: Optional[str],
    **word_rules,
) -> Tuple[CodeSwitchTable, dict, Dict[str, object]]:
    """The compiled table of a dictionary, from the cache when it holds it.

    Args:
        compile_fn: compiles the table (and its report) on a miss.
        cache_dir: the cache directory; None turns the cache off.
        word_rules: the compile options the table depends on (part of the key).

    Returns:
        (table, report, cache_info): ``cache_info`` says ``hit``/``miss``/``off`` and the entry's path.
    """
    try:
        key = None if cache_dir is None else cache_key(dictionary_path, dictionary_format, tokenizer,
                                                       **word_rules)
    except OSError:  # a missing or unreadable dictionary: compiling reports it with the file named
        key = None
    if key is None:
        table, report = compile_fn()
        return table, report, {"status": "off"}
    path = os.path.join(cache_dir, key + ".npz")
    if os.path.exists(path):
        try:
            table, report = _load(path)
            return table, report, {"status": "hit", "path": path}
        except Exception as err:  # any unreadable entry is rebuilt, never trusted
            print(f"warning: compiled-dictionary cache entry {path} is unreadable ({err}); "
                  "recompiling it.", file=sys.stderr)
    table, report = compile_fn()
    info: Dict[str, object] = {"status": "miss", "path": path}
    try:
        _save(path, table, report)
    except OSError as err:
        print(f"warning: could not write the compiled-dictionary cache {path} ({err}); "
              "continuing without it.", file=sys.stderr)
        info = {"status": "unwritable", "path": path}
    return table, report, info
