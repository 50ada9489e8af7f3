"""A training step allocates no memory: the workspaces are sized once per batch shape.

Counted for real: a tiny shared library that wraps malloc/calloc/realloc and counts the calls is
compiled on the fly and preloaded (LD_PRELOAD) into a child Python, which trains one epoch of K
steps and one of 2K steps after a warm-up. Any allocation inside the step shows up K times in the
difference; what the epoch call itself allocates (its result, the Python wrapper) is the same for
both. Linux with glibc and a C compiler only (they are there wherever the package is built).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rbp_native._native import _core

COUNTER = r"""
#include <stddef.h>
extern void* __libc_malloc(size_t);
extern void* __libc_calloc(size_t, size_t);
extern void* __libc_realloc(void*, size_t);
static long calls = 0;
static size_t largest = 0;  /* the largest request since the last rbp_test_reset_largest() */
static void seen(size_t n) {
    __atomic_add_fetch(&calls, 1, __ATOMIC_RELAXED);
    size_t now = __atomic_load_n(&largest, __ATOMIC_RELAXED);
    while (n > now && !__atomic_compare_exchange_n(&largest, &now, n, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
}
void* malloc(size_t n) { seen(n); return __libc_malloc(n); }
void* calloc(size_t a, size_t b) { seen(a * b); return __libc_calloc(a, b); }
void* realloc(void* p, size_t n) { seen(n); return __libc_realloc(p, n); }
long rbp_test_allocations(void) { return __atomic_load_n(&calls, __ATOMIC_RELAXED); }
long rbp_test_largest(void) { return (long)__atomic_load_n(&largest, __ATOMIC_RELAXED); }
void rbp_test_reset_largest(void) { __atomic_store_n(&largest, 0, __ATOMIC_RELAXED); }
"""

CHILD = textwrap.dedent(
    """
    import ctypes, json, sys
    import numpy as np
    import rbp_native as rbp

    from rbp_native._native import _core

    counter = ctypes.CDLL(None)
    counted, largest = counter.rbp_test_allocations, counter.rbp_test_largest
    counted.restype = largest.restype = ctypes.c_long
    rng = np.random.default_rng(0)
    steps, batch = 50, 32
    x = rng.random((2 * steps * batch, 784), dtype=np.float32)
    y = rng.integers(0, 10, len(x)).astype(np.int64)
    results = []
    for case in json.loads(sys.argv[1]):
        _core._set_conv_implementation(case.pop("conv_implementation", "eigen"))
        if case.pop("conv", False):
            L = rbp.layers
            sizes = case.pop("sizes")
            net = rbp.Sequential([L.Conv2D(4, 5), L.MaxPool2D(3, stride=2, padding="same"), L.Conv2D(4, 3),
                                  L.MaxPool2D(2), L.Flatten(), L.Dense(sizes[-2]), L.Dense(sizes[-1], "softmax")],
                                 input_shape=(1, 28, 28), seed=0)
        else:
            net = rbp.MLP(case.pop("sizes"), seed=0, connectivity=case.pop("connectivity", None))
        threads = case.pop("threads", 1)
        # blank margins: the first layer skips the input's zero blocks
        inputs = x * ((np.arange(784) >= 300) & (np.arange(784) < 500)) if case.pop("blank_margins", False) else x
        core = rbp.Trainer(net, lr=0.01, batch_size=batch, threads=threads, seed=0, **case)._core
        core.train_epoch(inputs, y, None, 0)  # warm-up: workspaces, packing buffers, thread pool
        before = counted()
        core.train_epoch(inputs[: steps * batch], y[: steps * batch], None, 0)
        middle = counted()
        counter.rbp_test_reset_largest()
        core.train_epoch(inputs, y, None, 0)
        after = counted()
        results.append({"extra": (after - middle) - (middle - before), "largest": largest()})
    print(json.dumps(results))
    """
)

CASES = [{"algorithm": a} for a in ("bp", "sbp", "rbp", "srbp", "top", "arbp", "asrbp")] + [
    {"algorithm": "srbp", "derivative": False},
    {"algorithm": "bp", "momentum": 0.9},
    {"algorithm": "srbp", "feedback_density": 0.1},
    {"algorithm": "rbp", "feedback_density": 0.01},
    {"algorithm": "srbp", "channel_dropout": 0.5},
    {"algorithm": "srbp", "quantize": "signal", "quantize_bits": 4},
    {"algorithm": "srbp", "quantize": "update", "quantize_bits": 8},
    {"algorithm": "srbp", "quantize": "update", "quantize_bits": 8, "quantize_rounding": "stochastic"},
    {"algorithm": "srbp", "signal_transform": "sign", "transform_target": "update"},
    {"algorithm": "rbp", "resample": "zero_mean"},
    {"algorithm": "rbp", "resample": "sign_concordant"},
    {"algorithm": "srbp", "resample": "zero_mean", "feedback_density": 0.1},
    # CSR storage where "auto" would keep these dense (srbp's sources are 10 units)
    {"algorithm": "srbp", "feedback_density": 0.1, "feedback_storage": "sparse"},
    {"algorithm": "rbp", "resample": "zero_mean", "feedback_density": 0.1, "feedback_storage": "sparse"},
    {"algorithm": "rbp", "congruent": True},
    {"algorithm": "srbp", "frozen_layers": [1]},
    {"algorithm": "srbp", "per_synapse": True},
    {"algorithm": "srbp", "connectivity": 0.5},
    {"algorithm": "bp", "connectivity": 0.3},
    {"algorithm": "bp", "blank_margins": True},
    {"algorithm": "srbp", "momentum": 0.9, "blank_margins": True},
]
SIZES = [784, 100, 100, 10]
# A small convolutional network on the same inputs (1 x 28 x 28): conv, overlapping pool, conv, pool.
CONV_CASES = [{"algorithm": a} for a in ("bp", "sbp", "rbp", "srbp", "top")] + [
    {"algorithm": "srbp", "injection": "post_pool"},
    {"algorithm": "srbp", "derivative": False, "momentum": 0.9},
    {"algorithm": "rbp", "resample": "zero_mean"},
    {"algorithm": "rbp", "resample": "sign_concordant"},
    {"algorithm": "srbp", "channel_dropout": 0.5, "quantize": "signal"},
    {"algorithm": "rbp", "signal_transform": "sign", "transform_target": "update"},
    {"algorithm": "arbp"},
    {"algorithm": "asrbp"},
    {"algorithm": "srbp", "quantize": "update", "quantize_rounding": "stochastic"},
]


def _counter(tmp_path: Path) -> Path:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("the allocation counter needs Linux with glibc")
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the allocation counter")
    source = tmp_path / "counter.c"
    source.write_text(COUNTER)
    library = tmp_path / "libcounter.so"
    subprocess.run([compiler, "-O2", "-shared", "-fPIC", str(source), "-o", str(library)], check=True)
    return library


def _extra_allocations(library: Path, cases: list[dict]) -> list[dict]:
    env = dict(os.environ, LD_PRELOAD=str(library), OMP_NUM_THREADS="2")
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(cases)], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_training_steps_allocate_nothing(tmp_path):
    cases = [dict(case, sizes=SIZES) for case in CASES] + [dict(case, sizes=SIZES, conv=True) for case in CONV_CASES]
    # Products large enough to be split between two threads (OpenMP regions inside the step).
    cases.append({"algorithm": "srbp", "sizes": [784, 1000, 10], "threads": 2})
    extra = _extra_allocations(_counter(tmp_path), cases)
    # 50 more steps: one allocation per step would add 50; the epoch call itself may differ by a
    # few (Python's own allocator). The convolutions here run on the portable path (eigen).
    offenders = {json.dumps(case): n["extra"] for case, n in zip(cases, extra) if abs(n["extra"]) > 5}
    assert not offenders, f"allocations in 50 extra steps: {offenders}"


@pytest.mark.skipif(not _core._onednn_available(), reason="this build has no oneDNN")
def test_onednn_convolutions_allocate_only_bookkeeping(tmp_path):
    """oneDNN's primitive execution allocates a few small objects per call (it turns the argument map
    into its own and builds an execution context), which no caller can avoid; everything sized by the
    data (its tensors in blocked layouts, the reorders' buffers, scratch) is created once per batch shape
    and cached. So a step's allocations must all be small, and as many per step as calls make."""
    cases = [dict(case, sizes=SIZES, conv=True, conv_implementation="onednn") for case in CONV_CASES]
    extra = _extra_allocations(_counter(tmp_path), cases)
    # The largest request during the longer epoch: the epoch's own order of examples (3200 x 8 bytes)
    # is legitimate; a buffer sized by the batch (the first convolution's output, 32 x 4 x 24 x 24
    # floats, is 295 KB; its blocked copy as much) would be far above 64 KiB.
    large = {json.dumps(case): n["largest"] for case, n in zip(cases, extra) if n["largest"] > 65536}
    assert not large, f"large allocations in training steps with oneDNN: {large}"
    # A bp step here runs about 18 oneDNN executions (5 convolutions and the reorders into and out of
    # their layouts), each allocating 6-7 small objects (measured: 116 per step); 200 per step leaves
    # room for another oneDNN version, not for anything that allocates per example or per value.
    many = {json.dumps(case): n["extra"] for case, n in zip(cases, extra) if n["extra"] > 50 * 200}
    assert not many, f"more allocations than oneDNN's bookkeeping in 50 extra steps: {many}"


PARTIAL_CHILD = textwrap.dedent(
    """
    import ctypes, json, sys
    import numpy as np
    import rbp_native as rbp

    counted = ctypes.CDLL(None).rbp_test_allocations
    counted.restype = ctypes.c_long
    rng = np.random.default_rng(0)
    steps, batch, epochs = 5, 32, 20
    x = rng.random((steps * batch + 7, 784), dtype=np.float32)
    y = rng.integers(0, 10, len(x)).astype(np.int64)
    results = []
    for case in json.loads(sys.argv[1]):
        net = rbp.MLP(case.pop("sizes"), seed=0)
        core = rbp.Trainer(net, lr=0.01, batch_size=batch, seed=0, **case)._core
        core.train_epoch(x, y, None, 0)  # warm-up, with a partial last batch
        before = counted()
        for _ in range(epochs):
            core.train_epoch(x[: steps * batch], y[: steps * batch], None, 0)
        middle = counted()
        for _ in range(epochs):
            core.train_epoch(x, y, None, 0)
        after = counted()
        results.append((after - middle) - (middle - before))
    print(json.dumps(results))
    """
)


def test_partial_last_batches_allocate_nothing(tmp_path):
    """An epoch whose last batch is smaller (7 of 32 rows) allocates no more than one of full batches:
    buffers sized by the batch (workspaces, dropout masks) are reused, not resized back and forth."""
    cases = [
        {"algorithm": "srbp"},
        {"algorithm": "srbp", "channel_dropout": 0.5},
        {"algorithm": "rbp", "channel_dropout": 0.2, "quantize": "signal", "quantize_bits": 4},
    ]
    library = _counter(tmp_path)
    env = dict(os.environ, LD_PRELOAD=str(library))
    done = subprocess.run(
        [sys.executable, "-c", PARTIAL_CHILD, json.dumps([dict(c, sizes=SIZES) for c in cases])],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    extra = json.loads(done.stdout.strip().splitlines()[-1])
    # 20 epochs: a buffer resized twice per epoch (down for the partial batch, up again) would add 40.
    offenders = {json.dumps(case): n for case, n in zip(cases, extra) if abs(n) > 5}
    assert not offenders, f"allocations in 20 epochs with a partial last batch: {offenders}"


def test_the_counter_sees_allocations(tmp_path):
    """The check can fail: a trainer with a different batch size per epoch must reallocate
    nothing, but the first epoch of a new trainer does (its workspaces), and is counted."""
    library = _counter(tmp_path)
    child = CHILD.replace("core.train_epoch(inputs, y, None, 0)  # warm-up", "pass  # no warm-up")
    env = dict(os.environ, LD_PRELOAD=str(library))
    done = subprocess.run(
        [sys.executable, "-c", child, json.dumps([{"algorithm": "srbp", "sizes": SIZES}])],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    # Without the warm-up the first measured epoch allocates the workspaces, the second does not.
    assert json.loads(done.stdout.strip().splitlines()[-1])[0]["extra"] < -5
