"""The native learning channels against the independent numpy oracle (tests/reference.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import rbp_native as rbp
import reference as ref

ACTIVATIONS = ["tanh", "logistic", "relu", "linear"]
OUTPUTS = ["softmax", "logistic", "linear"]
SIZES = [6, 5, 4, 3]


def make_batch(n=9, sizes=SIZES, seed=1, output="softmax", labels=True):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(n, sizes[0]))
    if labels:
        y = rng.integers(0, sizes[-1] if sizes[-1] > 1 else 2, size=n)
    elif output == "softmax":
        y = rng.dirichlet(np.ones(sizes[-1]), size=n)
    elif output == "logistic":
        y = rng.uniform(0.0, 1.0, size=(n, sizes[-1]))
    else:
        y = rng.normal(size=(n, sizes[-1]))
    return x, y


def make_trainer(algorithm, activation="tanh", output="softmax", derivative=True, sizes=SIZES, seed=3, **kwargs):
    net = rbp.MLP(sizes, activation=activation, output=output, dtype="float64", seed=seed)
    # Non-zero biases so that bias handling is exercised.
    net.set_biases([np.random.default_rng(seed + h).normal(0, 0.1, n) for h, n in enumerate(sizes[1:])])
    trainer = rbp.Trainer(net, algorithm=algorithm, derivative=derivative, seed=seed, **kwargs)
    return net, trainer


@pytest.mark.parametrize("algorithm", rbp.ALGORITHMS)
@pytest.mark.parametrize("derivative", [True, False, [False, True]])
@pytest.mark.parametrize("activation,output", list(itertools.product(ACTIVATIONS, OUTPUTS)))
def test_signals_match_reference(algorithm, derivative, activation, output):
    net, trainer = make_trainer(algorithm, activation, output, derivative)
    x, y = make_batch(output=output, labels=(output == "softmax"))
    native = trainer.signals(x, y)
    oracle = ref.channel_signals(
        net.weights,
        net.biases,
        x,
        y,
        algorithm,
        trainer.feedback,
        derivative=derivative,
        activation=activation,
        output=output,
    )["B"]
    assert len(native) == len(oracle) == len(SIZES) - 1
    for h, (b_native, b_oracle) in enumerate(zip(native, oracle)):
        assert b_native.shape == (len(x), SIZES[h + 1])
        np.testing.assert_allclose(b_native, b_oracle, rtol=1e-12, atol=1e-14, err_msg=f"B^{h + 1}")
    if algorithm != "top" and activation != "linear" and derivative is True:
        assert np.abs(native[0]).max() > 0


@pytest.mark.parametrize("algorithm", rbp.ALGORITHMS)
@pytest.mark.parametrize("derivative", [True, False])
def test_three_steps_with_momentum_and_decay_match_reference(algorithm, derivative):
    net, trainer = make_trainer(algorithm, derivative=derivative, lr=0.3, decay=0.05, momentum=0.8, batch_size=9)
    state = ref.initial_state(net.weights, net.biases)
    feedback = trainer.feedback
    for k in range(3):
        x, y = make_batch(seed=10 + k)
        native_loss = trainer.step(x, y)
        state, oracle_loss, info = ref.channel_step(
            state, x, y, algorithm, feedback, derivative=derivative, lr=0.3, decay=0.05, momentum=0.8
        )
        feedback = info["feedback"]
        assert native_loss == pytest.approx(oracle_loss, rel=1e-12)
    assert trainer.updates == 3
    assert trainer.learning_rate == pytest.approx(0.3 / (1 + 0.05 * 3))
    for w_native, w_oracle in zip(net.weights, state["weights"]):
        np.testing.assert_allclose(w_native, w_oracle, rtol=1e-11, atol=1e-13)
    for b_native, b_oracle in zip(net.biases, state["biases"]):
        np.testing.assert_allclose(b_native, b_oracle, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("activation,output", list(itertools.product(ACTIVATIONS, OUTPUTS)))
def test_bp_update_is_the_negative_finite_difference_gradient(activation, output):
    # One bp step with lr = 1 moves every parameter by exactly -dLoss/dparameter.
    seed = 5
    while True:
        net, trainer = make_trainer("bp", activation, output, lr=1.0, decay=0.0, seed=seed)
        x, y = make_batch(seed=seed, output=output, labels=(output == "softmax"))
        pre, _ = ref.forward(net.weights, net.biases, x, activation, output)
        if activation != "relu" or min(np.abs(s).min() for s in pre[1:]) > 1e-3:
            break
        seed += 1
    grad_w, grad_b = ref.numerical_gradient(net.weights, net.biases, x, y, activation, output)
    before_w, before_b = net.weights, net.biases
    trainer.step(x, y)
    for h in range(net.num_layers):
        np.testing.assert_allclose(net.weights[h] - before_w[h], -grad_w[h], rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(net.biases[h] - before_b[h], -grad_b[h], rtol=1e-6, atol=1e-9)


def test_rbp_with_transposed_forward_weights_is_bp():
    net, bp = make_trainer("bp")
    _, rbp_trainer = make_trainer("rbp")
    rbp_trainer.net.set_weights(net.weights)
    rbp_trainer.net.set_biases(net.biases)
    rbp_trainer.set_feedback([w.T for w in net.weights[1:]])
    x, y = make_batch()
    # Equal up to round-off: the two paths multiply by W and by (W^T)^T in different GEMM layouts.
    for b_bp, b_rbp in zip(bp.signals(x, y), rbp_trainer.signals(x, y)):
        np.testing.assert_allclose(b_bp, b_rbp, rtol=1e-14, atol=1e-16)


def test_srbp_on_one_hidden_layer_with_transposed_weights_is_bp():
    sizes = [6, 7, 3]
    net, bp = make_trainer("bp", sizes=sizes)
    srbp_net, srbp = make_trainer("srbp", sizes=sizes)
    srbp_net.set_weights(net.weights)
    srbp_net.set_biases(net.biases)
    srbp.set_feedback([net.weights[1].T])
    x, y = make_batch(sizes=sizes)
    for b_bp, b_srbp in zip(bp.signals(x, y), srbp.signals(x, y)):
        np.testing.assert_allclose(b_bp, b_srbp, rtol=1e-14, atol=1e-16)
    # and stays equal through training
    for k in range(3):
        x, y = make_batch(sizes=sizes, seed=20 + k)
        bp.step(x, y)
        srbp.step(x, y)
        srbp.set_feedback([net.weights[1].T])
    for w_bp, w_srbp in zip(net.weights, srbp_net.weights):
        np.testing.assert_allclose(w_bp, w_srbp, rtol=1e-12)


@pytest.mark.parametrize("algorithm", ["bp", "sbp", "rbp", "srbp"])
def test_linear_hidden_units_ignore_the_derivative_switch(algorithm):
    _, with_d = make_trainer(algorithm, activation="linear", derivative=True)
    _, without_d = make_trainer(algorithm, activation="linear", derivative=False)
    x, y = make_batch()
    for a, b in zip(with_d.signals(x, y), without_d.signals(x, y)):
        np.testing.assert_array_equal(a, b)


def test_linear_sbp_equals_bp_and_tanh_sbp_does_not():
    x, y = make_batch()
    _, bp = make_trainer("bp", activation="linear")
    _, sbp = make_trainer("sbp", activation="linear")
    for a, b in zip(bp.signals(x, y), sbp.signals(x, y)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    _, bp = make_trainer("bp")
    _, sbp = make_trainer("sbp")
    assert not np.allclose(bp.signals(x, y)[0], sbp.signals(x, y)[0])


def test_top_layer_only_leaves_hidden_layers_unchanged():
    net, trainer = make_trainer("top", momentum=0.5)
    before = net.weights
    for k in range(3):
        trainer.step(*make_batch(seed=k))
    after = net.weights
    for h in range(net.num_layers - 1):
        np.testing.assert_array_equal(before[h], after[h])
    assert not np.array_equal(before[-1], after[-1])
    assert trainer.feedback == []


def test_top_layer_update_is_the_same_for_every_algorithm():
    x, y = make_batch()
    tops = []
    for algorithm in rbp.ALGORITHMS:
        net, trainer = make_trainer(algorithm, lr=0.5)
        trainer.step(x, y)
        tops.append(net.weights[-1])
    for w in tops[1:]:
        np.testing.assert_allclose(w, tops[0], rtol=1e-14)


@pytest.mark.parametrize("output", OUTPUTS)
def test_one_hot_targets_equal_labels(output):
    sizes = SIZES
    x, labels = make_batch(sizes=sizes)
    one_hot = np.eye(sizes[-1])[labels]
    _, a = make_trainer("srbp", output=output, sizes=sizes)
    _, b = make_trainer("srbp", output=output, sizes=sizes)
    assert a.step(x, labels) == b.step(x, one_hot)
    np.testing.assert_array_equal(a.net.weights[0], b.net.weights[0])


def test_single_output_takes_binary_labels():
    sizes = [4, 3, 1]
    net, trainer = make_trainer("bp", output="logistic", sizes=sizes)
    x, _ = make_batch(sizes=sizes)
    labels = (x[:, 0] > 0).astype(np.int64)
    loss = trainer.step(x, labels)
    oracle = ref.loss(
        ref.forward(*_params_before(sizes), x, "tanh", "logistic")[1][-1], labels[:, None].astype(float), "logistic"
    )
    assert loss == pytest.approx(oracle, rel=1e-12)
    assert set(np.unique(net.predict(x))) <= {0, 1}


def _params_before(sizes):
    net, _ = make_trainer("bp", output="logistic", sizes=sizes)
    return net.weights, net.biases


def test_float32_agrees_with_float64():
    x, y = make_batch(n=50)
    results = []
    for dtype in ("float32", "float64"):
        net = rbp.MLP(SIZES, dtype=dtype, seed=4)
        trainer = rbp.Trainer(net, algorithm="srbp", seed=4, batch_size=10)
        trainer.fit((x.astype(dtype), y), epochs=3, progress=False)
        results.append(net.weights[0].astype(np.float64))
    np.testing.assert_allclose(results[0], results[1], rtol=1e-4, atol=1e-5)
