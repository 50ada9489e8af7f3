from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# The numpy oracle (reference.py) lives beside the tests.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def mnist():
    """The real MNIST files from RBP_NATIVE_DATA; the test is skipped when they are absent."""
    import rbp_native as rbp

    if not os.environ.get("RBP_NATIVE_DATA"):
        pytest.skip("RBP_NATIVE_DATA is not set")
    try:
        return rbp.datasets.load("mnist")
    except FileNotFoundError as error:
        pytest.skip(f"MNIST not found: {error}")
