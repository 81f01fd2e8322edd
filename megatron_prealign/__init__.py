"""megatron-prealign: PreAlign (arXiv 2407.16222) pretraining on Megatron-Core.

The package reads as the pipeline: ``data`` (tokenizers, dictionaries, code-switched shards) ->
``alignment`` (stage-1 representations, loss, metrics) -> ``model`` + ``training`` (the Megatron-Core
loop) -> ``conversion`` (Hugging Face) -> ``evaluation``.
"""

__version__ = "0.1.0"
