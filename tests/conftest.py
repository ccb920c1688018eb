"""Shared test settings: deterministic, few threads, offline, a private cache folder."""

import os
import tempfile

# Spinning OpenMP threads make torch 2-3x slower (or worse) when other jobs share the cores;
# set before torch is imported. An explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

# Every test session gets its own cache (generated demo data, feature cache).
os.environ["AUDIOAR_CACHE_DIR"] = tempfile.mkdtemp(prefix="audioar-test-cache-")


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)
