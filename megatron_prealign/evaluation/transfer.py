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
languages; fine-tuning the whole model could reach higher accuracy in both languages.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F

from megatron_prealign.evaluation.models import EvalModel

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


@torch.no_grad()
def pooled_features(model: EvalModel, sequences: Sequence[Sequence[int]], level: str = "final_norm",
                    batch_size: int = 32) -> torch.Tensor:
    """``[n, h]``: mean over each sequence's tokens of the ``level`` hidden state (not normalized)."""
    if not sequences:
        raise ValueError("no sequence to encode")
    out = []
    for start in range(0, len(sequences), batch_size):
        chunk = [list(s)[: model.max_length] for s in sequences[start:start + batch_size]]
        length = max(len(s) for s in chunk)
        tokens = torch.zeros(len(chunk), length, dtype=torch.long)  # [b, s], right-padded
        mask = torch.zeros(len(chunk), length)
        for row, seq in enumerate(chunk):
            tokens[row, :len(seq)] = torch.tensor(seq)
            mask[row, :len(seq)] = 1.0
        hidden = model.hidden_levels(tokens, [level])[level]  # [b, s, h]
        keep = mask.unsqueeze(-1)  # [b, s, 1]
        out.append((hidden * keep).sum(1) / keep.sum(1).clamp(min=1))  # [b, h]
    return torch.cat(out)


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
                       target_test: LabeledSet, config: ProbeConfig = ProbeConfig()) -> Dict[str, float]:
    """Train the probe on language A, test it on held-out A and on B.

    Args:
        model: an ``EvalModel`` (frozen).
        train: (sequences, labels) in language A.
        source_test: held-out (sequences, labels) in language A.
        target_test: (sequences, labels) in language B.
        config: probe settings.

    Returns:
        ``{"train_accuracy", "source_accuracy", "target_accuracy", "chance", "num_classes",
        "train_size", "source_size", "target_size", "level"}``; ``chance`` is the accuracy of always
        answering the most frequent training class on the target set.
    """
    labels: List[int] = [int(y) for y in train[1]]
    if len(set(labels)) < 2:  # the probe would always answer that class: accuracy 1.0, chance 1.0
        raise ValueError(f"the training examples have {len(set(labels))} class(es); a probe needs "
                         "at least two to measure anything")
    num_classes = max(labels + [int(y) for y in source_test[1]] + [int(y) for y in target_test[1]]) + 1
    feats = {name: pooled_features(model, data[0], config.level, config.batch_size)
             for name, data in (("train", train), ("source", source_test), ("target", target_test))}
    probe = train_probe(feats["train"], labels, num_classes, config)
    majority = max(set(labels), key=labels.count)
    target_labels = [int(y) for y in target_test[1]]
    return {
        "train_accuracy": probe.accuracy(feats["train"], labels),
        "source_accuracy": probe.accuracy(feats["source"], source_test[1]),
        "target_accuracy": probe.accuracy(feats["target"], target_test[1]),
        "chance": target_labels.count(majority) / len(target_labels),
        "num_classes": num_classes,
        "train_size": len(labels),
        "source_size": len(source_test[1]),
        "target_size": len(target_labels),
        "level": config.level,
    }
