"""Convolutional networks: layers, forward pass and every supported channel against the numpy oracle
of tests/conv_reference.py, finite differences, and the errors of unsupported combinations."""

from __future__ import annotations

import numpy as np
import pytest

import conv_reference as ref
import rbp_native as rbp
import reference

L = rbp.layers


def _stages(net: rbp.Sequential) -> list[dict]:
    """The oracle's description of a network, with its current weights."""
    weights, biases = net.weights, net.biases
    stages, h = [], -1
    for layer in net.layers:
        if isinstance(layer, (L.Dense, L.Conv2D)):
            h += 1
            b = biases[h].astype(np.float64) if biases else None
            if isinstance(layer, L.Conv2D):
                stages.append(
                    {
                        "kind": "conv",
                        "K": weights[h].astype(np.float64),
                        "b": b,
                        "stride": layer.stride,
                        "padding": layer.padding,
                        "pools": [],
                    }
                )
            else:
                stages.append({"kind": "dense", "W": weights[h].astype(np.float64), "b": b, "pools": []})
        elif isinstance(layer, L.MaxPool2D):
            stages[-1]["pools"].append((*layer.pool_size, layer.stride, layer.padding))
    return stages


def _one_hot(y: np.ndarray, classes: int) -> np.ndarray:
    t = np.zeros((len(y), classes))
    t[np.arange(len(y)), y] = 1.0
    return t


# Small nets that exercise the geometry: overlapping "same" pools, "valid" pools, stride 2, a
# rectangular kernel, two pools in one stage, and a convolution directly above a convolution.
ARCHITECTURES = {
    "paper_like": (
        [
            L.Conv2D(4, 3, padding="same"),
            L.MaxPool2D(3, stride=2, padding="same"),
            L.Conv2D(5, 3, padding="same"),
            L.MaxPool2D(3, stride=2, padding="same"),
            L.Flatten(),
            L.Dense(6),
            L.Dense(3, activation="softmax"),
        ],
        (2, 9, 9),
    ),
    "valid_strided": (
        [
            L.Conv2D(3, (3, 2), stride=2, padding="valid"),
            L.MaxPool2D(2, padding="valid"),
            L.MaxPool2D(2, stride=1, padding="same"),
            L.Dense(4),
            L.Dense(3, activation="softmax"),
        ],
        (1, 11, 10),
    ),
    "conv_on_conv": (
        [
            L.Conv2D(3, 3, padding="same"),
            L.Conv2D(4, 2, stride=2, padding="same"),
            L.MaxPool2D(2),
            L.Flatten(),
            L.Dense(3, activation="softmax"),
        ],
        (2, 7, 7),
    ),
}


def _net(name: str, dtype: str = "float64", seed: int = 3) -> rbp.Sequential:
    layers, shape = ARCHITECTURES[name]
    return rbp.Sequential(layers, input_shape=shape, dtype=dtype, seed=seed)


def _batch(net: rbp.Sequential, n: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *net.input_shape))
    y = rng.integers(0, net.sizes[-1], size=n)
    return x, y


# -- layers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("kernel", [(3, 3), (2, 4), (1, 1)])
def test_conv_forward_matches_oracle(padding, stride, kernel):
    net = rbp.Sequential(
        [L.Conv2D(3, kernel, stride=stride, padding=padding, activation="linear")],
        input_shape=(2, 7, 8),
        dtype="float64",
        seed=1,
    )
    rng = np.random.default_rng(0)
    net.set_biases([rng.normal(size=3)])
    x = rng.normal(size=(4, 2, 7, 8))
    expected = ref.conv_forward(x, net.weights[0], net.biases[0], stride, padding)
    np.testing.assert_allclose(net.forward(x), expected.reshape(4, -1), rtol=1e-12, atol=1e-12)


def test_same_padding_puts_the_odd_row_at_the_bottom_right():
    # 4x4 input, 2x2 kernel of ones, stride 1, "same": output 4x4, padding 1 in total, all of it
    # after the last row/column, so output (0, 0) sums x[0:2, 0:2] and (3, 3) sees x[3, 3] alone.
    net = rbp.Sequential(
        [L.Conv2D(1, 2, padding="same", activation="linear")], input_shape=(1, 4, 4), dtype="float64", bias=False
    )
    net.set_weights([np.ones((1, 1, 2, 2))])
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    out = net.forward(x).reshape(4, 4)
    assert out[0, 0] == 0 + 1 + 4 + 5
    assert out[3, 3] == 15
    assert out[0, 3] == 3 + 7


def test_weights_have_pytorch_shapes_and_flat_or_nchw_inputs_agree():
    net = _net("paper_like")
    assert [w.shape for w in net.weights] == [(4, 2, 3, 3), (5, 4, 3, 3), (6, 5 * 3 * 3), (3, 6)]
    assert [b.shape for b in net.biases] == [(4,), (5,), (6,), (3,)]
    x, _ = _batch(net)
    np.testing.assert_array_equal(net.forward(x), net.forward(x.reshape(len(x), -1)))
    with pytest.raises(ValueError, match="examples of shape"):
        net.forward(x[:, :, :8])


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_forward_matches_oracle(name):
    net = _net(name)
    x, _ = _batch(net)
    record = ref.forward(_stages(net), x)
    np.testing.assert_allclose(net.forward(x), record[-1]["O"], rtol=1e-12, atol=1e-13)


@pytest.mark.usefixtures("conv_implementation")
def test_float32_forward_close_to_float64():
    x, _ = _batch(_net("paper_like"))
    out64 = _net("paper_like", "float64").forward(x)
    out32 = _net("paper_like", "float32").forward(x)
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, out64, rtol=1e-4, atol=1e-5)


def test_pool_ties_route_to_the_first_maximum_in_row_major_order():
    # A zero kernel makes every unit of S equal (the bias), so every pool window is a tie; the
    # first position of each window wins and receives all of its signal.
    net = rbp.Sequential(
        [
            L.Conv2D(1, 1, activation="linear"),
            L.MaxPool2D(2, stride=1, padding="valid"),
            L.Flatten(),
            L.Dense(2, activation="softmax"),
        ],
        input_shape=(1, 3, 3),
        dtype="float64",
        seed=0,
    )
    net.set_weights([np.zeros((1, 1, 1, 1)), net.weights[1]])
    net.set_biases([np.array([0.5]), np.zeros(2)])
    x, y = np.ones((1, 1, 3, 3)), np.array([1])
    trainer = rbp.Trainer(net, algorithm="bp", derivative=False)
    b1 = trainer.signals(x, y)[0].reshape(3, 3)
    # windows start at (0,0), (0,1), (1,0), (1,1): their first positions win
    winners = np.zeros((3, 3), dtype=bool)
    winners[:2, :2] = True
    assert np.all(b1[~winners] == 0)
    e = _one_hot(y, 2) - net.forward(x)
    np.testing.assert_allclose(b1[winners], (e @ net.weights[1]).ravel(), rtol=1e-12)
    stages = _stages(net)
    expected, _ = ref.signals(stages, x, _one_hot(y, 2), "bp", derivative=False, hidden="linear")
    np.testing.assert_allclose(trainer.signals(x, y)[0], expected[0], rtol=1e-12, atol=1e-15)


def test_overlapping_pool_windows_sum_their_signals_at_a_shared_winner():
    # One large value wins every 3x3 window around it (stride 1): its unit gets the sum of their signals.
    net = rbp.Sequential(
        [
            L.Conv2D(1, 1, activation="linear"),
            L.MaxPool2D(3, stride=1, padding="same"),
            L.Flatten(),
            L.Dense(2, activation="softmax"),
        ],
        input_shape=(1, 3, 3),
        dtype="float64",
        seed=0,
        bias=False,
    )
    net.set_weights([np.ones((1, 1, 1, 1)), net.weights[1]])
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 5.0
    y = np.array([0])
    b1 = rbp.Trainer(net, algorithm="bp", derivative=False).signals(x, y)[0].reshape(3, 3)
    e = _one_hot(y, 2) - net.forward(x)
    assert b1[1, 1] == pytest.approx(float((e @ net.weights[1]).sum()), rel=1e-12)
    assert np.count_nonzero(b1) == 1


# -- channels ---------------------------------------------------------------------------------------

CHANNELS = [
    ("bp", {}),
    ("sbp", {}),
    ("rbp", {}),
    ("srbp", {}),
    ("top", {}),
    ("srbp", {"injection": "post_pool"}),
    ("rbp", {"sources": "output"}),
    ("srbp", {"sources": "above"}),
]


def check_signals_and_step(net, x, y, algorithm, rtol, atol, seed=7, **options):
    """trainer.signals and one trainer.step (lr 0.05, no momentum or decay) against the oracle, which
    gets the inputs and feedback as the network's dtype holds them (float32 nets: rounded, then exact)."""
    T = _one_hot(y, net.sizes[-1])
    stages = _stages(net)
    x64 = x.astype(net.dtype).astype(np.float64)
    trainer = rbp.Trainer(net, algorithm=algorithm, lr=0.05, momentum=0.0, decay=0.0, seed=seed, **options)
    feedback = [f.astype(np.float64) for f in trainer.feedback]
    derivative = options.get("derivative", True)
    injection = options.get("injection", "pre_pool")
    sources = options.get("sources")
    sources = [sources] * (net.num_layers - 1) if isinstance(sources, str) else None
    expected, _ = ref.signals(stages, x64, T, algorithm, feedback, derivative, injection=injection, sources=sources)
    for h, (got, want) in enumerate(zip(trainer.signals(x, y), expected)):
        assert got.dtype == np.dtype(net.dtype)
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=f"signal {h}")
    trainer.step(x, y)
    new = ref.step(stages, x64, T, 0.05, algorithm, feedback, derivative, injection=injection, sources=sources)
    for h, (got, want) in enumerate(zip(net.weights, new)):
        np.testing.assert_allclose(
            got, want["K"] if want["kind"] == "conv" else want["W"], rtol=rtol, atol=atol, err_msg=f"weights[{h}]"
        )
        if want["b"] is not None:
            np.testing.assert_allclose(net.biases[h], want["b"], rtol=rtol, atol=atol, err_msg=f"biases[{h}]")


@pytest.mark.parametrize("derivative", [True, False])
@pytest.mark.parametrize("algorithm,options", CHANNELS)
@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_signals_and_step_match_oracle(name, algorithm, options, derivative):
    net = _net(name)
    x, y = _batch(net)
    check_signals_and_step(net, x, y, algorithm, 1e-10, 1e-13, derivative=derivative, **options)


@pytest.mark.usefixtures("conv_implementation")
@pytest.mark.parametrize("algorithm", ["bp", "rbp", "srbp"])
def test_float32_signals_and_step_match_oracle(algorithm):
    net = _net("paper_like", dtype="float32")
    x, y = _batch(net)
    check_signals_and_step(net, x, y, algorithm, 2e-4, 2e-6, seed=3)


def test_feedback_shapes_follow_the_conventions():
    net = _net("paper_like")  # conv(4) pool conv(5) pool dense(6) dense(3); 9x9 -> 5x5 -> 3x3
    rbp_feedback = rbp.Trainer(net, algorithm="rbp").feedback
    # under conv 2: a kernel of its shape; under the dense layers: (|O^h|, n_{h+1})
    assert [f.shape for f in rbp_feedback] == [(5, 4, 3, 3), (5 * 3 * 3, 6), (6, 3)]
    srbp = [f.shape for f in rbp.Trainer(net, algorithm="srbp").feedback]
    assert srbp == [(4 * 9 * 9, 3), (5 * 5 * 5, 3), (6, 3)]  # at S^h, before pooling
    post = [f.shape for f in rbp.Trainer(net, algorithm="srbp", injection="post_pool").feedback]
    assert post == [(4 * 5 * 5, 3), (5 * 3 * 3, 3), (6, 3)]


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_rbp_with_forward_weights_as_feedback_equals_bp(name):
    net = _net(name)
    x, y = _batch(net)
    bp = rbp.Trainer(net, algorithm="bp").signals(x, y)
    trainer = rbp.Trainer(net, algorithm="rbp")
    weights = net.weights
    trainer.set_feedback([w if w.ndim == 4 else w.T for w in weights[1:]])
    for got, want in zip(trainer.signals(x, y), bp):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("pooled", [False, True])
def test_srbp_with_one_hidden_layer_and_top_weights_transposed_equals_bp(pooled):
    layers = [L.Conv2D(3, 3, padding="same")]
    if pooled:
        layers.append(L.MaxPool2D(3, stride=2, padding="same"))
    net = rbp.Sequential(
        layers + [L.Flatten(), L.Dense(4, activation="softmax")], input_shape=(2, 6, 6), dtype="float64", seed=2
    )
    x, y = _batch(net)
    bp = rbp.Trainer(net, algorithm="bp").signals(x, y)
    # Through a pool the feedback has to enter where bp's signal does: after the pool.
    trainer = rbp.Trainer(net, algorithm="srbp", injection="post_pool" if pooled else "pre_pool")
    trainer.set_feedback([net.weights[1].T])
    for got, want in zip(trainer.signals(x, y), bp):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_bp_matches_finite_differences():
    net = _net("paper_like", seed=5)
    x, y = _batch(net, n=4, seed=1)
    T = _one_hot(y, net.sizes[-1])
    lr = 1.0
    trainer = rbp.Trainer(net, algorithm="bp", lr=lr, decay=0.0)
    stages = _stages(net)
    before = [w.copy() for w in net.weights]
    trainer.step(x, y)
    # One bp step without momentum moves every weight by -lr * d(mean loss)/dw.
    steps = [after - b for after, b in zip(net.weights, before)]
    rng = np.random.default_rng(0)
    eps = 1e-6
    for h, w in enumerate(before):
        key = "K" if w.ndim == 4 else "W"
        for flat in rng.choice(w.size, size=min(12, w.size), replace=False):
            index = np.unravel_index(flat, w.shape)
            values = []
            for sign in (1, -1):
                probe = [dict(st) for st in stages]
                probe[h][key] = probe[h][key].copy()
                probe[h][key][index] += sign * eps
                values.append(ref.loss(probe, x, T))
            gradient = (values[0] - values[1]) / (2 * eps)
            assert steps[h][index] == pytest.approx(-lr * gradient, rel=1e-5, abs=1e-9), (h, index)


def test_oracle_loss_is_the_core_loss():
    net = _net("conv_on_conv")
    x, y = _batch(net)
    core = rbp.Trainer(net).evaluate(x, y)["loss"]
    assert core == pytest.approx(ref.loss(_stages(net), x, _one_hot(y, net.sizes[-1])), rel=1e-12)


@pytest.mark.parametrize(
    "options",
    [
        {"frozen_layers": [1, 3]},
        {"signal_transform": "sign"},
        {"signal_transform": "magnitude", "transform_target": "update"},
        {"feedback_density": 0.4},
        {"feedback_distribution": "sign", "feedback_scale": "unit"},
        {"congruent": True},
    ],
)
def test_options_through_conv_layers_match_oracle(options):
    net = _net("paper_like")
    x, y = _batch(net)
    T = _one_hot(y, net.sizes[-1])
    stages = _stages(net)
    trainer = rbp.Trainer(net, algorithm="rbp", lr=0.05, decay=0.0, seed=4, **options)
    feedback = trainer.feedback
    on_signal = options.get("transform_target", "signal") == "signal"
    B, rec = ref.signals(
        stages, x, T, "rbp", feedback, transform=options.get("signal_transform", "none") if on_signal else "none"
    )
    for got, want in zip(trainer.signals(x, y), B):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)
    if options.get("feedback_density"):
        assert any((f == 0).any() for f in feedback)
    if options.get("congruent"):
        for f, w in zip(feedback, net.weights[1:]):
            counterpart = w if w.ndim == 4 else w.T
            assert np.all(np.sign(f) == np.where(counterpart < 0, -1, 1))
    trainer.step(x, y)
    frozen = options.get("frozen_layers", [])
    n = len(x)
    for h, st in enumerate(stages):
        if h + 1 in frozen:
            np.testing.assert_array_equal(net.weights[h], st["K"] if st["kind"] == "conv" else st["W"])
            continue
        g = B[h]
        if st["kind"] == "conv":
            dk, _ = ref.conv_weight_gradient(
                g.reshape(rec[h]["S"].shape), rec[h]["input"], st["K"].shape, st["stride"], st["padding"]
            )
            old = st["K"]
        else:
            dk, old = g.T @ rec[h]["input"].reshape(n, -1), st["W"]
        if options.get("transform_target") == "update" and h < len(stages) - 1:
            change = 0.05 * np.abs(dk / n)
        else:
            change = 0.05 * dk / n
        np.testing.assert_allclose(net.weights[h], old + change, rtol=1e-10, atol=1e-13, err_msg=f"weights[{h}]")


def test_channel_dropout_and_signal_quantisation_through_conv_layers():
    net = _net("paper_like")
    x, y = _batch(net)
    T = _one_hot(y, net.sizes[-1])
    trainer = rbp.Trainer(net, algorithm="srbp", channel_dropout=0.3, seed=1)
    signals = trainer.signals(x, y)
    masks = trainer._core.dropout_masks()
    B, rec = ref.signals(_stages(net), x, T, "srbp", trainer.feedback, derivative=False)
    for h, mask in enumerate(masks):
        assert mask.shape == B[h].shape
        d = ref._flat(ref.activation_derivative("tanh", rec[h]["S"]))
        np.testing.assert_allclose(signals[h], d * B[h] * mask, rtol=1e-10, atol=1e-13)
    quantised = rbp.Trainer(net, algorithm="bp", quantize="signal", quantize_bits=4, quantize_alpha=0.5, seed=1)
    B, _ = ref.signals(_stages(net), x, T, "bp", quantizer=lambda j: reference.quantize(j, 4, 0.5))
    for got, want in zip(quantised.signals(x, y), B):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)
    exact, _ = ref.signals(_stages(net), x, T, "bp")
    assert not np.allclose(B[0], exact[0])  # the quantisation changes the signals it is checked on


@pytest.mark.usefixtures("conv_implementation")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_same_seed_and_threads_give_identical_epochs(dtype):
    def run(threads):
        net = _net("paper_like", dtype=dtype, seed=1)
        x, y = _batch(net, n=40, seed=2)
        trainer = rbp.Trainer(
            net, algorithm="srbp", lr=0.05, momentum=0.9, decay=1e-5, batch_size=16, seed=3, threads=threads
        )
        trainer.fit((x, y), epochs=2, progress=False, train_metrics="running")
        return net.weights

    one = run(1)
    for a, b in zip(one, run(1)):
        np.testing.assert_array_equal(a, b)
    # Three threads split every batch by example (weight gradients summed per part, then in part order).
    three = run(3)
    for a, b in zip(three, run(3)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(one, three):
        np.testing.assert_allclose(a, b, rtol=1e-4 if dtype == "float32" else 1e-12, atol=1e-6)


def test_threaded_signals_and_step_match_oracle():
    net = _net("paper_like")
    x, y = _batch(net, n=7)
    T = _one_hot(y, net.sizes[-1])
    stages = _stages(net)
    trainer = rbp.Trainer(net, algorithm="bp", lr=0.05, decay=0.0, threads=3)
    expected, _ = ref.signals(stages, x, T, "bp")
    for got, want in zip(trainer.signals(x, y), expected):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)
    trainer.step(x, y)
    stepped = ref.step(stages, x, T, 0.05, "bp")
    assert len(stepped) == len(net.weights)
    for h, (got, want) in enumerate(zip(net.weights, stepped)):
        np.testing.assert_allclose(
            got, want["K"] if want["kind"] == "conv" else want["W"], rtol=1e-10, atol=1e-13, err_msg=f"layer {h + 1}"
        )


def test_save_and_load_round_trip(tmp_path):
    net = _net("valid_strided", dtype="float32")
    path = tmp_path / "conv.npz"
    net.save(path)
    loaded = rbp.Sequential.load(path)
    assert loaded.config() == net.config()
    for a, b in zip(loaded.weights, net.weights):
        np.testing.assert_array_equal(a, b)
    x, _ = _batch(net)
    np.testing.assert_array_equal(loaded.forward(x), net.forward(x))
    with pytest.raises(ValueError, match="not an MLP"):
        rbp.MLP.load(path)


def test_mlp_is_a_sequential_of_dense_layers():
    mlp = rbp.MLP([6, 5, 3], seed=4, dtype="float64")
    seq = rbp.Sequential([L.Dense(5), L.Dense(3, activation="softmax")], input_shape=(6,), seed=4, dtype="float64")
    assert isinstance(mlp, rbp.Sequential)
    for a, b in zip(mlp.weights, seq.weights):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(0).normal(size=(3, 6))
    np.testing.assert_array_equal(mlp.forward(x), seq.forward(x))


# -- errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "layers,shape,match",
    [
        ([L.MaxPool2D(2), L.Dense(3, activation="softmax")], (1, 4, 4), "must follow a Conv2D"),
        ([L.Dense(4), L.MaxPool2D(2), L.Dense(3, activation="softmax")], (1, 4, 4), "MaxPool2D needs|must follow"),
        ([L.Dense(4), L.Conv2D(2, 3), L.Dense(3, activation="softmax")], (1, 4, 4), "Conv2D needs"),
        (
            [L.Conv2D(2, 3), L.Dense(4, activation="relu"), L.Dense(3, activation="softmax")],
            (1, 4, 4),
            "different activations",
        ),
        ([L.Conv2D(2, 5, padding="valid"), L.Dense(3, activation="softmax")], (1, 4, 4), "does not fit"),
        ([L.Conv2D(2, 3), L.Dense(3, activation="tanh")], (1, 4, 4), "output layer's activation"),
        ([L.Conv2D(2, 3), L.MaxPool2D(2)], (1, 4, 4), "last layer"),
    ],
)
def test_invalid_architectures_raise(layers, shape, match):
    with pytest.raises(ValueError, match=match):
        rbp.Sequential(layers, input_shape=shape)


@pytest.mark.parametrize("algorithm,options", [("arbp", {}), ("asrbp", {}), ("asrbp", {"injection": "post_pool"})])
def test_adaptive_feedback_through_conv_layers_matches_oracle(algorithm, options):
    net = _net("paper_like")
    x, y = _batch(net)
    T = _one_hot(y, net.sizes[-1])
    n, lr, rho = len(x), 0.05, 0.5
    stages = _stages(net)
    trainer = rbp.Trainer(net, algorithm=algorithm, lr=lr, decay=0.0, feedback_lr_scale=rho, seed=1, **options)
    before = trainer.feedback
    base = "rbp" if algorithm == "arbp" else "srbp"
    injection = options.get("injection", "pre_pool")
    B, rec = ref.signals(stages, x, T, base, before, injection=injection)
    trainer.step(x, y)
    for h, (got, old) in enumerate(zip(trainer.feedback, before)):
        source = B[h + 1] if base == "rbp" else B[-1]
        if old.ndim == 4:  # a kernel learns from B^{h+1} and O^h as the forward kernel does
            above = stages[h + 1]
            dk, _ = ref.conv_weight_gradient(
                source.reshape(rec[h + 1]["S"].shape), rec[h]["O"], old.shape, above["stride"], above["padding"]
            )
            expected = old + rho * lr * dk / n
        else:
            entering = rec[h]["A"] if base == "srbp" and injection == "pre_pool" else rec[h]["O"]
            expected = old + rho * lr * ref._flat(entering).T @ source / n
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-13, err_msg=f"feedback[{h}]")
    stepped = ref.step(stages, x, T, lr, base, before, injection=injection)
    assert len(stepped) == len(net.weights)
    for h, (got, want) in enumerate(zip(net.weights, stepped)):
        np.testing.assert_allclose(
            got, want["K"] if want["kind"] == "conv" else want["W"], rtol=1e-10, atol=1e-13, err_msg=f"layer {h + 1}"
        )


def test_quantised_updates_through_conv_layers_match_oracle():
    net = _net("paper_like")
    x, y = _batch(net)
    T = _one_hot(y, net.sizes[-1])
    n, lr, bits, alpha = len(x), 0.05, 6, 2.0**-4
    stages = _stages(net)
    trainer = rbp.Trainer(
        net, algorithm="srbp", lr=lr, decay=0.0, quantize="update", quantize_bits=bits, quantize_alpha=alpha, seed=1
    )
    feedback = trainer.feedback
    B, rec = ref.signals(stages, x, T, "srbp", feedback)
    trainer.step(x, y)

    def q(v):
        return reference.quantize(v, bits, alpha)

    for h, st in enumerate(stages):
        old = st["K"] if st["kind"] == "conv" else st["W"]
        change, bias_change = np.zeros_like(old), np.zeros_like(st["b"])
        for i in range(n):  # each example's whole update quantised, then averaged
            if st["kind"] == "conv":
                dk, db = ref.conv_weight_gradient(
                    B[h][i : i + 1].reshape((1,) + rec[h]["S"].shape[1:]),
                    rec[h]["input"][i : i + 1],
                    old.shape,
                    st["stride"],
                    st["padding"],
                )
            else:
                dk, db = np.outer(B[h][i], ref._flat(rec[h]["input"])[i]), B[h][i]
            change += q(lr * dk) / n
            bias_change += q(lr * db) / n
        assert np.count_nonzero(change) > 0
        np.testing.assert_allclose(net.weights[h], old + change, rtol=1e-10, atol=1e-13, err_msg=f"weights[{h}]")
        np.testing.assert_allclose(net.biases[h], st["b"] + bias_change, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize(
    "options,match",
    [
        ({"algorithm": "srbp", "per_synapse": True}, "dense layers"),
        ({"algorithm": "srbp", "congruent": True}, "counterpart"),
        ({"algorithm": "srbp", "resample": "sign_concordant"}, "counterpart"),
        ({"algorithm": "rbp", "feedback_storage": "sparse"}, "feedback kernels"),
        ({"algorithm": "rbp", "feedback_nonzeros": 2}, "feedback kernels"),
        ({"algorithm": "rbp", "injection": "post_pool"}, "output-sourced"),
        ({"algorithm": "bp", "injection": "post_pool"}, "output-sourced"),
        ({"algorithm": "srbp", "injection": "middle"}, "injection"),
    ],
)
def test_unsupported_options_raise_at_construction(options, match):
    with pytest.raises(ValueError, match=match):
        rbp.Trainer(_net("paper_like"), **options)


def test_post_pool_injection_needs_pools():
    net = rbp.MLP([4, 3, 2])
    with pytest.raises(ValueError, match="max-pooling"):
        rbp.Trainer(net, algorithm="srbp", injection="post_pool")


@pytest.mark.parametrize("resample", ["zero_mean", "sign_concordant"])
def test_resampled_feedback_kernels_are_used_by_the_step_that_draws_them(resample):
    net = _net("paper_like")
    x, y = _batch(net)
    T = _one_hot(y, net.sizes[-1])
    stages = _stages(net)
    counterparts = [w if w.ndim == 4 else w.T for w in net.weights[1:]]
    trainer = rbp.Trainer(net, algorithm="rbp", resample=resample, lr=0.05, decay=0.0, seed=2)
    first = trainer.feedback
    trainer.step(x, y)
    used = trainer.feedback  # the matrices of the last update
    assert all(not np.array_equal(a, b) for a, b in zip(first, used))
    if resample == "sign_concordant":  # drawn before the update: the signs of the weights before it
        for f, c in zip(used, counterparts):
            np.testing.assert_array_equal(np.sign(f), np.where(c < 0, -1, 1))
    new = ref.step(stages, x, T, 0.05, "rbp", used)
    for h, (got, want) in enumerate(zip(net.weights, new)):
        np.testing.assert_allclose(
            got, want["K"] if want["kind"] == "conv" else want["W"], rtol=1e-10, atol=1e-13, err_msg=f"weights[{h}]"
        )


def test_inference_in_chunks_of_a_large_network_matches_oracle():
    # 12 x 64 x 64 activities before pooling and 12 x 32 x 32 after: ~61k values per example, so
    # predict and evaluate cap their chunks (2^24 values: 273 rows) below the 300 rows given.
    net = rbp.Sequential(
        [L.Conv2D(12, 3), L.MaxPool2D(2), L.Dense(3, activation="softmax")],
        input_shape=(1, 64, 64),
        dtype="float64",
        seed=0,
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 1, 64, 64))
    y = rng.integers(0, 3, size=300)
    stages = _stages(net)
    expected = ref.forward(stages, x)[-1]["O"]
    np.testing.assert_allclose(net.forward(x), expected, rtol=1e-12, atol=1e-14)
    loss = rbp.Trainer(net).evaluate(x, y)["loss"]
    assert loss == pytest.approx(-np.log(expected[np.arange(300), y]).mean(), rel=1e-10)


def test_alignment_diagnostics_through_conv_layers():
    net = _net("paper_like")
    x, y = _batch(net)
    aligned = rbp.Trainer(net, algorithm="rbp")
    aligned.set_feedback([w if w.ndim == 4 else w.T for w in net.weights[1:]])
    record = aligned.alignment(x, y)
    for h in (1, 2, 3):
        assert record[f"angle_signal_{h}"] == pytest.approx(0.0, abs=1e-4)
        assert record[f"angle_feedback_{h}"] == pytest.approx(0.0, abs=1e-4)
    direct = rbp.Trainer(net, algorithm="srbp").alignment(x, y)
    # Output-sourced feedback entering before a pool has no fixed counterpart; the top hidden
    # layer's (dense, no pool) has (W^L)^T.
    assert np.isnan(direct["angle_feedback_1"]) and np.isnan(direct["angle_feedback_2"])
    assert 0 < direct["angle_feedback_3"] < 180
    assert all(0 < direct[f"angle_signal_{h}"] < 180 for h in (1, 2, 3))


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: L.Conv2D(0, 3), "filters"),
        (lambda: L.Conv2D(4, (3, 0)), "kernel_size"),
        (lambda: L.Conv2D(4, 3, stride=0), "stride"),
        (lambda: L.Conv2D(4, 3, padding="full"), "padding"),
        (lambda: L.Conv2D(4, 3, activation="swish"), "activation"),
        (lambda: L.MaxPool2D(2, stride=-1), "stride"),
        (lambda: L.Dense(2.5), "units"),
        (lambda: L.from_config({"type": "Dropout"}), "layer type"),
    ],
)
def test_layer_arguments_are_validated(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_layer_configs_round_trip():
    for layer in ARCHITECTURES["paper_like"][0] + ARCHITECTURES["valid_strided"][0]:
        again = L.from_config(layer.config())
        assert type(again) is type(layer) and again.config() == layer.config()
