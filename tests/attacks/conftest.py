"""Fixtures of the attack tests."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """A small MLP on a few hundred rows gains nothing from intra-op threads, and on a shared CPU their
    synchronisation makes each small matmul many times slower; restored after the module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
