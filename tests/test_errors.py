"""Errors meant for the user reach them as their raiser wrote them, also from a DataLoader worker."""

import pytest
import torch

from megatron_prealign.errors import PreAlignError, user_message
from megatron_prealign.shards.check import ShardError

MESSAGE = "shard en_text_document: sample 3 has id 9000, outside the vocabulary (8000 ids)\nrebuild it."


class Broken(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        if index == 3:
            raise ShardError(MESSAGE)
        return torch.tensor([index])


@pytest.mark.parametrize("workers", [0, 1])
def test_a_workers_error_keeps_its_own_message(workers):
    loader = torch.utils.data.DataLoader(Broken(), batch_size=1, num_workers=workers)
    with pytest.raises(ShardError) as caught:
        list(loader)
    if workers:  # torch wraps it: the worker's traceback is the message
        assert str(caught.value).startswith("Caught ShardError in DataLoader worker process 0")
    assert user_message(caught.value) == MESSAGE


def test_other_messages_are_left_as_they_are():
    assert user_message(PreAlignError("plain")) == "plain"
    odd = "Caught nothing\nOriginal Traceback: but no exception line"
    assert user_message(PreAlignError(odd)) == odd
