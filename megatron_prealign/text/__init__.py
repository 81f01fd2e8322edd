"""Text and ids: tokenizers, word boundaries, dictionaries and code-switching.

The lowest layer of the package: pure functions of text, token ids and dictionary files. It imports
nothing else of the package (but ``errors``) and writes no files, so the offline preprocessor, the
training datasets, stage 1 and evaluation all build on it.
"""
