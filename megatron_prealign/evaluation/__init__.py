"""Evaluation of trained models, Megatron checkpoints or converted Hugging Face directories.

``models``      ``EvalModel``: logits over the real vocabulary and per-level hidden states, for both
                kinds of model (``load_eval_model``)
``perplexity``  perplexity per language on JSONL text or Megatron shards
``alignment``   per-level aligned/random cosine and word-translation P@1 on a dictionary
``knowledge``   cross-lingual knowledge application: facts, templates, likelihood choice
``transfer``    zero-shot cross-lingual transfer of a classification task (linear probe)
``report``      results JSON schema, Markdown tables, alignment PNG

Entry point: ``tools/evaluate.py``. The metric functions take token ids and an ``EvalModel`` (or a
scorer), so an experiment can generate its own facts, templates and tasks and call them directly.
"""

from megatron_prealign.evaluation.alignment import evaluate_alignment, load_dictionary_entries
from megatron_prealign.evaluation.knowledge import (
    Fact,
    KnowledgeItem,
    LikelihoodScorer,
    items_from_records,
    items_to_records,
    knowledge_accuracy,
    knowledge_record,
    render_fact_items,
    text_encoders,
)
from megatron_prealign.evaluation.models import EvalModel, HFEvalModel, MegatronEvalModel, load_eval_model
from megatron_prealign.evaluation.perplexity import PerplexityResult, load_sequences, perplexity
from megatron_prealign.evaluation.report import (
    make_report,
    markdown_report,
    markdown_table,
    plot_alignment,
    write_report,
)
from megatron_prealign.evaluation.transfer import ProbeConfig, train_probe, zero_shot_transfer

__all__ = [
    "EvalModel", "Fact", "HFEvalModel", "KnowledgeItem", "LikelihoodScorer", "MegatronEvalModel",
    "PerplexityResult", "ProbeConfig", "evaluate_alignment", "items_from_records", "items_to_records",
    "knowledge_accuracy", "knowledge_record", "load_dictionary_entries", "load_eval_model", "load_sequences",
    "make_report", "markdown_report", "markdown_table", "perplexity", "plot_alignment", "render_fact_items",
    "text_encoders", "train_probe", "write_report", "zero_shot_transfer",
]
