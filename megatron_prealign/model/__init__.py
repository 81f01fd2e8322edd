"""The model: Megatron-Core ``GPTModel`` built from a layer spec chosen by flags.

``gpt``       the layer spec, the transformer config from flags, ``build_model``
``backends``  which optional GPU backends (Transformer Engine) are importable

Importing the package (or ``backends``) does not import Megatron-Core: the argument parser asks about
backends before ``cpu_compat.apply()``, which must precede the first ``import megatron.core``.
``gpt``'s functions are loaded on first use.
"""

_GPT = ("build_model", "transformer_config_from_args")


def __getattr__(name):
    if name in _GPT:
        # lazy: ``gpt`` imports Megatron-Core, which must come after the CPU layer is applied
        from megatron_prealign.model import gpt
        return getattr(gpt, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["build_model", "transformer_config_from_args"]
