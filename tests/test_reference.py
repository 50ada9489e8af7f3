"""Tests of the plain-numpy oracle in tests/reference.py.

These check the reference against the definition of the gradient (central
differences) and against the equivalences between the algorithms (the paper's
section 2), so that the reference can in turn be trusted to check the C++ core."""

import numpy as np
import pytest

from reference import (
    accuracy,
    activation,
    activation_derivative,
    forward,
    initial_state,
    loss,
    numerical_gradient,
    sgd_step,
    signals,
    targets_from,
)

HIDDEN = ["tanh", "logistic", "relu", "linear"]
OUTPUTS = ["softmax", "logistic", "linear"]
SIZES = [5, 4, 3, 3]
BATCH = 7


# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------


def make_net(sizes, rng, with_bias=True, scale=0.8):
    weights = [scale * rng.standard_normal((sizes[h], sizes[h - 1])) for h in range(1, len(sizes))]
    biases = [0.3 * rng.standard_normal(sizes[h]) if with_bias else None for h in range(1, len(sizes))]
    return weights, biases


def make_targets(output, batch, n_out, rng):
    if output == "softmax":
        return rng.integers(0, n_out, size=batch)
    if output == "logistic":
        return rng.uniform(0.0, 1.0, size=(batch, n_out))
    return rng.standard_normal((batch, n_out))


def make_problem(act, output, sizes=SIZES, batch=BATCH, seed=0, with_bias=True):
    """A small random net and batch. For relu, pick the first seed where no
    hidden pre-activation is within 1e-3 of the kink at 0."""
    for s in range(seed, seed + 1000):
        rng = np.random.default_rng(s)
        weights, biases = make_net(sizes, rng, with_bias)
        x = rng.uniform(-1.0, 1.0, size=(batch, sizes[0]))
        y = make_targets(output, batch, sizes[-1], rng)
        if act == "relu":
            S_list, _ = forward(weights, biases, x, act, output)
            if min(np.min(np.abs(S)) for S in S_list[1:-1]) < 1e-3:
                continue
            # also require that relu is not dead everywhere in a layer
            if any(np.all(S <= 0) for S in S_list[1:-1]):
                continue
        return weights, biases, x, y
    raise RuntimeError("no suitable seed found")


def relative_error(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


def grads_from_signals(B, O_list):
    batch = O_list[0].shape[0]
    G_W = [B[h - 1].T @ O_list[h - 1] / batch for h in range(1, len(O_list))]
    G_b = [np.mean(B[h - 1], axis=0) for h in range(1, len(O_list))]
    return G_W, G_b


def random_feedback(sizes, rng, skipped):
    L = len(sizes) - 1
    if skipped:
        return [rng.standard_normal((sizes[h], sizes[L])) for h in range(1, L)]
    return [rng.standard_normal((sizes[h], sizes[h + 1])) for h in range(1, L)]


# ----------------------------------------------------------------------------
# BP is the exact negative gradient
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("act", HIDDEN)
def test_bp_signals_are_negative_gradient(act, output):
    weights, biases, x, y = make_problem(act, output)
    B = signals(weights, biases, x, y, "bp", activation=act, output=output)
    _, O_list = forward(weights, biases, x, act, output)
    G_W, G_b = grads_from_signals(B, O_list)
    dW, db = numerical_gradient(weights, biases, x, y, act, output)
    for h in range(len(weights)):
        assert np.linalg.norm(G_W[h]) > 1e-4  # a non-trivial check
        assert relative_error(G_W[h], -dW[h]) < 1e-6, (h, G_W[h], -dW[h])
        assert relative_error(G_b[h], -db[h]) < 1e-6, (h, G_b[h], -db[h])
        np.testing.assert_allclose(G_W[h], -dW[h], rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(G_b[h], -db[h], rtol=1e-5, atol=1e-9)


def test_bp_gradient_soft_softmax_targets_and_no_bias():
    rng = np.random.default_rng(3)
    weights, _ = make_net(SIZES, rng, with_bias=False)
    x = rng.uniform(-1, 1, size=(BATCH, SIZES[0]))
    T = rng.dirichlet(np.ones(SIZES[-1]), size=BATCH)  # soft targets, rows sum to 1
    B = signals(weights, None, x, T, "bp", activation="tanh", output="softmax")
    _, O_list = forward(weights, None, x, "tanh", "softmax")
    G_W, _ = grads_from_signals(B, O_list)
    dW, db = numerical_gradient(weights, None, x, T, "tanh", "softmax")
    assert all(d is None for d in db)
    for h in range(len(weights)):
        assert relative_error(G_W[h], -dW[h]) < 1e-6


def test_top_error_is_T_minus_O_for_all_algorithms():
    rng = np.random.default_rng(4)
    weights, biases, x, y = make_problem("tanh", "softmax")
    _, O_list = forward(weights, biases, x, "tanh", "softmax")
    e = targets_from(y, SIZES[-1]) - O_list[-1]
    for alg, fb in [
        ("bp", []),
        ("sbp", []),
        ("top", []),
        ("rbp", random_feedback(SIZES, rng, False)),
        ("srbp", random_feedback(SIZES, rng, True)),
    ]:
        B = signals(weights, biases, x, y, alg, feedback=fb)
        np.testing.assert_array_equal(B[-1], e)
        assert [b.shape for b in B] == [(BATCH, n) for n in SIZES[1:]]


# ----------------------------------------------------------------------------
# Equivalences between algorithms
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("derivative", [True, False])
@pytest.mark.parametrize("act", HIDDEN)
def test_rbp_with_transposed_weights_equals_bp(act, derivative):
    weights, biases, x, y = make_problem(act, "softmax")
    feedback = [weights[h].T.copy() for h in range(1, len(weights))]  # F^h = (W^{h+1})^T
    B_bp = signals(weights, biases, x, y, "bp", derivative=derivative, activation=act)
    B_rbp = signals(weights, biases, x, y, "rbp", feedback, derivative=derivative, activation=act)
    for a, b in zip(B_bp, B_rbp):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("act", HIDDEN)
def test_srbp_one_hidden_layer_with_transposed_weights_equals_bp(act):
    sizes = [5, 4, 3]
    weights, biases, x, y = make_problem(act, "softmax", sizes=sizes)
    feedback = [weights[1].T.copy()]  # F^1 = (W^2)^T
    B_bp = signals(weights, biases, x, y, "bp", activation=act)
    B_srbp = signals(weights, biases, x, y, "srbp", feedback, activation=act)
    for a, b in zip(B_bp, B_srbp):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_rbp_equals_srbp_with_one_random_matrix():
    sizes = [5, 4, 3]
    rng = np.random.default_rng(5)
    weights, biases, x, y = make_problem("tanh", "softmax", sizes=sizes)
    F = rng.standard_normal((4, 3))
    B_rbp = signals(weights, biases, x, y, "rbp", [F])
    B_srbp = signals(weights, biases, x, y, "srbp", [F])
    for a, b in zip(B_rbp, B_srbp):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("act", HIDDEN)
def test_srbp_with_weight_products_equals_sbp(act):
    sizes = [5, 4, 3, 3, 2]
    weights, biases, x, y = make_problem(act, "softmax", sizes=sizes)
    L = len(weights)
    feedback = []
    for h in range(1, L):  # F^h = (W^L W^{L-1} ... W^{h+1})^T
        P = weights[L - 1]
        for k in range(L - 1, h, -1):
            P = P @ weights[k - 1]
        feedback.append(P.T.copy())
    B_sbp = signals(weights, biases, x, y, "sbp", activation=act)
    B_srbp = signals(weights, biases, x, y, "srbp", feedback, activation=act)
    for a, b in zip(B_sbp, B_srbp):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("alg", ["bp", "sbp", "rbp", "srbp"])
def test_linear_hidden_units_derivative_on_off_identical(alg):
    rng = np.random.default_rng(6)
    weights, biases, x, y = make_problem("linear", "softmax")
    fb = random_feedback(SIZES, rng, skipped=(alg == "srbp")) if alg in ("rbp", "srbp") else []
    B_on = signals(weights, biases, x, y, alg, fb, derivative=True, activation="linear")
    B_off = signals(weights, biases, x, y, alg, fb, derivative=False, activation="linear")
    for a, b in zip(B_on, B_off):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("derivative", [True, False])
def test_linear_hidden_units_sbp_equals_bp(derivative):
    weights, biases, x, y = make_problem("linear", "softmax", sizes=[5, 4, 3, 3, 2])
    B_bp = signals(weights, biases, x, y, "bp", derivative=derivative, activation="linear")
    B_sbp = signals(weights, biases, x, y, "sbp", derivative=derivative, activation="linear")
    for a, b in zip(B_bp, B_sbp):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_linear_hidden_units_rbp_equals_srbp_with_feedback_products():
    # Paper-notes 2.3: in a linear net, SRBP with C_srbp^h = F^h F^{h+1} ... F^{L-1} is RBP.
    sizes = [5, 4, 4, 4, 3]
    rng = np.random.default_rng(7)
    weights, biases, x, y = make_problem("linear", "softmax", sizes=sizes)
    F = random_feedback(sizes, rng, skipped=False)
    L = len(weights)
    F_skip = []
    for h in range(1, L):
        P = F[h - 1]
        for k in range(h + 1, L):
            P = P @ F[k - 1]
        F_skip.append(P)
    B_rbp = signals(weights, biases, x, y, "rbp", F, activation="linear")
    B_srbp = signals(weights, biases, x, y, "srbp", F_skip, activation="linear")
    for a, b in zip(B_rbp, B_srbp):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_nonlinear_sbp_differs_from_bp():
    # Guards against an sbp that silently computes bp.
    weights, biases, x, y = make_problem("tanh", "softmax")
    B_bp = signals(weights, biases, x, y, "bp")
    B_sbp = signals(weights, biases, x, y, "sbp")
    np.testing.assert_allclose(B_bp[1], B_sbp[1], rtol=1e-12)  # h = L-1: same
    assert relative_error(B_sbp[0], B_bp[0]) > 1e-3  # h = 1: upper f' dropped


def test_bp_signals_by_hand_with_derivative_list():
    weights, biases, x, y = make_problem("tanh", "softmax")
    S, O = forward(weights, biases, x, "tanh", "softmax")
    e = targets_from(y, SIZES[-1]) - O[3]
    B3 = e
    B2 = (1 - np.tanh(S[2]) ** 2) * (B3 @ weights[2])  # derivative on for layer 2
    B1 = B2 @ weights[1]  # derivative off for layer 1
    B = signals(weights, biases, x, y, "bp", derivative=[False, True])
    np.testing.assert_allclose(B[0], B1, rtol=1e-13)
    np.testing.assert_allclose(B[1], B2, rtol=1e-13)
    np.testing.assert_allclose(B[2], B3, rtol=1e-13)


# ----------------------------------------------------------------------------
# SGD step
# ----------------------------------------------------------------------------


def _batches(n, rng, output="softmax"):
    out = []
    for _ in range(n):
        x = rng.uniform(-1, 1, size=(BATCH, SIZES[0]))
        out.append((x, make_targets(output, BATCH, SIZES[-1], rng)))
    return out


def test_sgd_three_steps_bp_matches_hand_unrolled_with_numerical_gradient():
    rng = np.random.default_rng(8)
    W0, b0 = make_net(SIZES, rng)
    batches = _batches(3, rng)
    lr0, decay, mu = 0.05, 0.1, 0.9

    state = initial_state(W0, b0)
    losses = []
    for x, y in batches:
        state, l = sgd_step(state, x, y, "bp", lr=lr0, decay=decay, momentum=mu)
        losses.append(l)
    assert state["t"] == 3

    # Hand-unrolled, with gradients from central differences (independent of signals()).
    (x1, y1), (x2, y2), (x3, y3) = batches
    act, out = "tanh", "softmax"
    g1W, g1b = numerical_gradient(W0, b0, x1, y1, act, out)
    v1W = [lr0 * -g for g in g1W]
    v1b = [lr0 * -g for g in g1b]
    W1 = [W + v for W, v in zip(W0, v1W)]
    b1 = [b + v for b, v in zip(b0, v1b)]
    lr1 = lr0 / (1 + decay * 1)
    g2W, g2b = numerical_gradient(W1, b1, x2, y2, act, out)
    v2W = [mu * v + lr1 * -g for v, g in zip(v1W, g2W)]
    v2b = [mu * v + lr1 * -g for v, g in zip(v1b, g2b)]
    W2 = [W + v for W, v in zip(W1, v2W)]
    b2 = [b + v for b, v in zip(b1, v2b)]
    lr2 = lr0 / (1 + decay * 2)
    g3W, g3b = numerical_gradient(W2, b2, x3, y3, act, out)
    v3W = [mu * v + lr2 * -g for v, g in zip(v2W, g3W)]
    v3b = [mu * v + lr2 * -g for v, g in zip(v2b, g3b)]
    W3 = [W + v for W, v in zip(W2, v3W)]
    b3 = [b + v for b, v in zip(b2, v3b)]

    for h in range(len(W0)):
        np.testing.assert_allclose(state["weights"][h], W3[h], rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(state["biases"][h], b3[h], rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(state["vel_w"][h], v3W[h], rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(state["vel_b"][h], v3b[h], rtol=1e-7, atol=1e-10)
        assert not np.allclose(W3[h], W0[h])

    # batch_loss is the loss before each update (W1, W2 carry ~1e-10 finite-difference error)
    for (x, y), (W, b), l in zip(batches, [(W0, b0), (W1, b1), (W2, b2)], losses):
        _, O = forward(W, b, x, act, out)
        assert l == pytest.approx(loss(O[-1], targets_from(y, SIZES[-1]), out), rel=1e-8)
    _, O = forward(W0, b0, x1, act, out)
    assert losses[0] == loss(O[-1], targets_from(y1, SIZES[-1]), out)


def test_sgd_three_steps_rbp_matches_hand_unrolled_with_signals():
    rng = np.random.default_rng(9)
    W0, b0 = make_net(SIZES, rng)
    F = random_feedback(SIZES, rng, skipped=False)
    batches = _batches(3, rng, output="logistic")
    lr0, decay, mu = 0.2, 0.5, 0.5
    act, out = "logistic", "logistic"

    state = initial_state(W0, b0)
    for x, y in batches:
        state, _ = sgd_step(
            state,
            x,
            y,
            "rbp",
            F,
            derivative=[True, False],
            activation=act,
            output=out,
            lr=lr0,
            decay=decay,
            momentum=mu,
        )

    W, b = [w.copy() for w in W0], [c.copy() for c in b0]
    vW = [np.zeros_like(w) for w in W0]
    vb = [np.zeros_like(c) for c in b0]
    for t, (x, y) in enumerate(batches):
        lr_t = lr0 / (1 + decay * t)
        B = signals(W, b, x, y, "rbp", F, derivative=[True, False], activation=act, output=out)
        _, O = forward(W, b, x, act, out)
        GW, Gb = grads_from_signals(B, O)
        vW = [mu * v + lr_t * g for v, g in zip(vW, GW)]
        vb = [mu * v + lr_t * g for v, g in zip(vb, Gb)]
        W = [w + v for w, v in zip(W, vW)]
        b = [c + v for c, v in zip(b, vb)]

    for h in range(len(W0)):
        np.testing.assert_allclose(state["weights"][h], W[h], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(state["biases"][h], b[h], rtol=1e-12, atol=1e-14)


def test_sgd_no_momentum_no_decay_is_plain_step_and_no_bias_ok():
    rng = np.random.default_rng(10)
    W0, _ = make_net(SIZES, rng, with_bias=False)
    x, y = _batches(1, rng)[0]
    state, _ = sgd_step(initial_state(W0, None), x, y, "bp", lr=0.3)
    B = signals(W0, None, x, y, "bp")
    _, O = forward(W0, None, x)
    GW, _ = grads_from_signals(B, O)
    for h in range(len(W0)):
        np.testing.assert_allclose(state["weights"][h], W0[h] + 0.3 * GW[h], rtol=1e-13)
    assert state["biases"] == [None, None, None]


def test_top_leaves_hidden_weights_unchanged():
    rng = np.random.default_rng(11)
    W0, b0 = make_net(SIZES, rng)
    state = initial_state(W0, b0)
    for x, y in _batches(3, rng):
        state, _ = sgd_step(state, x, y, "top", lr=0.1, decay=0.01, momentum=0.9)
    for h in range(len(W0) - 1):
        np.testing.assert_array_equal(state["weights"][h], W0[h])
        np.testing.assert_array_equal(state["biases"][h], b0[h])
        assert not np.any(state["vel_w"][h])
        assert not np.any(state["vel_b"][h])
    assert not np.allclose(state["weights"][-1], W0[-1])
    assert not np.allclose(state["biases"][-1], b0[-1])


def test_top_layer_update_is_the_same_for_every_algorithm():
    # Fact 1 of the paper: BP = RBP = SRBP (= SBP = top) for the top layer.
    rng = np.random.default_rng(12)
    W0, b0 = make_net(SIZES, rng)
    x, y = _batches(1, rng)[0]
    tops = []
    for alg, fb in [
        ("bp", []),
        ("sbp", []),
        ("top", []),
        ("rbp", random_feedback(SIZES, rng, False)),
        ("srbp", random_feedback(SIZES, rng, True)),
    ]:
        s, _ = sgd_step(initial_state(W0, b0), x, y, alg, fb, lr=0.1)
        tops.append((s["weights"][-1], s["biases"][-1]))
    for W, b in tops[1:]:
        np.testing.assert_array_equal(W, tops[0][0])
        np.testing.assert_array_equal(b, tops[0][1])


def test_sgd_step_does_not_mutate_inputs():
    rng = np.random.default_rng(13)
    W0, b0 = make_net(SIZES, rng)
    x, y = _batches(1, rng)[0]
    state = initial_state(W0, b0)
    state, _ = sgd_step(state, x, y, "bp", lr=0.1, momentum=0.9)  # non-zero velocities
    snapshot = {
        k: ([None if a is None else a.copy() for a in v] if isinstance(v, list) else v) for k, v in state.items()
    }
    x_copy, y_copy = x.copy(), y.copy()
    sgd_step(state, x, y, "bp", lr=0.1, momentum=0.9, decay=0.1)
    for k in ("weights", "biases", "vel_w", "vel_b"):
        for a, b in zip(state[k], snapshot[k]):
            np.testing.assert_array_equal(a, b)
    assert state["t"] == snapshot["t"] == 1
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(y, y_copy)


def test_float32_inputs_stay_float32():
    rng = np.random.default_rng(14)
    W0, b0 = make_net(SIZES, rng)
    W32 = [w.astype(np.float32) for w in W0]
    b32 = [c.astype(np.float32) for c in b0]
    x, y = _batches(1, rng)[0]
    x32 = x.astype(np.float32)
    S, O = forward(W32, b32, x32)
    assert all(a.dtype == np.float32 for a in S[1:] + O)
    B = signals(W32, b32, x32, y, "bp")
    assert all(a.dtype == np.float32 for a in B)
    s, _ = sgd_step(initial_state(W32, b32), x32, y, "bp", lr=0.1, momentum=0.9, decay=0.1)
    assert all(a.dtype == np.float32 for k in ("weights", "biases", "vel_w", "vel_b") for a in s[k])
    # and agrees with float64 to float32 precision
    s64, _ = sgd_step(initial_state(W32, b32), x32.astype(np.float64), y, "bp", lr=0.1, momentum=0.9, decay=0.1)
    for a, b in zip(s["weights"], s64["weights"]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------


def test_activations_and_derivatives():
    s = np.linspace(-3, 3, 12)  # avoids the relu kink at 0
    np.testing.assert_allclose(activation("logistic", s), 1 / (1 + np.exp(-s)), rtol=1e-15)
    np.testing.assert_array_equal(activation("relu", s), np.maximum(s, 0))
    np.testing.assert_array_equal(activation("linear", s), s)
    h = 1e-6
    for name in HIDDEN:
        numeric = (activation(name, s + h) - activation(name, s - h)) / (2 * h)
        np.testing.assert_allclose(activation_derivative(name, s), numeric, rtol=1e-6, atol=1e-9)
    # logistic is stable far from 0
    big = np.array([-1000.0, 1000.0])
    np.testing.assert_array_equal(activation("logistic", big), [0.0, 1.0])
    np.testing.assert_array_equal(activation_derivative("relu", np.array([0.0])), [0.0])


def test_softmax_rows_sum_to_one_and_are_stable():
    s = np.array([[1000.0, 1001.0, 999.0], [-5.0, 0.0, 5.0]])
    o = activation("softmax", s)
    assert np.all(np.isfinite(o))
    np.testing.assert_allclose(o.sum(axis=1), 1.0, rtol=1e-15)
    np.testing.assert_allclose(o[0], activation("softmax", s[:1] - 1000.0)[0], rtol=1e-14)


def test_targets_loss_accuracy():
    T = targets_from(np.array([2, 0, 1]), 3)
    np.testing.assert_array_equal(T, np.eye(3)[[2, 0, 1]])
    with pytest.raises(ValueError):
        targets_from(np.array([3]), 3)
    uniform = np.full((3, 3), 1 / 3)
    assert loss(uniform, T, "softmax") == pytest.approx(np.log(3), rel=1e-14)
    half = np.full((3, 3), 0.5)
    assert loss(half, T, "logistic") == pytest.approx(3 * np.log(2), rel=1e-14)
    assert loss(half, T, "linear") == pytest.approx(0.5 * (0.25 + 2 * 0.25), rel=1e-14)
    assert loss(T, T, "softmax") == 0.0  # 0 log 0 = 0
    assert loss(T, T, "logistic") == 0.0
    O = np.array([[0.1, 0.2, 0.7], [0.5, 0.4, 0.1], [0.3, 0.3, 0.4]])
    assert accuracy(O, np.array([2, 0, 1])) == pytest.approx(2 / 3)
    assert accuracy(O, T) == pytest.approx(2 / 3)


def test_bad_arguments_raise():
    weights, biases, x, y = make_problem("tanh", "softmax")
    with pytest.raises(ValueError):
        signals(weights, biases, x, y, "rbp", feedback=[])
    with pytest.raises(ValueError):  # F^1 transposed: (3, 4) instead of (4, 3)
        signals(weights, biases, x, y, "rbp", feedback=[np.zeros((3, 4)), np.zeros((3, 3))])
    with pytest.raises(ValueError):  # srbp needs (n_h, n_L) = (4, 3), (3, 3)
        signals(weights, biases, x, y, "srbp", feedback=[np.zeros((4, 4)), np.zeros((3, 3))])
    with pytest.raises(ValueError):
        signals(weights, biases, x, y, "bp", feedback=[np.zeros((4, 3))])
    with pytest.raises(ValueError):
        signals(weights, biases, x, y, "nope")
    with pytest.raises(ValueError):
        forward(weights, biases, x, activation="softmax")


# ============================================================================
# The learning-channel family (docs/channels.md): reference.channel_* & co.
# ============================================================================

import reference as ref  # noqa: E402

SIZES4 = [5, 4, 3, 3, 2]  # three hidden layers


def _derivs(activation, S_list):
    return [None] + [activation_derivative(activation, S) for S in S_list[1:-1]]


def _feedback_for(alg, sizes, rng):
    if alg in ("rbp", "arbp"):
        return random_feedback(sizes, rng, skipped=False)
    if alg in ("srbp", "asrbp"):
        return random_feedback(sizes, rng, skipped=True)
    return []


def _assert_states_equal(a, b, exact=True, rtol=1e-13, atol=1e-15):
    for k in ("weights", "biases", "vel_w", "vel_b"):
        for u, v in zip(a[k], b[k]):
            if u is None or v is None:
                assert u is None and v is None
            elif exact:
                np.testing.assert_array_equal(u, v, err_msg=k)
            else:
                np.testing.assert_allclose(u, v, rtol=rtol, atol=atol, err_msg=k)
    assert a["t"] == b["t"]


@pytest.mark.parametrize("plain,adaptive", [("rbp", "arbp"), ("srbp", "asrbp")])
def test_adaptive_algorithms_have_the_signals_of_their_plain_version(plain, adaptive):
    rng = np.random.default_rng(101)
    weights, biases, x, y = make_problem("tanh", "softmax", sizes=SIZES4)
    fb = _feedback_for(plain, SIZES4, rng)
    B_p = ref.channel_signals(weights, biases, x, y, plain, fb)["B"]
    B_a = ref.channel_signals(weights, biases, x, y, adaptive, fb)["B"]
    for a, b in zip(B_p, B_a):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------
# Quantiser
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [1, 2, 3, 8])
@pytest.mark.parametrize("alpha", [2.0**-3, 0.75])
@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_quantizer_values_on_grid_in_range_and_idempotent(bits, alpha, rounding):
    rng = np.random.default_rng(bits)
    x = rng.uniform(-3 * alpha, 3 * alpha, size=(50, 7))
    delta = alpha * 2.0 ** (1 - bits)
    assert ref.quantization_step(bits, alpha) == delta
    u = rng.uniform(0, 1, size=x.shape) if rounding == "stochastic" else None
    q = ref.quantize(x, bits, alpha, rounding, u)
    k = q / delta
    np.testing.assert_allclose(k, np.round(k), rtol=0, atol=1e-9)  # on the grid Delta*k
    assert np.all(np.abs(q) <= alpha)
    assert np.any(q == alpha) and np.any(q == -alpha)  # clipping happens
    assert len(np.unique(q)) > 2 or bits == 1
    u2 = rng.uniform(0, 1, size=x.shape) if rounding == "stochastic" else None
    np.testing.assert_array_equal(ref.quantize(q, bits, alpha, rounding, u2), q)  # idempotent
    np.testing.assert_array_equal(ref.quantize(q, bits, alpha), q)


def test_nearest_rounding_error_at_most_half_step_and_ties_to_even():
    bits, alpha = 4, 0.5
    delta = ref.quantization_step(bits, alpha)
    x = np.linspace(-alpha, alpha, 1001)
    q = ref.quantize(x, bits, alpha)
    assert np.max(np.abs(q - x)) <= delta / 2 + 1e-15
    assert np.max(np.abs(q - x)) > 0.45 * delta  # non-trivial
    ties = np.array([0.5, 1.5, 2.5, -0.5, -1.5]) * delta
    np.testing.assert_array_equal(ref.quantize(ties, bits, alpha), np.array([0.0, 2.0, 2.0, -0.0, -2.0]) * delta)
    # outside the range: clipped to +-alpha
    np.testing.assert_array_equal(ref.quantize(np.array([7.0, -7.0]), bits, alpha), [alpha, -alpha])


def test_stochastic_rounding_is_floor_of_x_over_delta_plus_u():
    bits, alpha = 3, 1.0
    d = ref.quantization_step(bits, alpha)  # 0.25
    x = np.array([0.3 * d, 0.3 * d, -0.3 * d, -0.3 * d, 2.0 * d, 2.0 * d, 0.25 * d, -0.25 * d])
    u = np.array([0.69, 0.71, 0.29, 0.31, 0.0, 0.999, 0.75, 0.25])  # last two: x/d + u exact integers
    np.testing.assert_array_equal(
        ref.quantize(x, bits, alpha, "stochastic", u), np.array([0.0, 1.0, -1.0, 0.0, 2.0, 2.0, 1.0, 0.0]) * d
    )
    with pytest.raises(ValueError):
        ref.quantize(x, bits, alpha, "stochastic")  # noise is required
    with pytest.raises(ValueError):
        ref.quantize(x, bits, alpha, "stochastic", np.ones_like(x))  # u must be < 1


def test_stochastic_rounding_is_unbiased_in_expectation():
    bits, alpha = 3, 1.0
    d = ref.quantization_step(bits, alpha)
    rng = np.random.default_rng(102)
    xs = np.array([0.1, -0.37, 0.6, 0.93, -0.81])  # inside [-alpha, alpha - d]
    n = 200000
    x = np.broadcast_to(xs, (n, xs.size)).copy()
    q = ref.quantize(x, bits, alpha, "stochastic", rng.uniform(0, 1, size=x.shape))
    # each sample is one of the two neighbouring grid points, std <= d/2
    assert np.all(np.abs(q - x) < d)
    np.testing.assert_allclose(q.mean(axis=0), xs, rtol=0, atol=5 * (d / 2) / np.sqrt(n))
    # nearest rounding is biased for the same inputs (sanity of the check)
    assert np.max(np.abs(ref.quantize(xs, bits, alpha) - xs)) > 10 * (d / 2) / np.sqrt(n)


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_huge_bits_reproduce_unquantised_values(rounding):
    rng = np.random.default_rng(103)
    x = rng.standard_normal((20, 5)) * 10.0 ** rng.integers(-6, 3, size=(20, 5))
    u = rng.uniform(0, 1, size=x.shape) if rounding == "stochastic" else None
    q = ref.quantize(x, 200, 2.0**10, rounding, u)
    np.testing.assert_allclose(q, x, rtol=1e-15, atol=0)
    with pytest.raises(ValueError):  # Delta underflows in float32
        ref.quantize(x.astype(np.float32), 200, 2.0**10)
    q32 = ref.quantize(x.astype(np.float32), 60, 2.0**10)
    assert q32.dtype == np.float32
    np.testing.assert_allclose(q32, x.astype(np.float32), rtol=1e-7, atol=0)


# ----------------------------------------------------------------------------
# Feedback construction helpers
# ----------------------------------------------------------------------------


def test_feedback_helpers():
    Z = np.array([[1.0, -2.0], [0.5, 0.0]])
    keep = np.array([[1, 0], [1, 1]])
    np.testing.assert_array_equal(ref.feedback_from_draw(Z, keep, mean=0.5, scale=2.0), [[2.5, 0.0], [1.5, 0.5]])
    np.testing.assert_array_equal(ref.feedback_from_draw(Z), Z)
    F = np.array([[1.0, -2.0], [-0.5, 3.0]])
    C = np.array([[-1.0, 0.0], [2.0, -0.0]])
    np.testing.assert_array_equal(ref.congruent(F, C), [[-1.0, 2.0], [0.5, 3.0]])  # sign(0)=+1
    assert ref.glorot_feedback_scale(4, 12) == pytest.approx(np.sqrt(2 / 16), rel=1e-15)
    assert ref.feedback_scale_value("unit", 4, 12) == 1.0
    assert ref.feedback_scale_value(0.3, 4, 12) == 0.3
    assert ref.feedback_keep_probability(10, nonzeros=3) == pytest.approx(0.3)
    assert ref.feedback_keep_probability(10, nonzeros=30) == 1.0
    assert ref.feedback_keep_probability(10) == 1.0

    weights, biases, x, y = make_problem("tanh", "softmax", sizes=SIZES4)
    L = len(weights)
    np.testing.assert_array_equal(ref.counterpart(weights, 2, "above"), weights[2].T)
    np.testing.assert_allclose(
        ref.counterpart(weights, 1, "output"), (weights[3] @ weights[2] @ weights[1]).T, rtol=1e-14
    )
    # the counterparts make the channel exact: rbp -> bp, srbp -> sbp
    above = [ref.counterpart(weights, h, "above") for h in range(1, L)]
    output = [ref.counterpart(weights, h, "output") for h in range(1, L)]
    for alg, fb, target in (("rbp", above, "bp"), ("srbp", output, "sbp")):
        B = ref.channel_signals(weights, biases, x, y, alg, fb)["B"]
        B_t = signals(weights, biases, x, y, target)
        for a, b in zip(B, B_t):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    assert [F.shape for F in output] == ref.feedback_shapes(SIZES4, "srbp")
    assert ref.feedback_shapes(SIZES4, "rbp", ["output", "above", "above"]) == [(4, 2), (3, 3), (3, 2)]


# ----------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("derivative", [True, [True, False, True]])
def test_sources_all_above_is_rbp_and_all_output_is_srbp(derivative):
    rng = np.random.default_rng(104)
    weights, biases, x, y = make_problem("tanh", "softmax", sizes=SIZES4)
    F_up = random_feedback(SIZES4, rng, skipped=False)
    F_out = random_feedback(SIZES4, rng, skipped=True)
    B_rbp = signals(weights, biases, x, y, "rbp", F_up, derivative)
    B_srbp = signals(weights, biases, x, y, "srbp", F_out, derivative)
    for alg in ("rbp", "srbp", "arbp", "asrbp"):
        for srcs, fb, B_t in ((["above"] * 3, F_up, B_rbp), ("output", F_out, B_srbp)):
            B = ref.channel_signals(weights, biases, x, y, alg, fb, sources=srcs, derivative=derivative)["B"]
            for a, b in zip(B, B_t):
                np.testing.assert_array_equal(a, b)


def test_mixed_sources_by_hand():
    rng = np.random.default_rng(105)
    weights, biases, x, y = make_problem("tanh", "softmax", sizes=SIZES4)
    F1 = rng.standard_normal((4, 2))  # layer 1 from the output
    F2 = rng.standard_normal((3, 3))  # layer 2 from layer 3
    F3 = rng.standard_normal((3, 2))  # layer 3: "above" and "output" are both e
    out = ref.channel_signals(weights, biases, x, y, "rbp", [F1, F2, F3], sources=["output", "above", "output"])
    S, O = out["S"], out["O"]
    D = _derivs("tanh", S)
    e = targets_from(y, 2) - O[4]
    B3 = D[3] * (e @ F3.T)
    B2 = D[2] * (B3 @ F2.T)
    B1 = D[1] * (e @ F1.T)
    for a, b in zip(out["B"], [B1, B2, B3, e]):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    assert out["sources"] == ["output", "above", "output"]
    with pytest.raises(ValueError):  # F1 has the "above" shape but the source is "output"
        ref.channel_signals(
            weights, biases, x, y, "rbp", [np.zeros((4, 3)), F2, F3], sources=["output", "above", "output"]
        )
    with pytest.raises(ValueError):
        ref.channel_signals(weights, biases, x, y, "bp", sources="above")


# ----------------------------------------------------------------------------
# Adaptive feedback (ARBP, ASRBP)
# ----------------------------------------------------------------------------


def test_arbp_kolen_pollack_difference_constant():
    rng = np.random.default_rng(106)
    W0, b0 = make_net(SIZES4, rng)
    F0 = random_feedback(SIZES4, rng, skipped=False)
    state, F = initial_state(W0, b0), F0
    diff0 = [F0[h] - W0[h + 1].T for h in range(3)]
    for _ in range(5):
        x = rng.uniform(-1, 1, size=(BATCH, SIZES4[0]))
        y = rng.integers(0, SIZES4[-1], size=BATCH)
        new, _, info = ref.channel_step(state, x, y, "arbp", F, lr=0.3, decay=0.2, feedback_lr_scale=1.0)
        for h in range(3):
            # the increment of F^h is the transpose of that of W^{h+1}
            np.testing.assert_allclose(info["feedback"][h] - F[h], info["delta_w"][h + 1].T, rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(info["feedback"][h] - new["weights"][h + 1].T, diff0[h], rtol=0, atol=1e-13)
            assert np.abs(info["feedback"][h] - F[h]).max() > 1e-4  # F does move
        state, F = new, info["feedback"]
    # with rho = 0.1 the difference drifts
    new, _, info = ref.channel_step(state, x, y, "arbp", F, lr=0.3, feedback_lr_scale=0.1)
    np.testing.assert_allclose(info["feedback"][0] - F[0], 0.1 * info["delta_w"][1].T, rtol=1e-12)
    assert np.abs((info["feedback"][0] - new["weights"][1].T) - diff0[0]).max() > 1e-5
    # plain rbp never changes F
    _, _, info = ref.channel_step(state, x, y, "rbp", F, lr=0.3)
    for a, b in zip(info["feedback"], F):
        np.testing.assert_array_equal(a, b)


def test_asrbp_feedback_update_by_hand():
    # sizes [2, 2, 2, 2]: two hidden layers, tanh, linear output, batch 2
    W1 = np.array([[0.5, -0.2], [0.1, 0.3]])
    W2 = np.array([[0.4, 0.7], [-0.6, 0.2]])
    W3 = np.array([[0.3, -0.5], [0.8, 0.1]])
    b = [np.array([0.1, -0.1]), np.array([0.0, 0.2]), np.array([-0.3, 0.05])]
    x = np.array([[1.0, -0.5], [0.25, 2.0]])
    T = np.array([[1.0, 0.0], [-0.5, 0.5]])
    F1 = np.array([[0.2, -0.4], [0.9, 0.1]])
    F2 = np.array([[-0.3, 0.6], [0.5, 0.5]])
    lr, decay, rho, t = 0.5, 0.25, 0.3, 2
    state = initial_state([W1, W2, W3], b)
    state["t"] = t
    new, _, info = ref.channel_step(
        state, x, T, "asrbp", [F1, F2], output="linear", lr=lr, decay=decay, feedback_lr_scale=rho
    )
    eta = lr / (1 + decay * t)
    O1 = np.tanh(x @ W1.T + b[0])
    O2 = np.tanh(O1 @ W2.T + b[1])
    e = T - (O2 @ W3.T + b[2])
    for Fh, Oh, Fnew in ((F1, O1, info["feedback"][0]), (F2, O2, info["feedback"][1])):
        expect = Fh.copy()
        for i in range(2):
            for k in range(2):
                expect[i, k] += rho * eta * (Oh[0, i] * e[0, k] + Oh[1, i] * e[1, k]) / 2
        np.testing.assert_allclose(Fnew, expect, rtol=1e-14)
    # the hidden updates used the OLD F (same forward pass, before any change)
    B1 = (1 - O1**2) * (e @ F1.T)
    np.testing.assert_allclose(new["weights"][0], W1 + eta * B1.T @ x / 2, rtol=1e-14)
    np.testing.assert_allclose(new["biases"][0], b[0] + eta * B1.mean(axis=0), rtol=1e-14)


def test_adaptive_feedback_uses_the_source_of_each_layer():
    rng = np.random.default_rng(107)
    W0, b0 = make_net(SIZES4, rng)
    x = rng.uniform(-1, 1, size=(BATCH, 5))
    y = rng.integers(0, 2, size=BATCH)
    F = [rng.standard_normal((4, 3)), rng.standard_normal((3, 2)), rng.standard_normal((3, 2))]
    srcs = ["above", "output", "above"]
    _, _, info = ref.channel_step(initial_state(W0, b0), x, y, "asrbp", F, sources=srcs, lr=0.4, feedback_lr_scale=0.5)
    ch = info["channel"]
    O, e, B = ch["O"], ch["e"], ch["B"]
    np.testing.assert_allclose(info["feedback"][0], F[0] + 0.5 * 0.4 * O[1].T @ B[1] / BATCH, rtol=1e-13)
    np.testing.assert_allclose(info["feedback"][1], F[1] + 0.5 * 0.4 * O[2].T @ e / BATCH, rtol=1e-13)
    np.testing.assert_allclose(info["feedback"][2], F[2] + 0.5 * 0.4 * O[3].T @ e / BATCH, rtol=1e-13)


# ----------------------------------------------------------------------------
# Channel dropout
# ----------------------------------------------------------------------------


def _masks(rng, sizes, batch, p):
    return [(rng.uniform(size=(batch, n)) >= p).astype(np.float64) for n in sizes[1:-1]]


@pytest.mark.parametrize("alg", ["bp", "sbp", "rbp", "srbp", "arbp", "asrbp"])
def test_dropout_all_ones_is_no_dropout_and_all_zeros_freezes_hidden(alg):
    rng = np.random.default_rng(108)
    W0, b0 = make_net(SIZES4, rng)
    fb = _feedback_for(alg, SIZES4, rng)
    x = rng.uniform(-1, 1, size=(BATCH, 5))
    y = rng.integers(0, 2, size=BATCH)
    ones = [np.ones((BATCH, n)) for n in SIZES4[1:-1]]
    zeros = [np.zeros((BATCH, n)) for n in SIZES4[1:-1]]
    state = initial_state(W0, b0)
    s0, _, i0 = ref.channel_step(state, x, y, alg, fb, lr=0.3)
    s1, _, i1 = ref.channel_step(state, x, y, alg, fb, lr=0.3, dropout_masks=ones, dropout_p=0.3)
    _assert_states_equal(s0, s1)
    for a, b in zip(i0["feedback"], i1["feedback"]):
        np.testing.assert_array_equal(a, b)
    for inverted in (False, True):
        s2, _, i2 = ref.channel_step(
            state, x, y, alg, fb, lr=0.3, dropout_masks=zeros, dropout_p=0.5, dropout_inverted=inverted
        )
        for h in range(3):
            np.testing.assert_array_equal(s2["weights"][h], W0[h])
            np.testing.assert_array_equal(s2["biases"][h], b0[h])
            assert not np.any(i2["delta_w"][h]) and not np.any(i2["delta_b"][h])
        np.testing.assert_array_equal(s2["weights"][3], s0["weights"][3])  # top unaffected
        np.testing.assert_array_equal(s2["biases"][3], s0["biases"][3])


def test_inverted_dropout_scaling_srbp():
    rng = np.random.default_rng(109)
    weights, biases, x, y = make_problem("tanh", "softmax", sizes=SIZES4)
    F = random_feedback(SIZES4, rng, skipped=True)
    p = 0.4
    masks = _masks(rng, SIZES4, BATCH, p)
    assert 0 < sum(m.sum() for m in masks) < sum(m.size for m in masks)
    plain = ref.channel_signals(weights, biases, x, y, "srbp", F)
    drop = ref.channel_signals(weights, biases, x, y, "srbp", F, dropout_masks=masks, dropout_p=p)
    inv = ref.channel_signals(weights, biases, x, y, "srbp", F, dropout_masks=masks, dropout_p=p, dropout_inverted=True)
    for h in range(3):
        np.testing.assert_allclose(drop["B"][h], plain["B"][h] * masks[h], rtol=1e-14)
        np.testing.assert_allclose(inv["B"][h], plain["B"][h] * masks[h] / (1 - p), rtol=1e-14)
        np.testing.assert_allclose(inv["J"][h], plain["J"][h] * masks[h] / (1 - p), rtol=1e-14)
    np.testing.assert_array_equal(inv["B"][3], plain["B"][3])  # e is never dropped
    with pytest.raises(ValueError):
        ref.channel_signals(weights, biases, x, y, "srbp", F, dropout_masks=[0.5 * m for m in masks], dropout_p=p)


@pytest.mark.parametrize("inverted", [False, True])
def test_dropped_signal_propagates_down_bp_rbp_sbp_by_hand(inverted):
    rng = np.random.default_rng(110)
    weights, biases, x, y = make_problem("tanh", "softmax", sizes=SIZES4)
    p = 0.35
    m = _masks(rng, SIZES4, BATCH, p)
    s = 1 / (1 - p) if inverted else 1.0
    F = random_feedback(SIZES4, rng, skipped=False)
    S, O = forward(weights, biases, x)
    D = _derivs("tanh", S)
    e = targets_from(y, 2) - O[4]
    W = [None] + weights
    # bp
    B3 = D[3] * (e @ W[4]) * m[2] * s
    B2 = D[2] * (B3 @ W[3]) * m[1] * s
    B1 = D[1] * (B2 @ W[2]) * m[0] * s
    got = ref.channel_signals(weights, biases, x, y, "bp", dropout_masks=m, dropout_p=p, dropout_inverted=inverted)["B"]
    for a, b in zip(got, [B1, B2, B3, e]):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    # dropping without propagating would differ
    B_bp = signals(weights, biases, x, y, "bp")
    assert relative_error(got[0], D[1] * (B_bp[1] @ W[2]) * m[0] * s) > 1e-3
    # rbp
    R3 = D[3] * (e @ F[2].T) * m[2] * s
    R2 = D[2] * (R3 @ F[1].T) * m[1] * s
    R1 = D[1] * (R2 @ F[0].T) * m[0] * s
    got = ref.channel_signals(weights, biases, x, y, "rbp", F, dropout_masks=m, dropout_p=p, dropout_inverted=inverted)[
        "B"
    ]
    for a, b in zip(got, [R1, R2, R3, e]):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    # sbp: the chain J carries the dropped values (no derivative in the chain)
    J3 = (e @ W[4]) * m[2] * s
    J2 = (J3 @ W[3]) * m[1] * s
    J1 = (J2 @ W[2]) * m[0] * s
    got = ref.channel_signals(weights, biases, x, y, "sbp", dropout_masks=m, dropout_p=p, dropout_inverted=inverted)[
        "B"
    ]
    for a, b in zip(got, [D[1] * J1, D[2] * J2, D[3] * J3, e]):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


# ----------------------------------------------------------------------------
# Sign / magnitude transforms
# ----------------------------------------------------------------------------


def test_signal_transforms_srbp_and_bp_by_hand():
    rng = np.random.default_rng(111)
    weights, biases, x, y = make_problem("tanh", "softmax", sizes=SIZES4)
    F = random_feedback(SIZES4, rng, skipped=True)
    m = _masks(rng, SIZES4, BATCH, 0.3)
    plain = ref.channel_signals(weights, biases, x, y, "srbp", F, dropout_masks=m)["B"]
    sg = ref.channel_signals(weights, biases, x, y, "srbp", F, dropout_masks=m, signal_transform="sign")["B"]
    mg = ref.channel_signals(weights, biases, x, y, "srbp", F, dropout_masks=m, signal_transform="magnitude")["B"]
    for h in range(3):
        np.testing.assert_array_equal(sg[h], np.sign(plain[h]))
        np.testing.assert_array_equal(mg[h], np.abs(plain[h]))
        assert np.any(sg[h] == 0) and set(np.unique(sg[h])) <= {-1.0, 0.0, 1.0}  # dropped stay 0
    np.testing.assert_array_equal(sg[3], plain[3])  # e untouched
    # bp: the transformed B travels down
    S, O = forward(weights, biases, x)
    D = _derivs("tanh", S)
    e = targets_from(y, 2) - O[4]
    B3 = np.sign(D[3] * (e @ weights[3]))
    B2 = np.sign(D[2] * (B3 @ weights[2]))
    B1 = np.sign(D[1] * (B2 @ weights[1]))
    got = ref.channel_signals(weights, biases, x, y, "bp", signal_transform="sign")["B"]
    for a, b in zip(got, [B1, B2, B3, e]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("transform", ["sign", "magnitude"])
def test_update_transforms(transform):
    rng = np.random.default_rng(112)
    W0, b0 = make_net(SIZES, rng)
    F = random_feedback(SIZES, rng, skipped=True)
    x, y = _batches(1, rng)[0]
    state = initial_state(W0, b0)
    state["t"] = 3
    lr, decay = 0.2, 0.1
    eta = lr / (1 + decay * 3)
    plain, _, _ = ref.channel_step(state, x, y, "srbp", F, lr=lr, decay=decay)
    new, _, info = ref.channel_step(
        state, x, y, "srbp", F, lr=lr, decay=decay, signal_transform=transform, transform_target="update"
    )
    B = signals(W0, b0, x, y, "srbp", F)
    _, O = forward(W0, b0, x)
    GW, Gb = grads_from_signals(B, O)
    f = np.sign if transform == "sign" else np.abs
    for h in range(2):
        np.testing.assert_allclose(new["weights"][h], W0[h] + eta * f(GW[h]), rtol=1e-14)
        np.testing.assert_allclose(new["biases"][h], b0[h] + eta * f(Gb[h]), rtol=1e-14)
        if transform == "sign":
            np.testing.assert_allclose(np.abs(info["delta_w"][h]), eta, rtol=1e-15)
    np.testing.assert_array_equal(new["weights"][2], plain["weights"][2])  # top untouched
    np.testing.assert_array_equal(new["biases"][2], plain["biases"][2])


# ----------------------------------------------------------------------------
# Frozen layers
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["bp", "rbp", "srbp", "arbp"])
def test_frozen_layers_unchanged_others_change(alg):
    rng = np.random.default_rng(113)
    W0, b0 = make_net(SIZES4, rng)
    fb = _feedback_for(alg, SIZES4, rng)
    s_free = s_frz = initial_state(W0, b0)
    F_free = F_frz = fb
    for _ in range(3):
        x = rng.uniform(-1, 1, size=(BATCH, 5))
        y = rng.integers(0, 2, size=BATCH)
        s_free, _, i_free = ref.channel_step(s_free, x, y, alg, F_free, lr=0.2, momentum=0.9)
        s_frz, _, i_frz = ref.channel_step(s_frz, x, y, alg, F_frz, lr=0.2, momentum=0.9, frozen_layers=[2, 4])
        F_free, F_frz = i_free["feedback"], i_frz["feedback"]
    for h in (1, 3):  # frozen
        np.testing.assert_array_equal(s_frz["weights"][h], W0[h])
        np.testing.assert_array_equal(s_frz["biases"][h], b0[h])
        assert not np.any(s_frz["vel_w"][h]) and not np.any(s_frz["vel_b"][h])
    for h in (0, 2):  # not frozen
        assert np.abs(s_frz["weights"][h] - W0[h]).max() > 1e-4
        assert np.abs(s_frz["biases"][h] - b0[h]).max() > 1e-4
    # after the first step (same parameters), the free layers got the unfrozen update
    x = rng.uniform(-1, 1, size=(BATCH, 5))
    y = rng.integers(0, 2, size=BATCH)
    a, _, _ = ref.channel_step(initial_state(W0, b0), x, y, alg, fb, lr=0.2)
    b, _, _ = ref.channel_step(initial_state(W0, b0), x, y, alg, fb, lr=0.2, frozen_layers=[2, 4])
    for h in (0, 2):
        np.testing.assert_array_equal(a["weights"][h], b["weights"][h])
    with pytest.raises(ValueError):
        ref.channel_step(initial_state(W0, b0), x, y, alg, fb, frozen_layers=[0])


# ----------------------------------------------------------------------------
# Per-synapse random error
# ----------------------------------------------------------------------------


def _per_synapse_from_rows(F, sizes):
    """R^h_ij = F^h_i (the same vector for every j), bias vectors r^h_i = F^h_i."""
    R = [np.repeat(F[h - 1][:, None, :], sizes[h - 1], axis=1) for h in range(1, len(sizes) - 1)]
    r = [F[h - 1].copy() for h in range(1, len(sizes) - 1)]
    return R, r


PER_SYNAPSE_OPTIONS = [
    dict(),
    dict(derivative=[False, True, True]),
    dict(signal_transform="sign"),
    dict(signal_transform="magnitude", transform_target="update"),
    dict(quantize="signal", quantize_bits=3, quantize_alpha=0.25),
    dict(quantize="update", quantize_bits=4, quantize_alpha=2.0**-4),
    dict(dropout="yes", dropout_inverted=True, dropout_p=0.3),
]


@pytest.mark.parametrize("opts", PER_SYNAPSE_OPTIONS, ids=lambda o: ",".join(o) or "plain")
def test_per_synapse_with_constant_vectors_equals_srbp(opts):
    rng = np.random.default_rng(114)
    W0, b0 = make_net(SIZES4, rng)
    F = random_feedback(SIZES4, rng, skipped=True)
    R, r = _per_synapse_from_rows(F, SIZES4)
    opts = dict(opts)
    if opts.pop("dropout", None):
        opts["dropout_masks"] = _masks(rng, SIZES4, BATCH, 0.3)
    s_a = s_b = initial_state(W0, b0)
    for _ in range(2):
        x = rng.uniform(-1, 1, size=(BATCH, 5))
        y = rng.integers(0, 2, size=BATCH)
        s_a, la, _ = ref.channel_step(s_a, x, y, "srbp", F, lr=0.5, momentum=0.5, **opts)
        s_b, lb, info = ref.channel_step(
            s_b, x, y, "srbp", (), lr=0.5, momentum=0.5, per_synapse_tensors=R, per_synapse_bias=r, **opts
        )
        assert la == pytest.approx(lb, rel=1e-12)
    _assert_states_equal(s_a, s_b, exact=False, rtol=1e-12, atol=1e-15)
    for h in range(3):
        assert np.abs(s_b["weights"][h] - W0[h]).max() > 1e-5
    assert info["channel"]["B"][0] is None and info["channel"]["B_synapse"][0][0].shape == (BATCH, 4, 5)


def test_per_synapse_formula_by_hand_and_differs_from_srbp():
    rng = np.random.default_rng(115)
    W0, b0 = make_net(SIZES, rng)
    R = [rng.standard_normal((4, 5, 3)), rng.standard_normal((3, 4, 3))]
    r = [rng.standard_normal((4, 3)), rng.standard_normal((3, 3))]
    x, y = _batches(1, rng)[0]
    new, _, _ = ref.channel_step(
        initial_state(W0, b0), x, y, "srbp", lr=0.3, derivative=[True, False], per_synapse_tensors=R, per_synapse_bias=r
    )
    S, O = forward(W0, b0, x)
    e = targets_from(y, 3) - O[3]
    D1 = 1 - np.tanh(S[1]) ** 2
    for _, i, j in [(1, 0, 0), (1, 3, 4), (1, 2, 1)]:
        dw = np.mean([D1[b, i] * (e[b] @ R[0][i, j]) * O[0][b, j] for b in range(BATCH)])
        assert new["weights"][0][i, j] == pytest.approx(W0[0][i, j] + 0.3 * dw, rel=1e-13)
    for i, j in [(0, 0), (2, 3)]:  # layer 2, derivative off
        dw = np.mean([(e[b] @ R[1][i, j]) * O[1][b, j] for b in range(BATCH)])
        assert new["weights"][1][i, j] == pytest.approx(W0[1][i, j] + 0.3 * dw, rel=1e-13)
    db = np.mean([D1[b, 1] * (e[b] @ r[0][1]) for b in range(BATCH)])
    assert new["biases"][0][1] == pytest.approx(b0[0][1] + 0.3 * db, rel=1e-13)
    # a genuinely per-synapse tensor is not srbp with any single row choice, e.g. j=0
    s_srbp, _, _ = ref.channel_step(
        initial_state(W0, b0), x, y, "srbp", [R[0][:, 0, :], R[1][:, 0, :]], lr=0.3, derivative=[True, False]
    )
    assert relative_error(new["weights"][0] - W0[0], s_srbp["weights"][0] - W0[0]) > 1e-2
    with pytest.raises(ValueError):
        ref.channel_step(initial_state(W0, b0), x, y, "rbp", per_synapse_tensors=R, per_synapse_bias=r)
    with pytest.raises(ValueError):  # biased layers need their vectors
        ref.channel_step(initial_state(W0, b0), x, y, "srbp", per_synapse_tensors=R)


# ----------------------------------------------------------------------------
# Low-bit channels
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["bp", "sbp", "rbp", "srbp", "top"])
@pytest.mark.parametrize("mode", ["signal", "update"])
@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_quantization_with_huge_bits_equals_plain_sgd(alg, mode, rounding):
    rng = np.random.default_rng(116)
    W0, b0 = make_net(SIZES, rng)
    fb = _feedback_for(alg, SIZES, rng)
    s_plain = s_q = initial_state(W0, b0)
    for x, y in _batches(3, rng):
        noise = None
        if rounding == "stochastic":
            if mode == "signal":
                noise = [rng.uniform(size=(BATCH, n)) for n in SIZES[1:-1]]
            else:
                noise = [
                    (rng.uniform(size=(BATCH, SIZES[h], SIZES[h - 1])), rng.uniform(size=(BATCH, SIZES[h])))
                    for h in range(1, len(SIZES))
                ]
        s_plain, _ = sgd_step(s_plain, x, y, alg, fb, lr=0.2, decay=0.1, momentum=0.8)
        s_q, _, _ = ref.channel_step(
            s_q,
            x,
            y,
            alg,
            fb,
            lr=0.2,
            decay=0.1,
            momentum=0.8,
            quantize=mode,
            quantize_bits=200,
            quantize_alpha=2.0**10,
            quantize_rounding=rounding,
            quantize_noise=noise,
        )
    _assert_states_equal(s_plain, s_q, exact=False, rtol=1e-13, atol=1e-16)


def test_signal_quantization_before_derivative_travels_down_and_spares_e():
    rng = np.random.default_rng(117)
    weights, biases, x, y = make_problem("tanh", "softmax", sizes=SIZES4)
    bits, alpha = 3, 0.25
    u = [rng.uniform(size=(BATCH, n)) for n in SIZES4[1:-1]]
    S, O = forward(weights, biases, x)
    D = _derivs("tanh", S)
    e = targets_from(y, 2) - O[4]
    for rounding, noise in (("nearest", None), ("stochastic", u)):

        def q(J, h, noise=noise):  # this iteration's noise, bound now
            if noise is None:
                return ref.quantize(J, bits, alpha)
            return ref.quantize(J, bits, alpha, "stochastic", noise[h - 1])

        B3 = D[3] * q(e @ weights[3], 3)
        B2 = D[2] * q(B3 @ weights[2], 2)
        B1 = D[1] * q(B2 @ weights[1], 1)
        out = ref.channel_signals(
            weights,
            biases,
            x,
            y,
            "bp",
            quantize="signal",
            quantize_bits=bits,
            quantize_alpha=alpha,
            quantize_rounding=rounding,
            quantize_noise=noise,
        )
        for a, b in zip(out["B"], [B1, B2, B3, e]):
            np.testing.assert_array_equal(a, b)
        for h in range(3):  # the received J is on the grid
            k = out["J"][h] / ref.quantization_step(bits, alpha)
            np.testing.assert_array_equal(k, np.round(k))
        assert relative_error(out["B"][0], signals(weights, biases, x, y, "bp")[0]) > 1e-3
    # default alpha: 2^-3 for signal mode, 2^-6 for update mode
    d = ref.channel_signals(weights, biases, x, y, "bp", quantize="signal", quantize_bits=bits)
    d8 = ref.channel_signals(weights, biases, x, y, "bp", quantize="signal", quantize_bits=bits, quantize_alpha=2.0**-3)
    for a, b in zip(d["B"], d8["B"]):
        np.testing.assert_array_equal(a, b)
    assert np.max(np.abs(d["J"][0])) == 2**-3
    state = initial_state(weights, biases)
    _, _, i6 = ref.channel_step(state, x, y, "bp", lr=1.0, quantize="update", quantize_bits=bits)
    _, _, e6 = ref.channel_step(
        state, x, y, "bp", lr=1.0, quantize="update", quantize_bits=bits, quantize_alpha=2.0**-6
    )
    _, _, e5 = ref.channel_step(
        state, x, y, "bp", lr=1.0, quantize="update", quantize_bits=bits, quantize_alpha=2.0**-5
    )
    for a, b in zip(i6["delta_w"], e6["delta_w"]):
        np.testing.assert_array_equal(a, b)
        assert np.max(np.abs(a)) <= 2.0**-6
    assert any(np.any(a != c) for a, c in zip(i6["delta_w"], e5["delta_w"]))


def test_dropout_comes_before_signal_quantization():
    # received J = Q(mask * J / (1 - p)): the received signal stays on the grid
    rng = np.random.default_rng(122)
    weights, biases, x, y = make_problem("tanh", "softmax", sizes=SIZES4)
    F = random_feedback(SIZES4, rng, skipped=True)
    p, bits, alpha = 0.3, 4, 0.5
    m = _masks(rng, SIZES4, BATCH, p)
    out = ref.channel_signals(
        weights,
        biases,
        x,
        y,
        "srbp",
        F,
        dropout_masks=m,
        dropout_p=p,
        dropout_inverted=True,
        quantize="signal",
        quantize_bits=bits,
        quantize_alpha=alpha,
    )
    S, O = forward(weights, biases, x)
    D = _derivs("tanh", S)
    e = targets_from(y, 2) - O[4]
    for h in range(1, 4):
        J = ref.quantize((e @ F[h - 1].T) * m[h - 1] / (1 - p), bits, alpha)
        np.testing.assert_array_equal(out["J"][h - 1], J)
        np.testing.assert_array_equal(out["B"][h - 1], D[h] * J)
    other = ref.quantize(e @ F[0].T, bits, alpha) * m[0] / (1 - p)
    assert np.abs(out["J"][0] - other).max() > 0


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_update_quantization_is_per_example(rounding):
    # scalar picture: per-example updates 0.6*Delta and 0.2*Delta
    d = ref.quantization_step(3, 1.0)
    per_example = np.array([0.6 * d, 0.2 * d])
    assert np.mean(ref.quantize(per_example, 3, 1.0)) == 0.5 * d
    assert ref.quantize(np.mean(per_example), 3, 1.0) == 0.0
    # in a network step, against a loop over the examples
    rng = np.random.default_rng(118)
    W0, b0 = make_net(SIZES, rng)
    x, y = _batches(1, rng)[0]
    bits, alpha, lr = 3, 2.0**-4, 0.5
    noise = None
    if rounding == "stochastic":
        noise = [
            (rng.uniform(size=(BATCH, SIZES[h], SIZES[h - 1])), rng.uniform(size=(BATCH, SIZES[h])))
            for h in range(1, len(SIZES))
        ]
    new, _, info = ref.channel_step(
        initial_state(W0, b0),
        x,
        y,
        "bp",
        lr=lr,
        quantize="update",
        quantize_bits=bits,
        quantize_alpha=alpha,
        quantize_rounding=rounding,
        quantize_noise=noise,
    )
    B = signals(W0, b0, x, y, "bp")
    _, O = forward(W0, b0, x)
    GW, Gb = grads_from_signals(B, O)
    delta = ref.quantization_step(bits, alpha)
    for h in range(3):
        UW = np.zeros_like(W0[h])
        Ub = np.zeros_like(b0[h])
        for b in range(BATCH):
            P = np.outer(lr * B[h][b], O[h][b])
            if noise is None:
                UW += np.clip(delta * np.round(P / delta), -alpha, alpha)
                Ub += np.clip(delta * np.round(lr * B[h][b] / delta), -alpha, alpha)
            else:
                UW += np.clip(delta * np.floor(P / delta + noise[h][0][b]), -alpha, alpha)
                Ub += np.clip(delta * np.floor(lr * B[h][b] / delta + noise[h][1][b]), -alpha, alpha)
        np.testing.assert_allclose(info["delta_w"][h], UW / BATCH, rtol=1e-14, atol=1e-17)
        np.testing.assert_allclose(info["delta_b"][h], Ub / BATCH, rtol=1e-14, atol=1e-17)
        np.testing.assert_allclose(new["weights"][h], W0[h] + UW / BATCH, rtol=1e-14)
        # not the same as quantising the batch average
        assert np.abs(info["delta_w"][h] - ref.quantize(lr * GW[h], bits, alpha)).max() > delta / 4
        assert np.abs(info["delta_w"][h] - lr * GW[h]).max() > 0


def test_update_quantization_noise_is_required_and_checked():
    rng = np.random.default_rng(119)
    W0, b0 = make_net(SIZES, rng)
    x, y = _batches(1, rng)[0]
    with pytest.raises(ValueError):
        ref.channel_step(
            initial_state(W0, b0), x, y, "bp", quantize="update", quantize_bits=4, quantize_rounding="stochastic"
        )
    with pytest.raises(ValueError):  # wrong shape: (N_h, N_{h-1}) not per example
        ref.channel_step(
            initial_state(W0, b0),
            x,
            y,
            "bp",
            quantize="update",
            quantize_bits=4,
            quantize_rounding="stochastic",
            quantize_noise=[(rng.uniform(size=W.shape), rng.uniform(size=b.shape)) for W, b in zip(W0, b0)],
        )
    with pytest.raises(ValueError):
        ref.channel_step(initial_state(W0, b0), x, y, "bp", quantize="update")  # bits missing
    # frozen / non-updated layers need no noise
    noise = [None, None, (rng.uniform(size=(BATCH, 3, 3)), rng.uniform(size=(BATCH, 3)))]
    ref.channel_step(
        initial_state(W0, b0),
        x,
        y,
        "top",
        quantize="update",
        quantize_bits=4,
        quantize_rounding="stochastic",
        quantize_noise=noise,
    )


# ----------------------------------------------------------------------------
# Diagnostics
# ----------------------------------------------------------------------------


def test_angle_degrees():
    a = np.array([[1.0, 0.0], [0.0, 0.0]])
    assert ref.angle_degrees(a, a * 3) == pytest.approx(0.0, abs=1e-6)
    assert ref.angle_degrees(a, -a) == pytest.approx(180.0)
    assert ref.angle_degrees(a, np.array([[0.0, 1.0], [0.0, 0.0]])) == pytest.approx(90.0)
    assert ref.angle_degrees([1.0, 1.0], [1.0, 0.0]) == pytest.approx(45.0)
    assert np.isnan(ref.angle_degrees(a, np.zeros_like(a)))


def test_diagnostics():
    rng = np.random.default_rng(120)
    weights, biases, x, y = make_problem("tanh", "softmax", sizes=SIZES4)
    L = len(weights)
    d = ref.diagnostics(weights, biases, x, y, "bp")
    assert all(a == pytest.approx(0.0, abs=1e-5) for a in d["signal_angles"])
    assert d["feedback_angles"] == [] and d["feedback_norms"] == [] and d["update_norms"] is None
    np.testing.assert_allclose(d["weight_norms"], [np.sqrt((W**2).sum()) for W in weights], rtol=1e-14)
    # rbp with F = counterparts: both angles 0
    F = [ref.counterpart(weights, h, "above") for h in range(1, L)]
    d = ref.diagnostics(weights, biases, x, y, "rbp", F)
    assert all(a == pytest.approx(0.0, abs=1e-5) for a in d["signal_angles"] + d["feedback_angles"])
    # random feedback: by-hand angles
    F = random_feedback(SIZES4, rng, skipped=True)
    d = ref.diagnostics(weights, biases, x, y, "srbp", F, derivative=False)
    B = signals(weights, biases, x, y, "srbp", F, derivative=False)
    B_bp = signals(weights, biases, x, y, "bp")
    for h in range(1, L):
        cos = np.sum(B[h - 1] * B_bp[h - 1]) / np.linalg.norm(B[h - 1]) / np.linalg.norm(B_bp[h - 1])
        assert d["signal_angles"][h - 1] == pytest.approx(np.degrees(np.arccos(cos)), rel=1e-10)
        C = ref.counterpart(weights, h, "output")
        cos = np.sum(F[h - 1] * C) / np.linalg.norm(F[h - 1]) / np.linalg.norm(C)
        assert d["feedback_angles"][h - 1] == pytest.approx(np.degrees(np.arccos(cos)), rel=1e-10)
        assert d["feedback_norms"][h - 1] == pytest.approx(np.linalg.norm(F[h - 1]), rel=1e-14)
    assert 1.0 < d["signal_angles"][0] < 179.0
    # the BP reference can use the channel's derivative flags instead
    d2 = ref.diagnostics(weights, biases, x, y, "srbp", F, derivative=False, bp_derivative=False)
    assert d2["signal_angles"][0] != d["signal_angles"][0]
    _, _, info = ref.channel_step(initial_state(weights, biases), x, y, "srbp", F, lr=0.1)
    d3 = ref.diagnostics(weights, biases, x, y, "srbp", F, last_updates=info["delta_w"])
    np.testing.assert_allclose(d3["update_norms"], [np.linalg.norm(U) for U in info["delta_w"]])


def test_channel_step_float32_and_no_mutation():
    rng = np.random.default_rng(121)
    W0, b0 = make_net(SIZES, rng)
    W32 = [w.astype(np.float32) for w in W0]
    b32 = [c.astype(np.float32) for c in b0]
    F = [f.astype(np.float32) for f in random_feedback(SIZES, rng, skipped=False)]
    F_copy = [f.copy() for f in F]
    x, y = _batches(1, rng)[0]
    x32 = x.astype(np.float32)
    m = _masks(rng, SIZES, BATCH, 0.2)
    s, _, info = ref.channel_step(
        initial_state(W32, b32),
        x32,
        y,
        "arbp",
        F,
        lr=0.1,
        momentum=0.9,
        dropout_masks=m,
        dropout_p=0.2,
        dropout_inverted=True,
        quantize="update",
        quantize_bits=8,
    )
    assert all(a.dtype == np.float32 for k in ("weights", "biases", "vel_w", "vel_b") for a in s[k])
    assert all(f.dtype == np.float32 for f in info["feedback"])
    for a, b in zip(F, F_copy):
        np.testing.assert_array_equal(a, b)
