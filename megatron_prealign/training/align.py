"""Stage 1 (alignment initialization) on the shared loop, and alignment metrics for both stages.

Stage 1 trains a freshly initialized model on dictionary entries only. Each micro-batch is a set of
entries flattened into a batch of words (``datasets.alignment``); one forward pass gives both
the per-token LM loss on the words and, through ``LevelRecorder`` hooks, each word's vector at every
chosen level. The objective per micro-batch is

    alpha * L_align + lm_weight * L_LM

with ``L_align`` the multi-positive InfoNCE over the *global* batch (negatives gathered across data-
parallel ranks, ``alignment.loss``) and ``L_LM`` the token mean over the global micro-batch. Both are
scaled so that Megatron DDP's gradient average over DP ranks equals the gradient of one process on
the concatenated batch.

The same recorder serves the evaluation callback (``AlignmentEvaluator``): per level, mean cosine of
aligned pairs vs random pairs, and word-translation retrieval P@1 (first word of each entry -> the
others) on held-out dictionaries, logged at every ``--eval-interval`` in stage 1 and stage 2.
"""

from __future__ import annotations

from argparse import Namespace
from functools import partial
from typing import Dict, List, Optional

import torch
from megatron.core import parallel_state

from megatron_prealign.alignment.levels import all_level_names
from megatron_prealign.alignment.loss import AlignmentLossConfig, alignment_loss
from megatron_prealign.alignment.metrics import alignment_report
from megatron_prealign.alignment.representations import LevelRecorder
from megatron_prealign.datasets.alignment import Entry, EntryStream, collate_words, split_entries
from megatron_prealign.distributed import device, initialize_distributed
from megatron_prealign.text.dictionary import DictionaryError, load_dictionary, tokenize_dictionary
from megatron_prealign.training.data import PretrainingSampler
from megatron_prealign.training.loop import build_run_tokenizer, finalize_args, run_entry, setup, train

SOURCE, TARGET = "source", "target"  # the first word of an entry vs the others


def load_entries(path: str, tokenizer, max_tokens: int, *, log=print) -> List[Entry]:
    """Dictionary file -> entries of word-initial token ids (concept id = entry order).

    Raises:
        DictionaryError: the file cannot be read, or no entry keeps two usable words (the message
            gives the counts of dropped words by reason).
    """
    tokenized = tokenize_dictionary(load_dictionary(path), tokenizer, max_tokens=max_tokens)
    report = tokenized.report
    if not report["concepts_in_file"]:
        raise DictionaryError(f"{path}: the dictionary is empty (no entry), so there is nothing to "
                              "align; give a dictionary with entries")
    if not report["concepts"]:
        dropped = ", ".join(f"{n} {why}" for why, n in report["dropped_words"].items()) or "none"
        raise DictionaryError(
            f"{path}: none of its {report['concepts_in_file']} entries keeps two distinct usable "
            f"words with {tokenizer.describe()} ({report['words']} words; dropped: {dropped}). "
            f"Raise --alignment-max-word-tokens (now {max_tokens}) if the words are long, or use a "
            "dictionary and tokenizer of the same languages.")
    log(f"dictionary {path}: {report['concepts']} usable entries of {report['concepts_in_file']}, "
        f"{report['usable_words']} words; dropped words: {report['dropped_words'] or 'none'}")
    return [(concept, ids) for concept, ids in enumerate(tokenized.id_concepts())]


def training_split(num_entries: int, args: Namespace):
    """(train, held-out) entry indices of ``--alignment-dictionary``; refuses to train on none."""
    train_idx, heldout_idx = split_entries(num_entries, args.alignment_heldout_fraction, args.seed)
    if len(train_idx) == 0:
        raise DictionaryError(
            f"{args.alignment_dictionary}: --alignment-heldout-fraction "
            f"{args.alignment_heldout_fraction} holds out all of its {num_entries} usable entries, "
            "leaving none to train on; lower the fraction or add entries.")
    return train_idx, heldout_idx


def _pad_multiple(args: Namespace) -> int:
    return args.tensor_model_parallel_size if args.sequence_parallel else 1


def _words_loader(entries, args: Namespace, consumed: int, num_samples: int, seed: int):
    stream = EntryStream(entries, num_samples, seed)
    sampler = PretrainingSampler(len(stream), consumed, args.micro_batch_size,
                                 parallel_state.get_data_parallel_rank(),
                                 parallel_state.get_data_parallel_world_size())
    return torch.utils.data.DataLoader(stream, batch_sampler=sampler,
                                       collate_fn=partial(collate_words, pad_to_multiple=_pad_multiple(args)))


def alignment_loss_fn(config: AlignmentLossConfig, levels: List[str], lm_weight_tokens,
                      loss_mask: torch.Tensor, align_out, output_tensor: torch.Tensor):
    """Combine the LM loss (from the model's output) with the precomputed alignment loss."""
    dp_size = parallel_state.get_data_parallel_world_size()
    losses = output_tensor.float()  # [n_words, s] per-token LM loss
    mask = loss_mask.float()
    lm_sum = (losses * mask).sum()
    global_tokens = lm_weight_tokens  # LM tokens of this micro-batch over all DP ranks
    lm = lm_sum * dp_size / global_tokens.clamp(min=1)  # DP mean of this = global token mean
    total = config.combine(align_out.loss, lm)
    one = torch.ones((), device=total.device)
    reported = {
        "lm loss": torch.stack([lm_sum.detach(), mask.sum().detach()]),
        "align loss": torch.stack([align_out.loss.detach().float(), one]),
        **{f"align {name}": torch.stack([align_out.per_level[name].float(), one]) for name in levels},
    }
    return total, reported


def alignment_forward_step(config: AlignmentLossConfig, levels: List[str], data_iterator, model):
    """Forward one micro-batch of dictionary words; returns (LM output, loss function)."""
    batch = next(data_iterator)
    dev = device()
    tokens = batch["tokens"].to(dev)  # [n_words, s]
    word_mask = batch["word_mask"].to(dev)  # [n_words, s]
    with LevelRecorder(model, levels) as recorder:
        output = model(tokens, batch["position_ids"].to(dev), None, labels=batch["labels"].to(dev))
    reps = recorder.pooled(word_mask, tokens)  # {level: [n_words, h]}
    align_out = alignment_loss(reps, batch["concept_ids"].to(dev),
                               temperature=config.alignment_temperature,
                               anti_collapse_weight=config.alignment_anti_collapse_weight,
                               group=parallel_state.get_data_parallel_group())
    loss_mask = batch["loss_mask"].to(dev)
    tokens_here = loss_mask.sum().detach().reshape(1)
    torch.distributed.all_reduce(tokens_here, group=parallel_state.get_data_parallel_group())
    return output, partial(alignment_loss_fn, config, levels, tokens_here[0], loss_mask, align_out)


class AlignmentEvaluator:
    """Eval callback: per-level alignment metrics on named held-out dictionaries."""

    def __init__(self, sets: Dict[str, List[Entry]], levels: List[str], args: Namespace,
                 batch_words: int = 256):
        self.sets = {name: entries for name, entries in sets.items() if entries}
        self.levels = levels
        self.args = args
        self.batch_entries = max(1, batch_words // 2)
        self.last: Dict[str, dict] = {}

    @torch.no_grad()
    def _represent(self, model, entries: List[Entry]):
        dev = device()
        per_level = {name: [] for name in self.levels}
        concept_ids, languages = [], []
        for start in range(0, len(entries), self.batch_entries):
            batch = collate_words(entries[start:start + self.batch_entries], _pad_multiple(self.args))
            tokens = batch["tokens"].to(dev)
            with LevelRecorder(model, self.levels) as recorder:
                model(tokens, batch["position_ids"].to(dev), None)
            for name, rep in recorder.pooled(batch["word_mask"].to(dev), tokens).items():
                per_level[name].append(rep.float().cpu())
            concept_ids.append(batch["concept_ids"])
            languages += [SOURCE if i == 0 else TARGET for i in batch["word_index"].tolist()]
        return ({k: torch.cat(v) for k, v in per_level.items()}, torch.cat(concept_ids), languages)

    def __call__(self, model: List[torch.nn.Module], iteration: int) -> Dict[str, float]:
        chunk = model[0]
        chunk.eval()
        scalars: Dict[str, float] = {}
        self.last = {}
        for set_name, entries in self.sets.items():
            reps, concept_ids, languages = self._represent(chunk, entries)
            report = alignment_report(reps, concept_ids, languages, SOURCE, TARGET)
            self.last[set_name] = {level: vars(m) for level, m in report.items()}
            for level, metrics in report.items():
                scalars[f"align/{set_name}/{level}/p_at_1"] = metrics.p_at_1
                scalars[f"align/{set_name}/{level}/aligned_cosine"] = metrics.aligned_cosine
                scalars[f"align/{set_name}/{level}/random_cosine"] = metrics.random_cosine
        chunk.train()
        return scalars


def build_evaluator(args: Namespace, tokenizer, heldout: Optional[List[Entry]] = None,
                    log=print) -> Optional[AlignmentEvaluator]:
    """The evaluator for ``--alignment-eval-dictionary`` sets (+ stage 1's own held-out entries)."""
    sets: Dict[str, List[Entry]] = {}
    if heldout:
        sets["heldout"] = heldout
    for name, path in args.alignment_eval_sets.items():
        entries = load_entries(path, tokenizer, args.alignment_max_word_tokens, log=log)
        words, kept = 0, []
        for entry in entries:  # cap the words per set; keep whole entries
            if words + len(entry[1]) > args.alignment_eval_max_words:
                break
            kept.append(entry)
            words += len(entry[1])
        sets[name] = kept
    if not sets:
        return None
    return AlignmentEvaluator(sets, all_level_names(args.num_layers), args)


def run(args: Namespace) -> int:
    """Stage 1: train on ``--alignment-dictionary``; returns the process exit code."""
    return run_entry(lambda: _align(args))


def _align(args: Namespace) -> None:
    """Read the dictionary, build the run, train stage 1; ``args`` as ``validate_args`` left them."""
    # The dictionary is read before the model is built or a checkpoint loaded, so that an
    # unusable one costs seconds; process groups first, so that rank 0 alone reports it.
    initialize_distributed(args)
    rank0 = torch.distributed.get_rank() == 0
    log = print if rank0 else (lambda *a, **k: None)
    tokenizer = build_run_tokenizer(args)
    args = finalize_args(args, tokenizer)
    entries = load_entries(args.alignment_dictionary, tokenizer, args.alignment_max_word_tokens,
                           log=log)
    train_idx, heldout_idx = training_split(len(entries), args)
    state = setup(args, tokenizer=tokenizer)
    log(f"stage 1: {len(train_idx)} training entries, {len(heldout_idx)} held out; levels: "
        f"{', '.join(args.alignment_level_names)}")
    config = AlignmentLossConfig(args.alignment_alpha, args.alignment_lm_weight,
                                 args.alignment_temperature, args.alignment_anti_collapse_weight)
    loader = _words_loader([entries[i] for i in train_idx], args, state.consumed_samples,
                           args.train_iters * args.global_batch_size, args.seed)
    evaluator = build_evaluator(args, state.tokenizer, [entries[i] for i in heldout_idx], log)
    forward_step = partial(alignment_forward_step, config, args.alignment_level_names)
    train(state, forward_step, iter(loader), None, [evaluator] if evaluator else None,
          tokens_per_sample=1, throughput_unit="entries")
