"""Megatron-Core dist checkpoints in Megatron-LM's directory layout, for every user of them.

``store.py``: the layout on disk, save, find, read, load and the safety checks around ``--save``;
``offline.py``: the one-process world in which offline tools (conversion, evaluation) load a
checkpoint saved at any TP/PP, or write one. Training, conversion and evaluation sit above it.
"""
