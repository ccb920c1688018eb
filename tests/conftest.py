"""Shared test settings: deterministic, few threads, offline, a private cache folder."""

import os
import tempfile

import pytest
import torch

# Every test session gets its own cache (generated demo data, feature cache).
os.environ["AUDIOAR_CACHE_DIR"] = tempfile.mkdtemp(prefix="audioar-test-cache-")


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)
