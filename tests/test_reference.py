"""Tests of the plain-numpy oracle in tests/reference.py.

These check the reference against the definition of the gradient (central
differences) and against the equivalences of paper-notes section 2.3, so that
the reference can in turn be trusted to check the C++ core."""

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
    weights = [scale * rng.standard_normal((sizes[h], sizes[h - 1]))
               for h in range(1, len(sizes))]
    biases = [0.3 * rng.standard_normal(sizes[h]) if with_bias else None
              for h in range(1, len(sizes))]
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
        assert np.linalg.norm(G_W[h]) > 1e-4          # a non-trivial check
        assert relative_error(G_W[h], -dW[h]) < 1e-6, (h, G_W[h], -dW[h])
        assert relative_error(G_b[h], -db[h]) < 1e-6, (h, G_b[h], -db[h])
        np.testing.assert_allclose(G_W[h], -dW[h], rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(G_b[h], -db[h], rtol=1e-5, atol=1e-9)


def test_bp_gradient_soft_softmax_targets_and_no_bias():
    rng = np.random.default_rng(3)
    weights, _ = make_net(SIZES, rng, with_bias=False)
    x = rng.uniform(-1, 1, size=(BATCH, SIZES[0]))
    T = rng.dirichlet(np.ones(SIZES[-1]), size=BATCH)     # soft targets, rows sum to 1
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
    for alg, fb in [("bp", []), ("sbp", []), ("top", []),
                    ("rbp", random_feedback(SIZES, rng, False)),
                    ("srbp", random_feedback(SIZES, rng, True))]:
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
    feedback = [weights[h].T.copy() for h in range(1, len(weights))]   # F^h = (W^{h+1})^T
    B_bp = signals(weights, biases, x, y, "bp", derivative=derivative, activation=act)
    B_rbp = signals(weights, biases, x, y, "rbp", feedback, derivative=derivative, activation=act)
    for a, b in zip(B_bp, B_rbp):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("act", HIDDEN)
def test_srbp_one_hidden_layer_with_transposed_weights_equals_bp(act):
    sizes = [5, 4, 3]
    weights, biases, x, y = make_problem(act, "softmax", sizes=sizes)
    feedback = [weights[1].T.copy()]                                   # F^1 = (W^2)^T
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
    for h in range(1, L):              # F^h = (W^L W^{L-1} ... W^{h+1})^T
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
    np.testing.assert_allclose(B_bp[1], B_sbp[1], rtol=1e-12)   # h = L-1: same
    assert relative_error(B_sbp[0], B_bp[0]) > 1e-3              # h = 1: upper f' dropped


def test_bp_signals_by_hand_with_derivative_list():
    weights, biases, x, y = make_problem("tanh", "softmax")
    S, O = forward(weights, biases, x, "tanh", "softmax")
    e = targets_from(y, SIZES[-1]) - O[3]
    B3 = e
    B2 = (1 - np.tanh(S[2]) ** 2) * (B3 @ weights[2])    # derivative on for layer 2
    B1 = B2 @ weights[1]                                  # derivative off for layer 1
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
        state, _ = sgd_step(state, x, y, "rbp", F, derivative=[True, False],
                            activation=act, output=out, lr=lr0, decay=decay, momentum=mu)

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
    for alg, fb in [("bp", []), ("sbp", []), ("top", []),
                    ("rbp", random_feedback(SIZES, rng, False)),
                    ("srbp", random_feedback(SIZES, rng, True))]:
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
    state, _ = sgd_step(state, x, y, "bp", lr=0.1, momentum=0.9)    # non-zero velocities
    snapshot = {k: ([None if a is None else a.copy() for a in v] if isinstance(v, list) else v)
                for k, v in state.items()}
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
    s64, _ = sgd_step(initial_state(W32, b32), x32.astype(np.float64), y, "bp",
                      lr=0.1, momentum=0.9, decay=0.1)
    for a, b in zip(s["weights"], s64["weights"]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------

def test_activations_and_derivatives():
    s = np.linspace(-3, 3, 12)          # avoids the relu kink at 0
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
    assert loss(T, T, "softmax") == 0.0          # 0 log 0 = 0
    assert loss(T, T, "logistic") == 0.0
    O = np.array([[0.1, 0.2, 0.7], [0.5, 0.4, 0.1], [0.3, 0.3, 0.4]])
    assert accuracy(O, np.array([2, 0, 1])) == pytest.approx(2 / 3)
    assert accuracy(O, T) == pytest.approx(2 / 3)


def test_bad_arguments_raise():
    weights, biases, x, y = make_problem("tanh", "softmax")
    with pytest.raises(ValueError):
        signals(weights, biases, x, y, "rbp", feedback=[])
    with pytest.raises(ValueError):                    # F^1 transposed: (3, 4) instead of (4, 3)
        signals(weights, biases, x, y, "rbp", feedback=[np.zeros((3, 4)), np.zeros((3, 3))])
    with pytest.raises(ValueError):                    # srbp needs (n_h, n_L) = (4, 3), (3, 3)
        signals(weights, biases, x, y, "srbp", feedback=[np.zeros((4, 4)), np.zeros((3, 3))])
    with pytest.raises(ValueError):
        signals(weights, biases, x, y, "bp", feedback=[np.zeros((4, 3))])
    with pytest.raises(ValueError):
        signals(weights, biases, x, y, "nope")
    with pytest.raises(ValueError):
        forward(weights, biases, x, activation="softmax")
