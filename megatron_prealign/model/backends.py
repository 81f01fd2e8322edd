"""Which optional GPU backends this machine can import, asked without importing Megatron-Core.

The argument parser asks before the CPU layer is applied (``cpu_compat.apply`` must run before the
first ``import megatron.core``), so this module imports nothing heavier than the backend itself.
"""


def have_transformer_engine() -> bool:
    try:
        import transformer_engine  # noqa: F401
    except Exception:  # TE raises more than ImportError when its CUDA libraries are missing
        return False
    return True
