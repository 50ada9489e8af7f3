"""The compiled-core loader (instruction-set variants) and the core's own matrix products."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest

import rbp_native as rbp
from rbp_native import _native


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    full = dict(os.environ)
    full.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=120, check=False
    )


def test_isa_names_the_loaded_variant():
    assert rbp.isa in ("sse2", "avx2", "avx512", "native", "baseline", "unknown")
    assert rbp.isa == _native.isa == _native._core.isa
    present = _native.available()
    assert present, "no compiled core found"
    if rbp.isa in _native.ISAS:
        # the widest variant this machine supports among those built
        usable = [i for i in _native.ISAS if i in present and _native.supported(i)]
        if not os.environ.get(_native.ENV, "").strip() or os.environ[_native.ENV].strip().lower() == "auto":
            assert rbp.isa == usable[0]


def test_core_alias_is_the_loaded_module():
    import rbp_native._core as core

    assert core is _native._core


def test_cpu_features_are_consistent():
    features = _native.cpu_features()
    if "avx512f" in features:
        assert "avx2" in features
    assert _native.supported("sse2", features)


@pytest.mark.parametrize("isa", ["sse2", "avx2", "avx512"])
def test_forcing_a_variant(isa):
    if isa not in _native.available():
        pytest.skip(f"{isa} variant not built")
    res = _run("import rbp_native; print(rbp_native.isa)", RBP_NATIVE_ISA=isa)
    if _native.supported(isa):
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == isa
    else:
        assert res.returncode != 0 and "does not support" in res.stderr


def test_forcing_an_unknown_variant_fails_clearly():
    res = _run("import rbp_native", RBP_NATIVE_ISA="avx9000")
    assert res.returncode != 0
    assert "RBP_NATIVE_ISA" in res.stderr and "avx9000" in res.stderr


@pytest.mark.parametrize("isa", ["sse2", "avx2", "avx512"])
def test_variants_train_alike(isa):
    """Every variant gives the same weights after a few steps, up to float32 rounding."""
    if isa not in _native.available() or not _native.supported(isa):
        pytest.skip(f"{isa} variant not usable here")
    if "sse2" not in _native.available():
        pytest.skip("no sse2 variant to compare with")
    code = (
        "import numpy as np, rbp_native as rbp, sys\n"
        "rng = np.random.default_rng(0); x = rng.random((64, 30), dtype=np.float32); y = rng.integers(0, 4, 64)\n"
        "net = rbp.MLP([30, 40, 20, 4], seed=1)\n"
        "t = rbp.Trainer(net, algorithm='rbp', batch_size=16, seed=2, threads=1)\n"
        "t.fit((x, y), epochs=2, progress=False, train_metrics='running')\n"
        "np.save(sys.stdout.buffer, np.concatenate([w.ravel() for w in net.weights]))\n"
    )
    full = dict(os.environ, RBP_NATIVE_ISA=isa)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, env=full, timeout=120, check=True).stdout
    full["RBP_NATIVE_ISA"] = "sse2"
    ref = subprocess.run([sys.executable, "-c", code], capture_output=True, env=full, timeout=120, check=True).stdout
    a, b = np.load(io.BytesIO(out)), np.load(io.BytesIO(ref))
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("threads,min_macs", [(2, None), (8, 250_000.0)])
def test_split_first_layer_on_blank_margins_matches_one_thread(threads, min_macs):
    """With half the input blocks blank (MNIST-like), the first layer's products skip them and, at
    batch 128, split between threads by units, with the batch copied by all of them: the weights
    match one thread's to rounding, and two runs on the same threads are bit-identical. With a budget
    of 8 and a lower split threshold the products split four ways (128 examples / 32), which is what a
    16-core machine does with the wide net."""
    previous = _native._core._set_min_macs_per_thread(min_macs) if min_macs else None
    try:
        _check_first_layer_split(threads)
    finally:
        if previous is not None:
            _native._core._set_min_macs_per_thread(previous)


def _check_first_layer_split(threads):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((640, 784)).astype(np.float32)
    x[:, :336] = 0.0  # the first 21 blocks of 16 columns of every row
    x[rng.random(x.shape) < 0.3] = 0.0
    y = rng.integers(0, 10, 640)
    runs = []
    for budget in (1, threads, threads):
        net = rbp.MLP([784, 100, 100, 10], seed=3)
        trainer = rbp.Trainer(net, algorithm="bp", batch_size=128, seed=0, threads=budget, lr=0.05)
        trainer.fit((x, y), epochs=2, progress=False, train_metrics="running")
        runs.append(net.weights)
    for a, b in zip(runs[0], runs[1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(runs[1], runs[2]):
        np.testing.assert_array_equal(a, b)


def test_products_split_between_threads_match_one_thread():
    """Large enough products are split between threads (parallel.hpp); results must not change."""
    rng = np.random.default_rng(0)
    x = rng.random((512, 300), dtype=np.float32)
    y = rng.integers(0, 10, 512)
    weights = []
    for threads in (1, 2):
        net = rbp.MLP([300, 600, 600, 10], seed=0)
        trainer = rbp.Trainer(net, algorithm="bp", batch_size=256, seed=0, threads=threads, lr=0.05)
        trainer.fit((x, y), epochs=1, progress=False, train_metrics="running")
        weights.append(net.weights)
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
