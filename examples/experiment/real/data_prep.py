"""Data steps of the real-languages setting, each a function ``(out_dir, inputs) -> dict``.

The same steps as the clone setting (``clone/data_prep.py``), on English and real target languages
(``preset.targets``: German, Spanish, Chinese, or German and Spanish for the multi-way model):

corpus        English paragraphs of the built-in corpus and each target's committed corpus
              (``data/{de,es,zh}.jsonl.gz``), shuffled once (seed 0) and cut per language into
              held-out test, validation and training documents; invented facts rendered into the
              training text (``facts.py``): ``en_only`` into English, ``both`` into English and every
              target, in each language's own templates.
tokenizer     one SentencePiece BPE over all languages' training text, the languages in equal
              amounts (a low-resource target still gets its own pieces); byte fallback.
shards        Megatron shards through ``tools/preprocess_data.py``: ``{lang}_{split}`` per language.
dictionaries  the committed dictionary of the pair (FreeDict, CC-CEDICT, the multi-way en-de-es),
              kept to what the corpora attest: an English word seen ``min_word_count`` times in
              the English training text, translated by its most frequent translation that occurs
              ``min_target_count`` times in the target training text (for Chinese, words of two or
              more ideographs first), each in its most frequent spelling there (``Haus``, not
              ``haus``). ``unseen_share`` of the English words are
              left out, ``dev_words`` held out of stage 1 (still code-switched): multi-way JSONL
              ``stage1``, ``codeswitch``, ``dev``, ``unseen`` (with several targets, the evaluation
              dictionaries per target: ``dev_de``, ``unseen_es``, ...).
codeswitch    the English training shard with input-only code-switching into the target(s). A
              translation has its own token count, so document lengths differ from the plain shard.
transfer      labelled tasks on the committed parallel text (``tasks.py``): Debian Reference chapter
              topics (every target) and, for Spanish, Bible book groups; English train, English test
              and the target test, leak-free splits; and sentence-retrieval pairs from the test side.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import random
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

from examples.experiment.clone import data_prep as clone_data
from examples.experiment.clone.data_prep import CorpusError, preprocess, read_jsonl, write_jsonl
from examples.experiment.clone.facts import make_facts
from examples.experiment.real import facts as real_facts
from examples.experiment.real import tasks
from megatron_prealign.preprocess.lexicon import save_multiway

DATA_DIR = Path(__file__).resolve().parent / "data"
DICTIONARY_DIR = DATA_DIR / "dictionaries"
SPLITS = clone_data.SPLITS
LETTERS = re.compile(r"[^\W\d_]+")
"""Words of alphabetic scripts: runs of letters (any script, no digits or underscores)."""
CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
MAX_CJK_WORD = 4
"""Chinese is written without spaces: a translation is attested when it occurs inside the text,
counted over every substring of up to this many ideographs."""
TOKENIZER_CHARACTERS_PER_LANGUAGE = 3_000_000
DICTIONARY_RULES = "attested-v2"
"""Version of the dictionary rules, part of the dictionaries step's key (v2: one concept per target
spelling, so a held-out word's translation never also belongs to a stage-1 concept)."""
TRANSFER_RULES = "aligned-v2"
"""Version of the transfer/retrieval rules, part of the transfer step's key (v2: English and target
test items are the same aligned units; Debian Reference retrieval a seeded sample; pairs whose texts
collide once cut to the sequence length dropped)."""


def corpus_file(language: str) -> Path:
    path = DATA_DIR / f"{language}.jsonl.gz"
    if not path.is_file():
        raise CorpusError(f"{path}: the committed {language} corpus is missing (rebuild it with "
                          "examples/experiment/real/build_corpora.py)")
    return path


def dictionary_file(pair: str) -> Path:
    """The committed dictionary of a pair: TSV for one target, multi-way JSONL for several."""
    name = DICTIONARY_DIR / (f"{pair}.tsv.gz" if pair.count("-") == 1 else f"{pair}.jsonl.gz")
    if not name.is_file():
        raise CorpusError(f"{name}: no committed dictionary for {pair}")
    return name


def languages(preset) -> List[str]:
    return ["en", *preset.targets]


# --------------------------------------------------------------------------------------------
# corpus


def _split(paragraphs: List[str], preset, cap: int, path: Path) -> Dict[str, List[str]]:
    random.Random(0).shuffle(paragraphs)
    h, v = preset.heldout_paragraphs, preset.valid_paragraphs
    if len(paragraphs) < 4 * (h + v):
        raise CorpusError(f"{path}: only {len(paragraphs)} usable paragraphs; the {preset.name} preset "
                          f"holds out {h} test and {v} validation paragraphs and needs several times more")
    train = paragraphs[h + v:]
    return {"heldout": paragraphs[:h], "valid": paragraphs[h:h + v], "train": train[:cap] if cap else train}


def corpus_step(preset, english_corpus: Path, out: Path, inputs) -> dict:
    parts = {"en": _split(clone_data.usable_paragraphs(english_corpus), preset, preset.max_paragraphs,
                          english_corpus)}
    for language in preset.targets:
        rows = read_jsonl(corpus_file(language))
        parts[language] = _split([" ".join(r["text"].split()) for r in rows], preset,
                                 preset.target_paragraphs, corpus_file(language))
    words = {w.lower() for split in parts.values() for texts in split.values() for t in texts
             for w in LETTERS.findall(t)}
    facts = make_facts(preset.subjects_per_group, words, seed=0)
    en_facts = [f for f in facts if f.group in ("en_only", "both")]
    both = [f for f in facts if f.group == "both"]
    parts["en"]["train"] = real_facts.insert_facts(parts["en"]["train"], en_facts, preset.fact_repetitions_en,
                                                   seed=1, lang="en")
    for offset, language in enumerate(preset.targets):
        parts[language]["train"] = real_facts.insert_facts(
            parts[language]["train"], both, preset.fact_repetitions_clone, seed=2 + offset, lang=language)
    for language, split in parts.items():
        for name, texts in split.items():
            write_jsonl(out / f"{language}_{name}.jsonl", texts)
    (out / "facts.json").write_text(json.dumps([dataclasses.asdict(f) for f in facts], indent=1))
    return {"documents": {lang: {name: len(texts) for name, texts in split.items()}
                          for lang, split in parts.items()},
            "characters": {lang: sum(map(len, split["train"])) for lang, split in parts.items()}}


# --------------------------------------------------------------------------------------------
# tokenizer and shards


def tokenizer_step(preset, out: Path, inputs) -> dict:
    """One BPE over all languages, each contributing up to the same number of characters."""
    import sentencepiece as spm

    train_file = out / "tokenizer_train.txt"
    used = {}
    with open(train_file, "w", encoding="utf-8") as f:
        for language in languages(preset):
            budget = TOKENIZER_CHARACTERS_PER_LANGUAGE
            for row in read_jsonl(inputs["corpus"] / f"{language}_train.jsonl"):
                if budget <= 0:
                    break
                f.write(row["text"] + "\n")
                budget -= len(row["text"])
            used[language] = TOKENIZER_CHARACTERS_PER_LANGUAGE - max(budget, 0)
    spm.SentencePieceTrainer.train(
        input=str(train_file), model_prefix=str(out / "spm"), vocab_size=preset.vocab_size,
        model_type="bpe", byte_fallback=True, character_coverage=0.9995, num_threads=2,
        input_sentence_size=400000, shuffle_input_sentence=True, seed_sentencepiece_size=400000,
        max_sentence_length=1 << 16, minloglevel=2)
    train_file.unlink()
    return {"vocab_size": preset.vocab_size, "characters_per_language": used}


def shards_step(preset, out: Path, inputs) -> dict:
    corpus, spm_model = inputs["corpus"], inputs["tokenizer"] / "spm.model"
    names = [f"{language}_{split}" for split in SPLITS for language in languages(preset)]
    for name in names:
        preprocess(corpus / f"{name}.jsonl", out / name, spm_model, out / "preprocess.log")
    return {"prefixes": {name: f"{name}_text_document" for name in names}}


# --------------------------------------------------------------------------------------------
# dictionaries


def spelling_counts(texts: Iterable[str], language: str, wanted: Optional[Set[str]] = None
                    ) -> Dict[str, Counter]:
    """Per lowercased word of ``wanted`` (all words when ``None``), how often each spelling occurs.

    Chinese has no spaces: there the words are the substrings of up to ``MAX_CJK_WORD`` ideographs
    that are in ``wanted`` (required: counting every substring would take gigabytes).
    """
    counts: Dict[str, Counter] = defaultdict(Counter)
    for text in texts:
        if language == "zh":
            for run in CJK_RUN.findall(text):
                for size in range(1, MAX_CJK_WORD + 1):
                    for start in range(len(run) - size + 1):
                        piece = run[start:start + size]
                        if piece in wanted:
                            counts[piece][piece] += 1
        else:
            for word in LETTERS.findall(text):
                lower = word.lower()
                if wanted is None or lower in wanted:
                    counts[lower][word] += 1
    return counts


def committed_concepts(pair: str) -> List[Tuple[str, Dict[str, List[str]]]]:
    """(English word, {target: [translations]}) from the pair's committed dictionary, in file order."""
    path = dictionary_file(pair)
    targets = pair.split("-")[1:]
    concepts: Dict[str, Dict[str, List[str]]] = {}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            if path.name.endswith(".tsv.gz"):
                english, _, target = line.rstrip("\n").partition("\t")
                if not target:
                    raise CorpusError(f"{path}:{number}: expected english<TAB>{targets[0]}")
                concepts.setdefault(english, {targets[0]: []})[targets[0]].append(target)
            else:
                try:
                    row = json.loads(line)
                    concepts[row["en"]] = {t: list(row[t]) for t in targets}
                except (json.JSONDecodeError, KeyError, TypeError) as err:
                    raise CorpusError(f"{path}:{number}: expected a JSON object with \"en\" and "
                                      f"{', '.join(map(repr, targets))} lists ({err})") from err
    return list(concepts.items())


def _word_like(translation: str, language: str) -> bool:
    """For Chinese, a translation of two or more ideographs: a single ideograph occurs inside many
    words, so its substring count says little about it being used as this word."""
    return language != "zh" or len(translation) >= 2


def attested_concepts(preset, committed, english: Dict[str, Counter], target: Dict[str, Dict[str, Counter]],
                      excluded: set) -> List[List[str]]:
    """Concepts ``[english, target1, ...]`` in the spellings the corpora use (see module docstring)."""
    concepts = []
    for word, translations in committed:
        spellings = english.get(word)
        if not spellings or sum(spellings.values()) < preset.min_word_count or word in excluded \
                or not LETTERS.fullmatch(word):
            continue
        concept = [spellings.most_common(1)[0][0]]
        for language in preset.targets:
            counted = [(sum(target[language][t.lower()].values()), t.lower()) for t in translations[language]
                       if t.lower() in target[language] and t.lower() != word]
            counted = [(n, t) for n, t in counted if n >= preset.min_target_count]
            if not counted:
                break
            best = max(counted, key=lambda nt: (_word_like(nt[1], language), nt[0], nt[1]))[1]
            concept.append(target[language][best].most_common(1)[0][0])
        else:
            concepts.append(concept)
    return _one_concept_per_target_word(concepts, english)


def _one_concept_per_target_word(concepts: List[List[str]], english: Dict[str, Counter]) -> List[List[str]]:
    """Synonyms share translations (big/large -> groß): keep, for each target spelling, the concept of
    the most frequent English word, so no translation belongs to two concepts (a held-out word's
    translation would otherwise be trained under its synonym in stage 1)."""
    def frequency(concept):
        return -sum(english[concept[0].lower()].values()), concept[0]

    kept, taken = [], set()
    for concept in sorted(concepts, key=frequency):
        if taken.isdisjoint(concept[1:]):
            kept.append(concept)
            taken.update(concept[1:])
    return sorted(kept, key=lambda c: c[0])


SMALL_DICTIONARY_HELD_OUT = 5
"""A dictionary too small for the preset's ``dev_words`` holds out a fifth of its entries instead."""


def held_out_count(dev_words: int, entries: int) -> int:
    """How many of ``entries`` (the attested entries left after the unseen ones) are held out of
    stage 1: the preset's ``dev_words`` wherever stage 1 keeps at least as many (every run so far,
    so the dictionaries step's key and outputs stay as they were), else a fifth of them, so a small
    dictionary (en-es attests 1,441 entries at the ``cpu`` scale) still trains most of its words
    in stage 1."""
    if 2 * dev_words <= entries:
        return dev_words
    return entries // SMALL_DICTIONARY_HELD_OUT


def dictionaries_step(preset, out: Path, inputs) -> dict:
    corpus = inputs["corpus"]

    def train_texts(language):
        return (row["text"] for row in read_jsonl(corpus / f"{language}_train.jsonl"))

    committed = committed_concepts(preset.pair)
    english = spelling_counts(train_texts("en"), "en", {word for word, _ in committed})
    target = {language: spelling_counts(train_texts(language), language,
                                        {t.lower() for _, tr in committed for t in tr[language]})
              for language in preset.targets}
    facts = json.loads((corpus / "facts.json").read_text())
    subject_parts = {p.lower() for f in facts for p in f["subject"].split()}
    concepts = attested_concepts(preset, committed, english, target, subject_parts)
    random.Random(0).shuffle(concepts)
    n_unseen = int(round(preset.unseen_share * len(concepts)))
    unseen, rest = concepts[:n_unseen], concepts[n_unseen:]
    n_dev = held_out_count(preset.dev_words, len(rest))
    if n_dev < 1:
        raise CorpusError(f"{dictionary_file(preset.pair)}: only {len(concepts)} entries are attested in the "
                          f"{preset.pair} training text (min_word_count {preset.min_word_count}, "
                          f"min_target_count {preset.min_target_count}): too few to hold some out and "
                          f"align the rest in stage 1")
    if n_dev < preset.dev_words:
        print(f"note: {preset.pair} attests {len(concepts)} dictionary entries, too few to hold out the "
              f"{preset.name} preset's {preset.dev_words}: holding out {n_dev} (a fifth of the "
              f"{len(rest)} left after the unseen ones)", flush=True)
    dev, stage1 = rest[:n_dev], rest[n_dev:]
    counts = {}
    for name, entries in (("stage1", stage1), ("codeswitch", stage1 + dev), ("dev", dev), ("unseen", unseen)):
        counts[name] = save_multiway(entries, str(out / f"{name}.jsonl"))
    if len(preset.targets) > 1:  # evaluation dictionaries per target: P@1 is English -> one language
        for index, language in enumerate(preset.targets, start=1):
            for name, entries in (("dev", dev), ("unseen", unseen)):
                counts[f"{name}_{language}"] = save_multiway([[e[0], e[index]] for e in entries],
                                                             str(out / f"{name}_{language}.jsonl"))
    english_tokens = sum(sum(c.values()) for c in english.values())
    covered = sum(sum(english[c[0].lower()].values()) for c in stage1 + dev)
    report = {"entries": counts, "committed_dictionary": dictionary_file(preset.pair).name,
              "english_words_in_dictionary": len(concepts),
              "coverage_of_english_tokens": round(covered / max(english_tokens, 1), 4)}
    if n_dev < preset.dev_words:  # only then, so the report of every earlier run stays as it was
        report["held_out"] = f"{n_dev}: a fifth, too few entries for the preset's dev_words {preset.dev_words}"
    (out / "report.json").write_text(json.dumps(report, indent=1))
    return report


def evaluation_dictionaries(preset) -> List[str]:
    """Names of the dictionaries P@1 is reported on (``dev`` and ``unseen``, per target when several)."""
    if len(preset.targets) == 1:
        return ["dev", "unseen"]
    return [f"{name}_{language}" for name in ("dev", "unseen") for language in preset.targets]


# --------------------------------------------------------------------------------------------
# code-switching


def codeswitch_step(preset, out: Path, inputs) -> dict:
    preprocess(inputs["corpus"] / "en_train.jsonl", out / "en_train_cs", inputs["tokenizer"] / "spm.model",
               out / "preprocess.log", "--dictionary", inputs["dictionaries"] / "codeswitch.jsonl",
               "--codeswitch-ratio", str(preset.codeswitch_ratio), "--codeswitch-seed", "1")
    stats_file = out / "en_train_cs_preprocess_stats.json"
    return {"codeswitch_stats": json.loads(stats_file.read_text()) if stats_file.exists() else {}}


# --------------------------------------------------------------------------------------------
# transfer tasks and retrieval sets


def transfer_tasks(preset) -> List[Tuple[str, str]]:
    """(task, target language) pairs evaluated for this preset's targets."""
    found = [("debian_reference", language) for language in preset.targets]
    if "es" in preset.targets:
        found.append(("bible", "es"))
    return found


def _balanced(items: Sequence[tuple], per_class: int, salt: str) -> List[tuple]:
    """Up to ``per_class`` items of each label (an item's last field), a deterministic choice ranked
    by the hash of its first field."""
    by_label: Dict[str, List[tuple]] = defaultdict(list)
    for item in sorted(items, key=lambda item: tasks.rank(item[0], salt)):
        if len(by_label[item[-1]]) < per_class:
            by_label[item[-1]].append(item)
    return [item for label in sorted(by_label) for item in by_label[label]]


def _task_records(task: "tasks.TransferTask", language: str, preset) -> List[dict]:
    """English training items; the same aligned test units in English (``source``) and in the target
    (``target``), so the two scores differ only by the language."""
    train = _balanced(task.train, preset.transfer_train_per_class, f"{task.name}-train")
    test = _balanced(task.aligned_test[language], preset.transfer_test_per_class, f"{task.name}-test")
    return ([{"text": t, "label": y, "split": "train"} for t, y in train]
            + [{"text": en, "label": y, "split": "source"} for en, _, y in test]
            + [{"text": tgt, "label": y, "split": "target"} for _, tgt, y in test])


def _distinct_once_cut(pairs: List[Tuple[str, str]], tokenizer, seq_length: int) -> Tuple[List[Tuple[str, str]], int]:
    """The pairs whose source and target each stay distinct from every other kept pair's once cut
    to ``seq_length`` tokens (the evaluation refuses texts it cannot tell apart), and how many were
    dropped."""
    seen: Dict[str, set] = {"source": set(), "target": set()}
    kept = []
    for source, target in pairs:
        cut = {"source": tuple(tokenizer.tokenize(source)[:seq_length]),
               "target": tuple(tokenizer.tokenize(target)[:seq_length])}
        if any(cut[side] in seen[side] for side in seen):
            continue
        for side in seen:
            seen[side].add(cut[side])
        kept.append((source, target))
    return kept, len(pairs) - len(kept)


def retrieval_sets(preset) -> Dict[str, List[Tuple[str, str]]]:
    """EN<->target pairs per set, drawn from the test side of the transfer splits, seeded samples."""
    debian = tasks.load_debian_reference()
    sets = {f"debian_reference_{language}": pairs for language, pairs in
            tasks.debian_reference_retrieval_pairs(debian, limit=preset.retrieval_pairs).items()
            if language in preset.targets}
    if "es" in preset.targets:
        sets["bible_es"] = tasks.bible_retrieval_pairs(tasks.load_bible(), limit=preset.retrieval_pairs)
    return sets


def transfer_step(preset, out: Path, inputs) -> dict:
    from megatron_prealign.text.tokenizers import build_tokenizer

    built = {"debian_reference": tasks.debian_reference_task(tasks.load_debian_reference())}
    if "es" in preset.targets:
        built["bible"] = tasks.bible_transfer_task(tasks.load_bible())
    summary = {"tasks": {}, "retrieval": {}, "retrieval_dropped_as_identical_once_cut": {}}
    for name, language in transfer_tasks(preset):
        records = _task_records(built[name], language, preset)
        write_jsonl_records(out / f"{name}_{language}.jsonl", records)
        summary["tasks"][f"{name}_{language}"] = dict(Counter(r["split"] for r in records))
    tokenizer = build_tokenizer("SentencePieceTokenizer", str(inputs["tokenizer"] / "spm.model"))
    for name, pairs in retrieval_sets(preset).items():
        pairs, dropped = _distinct_once_cut(pairs, tokenizer, preset.seq_length)
        write_jsonl_records(out / f"retrieval_{name}.jsonl", [{"source": s, "target": t} for s, t in pairs])
        summary["retrieval"][name] = len(pairs)
        summary["retrieval_dropped_as_identical_once_cut"][name] = dropped
    return summary


def write_jsonl_records(path: Path, records: Iterable[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")

