"""Same single-thread setting as tests/conversion (one fixture, shared by import)."""

from tests.conversion.conftest import one_torch_thread  # noqa: F401  (autouse fixture)
