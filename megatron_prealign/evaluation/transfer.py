"""Zero-shot cross-lingual transfer of a classification task, with a linear probe.

Protocol (documented because the paper fine-tunes and we probe): the model stays frozen. Every
text is encoded once; its feature is the mean over its tokens of the hidden state at one level
(``final_norm`` by default: the last layer's normalized output, what the LM head reads). A
softmax (multinomial logistic-regression) probe is trained on language-A training texts only:
features standardized with the training mean and standard deviation, full-batch Adam for
``steps`` steps with L2 weight decay, fixed seed, CPU fp32, so a run is deterministic and takes
seconds. The same probe, with the same standardization, then labels held-out texts in language A
(``source_accuracy``, the in-language reference) and in language B (``target_accuracy``, zero-shot
transfer). A probe measures how much of the task the frozen representations carry across
languages.

``fine_tuned_transfer`` is the paper's protocol instead: a copy of the whole model is fine-tuned
with a classification head (on the mean-pooled final-norm state) on language-A training texts, then
labels held-out A and B texts. Seeded batches and head, CPU fp32: deterministic too. Its option
``freeze_embeddings`` keeps the token tables fixed, so B's words keep the representations they had
relative to A's (fine-tuning otherwise moves only the embedding rows of the words A's texts use).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F

from megatron_prealign.evaluation.models import EvalModel, HFEvalModel

LabeledSet = Tuple[Sequence[Sequence[int]], Sequence[int]]  # (token id sequences, class labels)


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    """How the linear probe is trained."""

    level: str = "final_norm"
    """Level whose mean-pooled hidden state is the feature (``embedding``, ``layerK``, ...)."""
    steps: int = 300
    """Full-batch optimizer steps."""
    lr: float = 0.05
    """Adam learning rate."""
    weight_decay: float = 1e-3
    """L2 penalty on the probe weights (added to the loss)."""
    seed: int = 0
    """Seed of the probe initialization."""
    batch_size: int = 32
    """Texts per forward pass when extracting features."""

    def __post_init__(self):
        if self.steps < 1 or self.lr <= 0 or self.weight_decay < 0:
            raise ValueError("ProbeConfig: steps >= 1, lr > 0 and weight_decay >= 0 are required")


def pooled_features(model: EvalModel, sequences: Sequence[Sequence[int]], level: str = "final_norm",
                    batch_size: int = 32) -> torch.Tensor:
    """``[n, h]``: mean over each sequence's tokens of the ``level`` hidden state (not normalized)."""
    return pooled_features_at(model, sequences, [level], batch_size)[level]


@torch.no_grad()
def pooled_features_at(model: EvalModel, sequences: Sequence[Sequence[int]], levels: Sequence[str],
                       batch_size: int = 32) -> Dict[str, torch.Tensor]:
    """``{level: [n, h]}``, every level from one forward pass per batch (``pooled_features``)."""
    if not sequences:
        raise ValueError("no sequence to encode")
    out: Dict[str, List[torch.Tensor]] = {level: [] for level in levels}
    for tokens, mask in _batches(sequences, model.max_length, batch_size):
        hidden = model.hidden_levels(tokens, list(levels))  # {level: [b, s, h]}
        for level in levels:
            out[level].append(_mean_pool(hidden[level], mask))
    return {level: torch.cat(chunks) for level, chunks in out.items()}


def _batches(sequences: Sequence[Sequence[int]], max_length: int, batch_size: int):
    """``(tokens [b, s], mask [b, s])`` per batch: right-padded, cut to ``max_length``."""
    for start in range(0, len(sequences), batch_size):
        chunk = [list(s)[:max_length] for s in sequences[start:start + batch_size]]
        length = max(len(s) for s in chunk)
        tokens = torch.zeros(len(chunk), length, dtype=torch.long)  # [b, s]
        mask = torch.zeros(len(chunk), length)
        for row, seq in enumerate(chunk):
            tokens[row, :len(seq)] = torch.tensor(seq)
            mask[row, :len(seq)] = 1.0
        yield tokens, mask


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    keep = mask.unsqueeze(-1)  # [b, s, 1]
    return (hidden * keep).sum(1) / keep.sum(1).clamp(min=1)  # [b, h]


class LinearProbe:
    """A trained softmax probe: standardization + one linear layer."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, linear: torch.nn.Linear):
        self.mean, self.std, self.linear = mean, std, linear

    @torch.no_grad()
    def predict(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear((features - self.mean) / self.std).argmax(-1)  # [n]

    def accuracy(self, features: torch.Tensor, labels: Sequence[int]) -> float:
        labels = torch.as_tensor(list(labels), dtype=torch.long)
        return int((self.predict(features) == labels).sum()) / len(labels)


def train_probe(features: torch.Tensor, labels: Sequence[int], num_classes: int,
                config: ProbeConfig = ProbeConfig()) -> LinearProbe:
    """Fit the softmax probe on ``[n, h]`` features (module docstring for the recipe)."""
    labels = torch.as_tensor(list(labels), dtype=torch.long)
    x = features.float()
    mean = x.mean(0, keepdim=True)  # [1, h]
    std = x.std(0, keepdim=True, unbiased=False).clamp(min=1e-6)  # [1, h]
    x = (x - mean) / std
    generator = torch.Generator().manual_seed(config.seed)
    linear = torch.nn.Linear(x.shape[1], num_classes)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(linear.weight.shape, generator=generator) * 0.01)
        linear.bias.zero_()
    optimizer = torch.optim.Adam(linear.parameters(), lr=config.lr)
    for _ in range(config.steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(linear(x), labels) + config.weight_decay * linear.weight.pow(2).sum()
        loss.backward()
        optimizer.step()
    return LinearProbe(mean, std, linear)


def zero_shot_transfer(model: EvalModel, train: LabeledSet, source_test: LabeledSet,
                       target_test: LabeledSet, config: ProbeConfig = ProbeConfig(),
                       more_levels: Sequence[str] = ()) -> Dict[str, object]:
    """Train the probe on language A, test it on held-out A and on B.

    Args:
        model: an ``EvalModel`` (frozen).
        train: (sequences, labels) in language A.
        source_test: held-out (sequences, labels) in language A.
        target_test: (sequences, labels) in language B.
        config: probe settings; ``config.level`` is the headline level.
        more_levels: further levels to probe the same way (their own probe each, features from the
            same forward passes), reported under ``"levels"`` beside ``config.level``.

    Returns:
        ``{"train_accuracy", "source_accuracy", "target_accuracy", "chance", "num_classes",
        "train_size", "source_size", "target_size", "level"}`` for ``config.level``; ``chance`` is the
        accuracy of always answering the most frequent training class on the target set. With
        ``more_levels``, also ``"levels": {level: {"train_accuracy", "source_accuracy",
        "target_accuracy"}}``, headline level first.
    """
    labels = _check_labels(train)
    num_classes = max(labels + [int(y) for y in source_test[1]] + [int(y) for y in target_test[1]]) + 1
    levels = [config.level] + [level for level in more_levels if level != config.level]
    feats = {name: pooled_features_at(model, data[0], levels, config.batch_size)
             for name, data in (("train", train), ("source", source_test), ("target", target_test))}
    per_level = {}
    for level in levels:
        probe = train_probe(feats["train"][level], labels, num_classes, config)
        per_level[level] = {"train_accuracy": probe.accuracy(feats["train"][level], labels),
                            "source_accuracy": probe.accuracy(feats["source"][level], source_test[1]),
                            "target_accuracy": probe.accuracy(feats["target"][level], target_test[1])}
    result = dict(per_level[config.level], **_sizes_and_chance(labels, source_test, target_test, num_classes),
                  level=config.level)
    if more_levels:
        result["levels"] = per_level
    return result


def _check_labels(train: LabeledSet) -> List[int]:
    labels: List[int] = [int(y) for y in train[1]]
    if len(set(labels)) < 2:  # the probe would always answer that class: accuracy 1.0, chance 1.0
        raise ValueError(f"the training examples have {len(set(labels))} class(es); a probe needs "
                         "at least two to measure anything")
    return labels


def _sizes_and_chance(labels: List[int], source_test: LabeledSet, target_test: LabeledSet,
                      num_classes: int) -> Dict[str, object]:
    majority = max(set(labels), key=labels.count)
    target_labels = [int(y) for y in target_test[1]]
    return {"chance": target_labels.count(majority) / len(target_labels), "num_classes": num_classes,
            "train_size": len(labels), "source_size": len(source_test[1]), "target_size": len(target_labels)}


@dataclasses.dataclass(frozen=True)
class FineTuneConfig:
    """How ``fine_tuned_transfer`` fine-tunes (AdamW, constant learning rates, seeded batches)."""

    steps: int = 200
    """Optimizer steps."""
    batch_size: int = 16
    """Training texts per step, drawn with replacement (seeded)."""
    lr: float = 1e-4
    """Learning rate of the model's own weights."""
    head_lr: float = 1e-3
    """Learning rate of the classification head."""
    freeze_embeddings: bool = False
    """Keep the input embedding (and the untied output layer, unused here) fixed."""
    seed: int = 0
    """Seed of the head's initialization and of the batch draw."""

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1 or self.lr < 0 or self.head_lr <= 0:
            raise ValueError("FineTuneConfig: steps >= 1, batch_size >= 1, lr >= 0 and head_lr > 0 are required")


def fine_tuned_transfer(model: EvalModel, train: LabeledSet, source_test: LabeledSet, target_test: LabeledSet,
                        config: FineTuneConfig = FineTuneConfig()) -> Dict[str, object]:
    """Fine-tune a copy of ``model`` with a classification head on language A; test on held-out A
    and, zero-shot, on B. ``model`` itself is left as it was.

    Returns the keys of ``zero_shot_transfer`` (``level`` is ``final_norm``, what the head reads)
    plus ``"mode": "finetune"``.
    """
    if not isinstance(model, HFEvalModel):
        raise ValueError(f"fine-tuned transfer needs a Hugging Face model; {model.name} is a {model.kind} "
                         "checkpoint: convert it with tools/convert_to_hf.py")
    labels = _check_labels(train)
    num_classes = max(labels + [int(y) for y in source_test[1]] + [int(y) for y in target_test[1]]) + 1
    decoder = copy.deepcopy(model.model.model)  # the decoder; its output is the final-norm state
    if config.freeze_embeddings:
        decoder.embed_tokens.weight.requires_grad_(False)
    generator = torch.Generator().manual_seed(config.seed)
    head = torch.nn.Linear(decoder.config.hidden_size, num_classes)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=generator) * 0.01)
        head.bias.zero_()
    optimizer = torch.optim.AdamW([
        {"params": [p for p in decoder.parameters() if p.requires_grad], "lr": config.lr},
        {"params": head.parameters(), "lr": config.head_lr}], weight_decay=0.0)
    sequences, targets = list(train[0]), torch.tensor(labels)
    decoder.train()
    for _ in range(config.steps):
        picked = torch.randint(len(sequences), (config.batch_size,), generator=generator)
        tokens, mask = next(_batches([sequences[i] for i in picked], model.max_length, config.batch_size))
        pooled = _mean_pool(decoder(input_ids=tokens).last_hidden_state.float(), mask)
        loss = F.cross_entropy(head(pooled), targets[picked])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    decoder.eval()

    @torch.no_grad()
    def accuracy(data: LabeledSet) -> float:
        hits = 0
        for start in range(0, len(data[0]), 32):
            tokens, mask = next(_batches(data[0][start:start + 32], model.max_length, 32))
            pick = head(_mean_pool(decoder(input_ids=tokens).last_hidden_state.float(), mask)).argmax(-1)
            hits += int((pick == torch.tensor([int(y) for y in data[1][start:start + 32]])).sum())
        return hits / len(data[1])

    return dict({"train_accuracy": accuracy(train), "source_accuracy": accuracy(source_test),
                 "target_accuracy": accuracy(target_test)},
                **_sizes_and_chance(labels, source_test, target_test, num_classes), level="final_norm",
                mode="finetune")
