"""Shared fixtures: tiny policies and helpers for exact numerical checks."""

import pytest
import torch as th


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Keep every test on one torch thread (the CI machine has 2 cores) and restore the setting afterwards."""
    n_threads = th.get_num_threads()
    th.set_num_threads(1)
    yield
    th.set_num_threads(n_threads)
