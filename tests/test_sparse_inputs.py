"""The first layer on the input's non-zeros (MNIST-like data, about a fifth of the pixels non-zero).

While Trainer.fit (train_epoch) runs on such inputs, the first layer's weights live transposed and its
forward product and update read only the non-zero inputs (gemm.hpp, "sparse products"). Checked here:
against the numpy oracle (tests/reference.py), against the dense path, on one and two threads, across
an interrupted epoch and around the progress callback, and that the path is taken only where it
applies.
"""

from __future__ import annotations

import numpy as np
import pytest

import rbp_native as rbp
import reference as ref
from rbp_native._native import _core

pytestmark = pytest.mark.skipif(
    not _core._sparse_products_available(), reason="this build has no sparse first-layer products"
)


def sparse_images(n=120, features=196, classes=3, density=0.15, seed=0):
    """Inputs with about `density` of their values non-zero, scattered (not in whole blocks), and
    labels that depend on them."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, features)).astype(np.float32)
    x[rng.random(x.shape) >= density] = 0.0
    y = (x[:, : features // 2].sum(axis=1) > x[:, features // 2 :].sum(axis=1)).astype(np.int64)
    y = (y + rng.integers(0, 2, n) * (classes - 2)) % classes
    return x, y


def train(x, y, sizes, epochs=2, sparse=True, **options):
    _core._set_sparse_products(sparse)
    try:
        net = rbp.MLP(sizes, seed=options.pop("net_seed", 1))
        trainer = rbp.Trainer(net, seed=2, **options)
        trainer.fit((x, y), epochs=epochs, progress=False, train_metrics="running")
    finally:
        _core._set_sparse_products(True)
    return net, trainer


@pytest.mark.parametrize("algorithm", rbp.ALGORITHMS)
@pytest.mark.parametrize("derivative", [True, False])
@pytest.mark.parametrize("n", [40, 39])
def test_full_batch_epochs_match_the_numpy_oracle(algorithm, derivative, n):
    """Three full-batch epochs (one update each, so the shuffle only reorders the sums) against the
    oracle's three steps from the same weights and feedback, in float64. The kernels take the rows in
    pairs that share their columns: 39 rows leave one alone, and every seventh row is all zeros."""
    x, y = sparse_images(n=n)
    x[::7] = 0.0
    net = rbp.MLP([196, 12, 8, 3], seed=4)
    net.set_biases(
        [np.random.default_rng(h).normal(0, 0.1, units).astype(np.float32) for h, units in enumerate([12, 8, 3])]
    )
    trainer = rbp.Trainer(
        net, algorithm=algorithm, derivative=derivative, batch_size=n, lr=0.3, decay=0.05, seed=5, threads=1
    )
    first = net.weights[0].copy()
    state = ref.initial_state([w.astype(np.float64) for w in net.weights], [b.astype(np.float64) for b in net.biases])
    feedback = [f.astype(np.float64) for f in trainer.feedback]
    trainer.fit((x, y), epochs=3, progress=False, train_metrics="running")
    assert trainer._core._sparse_first_layer
    for _ in range(3):
        state, _, info = ref.channel_step(
            state, x.astype(np.float64), y, algorithm, feedback, derivative=derivative, lr=0.3, decay=0.05
        )
        feedback = info["feedback"]
    for h, (native, oracle) in enumerate(zip(net.weights, state["weights"])):
        np.testing.assert_allclose(native, oracle, rtol=2e-5, atol=2e-6, err_msg=f"W^{h + 1}")
    for h, (native, oracle) in enumerate(zip(net.biases, state["biases"])):
        np.testing.assert_allclose(native, oracle, rtol=2e-5, atol=2e-6, err_msg=f"b^{h + 1}")
    assert np.array_equal(net.weights[0], first) == (algorithm == "top")  # the sparse update ran


@pytest.mark.parametrize("algorithm", ["bp", "rbp", "srbp", "top"])
@pytest.mark.parametrize("batch", [1, 16, 33])
def test_sparse_and_dense_first_layer_agree(algorithm, batch):
    """Mini-batches (a ragged last one at 33), a net wider than one pass of the kernels (150 units:
    two passes with AVX-512, three with AVX2): the two paths agree to rounding."""
    x, y = sparse_images(n=200, features=300)
    runs = []
    for sparse in (True, False):
        net, trainer = train(
            x, y, [300, 150, 20, 3], algorithm=algorithm, batch_size=batch, lr=0.05, threads=1, sparse=sparse
        )
        assert trainer._core._sparse_first_layer == sparse
        runs.append(net)
    for h, (a, b) in enumerate(zip(runs[0].weights, runs[1].weights)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=f"W^{h + 1}")
    for h, (a, b) in enumerate(zip(runs[0].biases, runs[1].biases)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=f"b^{h + 1}")
    first = rbp.MLP([300, 150, 20, 3], seed=1).weights[0]
    assert np.array_equal(runs[0].weights[0], first) == (algorithm == "top")


@pytest.mark.parametrize("threads,min_macs", [(2, None), (8, 250_000)])
def test_one_and_several_threads_give_bit_identical_weights(threads, min_macs):
    """The threads split the panels of units, in the forward product and the update alike, so every
    value sums its terms in the same order as on one thread: bit-identical, unlike the dense path's
    splits."""
    x, y = sparse_images(n=512, features=784, classes=10, density=0.19, seed=3)
    previous = _core._set_min_macs_per_thread(min_macs) if min_macs else None
    try:
        runs = [
            train(x, y, [784, 100, 100, 10], algorithm="bp", batch_size=128, lr=0.05, threads=t)[0].weights
            for t in (1, threads)
        ]
    finally:
        if previous is not None:
            _core._set_min_macs_per_thread(previous)
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_an_interrupted_epoch_resumes_bit_identically():
    """An epoch trained in chunks of batches (a checkpoint between each, say) ends where one call
    ends: the weights go back to their layout at every stop and are taken up again."""
    x, y = sparse_images(n=300, features=196, seed=7)
    results = []
    for chunk in (0, 2, 3):
        net = rbp.MLP([196, 30, 3], seed=1)
        trainer = rbp.Trainer(net, algorithm="srbp", batch_size=20, lr=0.1, seed=2, threads=1)
        for _ in range(2):
            while True:
                running = trainer._core.train_epoch(x, y, None, 10, chunk, checked=True)
                assert trainer._core._sparse_first_layer
                if running["completed"]:
                    break
        results.append(net.weights)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


def test_the_progress_callback_sees_the_current_weights():
    """The callback may read the network: at each call it sees the weights after the batches done
    so far, as a run stopped there has them; an exception from it leaves them so too."""
    x, y = sparse_images(n=200, features=196, seed=9)

    def trainer_and_net():
        net = rbp.MLP([196, 30, 3], seed=1)
        return rbp.Trainer(net, algorithm="bp", batch_size=20, lr=0.1, seed=2, threads=1), net

    seen = {}
    trainer, net = trainer_and_net()

    def callback(done, total, loss):
        seen[done] = net.weights[0].copy()
        if done == 6:
            raise RuntimeError("stop here")
        return True

    with pytest.raises(RuntimeError, match="stop here"):
        trainer._core.train_epoch(x, y, callback, 3, 0, checked=True)
    assert sorted(seen) == [3, 6]
    stopped_at_6 = net.weights[0].copy()
    for done in (3, 6):
        reference_trainer, reference_net = trainer_and_net()
        reference_trainer._core.train_epoch(x, y, None, 10, done, checked=True)
        np.testing.assert_array_equal(seen[done], reference_net.weights[0])
    np.testing.assert_array_equal(stopped_at_6, seen[6])


@pytest.mark.parametrize(
    "case",
    [
        "momentum",
        "dense inputs",
        "sparse connectivity",
        "float64",
        "bf16",
        "quantised update",
        "update transform",
        "per-synapse feedback",
    ],
)
def test_the_sparse_path_is_taken_only_where_it_applies(case):
    x, y = sparse_images(n=64, features=196)
    sizes = [196, 16, 3]
    options = dict(batch_size=16, lr=0.05, threads=1)
    net = rbp.MLP(sizes, seed=0)
    if case == "momentum":
        options["momentum"] = 0.5
    elif case == "dense inputs":
        x = x + 0.5
    elif case == "sparse connectivity":
        net = rbp.MLP(sizes, seed=0, connectivity=[0.5, 1.0])
    elif case == "float64":
        net = rbp.MLP(sizes, seed=0, dtype="float64")
        x = x.astype(np.float64)
    elif case == "bf16":
        options["precision"] = "bf16"
    elif case == "quantised update":
        options.update(algorithm="rbp", quantize="update", quantize_bits=8)
    elif case == "update transform":
        options.update(algorithm="rbp", signal_transform="sign", transform_target="update")
    elif case == "per-synapse feedback":
        options.update(algorithm="srbp", per_synapse=True)
    trainer = rbp.Trainer(net, seed=1, **options)
    trainer.fit((x, y), epochs=1, progress=False, train_metrics="running")
    assert not trainer._core._sparse_first_layer
    # The same trainer's settings without the obstacle do take it (the test checks the obstacle).
    plain = rbp.Trainer(rbp.MLP(sizes, seed=0), seed=1, batch_size=16, lr=0.05, threads=1)
    plain.fit(sparse_images(n=64, features=196), epochs=1, progress=False, train_metrics="running")
    assert plain._core._sparse_first_layer


def test_augmented_batches_run_on_their_non_zeros_after_augmentation():
    """With augmentation the batch is copied, shifted and flipped first, then compressed: the two paths
    agree to rounding (a compression of the unaugmented data rows would not)."""
    x, y = sparse_images(n=120, features=196, seed=11)
    runs = []
    for sparse in (True, False):
        _core._set_sparse_products(sparse)
        try:
            net = rbp.Sequential(
                [rbp.layers.Dense(30), rbp.layers.Dense(3, activation="softmax")], input_shape=(1, 14, 14), seed=1
            )
            trainer = rbp.Trainer(net, batch_size=16, lr=0.05, seed=2, threads=1, augment=rbp.Augment(0.2, True))
            trainer.fit((x, y), epochs=2, progress=False, train_metrics="running")
        finally:
            _core._set_sparse_products(True)
        assert trainer._core._sparse_first_layer == sparse
        runs.append(net.weights)
    for h, (a, b) in enumerate(zip(*runs)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=f"W^{h + 1}")
