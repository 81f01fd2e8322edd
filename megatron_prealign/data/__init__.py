"""Data layer: tokenizers, dictionaries, code-switched shards, the training dataset.

No ``torch.distributed`` and no model imports here, so ``tools/preprocess_data.py`` can use it on
its own. ``README.md`` in this folder maps the modules and the formats they write.
"""
