"""One intra-op thread for in-process torch work: the CI machine's cores are shared, and tiny
models run faster single-threaded than with threads that wait on each other."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
