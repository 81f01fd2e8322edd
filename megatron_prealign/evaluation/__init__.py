"""Evaluation of trained models, Megatron checkpoints or converted Hugging Face directories.

``models``      ``EvalModel``: logits over the real vocabulary and per-level hidden states, for both
                kinds of model (``load_eval_model``)
``perplexity``  perplexity per language on JSONL text or Megatron shards
``alignment``   per-level aligned/random cosine and word-translation P@1 on a dictionary
``facts``       facts as text and their probe records (plain Python, no model)
``knowledge``   cross-lingual knowledge application: templates, likelihood choice
``transfer``    zero-shot cross-lingual transfer of a classification task (linear probe)
``retrieval``   sentence retrieval on parallel text: per-level P@1 of mean-pooled states, both ways
``report``      results JSON schema, Markdown tables, alignment PNG

Entry point: ``tools/evaluate.py``. The metric functions take token ids and an ``EvalModel`` (or a
scorer), so an experiment can generate its own facts, templates and tasks and call them directly.
Import from the modules: this package imports nothing, so a light module (``facts``, ``report``)
does not bring torch and Megatron-Core with it.
"""
