"""Training tests run on one thread."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    # Two OpenMP threads on two cores shared with other jobs spin against each other; one is faster.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
