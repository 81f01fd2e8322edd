"""megatron-prealign: PreAlign (arXiv 2407.16222) pretraining on Megatron-Core.

The package reads as the pipeline, each layer building only on those before it (enforced by
``tests/test_layering.py``):

    errors, files, cpu_compat    foundations
    text/                        tokenizers, word boundaries, dictionaries, code-switching
    shards/                      Megatron .bin/.idx shards and their code-switching companion
    preprocess/ | datasets/      the offline preprocessor (tools only) | training-time datasets
    model/ | alignment/          the Megatron-Core GPT model | stage-1 representations, loss, metrics
    arguments, distributed       Megatron-LM flags | process groups and seeds
    checkpointing/               dist checkpoints: save, find, load, the one-process world
    conversion/                  Hugging Face <-> Megatron
    evaluation/                  the paper's measures
    training/                    the loop, stage 1 and stage 2 (imported by the entry points only)
"""

__version__ = "0.1.0"
