import pytest


@pytest.fixture(autouse=True)
def _single_thread(one_torch_thread):
    """Every test here runs torch on one thread (the shared fixture in tests/conftest.py)."""
