"""The offline preprocessor: text -> Megatron ``.bin``/``.idx`` shards, clone data, dictionary import.

Used by ``tools/`` only (``preprocess_data.py``, ``make_english_clone.py``, ``import_dictionary.py``),
never at training time: ``pipeline.py`` runs ``inputs.py`` -> ``sentences.py`` -> tokenizing ->
code-switching (``text.codeswitch``, its table cached by ``table_cache.py``) -> ``shards.writer``.
"""
