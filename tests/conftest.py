"""Shared test settings: deterministic, few threads, offline, a private cache folder."""

import os
import tempfile

# Spinning OpenMP threads make torch 2-3x slower (or worse) when other jobs share the cores;
# set before torch is imported. An explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402
from helpers import write_tone_dataset  # noqa: E402
from hypothesis import settings  # noqa: E402

# Property tests draw the same examples on every run (CI must not flip on a lucky draw);
# HYPOTHESIS_PROFILE=explore searches with fresh random examples.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("explore", deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Every test session gets its own cache (generated demo data, feature cache).
os.environ["AUDIOAR_CACHE_DIR"] = tempfile.mkdtemp(prefix="audioar-test-cache-")


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory):
    """The tone data set of :func:`helpers.write_tone_dataset`, one per test module."""
    return write_tone_dataset(tmp_path_factory.mktemp("tones"))
