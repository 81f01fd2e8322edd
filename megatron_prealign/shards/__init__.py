"""Megatron ``.bin``/``.idx`` token shards and their code-switching companion, on disk.

``writer.py`` writes them (Megatron-Core's ``IndexedDatasetBuilder``, the ``_targets`` companion, the
dtype rule, atomic commits); ``check.py`` validates a pair with numpy before anything trains on it.
Formats: ``docs/formats.md``.
"""
