"""The core's matrix product against numpy, on every kernel family it can run on.

gemm() picks Eigen's packed kernel, Eigen's matrix-vector kernels, or (single precision, AVX-512 and
AVX2 builds) the unpacked dot and axpy kernels by shape. The unpacked kernels are checked with the
selection forced to them, on shapes that cover their edges in both builds (partial vectors, partial
register blocks, depth passes), with row strides of column slices, accumulate on and off (c starts as
NaN when it must not be read) and alpha; the selection rule itself is checked per build. The tests
run on the variant this process loaded, and once more in a child process for every other variant
with unpacked kernels that this machine can run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rbp_native import _native
from rbp_native._native import _core

UNPACKED = _core._unpacked_gemm_available()
needs_unpacked = pytest.mark.skipif(not UNPACKED, reason="this build has no unpacked kernels (AVX-512, AVX2)")


def _operands(rng, m, n, k, ta, tb, dtype, pad):
    """op(a) (m x k), op(b) (k x n) and c (m x n), each a column slice of a wider array when pad > 0."""

    def make(rows, cols):
        full = rng.standard_normal((rows, cols + 2 * pad)).astype(dtype)
        return full, full[:, pad : pad + cols]

    _, a = make(k, m) if ta else make(m, k)
    _, b = make(n, k) if tb else make(k, n)
    c_full, c = make(m, n)
    return a, b, c_full, c


def _check(m, n, k, ta, tb, *, accumulate, dtype=np.float32, pad=0, alpha=0.75, threads=1, seed=0):
    rng = np.random.default_rng(seed)
    a, b, c_full, c = _operands(rng, m, n, k, ta, tb, dtype, pad)
    if not accumulate:
        c[...] = np.nan  # must be overwritten, never read
    before_full = c_full.copy()
    before = c.astype(np.float64)
    op_a = (a.T if ta else a).astype(np.float64)
    op_b = (b.T if tb else b).astype(np.float64)
    expected = alpha * op_a @ op_b + (before if accumulate else 0.0)
    _core._gemm(alpha, a, ta, b, tb, c, accumulate, threads)
    # Rounding bound of a float32 dot product of length k, relative to sum |a||b|.
    eps = np.finfo(dtype).eps
    scale = abs(alpha) * np.abs(op_a) @ np.abs(op_b) + (np.abs(before) if accumulate else 0.0)
    tolerance = 4 * (k + 2) * eps * scale + 1e-30
    assert np.all(np.isfinite(c)), "c holds NaN: a value that must be overwritten was read"
    error = np.abs(c - expected)
    assert np.all(error <= tolerance), f"max error {error.max():.3g}, allowed {tolerance.max():.3g}"
    if pad:  # columns outside the slice are untouched
        mask = np.ones(c_full.shape, bool)
        mask[:, pad : pad + n] = False
        np.testing.assert_array_equal(c_full[mask], before_full[mask])


# (m, n, k, transpose_a, transpose_b, kernel the AVX-512 build selects)
UNPACKED_CASES = [
    # dot form, forward S = X W^T: depth >= 256 or fewer than 16 outputs
    (32, 100, 784, False, True, "unpacked-dot"),  # MNIST net's first layer
    (33, 101, 787, False, True, "unpacked-dot"),  # partial 4x4 blocks both ways, partial last vector
    (7, 6, 300, False, True, "unpacked-dot"),
    (5, 3, 17, False, True, "unpacked-dot"),  # fewer than 16 outputs, depth one vector plus one
    (32, 10, 100, False, True, "unpacked-dot"),  # output layer
    (6, 9, 2100, False, True, "unpacked-dot"),  # three depth passes of 1024
    (3, 2, 15, False, True, "unpacked-dot"),  # one partial vector of depth
    (10, 17, 260, False, True, "unpacked-dot"),  # 3x3 blocks (AVX2) with one row and one column left
    # axpy form, backward J = G W
    (32, 100, 100, False, False, "unpacked-axpy"),
    (32, 100, 10, False, False, "unpacked-axpy"),
    (13, 65, 7, False, False, "unpacked-axpy"),  # 6+6+1 rows; one full 64-column block and one lane
    (11, 48, 130, False, False, "unpacked-axpy"),  # 3 vectors; two depth passes of 128
    (5, 33, 3, False, False, "unpacked-axpy"),  # 3 vectors, the last with one lane
    (6, 200, 40, False, False, "unpacked-axpy"),  # 3 full blocks of 64 and 8 columns
    (7, 23, 9, False, False, "unpacked-axpy"),  # AVX2: one block of 16 columns and 7 lanes
    (9, 60, 12, False, False, "unpacked-axpy"),  # AVX-512: 4 vectors, the last with 12 lanes
    (8, 3000, 10, False, False, "unpacked-axpy"),  # srbp's stacked product: 46 blocks of 64 and 56 columns
    (13, 29, 5, False, False, "unpacked-axpy"),  # AVX2: a block of 16 and 13 columns (2 vectors)
    # axpy form, update W += s B^T X
    (100, 784, 32, True, False, "unpacked-axpy"),
    (100, 100, 32, True, False, "unpacked-axpy"),
    (10, 100, 128, True, False, "unpacked-axpy"),
    (17, 31, 300, True, False, "unpacked-axpy"),  # 6+6+5 rows, 2 vectors, 3 depth passes
    (250, 20, 40, True, False, "unpacked-axpy"),
    (40, 120, 33, True, False, "unpacked-axpy"),  # a 120-unit layer: 64 columns and 56 more
]

EIGEN_CASES = [
    (32, 100, 100, False, True, "eigen"),  # dot form loses at depth 100: Eigen's kernel
    (1000, 784, 32, True, False, "eigen"),  # update of a 1000-unit layer
    (128, 128, 128, True, True, "eigen"),  # A^T B^T has no unpacked kernel
    (40, 60, 30, True, True, "eigen"),
    (1, 100, 784, False, True, "eigen-vector"),  # a batch of one
    (100, 1, 32, True, False, "eigen-vector"),
    (3, 4, 5, False, False, "eigen-vector"),  # tiny
]


def _unpacked_kernel(tb):
    return "unpacked-dot" if tb else "unpacked-axpy"


@needs_unpacked
@pytest.mark.parametrize("m,n,k,ta,tb,kernel", UNPACKED_CASES)
@pytest.mark.parametrize("accumulate", [False, True])
def test_unpacked_kernels_match_numpy(m, n, k, ta, tb, kernel, accumulate):
    _core._set_unpacked_gemm("always")
    try:
        assert _core._gemm_kernel(m, n, k, ta, tb) == _unpacked_kernel(tb)
        _check(m, n, k, ta, tb, accumulate=accumulate)
        _check(m, n, k, ta, tb, accumulate=accumulate, pad=5, alpha=-0.01, seed=1)  # strided rows
    finally:
        _core._set_unpacked_gemm("where-faster")


@pytest.mark.skipif(_core.isa != "avx512", reason="the AVX-512 build's selection rule")
@pytest.mark.parametrize("m,n,k,ta,tb,kernel", UNPACKED_CASES + [c for c in EIGEN_CASES if c[-1] != "eigen-vector"])
def test_avx512_selection(m, n, k, ta, tb, kernel):
    assert _core._gemm_kernel(m, n, k, ta, tb) == kernel


# The forward products (S = X W^T, depth >= 256) whose kernel depends on the CPU profile:
# (m, n, k, kernel with the generic rule, kernel with Zen 4's)
PROFILE_CASES = [
    (64, 1000, 1000, "unpacked-dot", "unpacked-dot"),  # 64M multiply-accumulates: the dot form on both
    (65, 1000, 1000, "eigen", "unpacked-dot"),
    (128, 1000, 1000, "eigen", "unpacked-dot"),  # the wide net at batch 128
    (128, 1000, 784, "eigen", "unpacked-dot"),  # its first layer on dense inputs
    (768, 1000, 1000, "eigen", "unpacked-dot"),
    (769, 1000, 1000, "eigen", "eigen"),
    (1024, 100, 784, "eigen", "eigen"),
    (128, 1000, 255, "eigen", "eigen"),  # too shallow for the dot form's reductions
]


@pytest.mark.skipif(_core.isa != "avx512", reason="the AVX-512 build's selection rule")
@pytest.mark.parametrize("profile", ["generic", "zen4"])
@pytest.mark.parametrize("m,n,k,generic,zen4", PROFILE_CASES)
def test_avx512_selection_by_cpu_profile(profile, m, n, k, generic, zen4):
    _core._set_gemm_profile(profile)
    try:
        assert _core._gemm_profile() == profile
        assert _core._gemm_kernel(m, n, k, False, True) == (zen4 if profile == "zen4" else generic)
        for ta, tb in [(False, False), (True, False)]:  # the other orientations do not depend on it
            expected = _core._gemm_kernel(m, n, k, ta, tb)
            _core._set_gemm_profile("generic" if profile == "zen4" else "zen4")
            assert _core._gemm_kernel(m, n, k, ta, tb) == expected
            _core._set_gemm_profile(profile)
    finally:
        _core._set_gemm_profile("detect")


def test_gemm_profile_detected():
    """'detect' picks Zen 4's rule exactly on an AMD family 19h CPU with AVX-512 (read here from
    /proc/cpuinfo, independently of the core's cpuid probe)."""
    _core._set_gemm_profile("detect")
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        pytest.skip("no /proc/cpuinfo to check the detection against")
    first = info.split("\n\n")[0]
    fields = dict(line.split(":", 1) for line in first.splitlines() if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    zen4 = (
        fields.get("vendor_id") == "AuthenticAMD"
        and fields.get("cpu family") == "25"
        and "avx512f" in fields.get("flags", "").split()
    )
    assert _core._gemm_profile() == ("zen4" if zen4 else "generic")
    with pytest.raises(ValueError, match="profile must be"):
        _core._set_gemm_profile("xeon")
    assert _core._gemm_profile() == ("zen4" if zen4 else "generic")


# Depths that Eigen's blocking splits (above 944 for float with AVX-512 and a 48 KiB L1d) in Eigen's
# packed kernel, under both blockings (gemm.hpp's GemmBlocking), one and two threads.
BLOCKING_CASES = [
    (128, 1000, 1000, False, True),  # the wide net's forward products
    (128, 1024, 1024, False, False),  # the conv net's dense channel product
    (32, 1000, 2000, False, True),
    (300, 200, 1600, True, False),
    (1000, 40, 3000, False, False),  # too wide to keep whole in half an L2: Eigen's blocking either way
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("blocking", ["eigen", "whole-depth"])
@pytest.mark.parametrize("m,n,k,ta,tb", BLOCKING_CASES)
def test_products_under_both_blockings(m, n, k, ta, tb, blocking, threads):
    _core._set_unpacked_gemm("never")
    _core._set_gemm_blocking(blocking)
    try:
        assert _core._gemm_blocking() == blocking
        _check(m, n, k, ta, tb, accumulate=False, threads=threads)
        _check(m, n, k, ta, tb, accumulate=True, pad=3, alpha=-0.5, threads=threads, seed=2)
    finally:
        _core._set_unpacked_gemm("where-faster")
        _core._set_gemm_blocking("detect")


def test_whole_depth_blocking_takes_effect():
    """A depth of 2000 is split by Eigen's blocking (up to a 100 KiB L1d) and kept whole by the other:
    the float32 sums come out in another order."""
    rng = np.random.default_rng(3)
    a, b, _, _ = _operands(rng, 32, 1000, 2000, False, True, np.float32, 0)
    results = {}
    _core._set_unpacked_gemm("never")
    try:
        for blocking in ("eigen", "whole-depth"):
            _core._set_gemm_blocking(blocking)
            results[blocking] = np.zeros((32, 1000), np.float32)
            _core._gemm(1.0, a, False, b, True, results[blocking], False, 1)
    finally:
        _core._set_unpacked_gemm("where-faster")
        _core._set_gemm_blocking("detect")
    assert not np.array_equal(results["eigen"], results["whole-depth"])
    np.testing.assert_allclose(results["eigen"], results["whole-depth"], rtol=1e-4, atol=1e-3)


def test_gemm_blocking_detected():
    """'detect' keeps the depth whole exactly in the AVX-512 build on CPUs with at least 48 KiB of L1 data
    cache (read here from sysfs, independently of Eigen's cpuid query)."""
    _core._set_gemm_blocking("detect")
    index = Path("/sys/devices/system/cpu/cpu0/cache/index0")
    try:
        level, kind, size = ((index / name).read_text().strip() for name in ("level", "type", "size"))
    except OSError:
        pytest.skip("no sysfs cache description to check the detection against")
    if level != "1" or kind != "Data" or not size.endswith("K"):
        pytest.skip(f"unexpected sysfs cache description: level {level}, type {kind}, size {size}")
    expected = "whole-depth" if _core.isa == "avx512" and int(size[:-1]) >= 48 else "eigen"
    assert _core._gemm_blocking() == expected
    with pytest.raises(ValueError, match="blocking must be"):
        _core._set_gemm_blocking("fast")
    assert _core._gemm_blocking() == expected


@pytest.mark.parametrize(
    "extent,threads,granule,lengths",
    [
        (1000, 2, 16, [496, 504]),  # boundaries at the granule nearest to the middle, not 512 + 488
        (128, 2, 16, [64, 64]),
        (100, 2, 1, [50, 50]),
        (100, 2, 4, [52, 48]),
        (1000, 3, 16, [336, 336, 328]),
        (40, 2, 16, [16, 24]),
        (10, 4, 16, [0, 0, 0, 10]),  # less than a granule: all of it in the last part
        (40, 4, 16, [16, 0, 16, 8]),  # fewer granules than threads: empty parts
        (0, 2, 16, [0, 0]),
        (7, 1, 16, [7]),
    ],
)
def test_split_parts(extent, threads, granule, lengths):
    parts, longest = _core._split_parts(extent, threads, granule)
    assert parts == lengths
    assert longest == max(lengths)
    assert sum(parts) == extent
    assert all(length % granule == 0 for length in _before_last(parts))


def _before_last(parts):
    """The parts before the last non-empty one."""
    nonempty = [i for i, length in enumerate(parts) if length > 0]
    return parts[: nonempty[-1]] if nonempty else []


def test_split_parts_balanced_for_many_shapes():
    """Every boundary is the granule multiple nearest to its share: no part is more than one granule
    from the even share (and every part before the last non-empty one a whole number of granules)."""
    for extent in range(0, 700, 7):
        for threads in (2, 3, 4, 16):
            for granule in (1, 4, 16):
                parts, longest = _core._split_parts(extent, threads, granule)
                assert sum(parts) == extent and min(parts) >= 0 and longest == max(parts)
                assert all(length % granule == 0 for length in _before_last(parts))
                assert all(abs(length - extent / threads) <= granule for length in parts)
    with pytest.raises(ValueError, match="threads and granule positive"):
        _core._split_parts(10, 0, 16)


@needs_unpacked
def test_unpacked_kernels_every_edge():
    """Every column count up to two column blocks and a half (each remainder of the axpy form's
    column blocks, 64 columns with AVX-512, 16 with AVX2), every row count up to two row blocks, and
    every depth remainder of the dot form."""
    _core._set_unpacked_gemm("always")
    try:
        for n in range(1, 161):
            _check(7, n, 5, False, False, accumulate=True, seed=n)
            _check(5, n, 6, True, False, accumulate=False, seed=n)
        for m in range(1, 14):
            _check(m, 37, 9, False, False, accumulate=True, seed=m)
            for n in range(1, 10):
                _check(m, n, 19, False, True, accumulate=True, seed=m * 10 + n)
        for k in range(1, 40):
            _check(5, 7, k, False, True, accumulate=False, seed=k)
    finally:
        _core._set_unpacked_gemm("where-faster")


# The AVX2 build's picks on step shapes of both nets (forward, backward, update).
AVX2_SELECTION = [
    (32, 100, 784, False, True, "unpacked-dot"),  # long depth, batch up to 48
    (64, 100, 784, False, True, "eigen"),
    (32, 100, 100, False, True, "eigen"),  # short depth
    (32, 10, 100, False, True, "unpacked-dot"),  # fewer than 16 outputs
    (32, 10, 1000, False, True, "unpacked-dot"),
    (32, 100, 100, False, False, "unpacked-axpy"),
    (32, 100, 10, False, False, "unpacked-axpy"),
    (32, 1000, 1000, False, False, "unpacked-axpy"),  # 32M multiply-accumulates
    (128, 1000, 1000, False, False, "eigen"),  # 128M
    (100, 784, 32, True, False, "eigen"),  # an update of 784 inputs
    (100, 100, 32, True, False, "unpacked-axpy"),
    (10, 100, 32, True, False, "unpacked-axpy"),
    (1000, 784, 32, True, False, "eigen"),
]


@pytest.mark.skipif(_core.isa != "avx2", reason="the AVX2 build's selection rule")
@pytest.mark.parametrize("m,n,k,ta,tb,kernel", AVX2_SELECTION)
def test_avx2_selection(m, n, k, ta, tb, kernel):
    assert _core._gemm_kernel(m, n, k, ta, tb) == kernel


@pytest.mark.parametrize("m,n,k,ta,tb,kernel", UNPACKED_CASES + EIGEN_CASES)
@pytest.mark.parametrize("accumulate", [False, True])
def test_eigen_kernels_match_numpy(m, n, k, ta, tb, kernel, accumulate):
    """The same shapes through Eigen's kernels only (what non-AVX-512 builds run)."""
    _core._set_unpacked_gemm("never")
    try:
        if kernel != "eigen-vector":
            assert _core._gemm_kernel(m, n, k, ta, tb) == "eigen"
        _check(m, n, k, ta, tb, accumulate=accumulate)
        _check(m, n, k, ta, tb, accumulate=accumulate, pad=3, seed=2)
    finally:
        _core._set_unpacked_gemm("where-faster")


@needs_unpacked
@pytest.mark.parametrize("m,n,k,ta,tb,kernel", [c for c in EIGEN_CASES if c[-1] == "eigen" and not (c[3] and c[4])])
def test_unpacked_kernels_where_eigen_is_faster(m, n, k, ta, tb, kernel):
    """The unpacked kernels are correct on the shapes the selection gives to Eigen, too."""
    _core._set_unpacked_gemm("always")
    try:
        assert _core._gemm_kernel(m, n, k, ta, tb) == _unpacked_kernel(tb)
        _check(m, n, k, ta, tb, accumulate=True, pad=1)
        _check(m, n, k, ta, tb, accumulate=False)
    finally:
        _core._set_unpacked_gemm("where-faster")


@pytest.mark.parametrize("m,n,k,ta,tb,kernel", [c for c in EIGEN_CASES if c[-1] == "eigen-vector" or (c[3] and c[4])])
def test_shapes_without_unpacked_kernel(m, n, k, ta, tb, kernel):
    """Vector shapes and A^T B^T run on Eigen's kernels in every build and mode."""
    for use in ("where-faster", "always"):
        _core._set_unpacked_gemm(use)
        try:
            assert _core._gemm_kernel(m, n, k, ta, tb) == kernel
            _check(m, n, k, ta, tb, accumulate=True, pad=2)
        finally:
            _core._set_unpacked_gemm("where-faster")


@pytest.mark.parametrize("ta,tb", [(False, True), (False, False), (True, False), (True, True)])
def test_double_precision_uses_eigen(ta, tb):
    assert _core._gemm_kernel(32, 100, 784, ta, tb, single=False) == "eigen"
    _check(32, 100, 784 if not ta else 96, ta, tb, accumulate=True, dtype=np.float64)


@pytest.mark.parametrize("ta,tb", [(False, True), (False, False), (True, False)])
def test_split_between_threads(ta, tb):
    """Products large enough to split: each thread's part goes through the same kernels."""
    m, n, k = (256, 96, 800) if not ta else (256, 800, 64)
    _check(m, n, k, ta, tb, accumulate=True, threads=2, pad=1)
    _check(m, n, k, ta, tb, accumulate=False, threads=2)


@pytest.mark.parametrize("ta,tb", [(False, True), (False, False), (True, False)])
def test_split_threshold(ta, tb):
    """With the split threshold lowered (benchmarks/kernels_ab.py --split) the MNIST net's small
    products are split between threads too, into parts that are not multiples of 16, and still match."""
    previous = _core._set_min_macs_per_thread(1.0)
    try:
        _check(64, 100, 100, ta, tb, accumulate=True, threads=2, pad=1)
        _check(100, 70, 64, ta, tb, accumulate=False, threads=2)
    finally:
        assert _core._set_min_macs_per_thread(previous) == 1.0
    assert previous == 4.0e6
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="macs must be positive"):
            _core._set_min_macs_per_thread(bad)
    assert _core._set_min_macs_per_thread(previous) == previous


def test_unpacked_and_eigen_agree_to_rounding():
    """Both kernel families on the MNIST net's first-layer shape give the same product up to
    float32 rounding (and the selection switch really changes the kernel)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((32, 784)).astype(np.float32)
    w = rng.standard_normal((100, 784)).astype(np.float32)
    results = []
    for enabled in (True, False):
        _core._set_unpacked_gemm("always" if enabled else "never")
        try:
            expected = "unpacked-dot" if enabled and UNPACKED else "eigen"
            assert _core._gemm_kernel(32, 100, 784, False, True) == expected
            c = np.zeros((32, 100), np.float32)
            _core._gemm(1.0, x, False, w, True, c, False)
            results.append(c)
        finally:
            _core._set_unpacked_gemm("where-faster")
    np.testing.assert_allclose(results[0], results[1], rtol=1e-5, atol=1e-4)
    if UNPACKED:  # different summation orders: some entries differ in the last bits
        assert not np.array_equal(results[0], results[1])


def test_bad_arguments_raise():
    a = np.zeros((4, 5), np.float32)
    b = np.zeros((5, 6), np.float32)
    with pytest.raises(ValueError, match="shapes do not match"):
        _core._gemm(1.0, a, False, b, False, np.zeros((4, 7), np.float32), False)
    with pytest.raises(TypeError, match="float32"):
        _core._gemm(1.0, a.astype(np.float64), False, b, False, np.zeros((4, 6), np.float32), False)
    with pytest.raises(ValueError, match="unit column stride"):
        _core._gemm(1.0, a, False, b, False, np.zeros((4, 12), np.float32)[:, ::2], False)
    with pytest.raises(ValueError, match="overlap"):
        big = np.zeros((5, 5), np.float32)
        _core._gemm(1.0, big[:4], False, big, False, big[:4], False)
    with pytest.raises(ValueError, match="writable"):
        c = np.zeros((4, 6), np.float32)
        c.flags.writeable = False
        _core._gemm(1.0, a, False, b, False, c, False)
    with pytest.raises(ValueError, match="threads"):
        _core._gemm(1.0, a, False, b, False, np.zeros((4, 6), np.float32), False, 0)


# ---- products that skip the input's all-zero blocks (the first layer on MNIST-like inputs) ----

ZERO_WIDTH = _core._zero_block_width() if UNPACKED else 0
needs_zero_skipping = pytest.mark.skipif(ZERO_WIDTH == 0, reason="this build has no zero-skipping products")


def _blocky(rng, rows, cols, zero_fraction=0.5):
    """x with about `zero_fraction` of its blocks (ZERO_WIDTH columns) all zero, scattered zeros and
    negative zeros elsewhere, like blank image margins."""
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    x[rng.random((rows, cols)) < 0.3] = 0.0
    x[rng.random((rows, cols)) < 0.05] = -0.0
    for i in range(rows):
        for g in range(0, cols, ZERO_WIDTH):
            if rng.random() < zero_fraction:
                x[i, g : g + ZERO_WIDTH] = 0.0
    return x


def _zero_fraction(x):
    blocks = [(x[:, g : g + ZERO_WIDTH] != 0).any(axis=1) for g in range(0, x.shape[1], ZERO_WIDTH)]
    return 1.0 - np.mean(blocks)


# (rows of x, units, columns of x): block and vector remainders, several depth passes (dot form: 1024
# columns; update: 128 rows), a row with no non-zero at all
ZERO_SKIP_SHAPES = [
    (32, 100, 784),
    (33, 101, 787),
    (7, 6, 300),
    (5, 3, 17),
    (6, 9, 2100),
    (130, 17, 65),
    (1, 100, 784),
    (128, 100, 784),
    (40, 120, 203),
]


@needs_zero_skipping
@pytest.mark.parametrize("m,n,k", ZERO_SKIP_SHAPES)
@pytest.mark.parametrize("threads", [1, 2])
def test_skipping_zeros_gives_the_unpacked_kernels_sums(m, n, k, threads):
    """S = X W^T and W += a B^T X skipping X's zero blocks equal the unpacked kernels' results bit
    for bit (a skipped term is an exact zero), and numpy's to rounding."""
    rng = np.random.default_rng(m * 1000 + k)
    x = _blocky(rng, m, k)
    x[m // 2] = 0.0
    w = rng.standard_normal((n, k)).astype(np.float32)
    b = rng.standard_normal((m, n)).astype(np.float32)
    _core._set_unpacked_gemm("always")
    try:
        for accumulate in (False, True):
            start = rng.standard_normal((m, n)).astype(np.float32)
            expected = start.copy() if accumulate else np.full((m, n), np.nan, np.float32)
            _core._gemm(1.0, x, False, w, True, expected, accumulate, threads)
            s = start.copy() if accumulate else np.full((m, n), np.nan, np.float32)
            zero = _core._skipping_zeros_forward(x, w, s, accumulate, threads)
            assert zero == pytest.approx(_zero_fraction(x))
            np.testing.assert_array_equal(s, expected)
            reference = x.astype(np.float64) @ w.T.astype(np.float64) + (start if accumulate else 0.0)
            np.testing.assert_allclose(s, reference, rtol=1e-4, atol=1e-4 * np.sqrt(k))
        expected = w.copy()
        _core._gemm(-0.01, b, True, x, False, expected, True, threads)
        updated = w.copy()
        _core._skipping_zeros_update(-0.01, b, x, updated, threads)
        np.testing.assert_array_equal(updated, expected)
        np.testing.assert_allclose(updated, w - 0.01 * b.T.astype(np.float64) @ x, rtol=1e-5, atol=1e-5)
    finally:
        _core._set_unpacked_gemm("where-faster")


@needs_zero_skipping
def test_skipping_zeros_on_an_all_zero_input_and_nan():
    """A zero input gives S = 0 (or leaves an accumulated S) and leaves W as it was; a NaN counts as
    a non-zero, so it reaches the result as in the full product."""
    rng = np.random.default_rng(5)
    x = np.zeros((9, 70), np.float32)
    w = rng.standard_normal((11, 70)).astype(np.float32)
    s = np.full((9, 11), np.nan, np.float32)
    assert _core._skipping_zeros_forward(x, w, s, False) == 1.0
    np.testing.assert_array_equal(s, 0.0)
    before = rng.standard_normal((9, 11)).astype(np.float32)
    s = before.copy()
    _core._skipping_zeros_forward(x, w, s, True)
    np.testing.assert_array_equal(s, before)
    updated = w.copy()
    _core._skipping_zeros_update(0.5, rng.standard_normal((9, 11)).astype(np.float32), x, updated)
    np.testing.assert_array_equal(updated, w)
    x[3, 40] = np.nan
    s = np.zeros((9, 11), np.float32)
    _core._skipping_zeros_forward(x, w, s, False)
    assert np.isnan(s[3]).all() and np.isfinite(np.delete(s, 3, axis=0)).all()


@needs_zero_skipping
def test_skipping_zeros_bad_arguments_raise():
    x = np.zeros((4, 5), np.float32)
    with pytest.raises(ValueError, match="shapes do not match"):
        _core._skipping_zeros_forward(x, np.zeros((3, 6), np.float32), np.zeros((4, 3), np.float32), False)
    with pytest.raises(ValueError, match="shapes do not match"):
        _core._skipping_zeros_update(1.0, np.zeros((4, 3), np.float32), x, np.zeros((3, 6), np.float32))
    with pytest.raises(TypeError, match="float32"):
        _core._skipping_zeros_forward(
            x.astype(np.float64), np.zeros((3, 5), np.float32), np.zeros((4, 3), np.float32), False
        )


OTHER_VARIANTS = [isa for isa in ("avx2", "avx512") if isa != _core.isa]


@pytest.mark.parametrize("isa", OTHER_VARIANTS)
def test_other_variants(isa):
    """This file again in a child process on another variant (its own kernels and selection rule)."""
    if os.environ.get("RBP_NATIVE_ISA"):
        pytest.skip("already running on a forced variant")
    if isa not in _native.available() or not _native.supported(isa):
        pytest.skip(f"{isa} variant not usable here")
    env = dict(os.environ, RBP_NATIVE_ISA=isa)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout
