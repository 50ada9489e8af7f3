"""Training driver: determinism, feedback draws, bad input, persistence, and real MNIST."""

from __future__ import annotations

import json

import numpy as np
import pytest

import rbp_native as rbp
from rbp_native._native import _core


def synthetic(n=600, features=20, classes=4, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, features))
    y = rng.integers(0, classes, size=n)
    x = (centres[y] + 0.5 * rng.normal(size=(n, features))).astype(dtype)
    return x, y.astype(np.int64)


def run(seed=0, threads=1, algorithm="srbp", epochs=2, **kwargs):
    x, y = synthetic()
    net = rbp.MLP([20, 16, 12, 4], seed=seed)
    trainer = rbp.Trainer(net, algorithm=algorithm, batch_size=32, seed=seed, threads=threads, **kwargs)
    history = trainer.fit((x, y), epochs=epochs, progress=False)
    return net, trainer, history


@pytest.mark.parametrize("algorithm", rbp.ALGORITHMS)
def test_same_seed_and_threads_give_bit_identical_weights(algorithm):
    a, _, ha = run(algorithm=algorithm, momentum=0.5)
    b, _, hb = run(algorithm=algorithm, momentum=0.5)
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(wa, wb)
    assert ha["train_loss"] == hb["train_loss"]


def test_seeds_change_init_feedback_and_shuffling_independently():
    x, y = synthetic()
    base = rbp.MLP([20, 16, 12, 4], seed=0)
    other = rbp.MLP([20, 16, 12, 4], seed=1)
    assert not np.array_equal(base.weights[0], other.weights[0])
    t0 = rbp.Trainer(rbp.MLP([20, 16, 12, 4], seed=0), algorithm="rbp", seed=0)
    t1 = rbp.Trainer(rbp.MLP([20, 16, 12, 4], seed=0), algorithm="rbp", seed=1)
    assert not np.array_equal(t0.feedback[0], t1.feedback[0])
    # Same init, same feedback, different shuffling seed: training differs.
    t1.set_feedback(t0.feedback)
    t0.fit((x, y), epochs=1, progress=False)
    t1.fit((x, y), epochs=1, progress=False)
    assert not np.array_equal(t0.net.weights[0], t1.net.weights[0])
    # The init stream does not depend on the trainer seed, nor the feedback on the network seed.
    t2 = rbp.Trainer(rbp.MLP([20, 16, 12, 4], seed=7), algorithm="rbp", seed=0)
    np.testing.assert_array_equal(t2.feedback[0], rbp.Trainer(base, algorithm="rbp", seed=0).feedback[0])


def test_training_learns_and_continues_the_decay_schedule():
    net, trainer, history = run(algorithm="bp", epochs=3, lr=0.1, decay=1e-3)
    assert len(history) == 3
    assert history["test_accuracy"] == [None] * 3
    assert history[-1]["train_accuracy"] > 0.9
    assert history[0]["train_loss"] > history[-1]["train_loss"]
    assert trainer.updates == 3 * 19
    assert trainer.learning_rate == pytest.approx(0.1 / (1 + 1e-3 * trainer.updates))


@pytest.mark.parametrize("algorithm,source", [("rbp", "above"), ("srbp", "output")])
@pytest.mark.parametrize("scale", ["glorot", "unit"])
def test_feedback_shapes_and_scale(algorithm, source, scale):
    sizes = [30, 200, 150, 10]
    trainer = rbp.Trainer(rbp.MLP(sizes), algorithm=algorithm, feedback_scale=scale, seed=3)
    feedback = trainer.feedback
    assert len(feedback) == 2
    for h, f in enumerate(feedback):
        n_source = sizes[h + 2] if source == "above" else sizes[-1]
        assert f.shape == (sizes[h + 1], n_source)
        expected = 1.0 if scale == "unit" else np.sqrt(2.0 / (f.shape[0] + f.shape[1]))
        assert f.std() == pytest.approx(expected, rel=0.05)
        assert abs(f.mean()) < 4 * expected / np.sqrt(f.size)
    assert trainer.channel_macs == sum(f.size for f in feedback)


def test_glorot_normal_init_scale():
    net = rbp.MLP([784, 300, 10], seed=0)
    w = net.weights[0]
    assert w.std() == pytest.approx(np.sqrt(2.0 / (784 + 300)), rel=0.02)
    assert all(np.all(b == 0) for b in net.biases)


def test_set_and_get_round_trip():
    net = rbp.MLP([5, 4, 3], dtype="float64")
    trainer = rbp.Trainer(net, algorithm="srbp")
    new_w = [np.arange(20.0).reshape(4, 5), np.ones((3, 4))]
    net.set_weights(new_w)
    net.set_biases([np.ones(4), np.zeros(3)])
    trainer.set_feedback([np.full((4, 3), 0.5)])
    np.testing.assert_array_equal(net.weights[0], new_w[0])
    np.testing.assert_array_equal(trainer.feedback[0], np.full((4, 3), 0.5))
    # the getters return copies
    net.weights[0][0, 0] = 99
    assert net.weights[0][0, 0] == 0


def test_no_bias_network():
    net = rbp.MLP([3, 2, 1], activation="linear", output="linear", bias=False, dtype="float64")
    assert net.biases == []
    net.set_weights([np.ones((2, 3)), np.ones((1, 2))])
    trainer = rbp.Trainer(net, algorithm="bp", lr=0.1, decay=0.0, batch_size=4)
    x = np.ones((4, 3))
    trainer.step(x, np.zeros((4, 1)))
    # e = -6, B^1 = W2^T e = -6 per unit; dW1 = 0.1 * (-6) * 1
    np.testing.assert_allclose(net.weights[0], np.full((2, 3), 1 - 0.6))
    with pytest.raises(ValueError, match="bias=False"):
        net.set_biases([np.zeros(2), np.zeros(1)])


def test_save_and_load(tmp_path):
    net, _, history = run(epochs=1)
    path = tmp_path / "net.npz"
    net.save(path)
    loaded = rbp.MLP.load(path)
    assert loaded.config() == net.config()
    for a, b in zip(net.weights, loaded.weights):
        np.testing.assert_array_equal(a, b)
    history.to_json(tmp_path / "h.json")
    history.to_csv(tmp_path / "h.csv")
    again = rbp.History.from_json(tmp_path / "h.json")
    assert again.records == json.loads(json.dumps(history.records))
    assert (tmp_path / "h.csv").read_text().splitlines()[0].startswith("epoch,train_loss,train_accuracy")
    assert not list(tmp_path.glob(".*.tmp"))


def test_corrupt_history_file_is_reported(tmp_path):
    path = tmp_path / "h.json"
    path.write_text('{"epochs": [')
    with pytest.raises(ValueError, match="not a valid history file"):
        rbp.History.from_json(path)


def test_progress_callback_exception_stops_training_and_propagates():
    x, y = synthetic()
    trainer = rbp.Trainer(rbp.MLP([20, 16, 4]), batch_size=10)

    def interrupt(done, total, loss):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        trainer._core.train_epoch(x, y, interrupt, 5)
    assert trainer.updates == 5


def test_running_metrics_option():
    x, y = synthetic()
    trainer = rbp.Trainer(rbp.MLP([20, 16, 4]), batch_size=10)
    history = trainer.fit((x, y), epochs=1, progress=False, train_metrics="running")
    assert 0 <= history[0]["train_accuracy"] <= 1


def test_divergence_raises_with_the_history():
    x, y = synthetic()
    x = x * 1e4
    trainer = rbp.Trainer(rbp.MLP([20, 16, 4], activation="relu", output="linear"), lr=0.9, batch_size=10)
    with pytest.raises(rbp.TrainingDiverged) as info:
        trainer.fit((x, np.eye(4, dtype=np.float32)[y] * 1e6), epochs=3, progress=False)
    assert isinstance(info.value.history, rbp.History)


def test_progress_bar_runs(capsys):
    x, y = synthetic()
    trainer = rbp.Trainer(rbp.MLP([20, 16, 4]), batch_size=10)
    trainer.fit((x, y), epochs=2, eval=(x, y), progress=True)
    captured = capsys.readouterr()
    lines = [line for line in (captured.out + captured.err).splitlines() if "test loss" in line]
    assert [line.split("|")[0].strip() for line in lines] == ["epoch   1", "epoch   2"]


# -- bad input ----------------------------------------------------------------------------------


@pytest.fixture()
def small():
    net = rbp.MLP([4, 3, 2])
    return net, rbp.Trainer(net, algorithm="rbp")


def test_wrong_input_shapes(small):
    net, trainer = small
    y = np.array([0, 1])
    with pytest.raises(ValueError, match="features"):
        trainer.step(np.zeros((2, 5), np.float32), y)
    with pytest.raises(ValueError, match="2-dimensional"):
        trainer.step(np.zeros(4, np.float32), y)
    with pytest.raises(ValueError, match="2 labels for 3 examples"):
        trainer.step(np.zeros((3, 4), np.float32), y)
    with pytest.raises(ValueError, match="shape"):
        trainer.step(np.zeros((2, 4), np.float32), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="shape"):
        net.set_weights([np.zeros((4, 3)), np.zeros((2, 3))])
    with pytest.raises(ValueError, match="expected 2"):
        net.set_weights([np.zeros((3, 4))])
    with pytest.raises(ValueError, match="feedback"):
        trainer.set_feedback([np.zeros((3, 3))])


def test_wrong_dtypes(small):
    net, trainer = small
    with pytest.raises(TypeError, match="numeric"):
        trainer.step(np.array([["a"] * 4] * 2), np.array([0, 1]))
    with pytest.raises(TypeError, match="integers"):
        trainer.step(np.zeros((2, 4), np.float32), np.array([0.0, 1.0]))
    with pytest.raises(TypeError, match="numeric"):
        net.set_weights([np.zeros((3, 4), dtype=object), np.zeros((2, 3))])
    # The core itself refuses a mismatched dtype instead of copying silently.
    with pytest.raises(TypeError, match="float32"):
        net._core.forward(np.zeros((2, 4), np.float64))


def test_nan_and_inf_are_refused(small):
    net, trainer = small
    x = np.zeros((2, 4), np.float32)
    x[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        trainer.step(x, np.array([0, 1]))
    with pytest.raises(ValueError, match="NaN"):
        net.forward(np.full((1, 4), np.inf))
    with pytest.raises(ValueError, match="NaN"):
        net.set_weights([np.full((3, 4), np.nan), np.zeros((2, 3))])
    with pytest.raises(ValueError, match="NaN"):
        trainer.step(np.zeros((2, 4)), np.array([[0.0, np.inf], [1.0, 0.0]]))


def test_labels_out_of_range(small):
    _, trainer = small
    with pytest.raises(ValueError, match="label 2"):
        trainer.step(np.zeros((2, 4), np.float32), np.array([0, 2]))
    with pytest.raises(ValueError, match="label -1"):
        trainer.evaluate(np.zeros((2, 4), np.float32), np.array([-1, 0]))
    with pytest.raises(ValueError, match="outside"):
        trainer._core.step(np.zeros((2, 4), np.float32), np.array([0, 5], dtype=np.int64))


def test_impossible_options():
    net = rbp.MLP([4, 3, 2])
    with pytest.raises(ValueError, match="unknown algorithm"):
        rbp.Trainer(net, algorithm="backprop")
    with pytest.raises(ValueError, match="one flag per hidden layer"):
        rbp.Trainer(net, derivative=[True, False])
    with pytest.raises(ValueError, match="lr"):
        rbp.Trainer(net, lr=0)
    with pytest.raises(ValueError, match="momentum"):
        rbp.Trainer(net, momentum=1.0)
    with pytest.raises(ValueError, match="batch_size"):
        rbp.Trainer(net, batch_size=0)
    with pytest.raises(ValueError, match="threads"):
        rbp.Trainer(net, threads=0)
    with pytest.raises(ValueError, match="feedback_scale"):
        rbp.Trainer(net, feedback_scale="huge")
    with pytest.raises(ValueError, match="no feedback"):
        rbp.Trainer(net, algorithm="bp").set_feedback([np.zeros((3, 2))])
    with pytest.raises(ValueError, match="activation"):
        rbp.MLP([4, 3, 2], activation="swish")
    with pytest.raises(ValueError, match="output"):
        rbp.MLP([4, 3, 2], output="softmin")
    with pytest.raises(ValueError, match="dtype"):
        rbp.MLP([4, 3, 2], dtype="float16")
    with pytest.raises(ValueError, match="positive"):
        rbp.MLP([4, 0, 2])
    with pytest.raises(ValueError, match="at least"):
        rbp.MLP([4])
    with pytest.raises(TypeError, match="MLP"):
        rbp.Trainer("not a network")


def test_empty_data(small):
    _, trainer = small
    with pytest.raises(ValueError, match="empty"):
        trainer.fit((np.zeros((0, 4), np.float32), np.zeros(0, np.int64)), progress=False)
    with pytest.raises(TypeError, match="Dataset"):
        trainer.fit(np.zeros((3, 4)), progress=False)


# -- real data -----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["bp", "srbp"])
def test_one_epoch_on_mnist_reaches_90_percent(mnist, algorithm):
    train, test = mnist
    net = rbp.MLP([784, 100, 100, 100, 100, 10], seed=0)
    trainer = rbp.Trainer(net, algorithm=algorithm, lr=0.1, decay=1e-6, batch_size=100, seed=0)
    history = trainer.fit(train, epochs=1, eval=test, progress=False, train_metrics="running")
    assert history[-1]["test_accuracy"] >= 0.90
    assert trainer.evaluate(test.x, test.y)["accuracy"] == history[-1]["test_accuracy"]


def test_channel_cost_of_the_paper_network():
    # Paper section 3.1: 31,000 multiply-accumulates per example for BP/RBP, 4,000 for SRBP.
    sizes = [784, 100, 100, 100, 100, 10]
    net = rbp.MLP(sizes)
    expected = {"bp": 31000, "sbp": 31000, "rbp": 31000, "srbp": 4000, "top": 0}
    assert {a: rbp.Trainer(net, algorithm=a).channel_macs for a in expected} == expected
    sparse = rbp.MLP([20, 10, 10, 4], connectivity=[1.0, 0.5, 1.0], seed=1)
    masks = sparse.masks
    assert rbp.Trainer(sparse, algorithm="bp").channel_macs == int(masks[1].sum()) + 40


def _blank_margin_images(n=200, side=12, classes=3, seed=0):
    """Images with a blank border and blank rows, flattened: most 16-pixel blocks are all zero."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, size=n)
    x = np.zeros((n, side, side), np.float32)
    x[:, 3:9, 3:9] = rng.random((n, 6, 6)) * (1 + y[:, None, None])
    x[:, 5] = 0.0
    return x.reshape(n, -1), y.astype(np.int64)


ZERO_WIDTH = _core._zero_block_width()


@pytest.mark.skipif(ZERO_WIDTH == 0, reason="this build has no zero-skipping products")
@pytest.mark.parametrize("algorithm", ["bp", "rbp", "srbp"])
@pytest.mark.parametrize("batch,momentum", [(1, 0.0), (16, 0.0), (33, 0.5)])
def test_skipping_zero_input_blocks_changes_no_weight(algorithm, batch, momentum):
    """The first layer skips the all-zero blocks of the input batch: with the products on the same
    (unpacked) kernels either way, training gives bit-identical weights, and the skipping did run."""
    x, y = _blank_margin_images()
    weights, skipped = [], []
    _core._set_unpacked_gemm("always")
    _core._set_sparse_products(False)  # (these inputs would run on their non-zeros: tests/test_sparse_inputs.py)
    try:
        for on in (True, False):
            _core._set_zero_skipping(on)
            net = rbp.MLP([144, 20, 10, 3], seed=1)
            trainer = rbp.Trainer(
                net, algorithm=algorithm, batch_size=batch, lr=0.05, momentum=momentum, seed=2, threads=1
            )
            trainer.fit((x, y), epochs=2, progress=False)
            weights.append(net.weights)
            skipped.append(trainer._core._skipped_input_zeros)
    finally:
        _core._set_zero_skipping(True)
        _core._set_unpacked_gemm("where-faster")
        _core._set_sparse_products(True)
    assert skipped == [True, False]
    for on, off in zip(*weights):
        np.testing.assert_array_equal(on, off)


@pytest.mark.skipif(ZERO_WIDTH == 0, reason="this build has no zero-skipping products")
def test_dense_inputs_and_sparse_first_layers_do_not_skip():
    """Inputs with few zero blocks run the full products; so does a sparse first layer."""
    x, y = synthetic(features=40)
    trainer = rbp.Trainer(rbp.MLP([40, 16, 4], seed=0), batch_size=32, threads=1)
    trainer.fit((x, y), epochs=1, progress=False)
    assert not trainer._core._skipped_input_zeros
    # Half the inputs blank in whole blocks, the other half dense: too many non-zeros for the sparse
    # first layer (tests/test_sparse_inputs.py), but blocks to skip.
    rng = np.random.default_rng(0)
    x = np.zeros((200, 784), np.float32)
    x[:, 400:] = rng.random((200, 384))
    y = rng.integers(0, 3, 200)
    trainer = rbp.Trainer(rbp.MLP([784, 16, 3], seed=0), batch_size=32, threads=1)
    trainer.fit((x, y), epochs=1, progress=False)
    assert trainer._core._skipped_input_zeros and not trainer._core._sparse_first_layer
    trainer = rbp.Trainer(rbp.MLP([784, 16, 3], seed=0, connectivity=[0.5, 1.0]), batch_size=32, threads=1)
    trainer.fit((x, y), epochs=1, progress=False)
    assert not trainer._core._skipped_input_zeros


def _train_with_elementwise_split(elements, make_net, x, y, **options):
    previous = _core._set_min_elements_per_thread(elements)
    try:
        net = make_net()
        rbp.Trainer(net, batch_size=48, lr=0.05, seed=2, threads=2, **options).fit((x, y), epochs=2, progress=False)
        return net.weights, net.biases
    finally:
        _core._set_min_elements_per_thread(previous)


@pytest.mark.parametrize("activation", ["tanh", "logistic", "relu"])
@pytest.mark.parametrize(
    "options",
    [
        {"algorithm": "bp"},
        {"algorithm": "rbp", "momentum": 0.5},
        {"algorithm": "srbp", "channel_dropout": 0.3},
        {"algorithm": "sbp", "dtype": "float64"},
    ],
    ids=["bp", "rbp-momentum", "srbp-dropout", "sbp-float64"],
)
def test_elementwise_split_between_threads_changes_no_weight(activation, options):
    """Two threads split f and f' of each layer, the bias rows and f' times the channel's signal into
    blocks of 16 rows when the work is large (benchmarks/kernels_ab.py --elementwise-split). Forced
    onto every matrix (threshold 1) the split gives the weights of the unsplit sweeps bit for bit; the
    last block is short (48 rows: 32 + 16), and 100 columns put rows off 64-byte boundaries."""
    x, y = synthetic(n=300, features=20)
    dtype = options.pop("dtype", "float32")
    x = x.astype(dtype)

    def make_net():
        return rbp.MLP([20, 100, 36, 4], activation=activation, seed=1, dtype=dtype)

    split = _train_with_elementwise_split(1, make_net, x, y, **options)
    whole = _train_with_elementwise_split(2**62, make_net, x, y, **options)
    for a, b in zip([*split[0], *split[1]], [*whole[0], *whole[1]]):
        np.testing.assert_array_equal(a, b)
    # The run differs from one with other weights: the comparison can fail.
    assert not np.array_equal(split[0][0], make_net().weights[0])


def test_elementwise_split_threshold_is_validated():
    previous = _core._set_min_elements_per_thread(1)
    assert _core._set_min_elements_per_thread(previous) == 1
    assert previous == 32768
    for bad in (0, -5):
        with pytest.raises(ValueError, match="elements must be positive"):
            _core._set_min_elements_per_thread(bad)
