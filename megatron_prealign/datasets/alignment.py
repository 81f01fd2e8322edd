"""Stage-1 data: dictionary entries as training samples, and their word batches.

A sample is one *entry* (a concept with k >= 2 words, every word as its word-initial token ids,
tokenized on its own with no context: ``dictionary.tokenize_dictionary``). A micro-batch of entries
becomes a word batch: each word is one row, right-padded to the longest word of the batch (rounded up
to ``pad_to_multiple``, e.g. the tensor-parallel size under sequence parallelism), with

    tokens      [n_words, L]  word token ids, 0 on padding
    word_mask   [n_words, L]  1 on the word's real tokens (what pooling averages over)
    labels      [n_words, L]  next token of the word (LM loss on dictionary words)
    loss_mask   [n_words, L]  1 where a next token exists inside the word
    position_ids[n_words, L]  0..L-1
    concept_ids [n_words]     global concept id (positives share it)
    word_index  [n_words]     position of the word inside its entry (0 = the entry's first word)

Entries are split once, by seed, into train and held-out parts (``split_entries``); the training
stream visits the train entries in a fresh seeded permutation every epoch, so a run is a pure function
of (dictionary, seed) and resumes from ``consumed_samples`` like the pretraining stream.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

Entry = Tuple[int, List[Tuple[int, ...]]]  # (concept id, words as token-id tuples)


def split_entries(num_entries: int, heldout_fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Deterministic train / held-out split of entry indices."""
    if not 0.0 <= heldout_fraction < 1.0:
        raise ValueError(f"--alignment-heldout-fraction must be in [0, 1), got {heldout_fraction}")
    order = np.random.RandomState(seed).permutation(num_entries)
    num_heldout = int(round(heldout_fraction * num_entries))
    return np.sort(order[num_heldout:]), np.sort(order[:num_heldout])


class EntryStream(torch.utils.data.Dataset):
    """``num_samples`` entries drawn epoch by epoch, each epoch a seeded permutation."""

    def __init__(self, entries: Sequence[Entry], num_samples: int, seed: int):
        if not entries:
            raise ValueError("the alignment dictionary has no usable training entry")
        self.entries = list(entries)
        self.num_samples = num_samples
        self.seed = seed
        epochs = -(-num_samples // len(self.entries))
        self.order = np.concatenate([
            np.random.RandomState(seed + 7919 * epoch).permutation(len(self.entries))
            for epoch in range(epochs)
        ])[:num_samples]

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> Entry:
        return self.entries[int(self.order[index])]


def collate_words(entries: Sequence[Entry], pad_to_multiple: int = 1) -> Dict[str, torch.Tensor]:
    """Flatten a list of entries into the padded word batch described in the module docstring."""
    words = [(concept, position, ids) for concept, entry_words in entries
             for position, ids in enumerate(entry_words)]
    length = max(len(ids) for _, _, ids in words)
    length = -(-length // pad_to_multiple) * pad_to_multiple
    n = len(words)
    tokens = torch.zeros(n, length, dtype=torch.long)
    word_mask = torch.zeros(n, length, dtype=torch.float)
    for row, (_, _, ids) in enumerate(words):
        tokens[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        word_mask[row, :len(ids)] = 1.0
    labels = torch.zeros_like(tokens)
    labels[:, :-1] = tokens[:, 1:]
    loss_mask = torch.zeros_like(word_mask)
    loss_mask[:, :-1] = word_mask[:, 1:]  # a next token exists inside the word
    return {
        "tokens": tokens,
        "word_mask": word_mask,
        "labels": labels,
        "loss_mask": loss_mask,
        "position_ids": torch.arange(length).unsqueeze(0).expand(n, length).contiguous(),
        "concept_ids": torch.tensor([c for c, _, _ in words], dtype=torch.long),
        "word_index": torch.tensor([p for _, p, _ in words], dtype=torch.long),
    }
