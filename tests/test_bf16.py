"""bf16 products (Trainer(precision="bf16")): operands rounded to bfloat16, sums in float32.

The oracle rounds with numpy's integer operations (round to nearest, ties to even) and multiplies in
float64; each product of two bf16 values is exact in float32, so the core may differ from it only by
float32 summation. Both implementations are checked: oneDNN's bf16 matmul and convolutions (where the
build has oneDNN) and the portable ones that feed the rounded operands to the float32 kernels.
"""

import numpy as np
import pytest

import conv_reference as ref
import rbp_native as rbp
from rbp_native import _core
from test_conv import _batch, _net, _one_hot, _stages

IMPLEMENTATIONS = ["auto", "portable"]


def bf16(x):
    """x rounded to the nearest bfloat16 (ties to even; subnormals to a zero of their sign), as float32."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    bits = x.view(np.uint32).astype(np.uint64)
    rounded = (((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16).astype(np.uint32).view(np.float32)
    rounded = np.where(np.abs(x) < np.finfo(np.float32).tiny, np.copysign(np.float32(0), x), rounded)
    return np.where(np.isnan(x), x, rounded).reshape(x.shape)


@pytest.fixture(params=IMPLEMENTATIONS)
def implementation(request):
    _core._set_bf16_implementation(request.param)
    yield request.param
    _core._set_bf16_implementation("auto")


def test_oracle_rounding():
    """The test's own rounding: ties go to the even neighbour, 8 significant bits survive."""
    one_ulp = 2.0**-7  # bf16's spacing at 1
    x = np.array([1.0, 1 + one_ulp / 2, 1 + 3 * one_ulp / 2, 1 + one_ulp / 2 + 2**-20, -2.5, 1e-3], np.float32)
    np.testing.assert_array_equal(bf16(x)[:5], [1.0, 1.0, 1 + 2 * one_ulp, 1 + one_ulp, -2.5])
    assert abs(bf16(x)[5] - 1e-3) <= 1e-3 * 2**-8


def test_products_round_their_operands_to_nearest_even(implementation):
    """A product with the identity returns the rounded operand: ties to even, NaN and infinities kept."""
    one_ulp = 2.0**-7
    row = [1.0, 1 + one_ulp / 2, 1 + 3 * one_ulp / 2, 1 + one_ulp / 2 + 2**-20, 3.14159265, -1e-3, 3e38, 2e-38]
    a = np.array([row], np.float32)
    c = np.zeros_like(a)
    _core._gemm(1.0, a, False, np.eye(a.shape[1], dtype=np.float32), False, c, False, 1, bf16=True)
    np.testing.assert_array_equal(c, bf16(a))
    assert c[0, 1] == 1.0 and c[0, 2] == 1 + 2 * one_ulp  # both halfway cases went to the even side
    subnormal = np.zeros((1, 1), np.float32)
    _core._gemm(
        1.0,
        np.array([[1e-40]], np.float32),
        False,
        np.array([[2.0**100]], np.float32),
        False,
        subnormal,
        False,
        1,
        bf16=True,
    )
    assert subnormal[0, 0] == 0  # flushed before the product (it would be 1.3e-10 in float32)
    for special in (np.inf, -np.inf, np.nan):  # one term each: inf * 0 would be NaN in any arithmetic
        one = np.zeros((1, 1), np.float32)
        _core._gemm(
            1.0, np.array([[special]], np.float32), False, np.ones((1, 1), np.float32), False, one, False, 1, bf16=True
        )
        np.testing.assert_array_equal(one, [[special]])


SHAPES = [
    (128, 100, 784, False, True),  # the forward product S = X W^T
    (128, 100, 100, False, False),  # the channel's J = B W
    (100, 784, 128, True, False),  # the update W += a B^T X
    (7, 5, 3, True, True),
    (1, 10, 100, False, True),  # a batch of one
    (33, 65, 17, False, False),
]


@pytest.mark.parametrize("m,n,k,ta,tb", SHAPES)
@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("threads", [1, 2])
def test_products_match_the_rounded_oracle(implementation, m, n, k, ta, tb, accumulate, threads):
    rng = np.random.default_rng(m * 1000 + n + k)
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    start = rng.standard_normal((m, n + 3)).astype(np.float32)
    buffer = start.copy()
    c = buffer[:, :n]  # a strided C: rows n + 3 floats apart
    alpha = -0.375
    _core._gemm(alpha, a, ta, b, tb, c, accumulate, threads, bf16=True)
    oa, ob = (a.T if ta else a), (b.T if tb else b)
    base = start[:, :n].astype(np.float64) if accumulate else 0.0
    oracle = base + alpha * (bf16(oa).astype(np.float64) @ bf16(ob).astype(np.float64))
    float32 = base + alpha * (oa.astype(np.float64) @ ob.astype(np.float64))
    size = abs(alpha) * (np.abs(oa).astype(np.float64) @ np.abs(ob).astype(np.float64)) + np.abs(base) + 1e-30
    assert np.max(np.abs(c - oracle) / size) < 1e-6  # float32 sums of exact products
    assert np.max(np.abs(float32 - oracle) / size) > 1e-4  # the rounding is visible: the check can fail
    np.testing.assert_array_equal(buffer[:, n:], start[:, n:])  # the padding between rows untouched


def test_products_outside_the_scope_stay_float32():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((16, 40)).astype(np.float32), rng.standard_normal((40, 24)).astype(np.float32)
    c = np.zeros((16, 24), np.float32)
    _core._gemm(1.0, a, False, b, False, c, False, 1)
    np.testing.assert_allclose(c, a.astype(np.float64) @ b, rtol=1e-5, atol=1e-5)
    double = np.zeros((16, 24))
    _core._gemm(1.0, a.astype(np.float64), False, b.astype(np.float64), False, double, False, 1, bf16=True)
    np.testing.assert_allclose(double, a.astype(np.float64) @ b, rtol=1e-12)  # float64 ignores bf16


def _bp_step_oracle(weights, biases, x, y, lr):
    """One BP step of a tanh/softmax MLP with every matrix product's operands rounded to bf16
    (float64 otherwise): S = b + r(O) r(W)^T, J = r(B) r(W_up), W += lr r(B)^T r(O) / n."""
    r = lambda m: bf16(m).astype(np.float64)  # noqa: E731
    outputs, derivatives = [x.astype(np.float64)], []
    for h, (w, b) in enumerate(zip(weights, biases)):
        s = b + r(outputs[-1]) @ r(w).T
        if h < len(weights) - 1:
            o = np.tanh(s)
            derivatives.append(1 - o**2)
        else:
            e = np.exp(s - s.max(axis=1, keepdims=True))
            o = e / e.sum(axis=1, keepdims=True)
        outputs.append(o)
    n = x.shape[0]
    signal = np.eye(weights[-1].shape[0])[y] - outputs[-1]
    new_w, new_b = [None] * len(weights), [None] * len(weights)
    for h in reversed(range(len(weights))):
        new_w[h] = weights[h] + lr * (r(signal).T @ r(outputs[h])) / n
        new_b[h] = biases[h] + lr * signal.mean(axis=0)
        if h > 0:
            signal = derivatives[h - 1] * (r(signal) @ r(weights[h]))
    return new_w, new_b


def test_a_training_step_is_bp_with_rounded_operands(implementation):
    """One step of Trainer(precision="bf16") against the oracle, and the float32 trainer visibly off it."""
    sizes = [40, 24, 16, 6]
    rng = np.random.default_rng(5)
    x = rng.standard_normal((32, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], 32)
    biases = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in sizes[1:]]
    results = {}
    for precision in ("bf16", "float32"):
        net = rbp.MLP(sizes, seed=3)
        net.set_biases(biases)
        start_w, start_b = net.weights, net.biases
        trainer = rbp.Trainer(net, lr=0.5, decay=0.0, batch_size=32, threads=1, precision=precision)
        trainer.step(x, y)
        results[precision] = (net.weights, net.biases)
    oracle_w, oracle_b = _bp_step_oracle(start_w, start_b, x, y, 0.5)

    def off(weights):
        return max(np.max(np.abs(w - o)) / np.max(np.abs(o - s)) for w, o, s in zip(weights, oracle_w, start_w))

    # Measured: bf16 7e-7 of the largest change (float32 sums; an intermediate rounded the other way
    # would move single terms by one bf16 step, up to ~1e-3), float32 5e-3.
    assert off(results["bf16"][0]) < 1e-4
    assert off(results["float32"][0]) > 1e-3
    for b, o in zip(results["bf16"][1], oracle_b):
        np.testing.assert_allclose(b, o, rtol=1e-3, atol=1e-5)


def test_training_is_reproducible_and_learns():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((4, 30)) * 2
    y = rng.integers(0, 4, 600)
    x = (centers[y] + rng.standard_normal((600, 30))).astype(np.float32)
    runs = []
    for _ in range(2):
        net = rbp.MLP([30, 32, 32, 4], seed=1)
        trainer = rbp.Trainer(net, algorithm="srbp", lr=0.05, batch_size=50, seed=2, threads=2, precision="bf16")
        history = trainer.fit((x, y), epochs=3, progress=False)
        runs.append((net.weights, history))
    for w1, w2 in zip(runs[0][0], runs[1][0]):
        np.testing.assert_array_equal(w1, w2)
    assert runs[0][1].records[-1]["train_accuracy"] > 0.9
    net = rbp.MLP([30, 32, 32, 4], seed=1)
    rbp.Trainer(net, algorithm="srbp", lr=0.05, batch_size=50, seed=2, threads=2).fit((x, y), epochs=3, progress=False)
    assert not np.array_equal(net.weights[0], runs[0][0][0])


def test_bad_precisions_raise():
    assert list(_core.choices()["precision"]) == ["float32", "bf16"]
    with pytest.raises(ValueError, match="unknown precision 'fp16'; choose one of float32, bf16"):
        rbp.Trainer(rbp.MLP([4, 3, 2]), precision="fp16")
    with pytest.raises(ValueError, match="needs a float32 network"):
        rbp.Trainer(rbp.MLP([4, 3, 2], dtype="float64"), precision="bf16")
    sparse = rbp.MLP([8, 6, 3], connectivity=0.5)
    with pytest.raises(ValueError, match="needs a network of dense and conv2d layers.*'sparse'"):
        rbp.Trainer(sparse, precision="bf16")
    with pytest.raises(ValueError, match="implementation must be 'auto' or 'portable'"):
        _core._set_bf16_implementation("fast")
    assert rbp.Trainer(rbp.MLP([4, 3, 2])).precision == "float32"
    assert "precision" not in rbp.Trainer(rbp.MLP([4, 3, 2])).config()  # float32 runs' configs are unchanged


def test_checkpoints_keep_the_precision(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 10)).astype(np.float32), rng.integers(0, 3, 64)
    trainer = rbp.Trainer(rbp.MLP([10, 8, 3], seed=0), batch_size=16, precision="bf16")
    trainer.fit((x, y), epochs=1, progress=False)
    path = tmp_path / "run.npz"
    trainer.save(path)
    loaded = rbp.Trainer.load(path)
    assert loaded.precision == "bf16" and loaded.config()["precision"] == "bf16"
    other = rbp.Trainer(rbp.MLP([10, 8, 3], seed=0), batch_size=16)
    with pytest.raises(ValueError, match="precision"):
        other.restore(path)
    trainer.fit((x, y), epochs=1, progress=False)
    loaded.fit((x, y), epochs=1, progress=False)
    for a, b in zip(trainer.net.weights, loaded.net.weights):
        np.testing.assert_array_equal(a, b)


def test_both_implementations_agree_on_a_step():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((64, 50)).astype(np.float32), rng.integers(0, 5, 64)
    weights = []
    for name in IMPLEMENTATIONS:
        _core._set_bf16_implementation(name)
        try:
            net = rbp.MLP([50, 40, 5], seed=0)
            rbp.Trainer(net, batch_size=64, threads=1, precision="bf16").step(x, y)
            weights.append(net.weights)
        finally:
            _core._set_bf16_implementation("auto")
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


REUSE_CASES = {
    "bp": {"algorithm": "bp"},
    "bp-momentum": {"algorithm": "bp", "momentum": 0.9},
    "sbp": {"algorithm": "sbp"},
    "rbp": {"algorithm": "rbp"},
    "srbp": {"algorithm": "srbp"},
    "arbp": {"algorithm": "arbp"},
    "rbp-resampled": {"algorithm": "rbp", "resample": "zero_mean"},
}


def _fit_bf16(reuse, options, epochs=2, sizes=(30, 20, 16, 5)):
    """Weights, biases and feedback after `epochs` epochs of 6 steps, and the operands rounded."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((60, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], 60)
    _core._set_bf16_operand_reuse(reuse)
    try:
        net = rbp.MLP(list(sizes), seed=1)
        trainer = rbp.Trainer(net, lr=0.1, batch_size=10, seed=2, threads=1, precision="bf16", **options)
        before = _core._bf16_operand_roundings()
        trainer.fit((x, y), epochs=epochs, progress=False, train_metrics="running")
        roundings = _core._bf16_operand_roundings() - before
    finally:
        _core._set_bf16_operand_reuse(True)
    feedback = trainer.feedback if options["algorithm"] not in ("bp", "sbp") else []
    return [*net.weights, *net.biases, *feedback], roundings


@pytest.mark.parametrize("case", sorted(REUSE_CASES))
def test_reused_operands_change_no_weight(implementation, case):
    """A step rounds each weight matrix once, for the forward pass and bp's channel, and a fixed
    feedback matrix is rounded once per call instead of once per step: the weights equal those of
    rounding at every product bit for bit (a stale copy, of weights the update has changed or of
    feedback that adapts or is redrawn, would not), and the passes saved are exactly those expected."""
    options = REUSE_CASES[case]
    reused, fewer = _fit_bf16(True, options)
    fresh, every = _fit_bf16(False, options)
    for a, b in zip(reused, fresh):
        np.testing.assert_array_equal(a, b)
    steps, calls, upper = 12, 2, 2  # 2 epochs of 6 steps, one call per epoch; 2 layers above the first
    saved = {
        "bp": steps * upper,  # W^2 and W^3: rounded for the forward pass, reused by the channel
        "bp-momentum": steps * upper,
        "sbp": steps * upper,
        "rbp": (steps - calls) * upper,  # F^1 and F^2: once per call
        "srbp": steps - calls,  # the stacked feedback matrix: once per call
        "arbp": 0,  # adapted at every step
        "rbp-resampled": 0,  # redrawn at every step
    }[case]
    assert every - fewer == saved


def test_large_weights_are_rounded_afresh():
    """A weight matrix of more than 2^18 values is not remembered (its copy would not stay in cache):
    with a 600 x 500 middle layer bp saves only the top layer's rounding, once per step."""
    sizes = (20, 500, 600, 5)
    reused, fewer = _fit_bf16(True, {"algorithm": "bp"}, sizes=sizes)
    fresh, every = _fit_bf16(False, {"algorithm": "bp"}, sizes=sizes)
    for a, b in zip(reused, fresh):
        np.testing.assert_array_equal(a, b)
    assert every - fewer == 12  # W^3 (5 x 600) in each of the 12 steps; W^2 (600 x 500) rounded twice


# -- conv nets ------------------------------------------------------------------------------------


def _conv_step(algorithm, precision, threads):
    """One step of the small paper-like conv net (nonzero biases): the oracle's starting stages, the
    feedback, the batch and the net after the step."""
    net = _net("paper_like", dtype="float32")
    rng = np.random.default_rng(1)
    net.set_biases([rng.normal(size=b.shape) * 0.1 for b in net.biases])
    x, y = _batch(net, n=8)
    start = _stages(net)
    trainer = rbp.Trainer(
        net, algorithm=algorithm, lr=0.5, momentum=0.0, decay=0.0, seed=3, threads=threads, precision=precision
    )
    feedback = [f.astype(np.float64) for f in trainer.feedback]
    trainer.step(x, y)
    return start, feedback, (x, y), net


def _change_off(got, want, start):
    """The largest deviation from the oracle's new value, over the oracle's largest change."""
    return np.max(np.abs(got - want)) / np.max(np.abs(want - start))


@pytest.mark.usefixtures("conv_implementation")
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("algorithm", ["bp", "rbp", "srbp"])
def test_a_conv_step_rounds_every_product(implementation, algorithm, threads):
    """Every product of a conv net's step (convolutions, their adjoints, the kernel gradients, the dense
    and feedback products) has its operands rounded, on each thread of a split batch; the biases and
    their gradients stay float32. Checked layer by layer against the oracle with rounded operands, with
    the float32 trainer visibly off it."""
    offs = {}
    for precision in ("bf16", "float32"):
        start, feedback, (x, y), net = _conv_step(algorithm, precision, threads)
        T = _one_hot(y, net.sizes[-1])
        with ref.rounded_operands(bf16):
            want = ref.step(start, x.astype(np.float32).astype(np.float64), T, 0.5, algorithm, feedback)
        offs[precision] = [
            (
                _change_off(w, stage["K"] if stage["kind"] == "conv" else stage["W"], old["K" if "K" in old else "W"]),
                _change_off(b, stage["b"], old["b"]),
            )
            for w, b, stage, old in zip(net.weights, net.biases, want, start)
        ]
    # Measured (every combination of the conv and bf16 implementations, 1 and 2 threads, Xeon with AMX):
    # bf16 within 2e-6 of the largest change for weights and biases alike, float32 at least 3e-3 off in
    # every weight matrix.
    for h, ((weights_off, bias_off), (float32_off, _)) in enumerate(zip(offs["bf16"], offs["float32"])):
        assert weights_off < 2e-5, f"weights[{h}]"
        assert bias_off < 2e-5, f"biases[{h}]"
        assert float32_off > 5e-4, f"weights[{h}] in float32"


def test_conv_steps_are_reproducible_and_both_implementations_agree(conv_implementation):
    """Same seed and threads: identical bits; the portable path (im2col and the float32 kernels on
    rounded operands) agrees with the default one up to float32 summation."""
    runs = {}
    for name in IMPLEMENTATIONS:
        _core._set_bf16_implementation(name)
        try:
            for _ in range(2):
                _, _, _, net = _conv_step("srbp", "bf16", threads=2)
                runs.setdefault(name, []).append([*net.weights, *net.biases])
        finally:
            _core._set_bf16_implementation("auto")
    for name in IMPLEMENTATIONS:
        for a, b in zip(*runs[name]):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(runs["auto"][0], runs["portable"][0]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
