"""Training-time datasets over the offline shards and dictionaries.

``gpt.py``: Megatron-Core's ``GPTDataset`` extended with the code-switching companion (stage 2);
``alignment.py``: dictionary entries as stage-1 samples and their word batches.
"""
