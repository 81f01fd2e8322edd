"""Presets of the experiment: one dataclass; four named presets of the clone setting (``PRESETS``),
three of the real setting (``REAL_PRESETS``).

``tiny``  the README quickstart: joint vs PreAlign, one seed, the whole pipeline in minutes on CPU
          (stage 1 with ``PAPER_WEIGHTS``).
``cpu``   four arms x three seeds within ~100 minutes on 2 CPU cores, at the largest scale that fits,
          with the stage 1 the sweep supports (``PAPER_WEIGHTS``, 360 steps).
``long``  the ``cpu`` settings, joint vs PreAlign for 20M tokens with evaluations along the way (hours
          on 2 CPU cores).
``paper`` the authors' synthetic setting for GPUs (4 layers x 256 x 1024 ffn x 8 heads, seq 512,
          lr 3e-4 cosine, warmup 5%, wd 0.1, clip 1.0, 2000 steps; stage 1: 5000 steps, 256 entries
          per device, their code's loss weights alpha 0.1 / LM 1.0).

Data: English is high-resource and the clone low-resource: ``target_share`` of the training tokens
are clone text (blend weight), built from documents disjoint from the English ones.

The ``real`` setting (``REAL_PRESETS``) runs the same pipeline on English and real languages (German,
Spanish, Chinese; ``pair`` chooses, e.g. ``en-de`` or the multi-way ``en-de-es``):

``tiny``     the real-languages quickstart: one pair, joint vs PreAlign, one seed, minutes on CPU.
``cpu``      joint vs PreAlign, three seeds, per pair about an hour on 2 CPU cores, with the stage 1 the
             ``real-cpu`` sweep chose on validation data (``REAL_WEIGHTS``, 360 steps).
``gpu150m``  the authors' llama-150m shape (12 x 1024, ffn 4096, 16 heads, seq 1024), BF16, 8 GPUs
             (data parallel 8; ``tensor_parallel`` sets TP), their stage-1 and stage-2 schedules.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import List

from examples.experiment.clone.facts import SUBJECT_KINDS


@dataclass(frozen=True)
class Preset:
    name: str
    # Corpus and data.
    max_paragraphs: int
    """Paragraphs taken from the corpus (after the >= 40-character filter), 0 = all. Real setting:
    English training paragraphs taken after the held-out and validation ones are set aside."""
    heldout_paragraphs: int = 400
    """Held-out test paragraphs per language (final perplexities)."""
    valid_paragraphs: int = 200
    """Validation paragraphs per language (loss curves during training, lr selection in sweeps)."""
    clone_pool_share: float = 0.25
    """Share of the training paragraphs that become clone documents (disjoint from English)."""
    target_share: float = 0.2
    """Share of training tokens drawn from the target language(s) (English:target = 80:20 by default;
    split evenly when there are several targets)."""
    vocab_size: int = 4000
    """SentencePiece BPE vocabulary: of English in the clone setting, where the model's table is twice
    this (English + clone); of all languages together in the real setting."""
    min_word_count: int = 3
    """Word types seen fewer times in the English pool are not dictionary candidates."""
    unseen_share: float = 0.1
    """Share of word types left out of the dictionary entirely (the unseen-word analysis)."""
    dev_words: int = 1000
    """Dictionary words held out of stage 1 (still code-switched) for held-out alignment metrics."""
    # Facts (knowledge application).
    subjects_per_group: int = 20
    """Invented subjects per group (en_only, both, never); 3 relations each."""
    fact_repetitions_en: int = 100
    """Times each en_only/both fact is rendered into English documents."""
    fact_repetitions_clone: int = 50
    fact_subjects: str = "invented"
    """Kind of fact subject (``clone/facts.py``, ``docs/probes.md``): ``invented`` names, ``dictionary``
    nouns ("the lantern") or invented names of ``common_pieces``; the clone setting only."""
    """Times each both-group fact is rendered into clone (real setting: each target's) documents."""
    # Model (Llama-style, untied by default).
    num_layers: int = 4
    hidden_size: int = 128
    ffn_hidden_size: int = 512
    num_attention_heads: int = 4
    seq_length: int = 128
    untie_embeddings: bool = True
    # Stage 2.
    micro_batch_size: int = 16
    """Sequences per process per micro-batch (global batch = this x processes x accumulation)."""
    global_batch_size: int = 16
    train_iters: int = 800
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_iters: int = 40
    weight_decay: float = 0.1
    clip_grad: float = 1.0
    eval_interval: int = 200
    eval_iters: int = 25
    codeswitch_ratio: float = 0.05
    # Stage 1.
    stage1_iters: int = 120
    stage1_entries: int = 256
    stage1_lr: float = 2e-3
    alignment_levels: str = "all"
    alignment_alpha: float = 0.1
    alignment_lm_weight: float = 1.0
    stage2_reinit: str = ""
    """Parameters (name substrings) that stage 2 keeps at their fresh initialization instead of the
    stage-1 values (``--pretrained-reinit``), e.g. ``output_layer,final_layernorm``."""
    # Evaluation.
    transfer_train_per_class: int = 200
    transfer_test_per_class: int = 100
    # Runs.
    arms: List[str] = field(default_factory=lambda: ["joint", "init_only", "cs_only", "prealign"])
    seeds: List[int] = field(default_factory=lambda: [1, 2, 3])
    nproc: int = 1
    """Processes per training run (data parallel); GPUs use one per device."""
    bf16: bool = False
    """Train in BF16 when CUDA is available (GPU presets)."""
    eval_max_tokens: int = 60000
    """Held-out tokens per language for the final perplexities."""
    probes: str = "basic"
    """The evaluation's probes. ``basic``: facts ranked by likelihood among candidates; transfer by
    a copy of the model fine-tuned on English, tested zero-shot (the paper's protocol), with the
    frozen linear probe on the final norm beside it. ``examined`` (``docs/probes.md``): also facts
    by greedy generation, the frozen transfer probe at every level, and word P@1 of the facts'
    objects (and, in the clone setting, subjects) at every level. Its evaluations have their own step
    keys, so the two never mix; training steps are shared."""
    transfer_finetune_steps: int = 100
    """Fine-tuning steps of the transfer probe (batch 16, lr 1e-4; ``docs/probes.md``, T-c)."""
    tensor_parallel: int = 1
    """Tensor-parallel size of the training runs (``--tensor-model-parallel-size``); the data-parallel
    size is ``nproc / tensor_parallel``."""
    checkpoint_evals: int = 0
    """Also run the whole evaluation on the stage-2 checkpoint every this many iterations (a
    multiple of ``eval_interval``, the save interval), for metrics-vs-tokens curves; 0: final only."""

    # Setting.
    setting: str = "clone"
    """``clone`` (English / English-Clone) or ``real`` (English and real target languages)."""
    pair: str = "en-clone"
    """The languages, English first: ``en-clone``, or ``en-de``, ``en-es``, ``en-zh``, ``en-de-es``."""
    target_paragraphs: int = 0
    """Real setting: target-language paragraphs taken (after the held-out and validation ones are set
    aside), 0 = all."""
    min_target_count: int = 2
    """Real setting: a dictionary translation is used when it occurs at least this often in the target
    training text (the committed dictionaries are noisy; attested forms are the ones text uses)."""
    retrieval_pairs: int = 500
    """Real setting: parallel pairs per sentence-retrieval set (test side of the transfer splits)."""

    @property
    def targets(self) -> List[str]:
        """The target languages (``["clone"]`` in the clone setting)."""
        return self.pair.split("-")[1:]

    def __post_init__(self) -> None:
        if self.checkpoint_evals and self.checkpoint_evals % self.eval_interval:
            raise ValueError(f"checkpoint_evals {self.checkpoint_evals} must be a multiple of "
                             f"eval_interval {self.eval_interval} (checkpoints are saved there)")
        if (self.setting == "clone") != (self.pair == "en-clone"):
            raise ValueError(f"setting {self.setting!r} with pair {self.pair!r}: the clone setting's pair is "
                             "en-clone, the real setting's one of REAL_PAIRS")
        if self.nproc % self.tensor_parallel:
            raise ValueError(f"nproc {self.nproc} is not a multiple of tensor_parallel {self.tensor_parallel}")
        if self.fact_subjects not in SUBJECT_KINDS or (self.setting == "real" and self.fact_subjects != "invented"):
            raise ValueError(f"fact_subjects {self.fact_subjects!r}: the clone setting takes "
                             f"{', '.join(SUBJECT_KINDS)}; the real setting's facts have invented subjects")
        if self.probes not in PROBE_SUITES:
            raise ValueError(f"probes {self.probes!r}: choose from {', '.join(PROBE_SUITES)}")
        if self.transfer_finetune_steps < 1:
            raise ValueError(f"transfer_finetune_steps {self.transfer_finetune_steps}: the transfer "
                             "probe fine-tunes the model, at least 1 step")

    def replace(self, **changes) -> "Preset":
        return dataclasses.replace(self, **changes)


PROBE_SUITES = ("basic", "examined")

AUTHORS_CODE = dict(untie_embeddings=True, alignment_levels="all", alignment_alpha=0.1,
                    alignment_lm_weight=1.0, codeswitch_ratio=0.05, stage1_iters=120, stage2_reinit="")
"""PreAlign's knobs as the authors' code sets them (untied head, every level and the output embedding
aligned, alpha 0.1 / LM 1.0, p 0.05), with stage 1 at the ``cpu`` scale: the sweep's reference point,
fixed here so that changing the ``cpu`` preset's defaults leaves the sweep's runs (and their cache)
as they were."""

PAPER_WEIGHTS = dict(alignment_alpha=1.0, alignment_lm_weight=0.05)
"""Stage 1's loss weights as one reading of the paper has them (contrastive 1.0, LM 0.05; the authors'
code has 0.1 / 1.0), and the ``cpu`` and ``long`` presets' choice: in the ``cpu`` sweep they are what
turned PreAlign from losing to joint training into beating it (README, "Sweeps"). With the LM term at
full weight, stage 1 trains a confident model of isolated words that stage 2 must first unlearn."""

PRESETS = {
    # Stage 1 with the sweep's loss weights, and twice the steps it had with the authors' weights.
    "tiny": Preset(
        name="tiny", max_paragraphs=12000, heldout_paragraphs=200, valid_paragraphs=100,
        vocab_size=2000, dev_words=300, subjects_per_group=10, fact_repetitions_en=60, fact_repetitions_clone=30,
        num_layers=2, hidden_size=96, ffn_hidden_size=256, num_attention_heads=4, seq_length=128,
        train_iters=300, warmup_iters=20, eval_interval=100, eval_iters=10,
        stage1_iters=160, stage1_entries=128, transfer_train_per_class=100, transfer_test_per_class=50,
        eval_max_tokens=30000, arms=["joint", "prealign"], seeds=[1], **PAPER_WEIGHTS),
    # Stage 1 at 360 steps: three times the sweep's reference, the longest the sweep measured and its
    # best cell (clone PPL -104 +- 10, English -20 +- 1 against joint).
    # With the compute-matched controls: stage 1 without the contrastive term (lm_init), and with
    # code-switching (lm_init_cs), beside init_only and prealign.
    "cpu": Preset(name="cpu", max_paragraphs=0, train_iters=700, stage1_iters=360,
                  arms=["joint", "init_only", "cs_only", "prealign", "lm_init", "lm_init_cs"], **PAPER_WEIGHTS),
    # Joint vs PreAlign for 20M stage-2 tokens (14x cpu) with a checkpoint every 500 steps and the
    # whole evaluation every 2500: how the gap moves as tokens grow. About 2 1/2 hours on 2 cores; an
    # interrupted run continues from its last checkpoint with the same results.
    "long": Preset(name="long", max_paragraphs=0, train_iters=10000, warmup_iters=200,
                   eval_interval=500, checkpoint_evals=2500, arms=["joint", "prealign"], seeds=[1],
                   stage1_iters=360, **PAPER_WEIGHTS),
    "paper": Preset(
        name="paper", max_paragraphs=0, vocab_size=8000, num_layers=4, hidden_size=256,
        ffn_hidden_size=1024, num_attention_heads=8, seq_length=512, micro_batch_size=8,
        global_batch_size=64, train_iters=2000, lr=3e-4, warmup_iters=100, eval_interval=250,
        eval_iters=50, stage1_iters=5000, stage1_entries=256, stage1_lr=5e-4, nproc=8, bf16=True,
        eval_max_tokens=500000),
}

REAL_WEIGHTS = dict(alignment_alpha=AUTHORS_CODE["alignment_alpha"],
                    alignment_lm_weight=AUTHORS_CODE["alignment_lm_weight"])
"""Stage 1's loss weights in the real setting: the authors' code's (alpha 0.1 / LM 1.0). The
``real-cpu`` sweep (en-de, seed 1) chose them on the validation loss at the end of stage 2 (mean of
English and German): PreAlign 5.189 with them, 5.306 with ``PAPER_WEIGHTS`` (the clone setting's
choice), 5.267 with ``PAPER_WEIGHTS`` and a 720-step stage 1, 5.317 with p 0.2, 5.610 with a 90-step
stage 1; joint 5.413. How much of that is stage 1's extra LM training on dictionary words rather than
alignment is what the ``lm_init`` control arm measures."""

LANGUAGE_NAMES = {"clone": "Clone", "en": "English", "de": "German", "es": "Spanish", "zh": "Chinese"}

REAL_PAIRS = ("en-de", "en-es", "en-zh", "en-de-es")
"""Pairs of the real setting: English with German, Spanish or Chinese, and one multi-way model over
English, German and Spanish (the multi-way dictionary joins concepts through English)."""

REAL_PRESETS = {
    # The real-languages quickstart: the clone ``tiny`` model and schedule on English + one target.
    # The tokenizer is shared by both languages (no doubled table), so its vocabulary is larger.
    "tiny": Preset(
        name="tiny", setting="real", pair="en-de", max_paragraphs=12000, target_paragraphs=4000,
        heldout_paragraphs=200, valid_paragraphs=100, vocab_size=4000, dev_words=200,
        subjects_per_group=10, fact_repetitions_en=60, fact_repetitions_clone=30,
        num_layers=2, hidden_size=96, ffn_hidden_size=256, num_attention_heads=4, seq_length=128,
        train_iters=300, warmup_iters=20, eval_interval=100, eval_iters=10,
        stage1_iters=160, stage1_entries=128, transfer_train_per_class=100, transfer_test_per_class=50,
        eval_max_tokens=30000, retrieval_pairs=300, arms=["joint", "prealign"], seeds=[1],
        **REAL_WEIGHTS),
    # The clone ``cpu`` model and schedules on a real pair, with the stage-1 weights the real-cpu
    # sweep chose (REAL_WEIGHTS).
    "cpu": Preset(name="cpu", setting="real", pair="en-de", max_paragraphs=0, vocab_size=8000,
                  train_iters=700, stage1_iters=360, arms=["joint", "prealign"], **REAL_WEIGHTS),
    # The authors' llama-150m: 12 x 1024, ffn 4096, seq 1024, BF16, 8 GPUs.
    "gpu150m": Preset(
        name="gpu150m", setting="real", pair="en-de", max_paragraphs=0, vocab_size=32000,
        num_layers=12, hidden_size=1024, ffn_hidden_size=4096, num_attention_heads=16,
        seq_length=1024, micro_batch_size=8, global_batch_size=256, train_iters=5000, lr=3e-4,
        warmup_iters=250, eval_interval=500, eval_iters=50, stage1_iters=5000, stage1_entries=256,
        stage1_lr=5e-4, nproc=8, bf16=True, eval_max_tokens=500000, retrieval_pairs=1000,
        arms=["joint", "prealign"], seeds=[1]),
}
