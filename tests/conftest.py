"""Fixtures shared by the test modules. Helper modules beside the tests (reference.py, the numpy
oracle; idx_files.py, synthetic IDX files) and the benchmark's modules import by name: pyproject's
pytest settings put tests/ and benchmarks/ on the path (``pythonpath``)."""

from __future__ import annotations

import os
import urllib.parse
import urllib.request

import numpy as np
import pytest
from hypothesis import settings

from idx_files import write_set

# Hypothesis profiles (tests/test_fuzz.py and the other property tests): "ci", the default, is
# derandomized (the same examples on every run, so CI cannot fail by luck) and small enough for the
# fuzz tests to take well under a minute; "long" (HYPOTHESIS_PROFILE=long) tries thousands of fresh
# random examples per property, before a release or after changing input handling.
settings.register_profile("ci", derandomize=True, max_examples=25, print_blob=True)
settings.register_profile("long", max_examples=3000, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """No test reaches the network (the command line downloads missing data by default): urlopen of
    anything but a server on 127.0.0.1 fails the test."""
    real_urlopen = urllib.request.urlopen

    def local_only(request, *args, **kwargs):
        url = request.full_url if isinstance(request, urllib.request.Request) else request
        if urllib.parse.urlsplit(url).hostname != "127.0.0.1":
            raise AssertionError(f"a test tried to reach the network: {url}")
        return real_urlopen(request, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", local_only)


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


@pytest.fixture()
def tiny_mnist(tmp_path, monkeypatch):
    """A random MNIST-format data set (120 training, 30 test images) in tmp_path/data/mnist/, with
    RBP_NATIVE_DATA pointing at it; returns tmp_path."""
    rng = np.random.default_rng(0)
    raw = {
        "train-images": rng.integers(0, 256, size=(120, 784), dtype=np.uint8),
        "train-labels": rng.integers(0, 10, size=120).astype(np.uint8),
        "test-images": rng.integers(0, 256, size=(30, 784), dtype=np.uint8),
        "test-labels": rng.integers(0, 10, size=30).astype(np.uint8),
    }
    write_set(tmp_path / "data" / "mnist", raw)
    monkeypatch.setenv("RBP_NATIVE_DATA", str(tmp_path / "data"))
    return tmp_path


def _conv_implementations() -> list[str]:
    from rbp_native._native import _core

    return ["eigen"] + (["onednn"] if _core._onednn_available() else [])


@pytest.fixture(params=_conv_implementations())
def conv_implementation(request):
    """Runs the test once per implementation of the float32 convolutions this build has (the portable
    im2col + GEMM path, and oneDNN where built), restoring the default afterwards."""
    from rbp_native._native import _core

    _core._set_conv_implementation(request.param)
    try:
        yield request.param
    finally:
        _core._set_conv_implementation("auto")
