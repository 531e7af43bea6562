"""Fixtures shared across test folders."""

import pytest
import torch


@pytest.fixture()
def one_torch_thread():
    """Tiny networks gain nothing from threads, and busy-waiting threads crawl on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
