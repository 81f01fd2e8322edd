"""Offline sentence splitting for ``--split-sentences`` (nltk Punkt; nothing is downloaded).

Where the Punkt parameters come from, in order:

1. ``--punkt-model PATH``: a directory in nltk's ``punkt_tab`` format, either the language
   directory itself (holding ``collocations.tab``, ``sent_starters.txt``, ``abbrev_types.txt``,
   ``ortho_context.tab``) or an nltk data root containing ``tokenizers/punkt_tab/<lang>/``.
2. nltk data already installed on the machine for ``--lang`` (``nltk.data.find``; no download).
3. Otherwise Punkt is *trained on the input itself* (``PunktTrainer``, unsupervised) on its first
   ``--punkt-train-bytes`` of text; the preprocessor says so, records it in the stats report and
   saves the parameters next to the shards (``{output_prefix}_punkt/``) for reuse with
   ``--punkt-model``.

``punkt_tab`` format (one entry per line, UTF-8, LF): ``collocations.tab`` holds ``word1<TAB>word2``,
``sent_starters.txt`` and ``abbrev_types.txt`` one word each, ``ortho_context.tab``
``word<TAB>integer flags``. Files written here are sorted so that reruns are byte-identical.

Splitting matches Megatron-LM's preprocessor: texts are cut into 1,000,000-character pieces, each
piece is split with Punkt, and with ``--keep-newlines`` the sentence-ending pattern keeps the
newlines that follow a sentence inside the next one instead of dropping them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, List, Optional, Tuple

MAX_CHARS = 1_000_000
_FILES = ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab")


@dataclass
class PunktSource:
    """Where the sentence splitter's parameters came from (for logs and the stats report)."""

    kind: str
    """'path', 'nltk-data' or 'trained-on-input'."""
    path: Optional[str] = None
    """The parameter directory used or written."""
    train_bytes: int = 0
    """Bytes of input text Punkt was trained on (trained-on-input only)."""


def _lang_dir(path: str, lang: str) -> Optional[str]:
    candidates = [path, os.path.join(path, lang), os.path.join(path, "tokenizers", "punkt_tab", lang)]
    for c in candidates:
        if all(os.path.exists(os.path.join(c, f)) for f in _FILES):
            return c
    return None


def load_punkt_params(path: str, lang: str = "english"):
    """Read Punkt parameters in ``punkt_tab`` format (see the module docstring).

    Raises:
        FileNotFoundError: with the files that were looked for.
    """
    from nltk.tokenize.punkt import PunktParameters

    directory = _lang_dir(path, lang)
    if directory is None:
        raise FileNotFoundError(
            f"--punkt-model {path!r}: no punkt_tab parameters found (looked for {', '.join(_FILES)} "
            f"in {path}, {path}/{lang} and {path}/tokenizers/punkt_tab/{lang}). Point it at a "
            "punkt_tab language directory, or drop the flag to train Punkt on the input."
        )

    def lines(name: str) -> List[str]:
        with open(os.path.join(directory, name), encoding="utf-8", newline="") as f:
            return [ln.rstrip("\r\n") for ln in f if ln.rstrip("\r\n") != ""]

    params = PunktParameters()
    params.collocations = {tuple(ln.split("\t")) for ln in lines("collocations.tab")}
    params.sent_starters = set(lines("sent_starters.txt"))
    params.abbrev_types = set(lines("abbrev_types.txt"))
    for ln in lines("ortho_context.tab"):
        word, flags = ln.split("\t")
        params.ortho_context[word] = int(flags)
    return params


def save_punkt_params(params, directory: str) -> str:
    """Write Punkt parameters in ``punkt_tab`` format, sorted. Returns the directory."""
    os.makedirs(directory, exist_ok=True)
    content = {
        "collocations.tab": sorted("\t".join(c) for c in params.collocations),
        "sent_starters.txt": sorted(params.sent_starters),
        "abbrev_types.txt": sorted(params.abbrev_types),
        "ortho_context.tab": sorted(f"{w}\t{n}" for w, n in params.ortho_context.items()),
    }
    for name, rows in content.items():
        tmp = os.path.join(directory, name + ".partial")
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write("\n".join(rows))
        os.replace(tmp, os.path.join(directory, name))
    return directory


def find_installed_punkt(lang: str) -> Optional[str]:
    """The installed nltk ``punkt_tab`` directory for ``lang``, or None (never downloads)."""
    try:
        import nltk.data

        found = nltk.data.find(f"tokenizers/punkt_tab/{lang}/")
    except (LookupError, ValueError, OSError):
        return None
    path = str(found)
    return path if os.path.isdir(path) else None


def train_punkt(texts: Iterable[str]):
    """Train Punkt parameters on texts (unsupervised, deterministic)."""
    from nltk.tokenize.punkt import PunktTrainer

    trainer = PunktTrainer()
    for text in texts:
        trainer.train(text, finalize=False)
    trainer.finalize_training()
    return trainer.get_params()


def make_splitter(params, keep_newlines: bool):
    """A Punkt sentence tokenizer from parameters, as Megatron-LM configures it."""
    from nltk.tokenize.punkt import PunktLanguageVars, PunktSentenceTokenizer

    if not keep_newlines:
        return PunktSentenceTokenizer(train_text=params)

    class KeepNewlinesLanguageVars(PunktLanguageVars):
        # Punkt's default period context consumes the whitespace after a candidate sentence end
        # (``\s+`` before the next token). Allowing zero whitespace there, and not requiring it
        # before the next token, leaves newlines to the following sentence instead of dropping
        # them (the pattern is compiled with re.VERBOSE, so layout does not matter).
        _period_context_fmt = (
            r"\S* %(SentEndChars)s \s* (?=(?P<after_tok> %(NonWord)s | (?P<next_tok>\S+) ))"
        )

    return PunktSentenceTokenizer(train_text=params, lang_vars=KeepNewlinesLanguageVars())


def split_text(splitter, text: str) -> List[str]:
    """Sentences of ``text``: 1,000,000-character pieces, each split by Punkt."""
    out: List[str] = []
    for i in range(0, len(text), MAX_CHARS):
        out.extend(splitter.tokenize(text[i : i + MAX_CHARS]))
    return out


def resolve_punkt(
    punkt_model: Optional[str], lang: str, sample_texts: Optional[Iterable[str]]
) -> Tuple[object, PunktSource]:
    """Find or train the Punkt parameters (see the module docstring for the order).

    Args:
        punkt_model: ``--punkt-model`` or None.
        lang: ``--lang``.
        sample_texts: texts to train on when nothing is installed (consumed lazily).

    Returns:
        (params, source).
    """
    if punkt_model:
        return load_punkt_params(punkt_model, lang), PunktSource("path", punkt_model)
    installed = find_installed_punkt(lang)
    if installed is not None:
        return load_punkt_params(installed, lang), PunktSource("nltk-data", installed)
    if sample_texts is None:
        raise FileNotFoundError(
            f"no Punkt parameters for {lang!r} are installed and there is no text to train on; "
            "pass --punkt-model DIR."
        )
    texts = list(sample_texts)
    params = train_punkt(texts)
    size = sum(len(t.encode("utf-8", "replace")) for t in texts)
    return params, PunktSource("trained-on-input", None, size)
