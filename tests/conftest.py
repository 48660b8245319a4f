"""Shared test fixtures. Tests make their own small data; nothing is downloaded."""

import os

import numpy as np
import pytest

# Keep CAMB spectra cached between tests of one session (and between sessions on one machine).
os.environ.setdefault("COMBINE_CACHE_DIR", os.path.join(os.path.dirname(__file__), "..", ".cache"))


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
