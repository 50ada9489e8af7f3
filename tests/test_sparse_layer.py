"""Sparse forward connectivity (MLP(connectivity=...)) against dense networks and the numpy oracle.

A sparse layer is a dense layer whose weight matrix is fixed at zero off a random mask: the oracle
is tests/reference.py run on the dense masked matrix, with its update masked.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import rbp_native as rbp
import reference as ref

SIZES = [12, 10, 8, 5]

ORACLE_ALGORITHMS = [a for a in rbp.ALGORITHMS if a in ref.CHANNEL_ALGORITHMS]


def make_batch(n=9, sizes=SIZES, seed=1):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 1.0, size=(n, sizes[0])), rng.integers(0, sizes[-1], size=n)


def make_net(connectivity, sizes=SIZES, seed=3, dtype="float64", **kwargs):
    net = rbp.MLP(sizes, dtype=dtype, seed=seed, connectivity=connectivity, **kwargs)
    if net.bias:
        # Non-zero biases so that bias handling is exercised.
        net.set_biases([np.random.default_rng(seed + h).normal(0, 0.1, n) for h, n in enumerate(sizes[1:])])
    return net


def oracle_signals(net, trainer, x, y, algorithm, derivative=True):
    return ref.channel_signals(net.weights, net.biases, x, y, algorithm, trainer.feedback, derivative=derivative)["B"]


def masked_step(state, masks, x, y, algorithm, feedback=(), derivative=True, **options):
    """One oracle step on the dense masked matrices with the weight update (the velocity) restricted
    to the masks; returns the new state, the loss and the feedback after the step."""
    old = state["weights"]
    state, loss, info = ref.channel_step(state, x, y, algorithm, feedback, derivative=derivative, **options)
    feedback = info["feedback"]
    state["vel_w"] = [v * m for v, m in zip(state["vel_w"], masks)]
    state["weights"] = [w + v for w, v in zip(old, state["vel_w"])]
    return state, loss, feedback


# -- density 1 is the dense network ------------------------------------------------------------


@pytest.mark.parametrize("connectivity", [1.0, 1, [1.0, 1.0, 1.0]])
@pytest.mark.parametrize("algorithm", rbp.ALGORITHMS)
def test_density_one_is_the_dense_network_bit_for_bit(connectivity, algorithm):
    dense, sparse = make_net(None), make_net(connectivity)
    assert sparse.config() == dense.config()
    assert sparse.connectivity == [1.0, 1.0, 1.0]
    x, y = make_batch()
    np.testing.assert_array_equal(sparse.forward(x), dense.forward(x))
    td = rbp.Trainer(dense, algorithm=algorithm, seed=2, momentum=0.5, threads=1)
    ts = rbp.Trainer(sparse, algorithm=algorithm, seed=2, momentum=0.5, threads=1)
    for a, b in zip(ts.signals(x, y), td.signals(x, y)):
        np.testing.assert_array_equal(a, b)
    for k in range(2):
        assert ts.step(*make_batch(seed=5 + k)) == td.step(*make_batch(seed=5 + k))
    for a, b in zip(sparse.weights + sparse.biases, dense.weights + dense.biases):
        np.testing.assert_array_equal(a, b)
    for m in sparse.masks:
        assert m.dtype == bool and m.all()


# -- p < 1 against numpy -----------------------------------------------------------------------


def test_masks_shapes_and_initial_weights_are_the_masked_dense_ones():
    sparse, dense = make_net(0.4, bias=False), make_net(None, bias=False)
    assert [m.shape for m in sparse.masks] == [(10, 12), (8, 10), (5, 8)]
    for w, d, m in zip(sparse.weights, dense.weights, sparse.masks):
        assert w.shape == d.shape and m.shape == d.shape
        # The kept entries start as the dense network's (same seed, same Glorot formula with the
        # dense fan-in and fan-out); everything off the mask is zero.
        np.testing.assert_array_equal(w, d * m)
    nnz = sum(int(m.sum()) for m in sparse.masks)
    assert sparse.parameter_count == nnz
    assert make_net(0.4).parameter_count == nnz + sum(SIZES[1:])
    assert sparse._core.forward_macs == nnz
    # A mixed list: only layers with density < 1 are sparse.
    mixed = make_net([0.5, 1.0, 0.3])
    assert mixed.connectivity == [0.5, 1.0, 0.3]
    assert mixed.masks[1].all() and mixed._core.get_mask(1) is None
    assert not mixed.masks[0].all() and not mixed.masks[2].all()


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-13), ("float32", 1e-5)])
@pytest.mark.parametrize("n", [1, 7, 100, 257])
def test_single_layer_forward_is_x_times_masked_w_transposed_plus_b(dtype, tol, n):
    net = make_net(0.2, sizes=[60, 45], dtype=dtype, output="linear")
    x = np.random.default_rng(n).normal(size=(n, 60)).astype(dtype)
    w, b, mask = net.weights[0], net.biases[0], net.masks[0]
    expected = x.astype(np.float64) @ (w.astype(np.float64) * mask).T + b
    np.testing.assert_allclose(net.forward(x), expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-13), ("float32", 1e-5)])
@pytest.mark.parametrize("activation,output", [("tanh", "softmax"), ("relu", "linear"), ("logistic", "logistic")])
def test_forward_matches_numpy(dtype, tol, activation, output):
    net = make_net([0.3, 0.6, 0.5], dtype=dtype, activation=activation, output=output, sizes=[40, 30, 20, 6])
    x = np.random.default_rng(4).normal(size=(33, 40))
    masks = net.masks
    for w, m in zip(net.weights, masks):
        assert not (w[~m]).any()
    s1 = x @ (net.weights[0].astype(np.float64) * masks[0]).T + net.biases[0]
    pre, outs = ref.forward(
        [w.astype(np.float64) for w in net.weights], [b.astype(np.float64) for b in net.biases], x, activation, output
    )
    np.testing.assert_allclose(pre[1], s1, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(net.forward(x.astype(dtype)), outs[-1], rtol=tol, atol=tol)


@pytest.mark.parametrize("algorithm", ORACLE_ALGORITHMS)
@pytest.mark.parametrize("derivative", [True, False])
@pytest.mark.parametrize("connectivity", [0.5, [0.3, 1.0, 0.6]])
def test_signals_match_reference_on_the_masked_matrix(algorithm, derivative, connectivity):
    net = make_net(connectivity)
    trainer = rbp.Trainer(net, algorithm=algorithm, derivative=derivative, seed=3)
    x, y = make_batch()
    native = trainer.signals(x, y)
    oracle = oracle_signals(net, trainer, x, y, algorithm, derivative)
    for h, (a, b) in enumerate(zip(native, oracle)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14, err_msg=f"B^{h + 1}")
    if algorithm != "top":
        assert np.abs(native[0]).max() > 0


@pytest.mark.parametrize("algorithm", ORACLE_ALGORITHMS)
@pytest.mark.parametrize("connectivity", [0.4, [0.25, 1.0, 0.7]])
def test_steps_with_momentum_match_the_masked_reference_and_stay_on_the_mask(algorithm, connectivity):
    net = make_net(connectivity)
    trainer = rbp.Trainer(net, algorithm=algorithm, lr=0.3, decay=0.05, momentum=0.8, batch_size=9, seed=3)
    masks = net.masks
    state = ref.initial_state(net.weights, net.biases)
    feedback = trainer.feedback
    before = net.weights
    for k in range(3):
        x, y = make_batch(seed=10 + k)
        loss = trainer.step(x, y)
        state, oracle_loss, feedback = masked_step(
            state, masks, x, y, algorithm, feedback, lr=0.3, decay=0.05, momentum=0.8
        )
        assert loss == pytest.approx(oracle_loss, rel=1e-12)
    for a, b in zip(trainer.feedback, feedback):  # adaptive feedback (arbp, asrbp) sees the sparse W too
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)
    after = net.weights
    for h, (w0, w1, m) in enumerate(zip(before, after, masks)):
        assert not w1[~m].any(), f"W^{h + 1} left its mask"
        changed = w1 != w0
        assert not (changed & ~m).any()
        frozen = algorithm == "top" and h < len(masks) - 1
        assert changed[m].any() != frozen
    for a, b in zip(after, state["weights"]):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)
    for a, b in zip(net.biases, state["biases"]):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)
    assert net.masks[0].tolist() == masks[0].tolist()


@pytest.mark.parametrize("algorithm", ["bp", "sbp"])
def test_large_sparse_layers_in_float32_match_numpy_with_any_thread_count(algorithm):
    # About 12M multiply-accumulates per kernel: enough for two threads under the core's policy.
    sizes = [1000, 800, 300, 10]
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(100, 1000)).astype(np.float32)
    y = rng.integers(0, 10, size=100)
    results = []
    for threads in (1, 2):
        net = make_net([0.15, 0.2, 1.0], sizes=sizes, dtype="float32")
        trainer = rbp.Trainer(net, algorithm=algorithm, lr=0.1, decay=0.0, threads=threads)
        masks = net.masks
        w64 = [w.astype(np.float64) for w in net.weights]
        b64 = [b.astype(np.float64) for b in net.biases]
        state, _, _ = masked_step(ref.initial_state(w64, b64), masks, x.astype(np.float64), y, algorithm, lr=0.1)
        trainer.step(x, y)
        for a, b, m in zip(net.weights, state["weights"], masks):
            assert not a[~m].any()
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-6)
        results.append(net.weights)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)  # the sparse kernels sum in an order fixed by the mask


@pytest.mark.parametrize(
    "options",
    [
        dict(quantize="update", quantize_bits=6, quantize_alpha=2.0**-6),
        dict(quantize="update", quantize_bits=2, quantize_alpha=2.0**-6),
        dict(signal_transform="sign", transform_target="update"),
        dict(signal_transform="magnitude", transform_target="update"),
        dict(quantize="signal", quantize_bits=4, quantize_alpha=2.0**-3),
    ],
)
@pytest.mark.parametrize("algorithm", ["bp", "srbp"])
def test_quantised_and_transformed_updates_match_the_masked_reference(algorithm, options):
    net = make_net([0.4, 1.0, 0.6])
    trainer = rbp.Trainer(net, algorithm=algorithm, lr=0.1, decay=0.0, momentum=0.5, batch_size=9, seed=3, **options)
    masks = net.masks
    state = ref.initial_state(net.weights, net.biases)
    feedback = trainer.feedback
    for k in range(2):
        x, y = make_batch(seed=20 + k)
        trainer.step(x, y)
        state, _, feedback = masked_step(state, masks, x, y, algorithm, feedback, lr=0.1, momentum=0.5, **options)
    for h, (a, b, m) in enumerate(zip(net.weights, state["weights"], masks)):
        assert not a[~m].any()
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13, err_msg=f"W^{h + 1}")
    for a, b in zip(net.biases, state["biases"]):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)


def test_stochastic_update_quantisation_stays_on_the_mask_and_the_grid():
    net = make_net(0.5)
    start = net.weights
    trainer = rbp.Trainer(
        net,
        algorithm="srbp",
        lr=0.01,
        decay=0.0,
        batch_size=9,
        quantize="update",
        quantize_bits=4,
        quantize_rounding="stochastic",
    )
    trainer.step(*make_batch())
    step = 2.0**-6 * 2.0 ** (1 - 4)
    for w0, w1, m in zip(start, net.weights, net.masks):
        assert not w1[~m].any()
        k = (w1 - w0) * 9 / step
        np.testing.assert_allclose(k, np.round(k), atol=1e-6)


def test_empty_rows_and_an_empty_layer():
    # p tiny: most rows (and here the whole first layer) have no connection; the output is the bias.
    net = make_net([1e-9, 0.5, 0.5])
    assert net.masks[0].sum() == 0 and not net.weights[0].any()
    x, y = make_batch()
    _, outs = ref.forward(net.weights, net.biases, x)
    np.testing.assert_allclose(net.forward(x), outs[-1], rtol=1e-13, atol=1e-14)
    trainer = rbp.Trainer(net, algorithm="bp", momentum=0.5)
    trainer.step(x, y)
    trainer.step(x, y)
    assert not net.weights[0].any()
    net.set_weights([np.zeros((10, 12)), *net.weights[1:]])


# -- the mask ------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.01, 0.1, 0.5, 0.9])
def test_mask_statistics(p):
    net = rbp.MLP([784, 1000, 10], seed=11, connectivity=[p, 0.5])
    mask = net.masks[0]
    n = mask.size
    assert abs(mask.mean() - p) < 5 * math.sqrt(p * (1 - p) / n)
    # Rows and columns: each is Binomial; their means agree with p and they are not all alike.
    rows = mask.sum(axis=1)
    assert abs(rows.mean() - p * 784) < 5 * math.sqrt(p * (1 - p) * 784 / 1000)
    assert rows.std() > 0.5 * math.sqrt(p * (1 - p) * 784)
    # Independent entries: neighbours are uncorrelated.
    a, b = mask[:, :-1].ravel().astype(float), mask[:, 1:].ravel().astype(float)
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.02


def test_masks_are_deterministic_and_per_layer():
    a = rbp.MLP([30, 20, 20, 5], seed=4, connectivity=0.3)
    b = rbp.MLP([30, 20, 20, 5], seed=4, connectivity=0.3, dtype="float64")
    for ma, mb in zip(a.masks, b.masks):
        np.testing.assert_array_equal(ma, mb)
    assert not np.array_equal(a.masks[0], rbp.MLP([30, 20, 20, 5], seed=5, connectivity=0.3).masks[0])
    # A layer's mask depends only on the seed, its index, shape and density: not on the others.
    c = rbp.MLP([30, 20, 20, 5], seed=4, connectivity=[1.0, 0.3, 0.9])
    np.testing.assert_array_equal(c.masks[1], a.masks[1])
    # Re-initialising keeps the mask.
    a._core.initialise(99)
    np.testing.assert_array_equal(rbp.MLP([30, 20, 20, 5], seed=4, connectivity=0.3).masks[0], a.masks[0])
    assert not a.weights[0][~a.masks[0]].any()


def test_training_is_deterministic_and_independent_of_the_thread_count():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 64))
    y = rng.integers(0, 4, size=400)
    x = (centres[y] + 0.5 * rng.normal(size=(400, 64))).astype(np.float32)

    def train(threads):
        net = rbp.MLP([64, 120, 80, 4], seed=1, connectivity=[0.2, 0.3, 0.5])  # every layer sparse
        trainer = rbp.Trainer(net, algorithm="bp", batch_size=100, momentum=0.5, seed=1, threads=threads)
        history = trainer.fit((x, y), epochs=4, progress=False)
        return net, history

    a, ha = train(1)
    b, hb = train(1)
    c, _ = train(2)
    for wa, wb, wc in zip(a.weights, b.weights, c.weights):
        np.testing.assert_array_equal(wa, wb)
        # Every product of this network is a sparse kernel, which sums in a fixed order.
        np.testing.assert_array_equal(wa, wc)
    assert ha["train_loss"] == hb["train_loss"]
    assert ha[-1]["train_accuracy"] > 0.9


@pytest.mark.parametrize("algorithm", ["rbp", "srbp"])
def test_sparse_networks_learn_with_random_channels(algorithm):
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(4, 30))
    y = rng.integers(0, 4, size=600)
    x = (centres[y] + 0.5 * rng.normal(size=(600, 30))).astype(np.float32)
    net = rbp.MLP([30, 50, 40, 4], seed=2, connectivity=0.3)
    trainer = rbp.Trainer(net, algorithm=algorithm, batch_size=32, lr=0.1, seed=2)
    history = trainer.fit((x, y), epochs=5, progress=False)
    assert history[-1]["train_accuracy"] > 0.9


# -- persistence -------------------------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path):
    net = make_net([0.3, 1.0, 0.6])
    trainer = rbp.Trainer(net, algorithm="srbp", seed=1)
    trainer.step(*make_batch())
    assert net.config()["connectivity"] == [0.3, 1.0, 0.6]
    path = tmp_path / "sparse.npz"
    net.save(path)
    loaded = rbp.MLP.load(path)
    assert loaded.config() == net.config()
    assert "connectivity" in repr(loaded)
    for a, b in zip(net.masks, loaded.masks):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(net.weights + net.biases, loaded.weights + loaded.biases):
        np.testing.assert_array_equal(a, b)
    x, _ = make_batch(seed=8)
    np.testing.assert_array_equal(net.forward(x), loaded.forward(x))
    with np.load(path) as data:
        assert not data["W1"][~net.masks[0]].any()
    # Files from dense networks (no connectivity key) still load.
    dense = make_net(None)
    assert dense.config()["connectivity"] is None
    dense.save(tmp_path / "dense.npz")
    assert rbp.MLP.load(tmp_path / "dense.npz").connectivity == [1.0, 1.0, 1.0]


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), float("inf"), [0.5, 2.0, 0.5]])
def test_densities_outside_the_unit_interval_are_rejected(bad):
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        rbp.MLP(SIZES, connectivity=bad)


def test_zero_density_has_a_clear_message():
    with pytest.raises(ValueError, match="connectivity of W\\^1 is 0"):
        rbp.MLP(SIZES, connectivity=0)
    with pytest.raises(ValueError, match="W\\^2 is 0"):
        rbp.MLP(SIZES, connectivity=[0.5, 0.0, 0.5])


class _SizedOnly:
    """Has a length but cannot be iterated."""

    def __len__(self) -> int:
        return 3


@pytest.mark.parametrize(
    "bad,error",
    [
        ([0.5, 0.5], ValueError),
        ("0.5", TypeError),
        (True, TypeError),
        ([0.5, "x", 0.5], TypeError),
        ([0.5, None, 0.5], TypeError),
        (_SizedOnly(), TypeError),
    ],
)
def test_malformed_connectivity_is_rejected(bad, error):
    with pytest.raises(error, match="connectivity"):
        rbp.MLP(SIZES, connectivity=bad)


def test_core_rejects_bad_densities():
    with pytest.raises(ValueError, match="densities"):
        rbp._native._core.Network64(SIZES, "tanh", "softmax", True, "glorot_normal", 0, [0.5])
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        rbp._native._core.Network64(SIZES, "tanh", "softmax", True, "glorot_normal", 0, [0.5, 0.0, 0.5])


def test_set_weights_rejects_entries_off_the_mask_and_changes_nothing():
    net = make_net(0.5)
    before = net.weights
    new = [w * 2 for w in before]
    net.set_weights(new)
    for a, b in zip(net.weights, new):
        np.testing.assert_array_equal(a, b)
    bad = [w.copy() for w in new]
    i, j = np.argwhere(~net.masks[2])[0]
    bad[2][i, j] = 0.25
    bad[0] = bad[0] * 3  # valid, but must not be applied when another matrix is rejected
    with pytest.raises(ValueError, match=r"weights\[2\] has 1 non-zero entry outside the layer's connectivity mask"):
        net.set_weights(bad)
    for a, b in zip(net.weights, new):
        np.testing.assert_array_equal(a, b)
    # The core checks too.
    with pytest.raises(ValueError, match=r"weights\[2\].*outside the layer's connectivity mask"):
        net._core.set_weight(2, bad[2])
    with pytest.raises(ValueError, match="shape"):
        net.set_weights([w.T for w in new])
