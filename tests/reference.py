"""Plain-numpy reference implementation of the rbp-native training math.

This module is the test oracle for the C++ core. It is written for
readability, not speed: every quantity is computed directly from its
definition (the paper's sections 2-5; docs/channels.md states each option).
There is one implementation of the channel (channel_signals / channel_step);
signals / sgd_step are its restriction to the paper's five algorithms.

Conventions
-----------
* Batch layout: rows are examples. ``x`` has shape (batch, n0).
* Network sizes [n0, n1, ..., nL]. ``weights[h-1]`` is W^h, shape (n_h, n_{h-1}),
  for h = 1..L. ``biases[h-1]`` is b^h, shape (n_h,), or None (no bias).
  ``biases`` itself may be None (no biases anywhere).
* Forward: S^h = O^{h-1} W^h^T + b^h, O^h = f(S^h); O^0 = x.
* Top error e = T - O^L (= -d loss_i / d S^L for each example i, for the
  matched output/loss pairs softmax+CE, logistic+BCE, linear+squared error).
* Sign convention: updates are ADDED, W <- W + lr * B^T O / batch.
* Arithmetic is done in the floating dtype of the inputs (float64 unless the
  weights and x are all float32, say). ``numerical_gradient`` always uses
  float64. No function mutates its arguments.
"""

import numpy as np

HIDDEN_ACTIVATIONS = ("tanh", "logistic", "relu", "linear")
OUTPUTS = ("softmax", "logistic", "linear")
ALGORITHMS = ("bp", "sbp", "rbp", "srbp", "top")


# ----------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------


def _compute_dtype(*arrays):
    """Floating dtype used for a computation: numpy's promotion of the floating
    inputs, float64 if there are none (e.g. integer inputs)."""
    floating = [
        np.asarray(a).dtype for a in arrays if a is not None and np.issubdtype(np.asarray(a).dtype, np.floating)
    ]
    if not floating:
        return np.dtype(np.float64)
    return np.result_type(*floating)


def _bias_list(biases, n_layers):
    """Normalise ``biases`` to a list of length n_layers (entries may be None)."""
    if biases is None:
        return [None] * n_layers
    biases = list(biases)
    if len(biases) != n_layers:
        raise ValueError("expected %d biases, got %d" % (n_layers, len(biases)))
    return biases


def _derivative_flags(derivative, n_hidden):
    """Normalise ``derivative`` (bool or list of bools) to a list, one per hidden layer."""
    if isinstance(derivative, (bool, np.bool_)):
        return [bool(derivative)] * n_hidden
    flags = [bool(d) for d in derivative]
    if len(flags) != n_hidden:
        raise ValueError("expected %d derivative flags, got %d" % (n_hidden, len(flags)))
    return flags


def _as_float_array(s):
    """s as an array of its own floating dtype (float64 for non-float input)."""
    s = np.asarray(s)
    if not np.issubdtype(s.dtype, np.floating):
        s = s.astype(np.float64)
    return s


def _logistic(s):
    """sigma(s) = 1 / (1 + exp(-s)), written so that exp never overflows."""
    s = np.asarray(s)
    z = np.exp(-np.abs(s))  # in (0, 1]
    return np.where(s >= 0, 1.0 / (1.0 + z), z / (1.0 + z)).astype(s.dtype, copy=False)


def _softmax(s):
    """Row-wise softmax, shifted by the row max for numerical stability."""
    shifted = s - np.max(s, axis=1, keepdims=True)
    expd = np.exp(shifted)
    return expd / np.sum(expd, axis=1, keepdims=True)


def _t_log_o(t, o):
    """t * log(o) with the convention 0 * log(0) = 0 (elementwise)."""
    safe_o = np.where(t != 0, o, 1.0)
    return np.where(t != 0, t * np.log(safe_o), 0.0)


# ----------------------------------------------------------------------------
# Activations
# ----------------------------------------------------------------------------


def activation(name, s):
    """O = f(S) for a hidden activation or an output function.

    name: 'tanh', 'logistic', 'relu', 'linear' (hidden) or 'softmax' (output,
    row-wise over a 2-D array)."""
    s = _as_float_array(s)
    if name == "tanh":
        return np.tanh(s)
    if name == "logistic":
        return _logistic(s)
    if name == "relu":
        return np.where(s > 0, s, np.zeros_like(s))
    if name == "linear":
        return s.copy()
    if name == "softmax":
        if s.ndim != 2:
            raise ValueError("softmax expects a (batch, n) array")
        return _softmax(s)
    raise ValueError("unknown activation %r" % (name,))


def activation_derivative(name, s):
    """f'(S) for a hidden activation (elementwise)."""
    s = _as_float_array(s)
    if name == "tanh":
        t = np.tanh(s)
        return 1.0 - t * t
    if name == "logistic":
        sig = _logistic(s)
        return sig * (1.0 - sig)
    if name == "relu":
        return (s > 0).astype(s.dtype)
    if name == "linear":
        return np.ones_like(s)
    raise ValueError("unknown (or non-elementwise) activation %r" % (name,))


# forward() has a parameter called `activation`; it calls the function through this name.
_apply_activation = activation


# ----------------------------------------------------------------------------
# Forward pass, targets, loss, accuracy
# ----------------------------------------------------------------------------


def forward(weights, biases, x, activation="tanh", output="softmax"):
    """Forward pass.

    Returns (S_list, O_list), both of length L+1:
      S_list[0] = None, S_list[h] = S^h   (batch, n_h)
      O_list[0] = x,    O_list[h] = O^h   (batch, n_h)
    Hidden layers h < L use ``activation``; layer L uses ``output``."""
    if activation not in HIDDEN_ACTIVATIONS:
        raise ValueError("unknown hidden activation %r" % (activation,))
    if output not in OUTPUTS:
        raise ValueError("unknown output %r" % (output,))
    n_layers = len(weights)
    biases = _bias_list(biases, n_layers)
    dtype = _compute_dtype(x, *weights, *biases)

    o = np.array(x, dtype=dtype)  # copy: O^0
    if o.ndim != 2:
        raise ValueError("x must be (batch, n0)")
    S_list = [None]
    O_list = [o]
    for h in range(1, n_layers + 1):
        W = np.asarray(weights[h - 1], dtype=dtype)
        b = biases[h - 1]
        if W.shape[1] != O_list[h - 1].shape[1]:
            raise ValueError("W^%d has shape %s, input has width %d" % (h, W.shape, O_list[h - 1].shape[1]))
        s = O_list[h - 1] @ W.T
        if b is not None:
            s = s + np.asarray(b, dtype=dtype)
        f = activation if h < n_layers else output
        S_list.append(s)
        O_list.append(_apply_activation(f, s))
    return S_list, O_list


def targets_from(y, n_out, dtype=np.float64):
    """Target matrix T (batch, n_out).

    Integer labels (1-D) become one-hot rows; a float array of shape
    (batch, n_out) is returned as a copy."""
    y = np.asarray(y)
    if np.issubdtype(y.dtype, np.integer):
        if y.ndim != 1:
            raise ValueError("integer labels must be 1-D")
        if y.size and (y.min() < 0 or y.max() >= n_out):
            raise ValueError("label out of range [0, %d)" % n_out)
        T = np.zeros((y.shape[0], n_out), dtype=dtype)
        T[np.arange(y.shape[0]), y] = 1.0
        return T
    if y.ndim != 2 or y.shape[1] != n_out:
        raise ValueError("float targets must have shape (batch, %d), got %s" % (n_out, y.shape))
    return np.array(y, dtype=dtype)


def loss(O_L, T, output):
    """Mean over the batch of the per-example loss matched to ``output``:
      softmax  -> cross-entropy          -sum_k T_k log O_k
      logistic -> binary cross-entropy   -sum_k [T_k log O_k + (1-T_k) log(1-O_k)]
      linear   -> squared error          1/2 sum_k (T_k - O_k)^2
    (0 log 0 is taken as 0.)"""
    O_L = np.asarray(O_L)
    T = np.asarray(T)
    if O_L.shape != T.shape:
        raise ValueError("O_L %s and T %s differ in shape" % (O_L.shape, T.shape))
    if output == "softmax":
        per_example = -np.sum(_t_log_o(T, O_L), axis=1)
    elif output == "logistic":
        per_example = -np.sum(_t_log_o(T, O_L) + _t_log_o(1.0 - T, 1.0 - O_L), axis=1)
    elif output == "linear":
        per_example = 0.5 * np.sum((T - O_L) ** 2, axis=1)
    else:
        raise ValueError("unknown output %r" % (output,))
    return float(np.mean(per_example))


def accuracy(O_L, y):
    """mean(argmax(O) == label). ``y`` is int labels or a (batch, n) target
    matrix (its row argmax is the label)."""
    y = np.asarray(y)
    labels = y if y.ndim == 1 else np.argmax(y, axis=1)
    return float(np.mean(np.argmax(np.asarray(O_L), axis=1) == labels))


# ----------------------------------------------------------------------------
# Learning channel
# ----------------------------------------------------------------------------


def signals(weights, biases, x, y, algorithm, feedback=(), derivative=True, activation="tanh", output="softmax"):
    """Postsynaptic learning signals [B^1, ..., B^L], B^h of shape (batch, n_h), of the
    paper's five algorithms: channel_signals without the channel options.

    algorithm: 'bp', 'sbp', 'rbp', 'srbp' or 'top'. feedback[h-1] is F^h for hidden
    layer h: shape (n_h, n_{h+1}) for rbp, (n_h, n_L) for srbp; empty otherwise.
    derivative: bool, or one bool per hidden layer (multiply J^h by f'(S^h))."""
    _check_algorithm(algorithm)
    return channel_signals(
        weights, biases, x, y, algorithm, feedback, derivative=derivative, activation=activation, output=output
    )["B"]


def _check_algorithm(algorithm):
    if algorithm not in ALGORITHMS:
        raise ValueError("unknown algorithm %r" % (algorithm,))


# ----------------------------------------------------------------------------
# SGD step
# ----------------------------------------------------------------------------


def initial_state(weights, biases):
    """A fresh training state: copies of the parameters, zero velocities, t=0."""
    biases = _bias_list(biases, len(weights))
    return dict(
        weights=[np.array(W) for W in weights],
        biases=[None if b is None else np.array(b) for b in biases],
        vel_w=[np.zeros_like(np.asarray(W)) for W in weights],
        vel_b=[None if b is None else np.zeros_like(np.asarray(b)) for b in biases],
        t=0,
    )


def sgd_step(
    state,
    x,
    y,
    algorithm,
    feedback=(),
    derivative=True,
    activation="tanh",
    output="softmax",
    lr=0.1,
    decay=0.0,
    momentum=0.0,
):
    """One Keras-style SGD step on the batch (x, y) of the paper's five algorithms:
    channel_step without the channel options.

    lr_t = lr / (1 + decay * t), t = number of updates done before this one.
    G_W^h = B^h^T O^{h-1} / batch,  G_b^h = mean over the batch of B^h.
    v <- momentum * v + lr_t * G;  W <- W + v   (same for biases).
    Under 'top' the hidden layers are left alone (velocity stays zero).

    Returns (new_state, batch_loss), batch_loss being the loss of the forward
    pass before the update. ``state`` is not modified."""
    _check_algorithm(algorithm)
    new_state, batch_loss, _ = channel_step(
        state,
        x,
        y,
        algorithm,
        feedback,
        derivative=derivative,
        activation=activation,
        output=output,
        lr=lr,
        decay=decay,
        momentum=momentum,
    )
    return new_state, batch_loss


# ----------------------------------------------------------------------------
# Numerical gradient
# ----------------------------------------------------------------------------


def numerical_gradient(weights, biases, x, y, activation, output, eps=1e-6):
    """Central-difference gradient of the mean loss w.r.t. every weight and bias.

    Returns (dW_list, db_list) in float64; db_list entries are None where a
    layer has no bias. This is d loss / d param (descent direction is minus it)."""
    L = len(weights)
    W64 = [np.array(W, dtype=np.float64) for W in weights]
    b64 = [None if b is None else np.array(b, dtype=np.float64) for b in _bias_list(biases, L)]
    x64 = np.array(x, dtype=np.float64)
    n_out = W64[-1].shape[0]
    T = targets_from(y, n_out, dtype=np.float64)

    def mean_loss():
        _, O_list = forward(W64, b64, x64, activation, output)
        return loss(O_list[-1], T, output)

    def central_difference(param):
        grad = np.zeros_like(param)
        for idx in np.ndindex(param.shape):
            original = param[idx]
            param[idx] = original + eps
            plus = mean_loss()
            param[idx] = original - eps
            minus = mean_loss()
            param[idx] = original
            grad[idx] = (plus - minus) / (2.0 * eps)
        return grad

    dW_list = [central_difference(W) for W in W64]
    db_list = [None if b is None else central_difference(b) for b in b64]
    return dW_list, db_list


# ============================================================================
# The learning-channel family (docs/channels.md)
# ============================================================================
#
# Everything below extends the oracle to every variant of docs/channels.md.
# The functions above (signals, sgd_step) are left exactly as they were; the
# general entry points are
#
#   channel_signals(weights, biases, x, y, algorithm, feedback, **options)
#   channel_step(state, x, y, algorithm, feedback, lr=..., ..., **options)
#   diagnostics(weights, biases, x, y, algorithm, feedback, **options)
#
# The oracle draws NO random numbers: every random quantity (feedback
# matrices, dropout masks, stochastic-rounding noise, per-synapse tensors) is
# an explicit argument, so tests can feed in what the native core used.
#
# Order of operations for hidden layer h (h = L-1 down to 1), per example:
#   1. J^h from the source:  bp   B^{h+1} W^{h+1}
#                            sbp  J~^{h+1} W^{h+1}   (J~^L = e; J~ = processed J)
#                            feedback algorithms, source "above": B^{h+1} (F^h)^T
#                                                      source "output": e (F^h)^T
#                            srbp per-synapse: J_bij = e_b . r^h_ij (bias: e_b . r^h_i)
#   2. channel dropout:      J <- J * mask   (mask 0/1, shape (batch, N_h); kept
#                            entries also divided by 1-p when inverted)
#   3. quantize="signal":    J <- Q(J)       (so the received signal is on the grid)
#      (J~^h = the result of 2-3; it is what the sbp chain carries down)
#   4. derivative:           B = f'(S^h) * J  (if on for layer h) else B = J
#   5. signal_transform (transform_target="signal"): B <- sign(B) or |B|
#                            (np.sign: sign(0) = 0, so dropped entries stay 0)
#   B^h after step 5 is what travels down in bp / rbp / arbp ("above" sources)
#   and what the adaptive rule of layer h-1 uses. B^L = e is never touched.
#
# Update of layer h (1..L), with eta = lr_t = lr / (1 + decay t):
#   plain:              U^h = eta * (B^h)^T O^{h-1} / n,  u^h = eta * mean_rows(B^h)
#   quantize="update":  U^h_ij = (1/n) sum_b Q((eta * B_bi) * O_bj),  u^h_i = (1/n) sum_b Q(eta * B_bi)
#                       (every layer, top included; per-example tensor built literally)
#   per-synapse:        as above with B_bi replaced by B_bij (and the bias signal)
#   transform_target="update" (hidden layers only, applied last):
#                       sign -> eta * sign(U), magnitude -> |U|   (same for u)
#                       (= eta*sign(G) / eta*|G| of the docs when not quantised)
#   momentum:           v <- mu v + U;  W <- W + v   (same for biases)
#   frozen layers (and hidden layers under "top"): W, b and velocities unchanged.
#   adaptive feedback:  F^h <- F^h + rho * eta * (O^h)^T src / n, src = B^{h+1}
#                       (source "above") or e (source "output"); same forward
#                       pass, no momentum, not quantised, done even when layer h
#                       or h+1 is frozen.

CHANNEL_ALGORITHMS = ("bp", "sbp", "rbp", "srbp", "arbp", "asrbp", "top")
FEEDBACK_ALGORITHMS = ("rbp", "srbp", "arbp", "asrbp")
ADAPTIVE_ALGORITHMS = ("arbp", "asrbp")
SOURCES = ("above", "output")
SIGNAL_TRANSFORMS = ("none", "sign", "magnitude")
TRANSFORM_TARGETS = ("signal", "update")
QUANTIZE_MODES = (None, "signal", "update")
ROUNDINGS = ("nearest", "stochastic")
DEFAULT_QUANTIZE_ALPHA = {"signal": 2.0**-3, "update": 2.0**-6}


# ----------------------------------------------------------------------------
# Quantiser
# ----------------------------------------------------------------------------


def quantization_step(bits, alpha):
    """Delta = alpha * 2^(1 - bits)."""
    return float(alpha) * 2.0 ** (1 - int(bits))


def quantize(x, bits, alpha, rounding="nearest", u=None):
    """Q(x) = clip(Delta * k, -alpha, alpha), Delta = alpha * 2^(1-bits), with
      rounding="nearest":    k = round(x / Delta), ties to even (np.round)
      rounding="stochastic": k = floor(x / Delta + u), u in [0, 1) of x's shape
                             (supplied by the caller: the oracle draws nothing).
    Computed in x's floating dtype (float64 for integer input); Delta and alpha
    are cast to it. Raises if Delta underflows to 0 in that dtype."""
    x = _as_float_array(x)
    dtype = x.dtype
    bits = int(bits)
    if bits < 1:
        raise ValueError("bits must be >= 1, got %d" % bits)
    if not (np.isfinite(alpha) and alpha > 0):
        raise ValueError("alpha must be positive and finite, got %r" % (alpha,))
    delta = dtype.type(quantization_step(bits, alpha))
    if delta == 0 or not np.isfinite(delta):
        raise ValueError("Delta = alpha * 2^(1-bits) is not representable in %s" % dtype)
    a = dtype.type(alpha)
    with np.errstate(over="ignore", invalid="ignore"):
        if rounding == "nearest":
            if u is not None:
                raise ValueError("u is only used by stochastic rounding")
            k = np.round(x / delta)
        elif rounding == "stochastic":
            if u is None:
                raise ValueError("stochastic rounding needs the uniform noise u")
            u = np.asarray(u)
            if u.shape != x.shape:
                raise ValueError("u has shape %s, x has %s" % (u.shape, x.shape))
            if u.size and (np.min(u) < 0 or np.max(u) >= 1):
                raise ValueError("u must lie in [0, 1)")
            k = np.floor(x / delta + u.astype(dtype))
        else:
            raise ValueError("unknown rounding %r" % (rounding,))
        return np.clip(delta * k, -a, a).astype(dtype, copy=False)


# ----------------------------------------------------------------------------
# Feedback construction (from draws made elsewhere)
# ----------------------------------------------------------------------------


def glorot_feedback_scale(n_h, n_source):
    """s = sqrt(2 / (N_h + N_source))."""
    return float(np.sqrt(2.0 / (n_h + n_source)))


def feedback_scale_value(scale, n_h, n_source):
    """The numeric s for feedback_scale = "glorot" | "unit" | positive number."""
    if isinstance(scale, str):
        if scale == "glorot":
            return glorot_feedback_scale(n_h, n_source)
        if scale == "unit":
            return 1.0
        raise ValueError("unknown feedback_scale %r" % (scale,))
    scale = float(scale)
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError("feedback_scale must be positive, got %r" % (scale,))
    return scale


def feedback_keep_probability(n_source, density=None, nonzeros=None):
    """p of the sparse feedback: density, or nonzeros / N_source, clipped to [0, 1]
    (1 when neither is given)."""
    if density is not None and nonzeros is not None:
        raise ValueError("give density or nonzeros, not both")
    if nonzeros is not None:
        p = float(nonzeros) / float(n_source)
    elif density is not None:
        p = float(density)
    else:
        p = 1.0
    return float(np.clip(p, 0.0, 1.0))


def feedback_from_draw(Z, keep_mask=None, mean=0.0, scale=1.0):
    """F = where(keep, mean + scale * Z, 0) for an already drawn standard sample Z
    (any shape: a matrix F^h or a per-synapse tensor R^h); keep_mask None keeps all."""
    Z = _as_float_array(Z)
    value = Z.dtype.type(mean) + Z.dtype.type(scale) * Z
    if keep_mask is None:
        return value
    keep = np.asarray(keep_mask)
    if keep.shape != Z.shape:
        raise ValueError("keep_mask has shape %s, Z has %s" % (keep.shape, Z.shape))
    return np.where(keep.astype(bool), value, Z.dtype.type(0)).astype(Z.dtype, copy=False)


def congruent(F, counterpart_matrix):
    """|F| * sign(C) elementwise, with sign(0) taken as +1."""
    F = _as_float_array(F)
    C = np.asarray(counterpart_matrix)
    if C.shape != F.shape:
        raise ValueError("counterpart has shape %s, F has %s" % (C.shape, F.shape))
    return np.where(C < 0, -np.abs(F), np.abs(F)).astype(F.dtype, copy=False)


def counterpart(weights, h, source):
    """Forward counterpart C of F^h (h = 1..L-1, paper numbering):
    (W^{h+1})^T for source "above", (W^L W^{L-1} ... W^{h+1})^T for "output".
    Shape (N_h, N_source)."""
    L = len(weights)
    if not 1 <= h <= L - 1:
        raise ValueError("hidden layer index must be in 1..%d, got %d" % (L - 1, h))
    dtype = _compute_dtype(*weights)
    if source == "above":
        return np.asarray(weights[h], dtype=dtype).T.copy()
    if source == "output":
        P = np.asarray(weights[L - 1], dtype=dtype)  # W^L
        for k in range(L - 1, h, -1):  # times W^{L-1} ... W^{h+1}
            P = P @ np.asarray(weights[k - 1], dtype=dtype)
        return P.T.copy()
    raise ValueError("unknown source %r" % (source,))


def resolve_sources(algorithm, n_hidden, sources=None):
    """Per-hidden-layer sources (list, index h-1). None -> all "above" for
    rbp/arbp, all "output" for srbp/asrbp; a single string applies to all layers.
    Non-feedback algorithms take no sources (returns [None] * n_hidden)."""
    if algorithm not in CHANNEL_ALGORITHMS:
        raise ValueError("unknown algorithm %r" % (algorithm,))
    if algorithm not in FEEDBACK_ALGORITHMS:
        if sources is not None:
            raise ValueError("%s takes no sources" % (algorithm,))
        return [None] * n_hidden
    if sources is None:
        default = "above" if algorithm in ("rbp", "arbp") else "output"
        return [default] * n_hidden
    if isinstance(sources, str):
        sources = [sources] * n_hidden
    sources = list(sources)
    if len(sources) != n_hidden:
        raise ValueError("expected %d sources, got %d" % (n_hidden, len(sources)))
    for s in sources:
        if s not in SOURCES:
            raise ValueError("unknown source %r" % (s,))
    return sources


def feedback_shapes(sizes, algorithm, sources=None):
    """Shapes of F^1..F^{L-1} for network sizes [N_0..N_L] ([] for non-feedback algorithms)."""
    L = len(sizes) - 1
    if algorithm not in FEEDBACK_ALGORITHMS:
        return []
    srcs = resolve_sources(algorithm, L - 1, sources)
    return [(sizes[h], sizes[h + 1] if srcs[h - 1] == "above" else sizes[L]) for h in range(1, L)]


# ----------------------------------------------------------------------------
# Channel: signals
# ----------------------------------------------------------------------------


def _check_quantize_config(quantize, bits, alpha, rounding):
    if quantize not in QUANTIZE_MODES:
        raise ValueError("unknown quantize mode %r" % (quantize,))
    if quantize is None:
        return None
    if bits is None:
        raise ValueError("quantize=%r needs quantize_bits" % (quantize,))
    if rounding not in ROUNDINGS:
        raise ValueError("unknown rounding %r" % (rounding,))
    if alpha is None:
        alpha = DEFAULT_QUANTIZE_ALPHA[quantize]
    return dict(bits=int(bits), alpha=float(alpha), rounding=rounding)


def _noise_entry(noise, index, rounding, what):
    """The noise for one quantisation (None for nearest rounding)."""
    if rounding != "stochastic":
        return None
    if noise is None or noise[index] is None:
        raise ValueError("stochastic rounding needs noise for %s" % (what,))
    return noise[index]


def _apply_q(J, q, u):
    return quantize(J, q["bits"], q["alpha"], q["rounding"], u)


def _channel_from_forward(
    weights,
    S_list,
    O_list,
    T,
    algorithm,
    feedback,
    *,
    sources=None,
    derivative=True,
    activation="tanh",
    dropout_masks=None,
    dropout_p=0.0,
    dropout_inverted=False,
    signal_transform="none",
    transform_target="signal",
    quantize=None,
    quantize_bits=None,
    quantize_alpha=None,
    quantize_rounding="nearest",
    quantize_noise=None,
    per_synapse_tensors=None,
    per_synapse_bias=None,
):
    """The channel on an already computed forward pass. See channel_signals."""
    if algorithm not in CHANNEL_ALGORITHMS:
        raise ValueError("unknown algorithm %r" % (algorithm,))
    if signal_transform not in SIGNAL_TRANSFORMS:
        raise ValueError("unknown signal_transform %r" % (signal_transform,))
    if transform_target not in TRANSFORM_TARGETS:
        raise ValueError("unknown transform_target %r" % (transform_target,))
    qcfg = _check_quantize_config(quantize, quantize_bits, quantize_alpha, quantize_rounding)
    L = len(weights)
    n_hidden = L - 1
    dtype = O_list[-1].dtype
    batch = O_list[0].shape[0]
    sizes = [O.shape[1] for O in O_list]
    flags = _derivative_flags(derivative, n_hidden)
    srcs = resolve_sources(algorithm, n_hidden, sources)
    feedback = [] if feedback is None else list(feedback)
    per_synapse = per_synapse_tensors is not None

    # --- validate the random inputs -------------------------------------------------
    if per_synapse:
        if algorithm != "srbp" or any(s != "output" for s in srcs):
            raise ValueError("per-synapse random error is defined for srbp (all sources 'output')")
        if feedback:
            raise ValueError("per-synapse srbp takes per_synapse_tensors, not feedback matrices")
        R_list = list(per_synapse_tensors)
        r_list = [None] * n_hidden if per_synapse_bias is None else list(per_synapse_bias)
        if len(R_list) != n_hidden or len(r_list) != n_hidden:
            raise ValueError("need one per-synapse tensor (and bias entry) per hidden layer")
        for h in range(1, L):
            if np.shape(R_list[h - 1]) != (sizes[h], sizes[h - 1], sizes[L]):
                raise ValueError(
                    "R^%d must be %s, got %s" % (h, (sizes[h], sizes[h - 1], sizes[L]), np.shape(R_list[h - 1]))
                )
            if r_list[h - 1] is not None and np.shape(r_list[h - 1]) != (sizes[h], sizes[L]):
                raise ValueError("r^%d must be %s, got %s" % (h, (sizes[h], sizes[L]), np.shape(r_list[h - 1])))
    elif per_synapse_bias is not None:
        raise ValueError("per_synapse_bias given without per_synapse_tensors")
    elif algorithm in FEEDBACK_ALGORITHMS:
        if len(feedback) != n_hidden:
            raise ValueError("%s needs %d feedback matrices, got %d" % (algorithm, n_hidden, len(feedback)))
        for h in range(1, L):
            upper = sizes[h + 1] if srcs[h - 1] == "above" else sizes[L]
            if np.shape(feedback[h - 1]) != (sizes[h], upper):
                raise ValueError(
                    "feedback for hidden layer %d (source %s) must be %s, got %s"
                    % (h, srcs[h - 1], (sizes[h], upper), np.shape(feedback[h - 1]))
                )
    elif feedback:
        raise ValueError("%s takes no feedback matrices" % (algorithm,))

    if dropout_masks is not None:
        dropout_masks = list(dropout_masks)
        if len(dropout_masks) != n_hidden:
            raise ValueError("expected %d dropout masks, got %d" % (n_hidden, len(dropout_masks)))
        for h in range(1, L):
            m = dropout_masks[h - 1]
            if m is None:
                continue
            m = np.asarray(m)
            if m.shape != (batch, sizes[h]):
                raise ValueError("dropout mask %d must be %s, got %s" % (h, (batch, sizes[h]), m.shape))
            if not np.all((m == 0) | (m == 1)):
                raise ValueError("dropout masks must be 0/1")
        if dropout_inverted and not 0 <= dropout_p < 1:
            raise ValueError("inverted dropout needs 0 <= p < 1, got %r" % (dropout_p,))
    signal_noise = None
    if qcfg is not None and quantize == "signal" and qcfg["rounding"] == "stochastic":
        if quantize_noise is None or len(quantize_noise) != n_hidden:
            raise ValueError("stochastic signal quantisation needs one noise entry per hidden layer")
        signal_noise = list(quantize_noise)

    def received(J, h, bias_part=False):
        """Steps 2-3: dropout then signal quantisation of what layer h receives.
        J is (batch, N_h) or, per-synapse, (batch, N_h, N_{h-1})."""
        if dropout_masks is not None and dropout_masks[h - 1] is not None:
            m = np.asarray(dropout_masks[h - 1], dtype=dtype)
            if J.ndim == 3:
                m = m[:, :, None]
            J = J * m
            if dropout_inverted:
                J = J / dtype.type(1.0 - dropout_p)
        if qcfg is not None and quantize == "signal":
            u = None
            if signal_noise is not None:
                entry = signal_noise[h - 1]
                if per_synapse:
                    u = entry[1] if bias_part else entry[0]
                else:
                    u = entry
                if u is None:
                    raise ValueError("missing signal-quantisation noise for layer %d" % h)
            J = _apply_q(J, qcfg, u)
        return J

    def postsynaptic(J, h):
        """Steps 4-5: derivative then signal transform."""
        if flags[h - 1]:
            D = activation_derivative(activation, S_list[h])
            B = (D[:, :, None] * J) if J.ndim == 3 else D * J
        else:
            B = J
        if transform_target == "signal":
            if signal_transform == "sign":
                B = np.sign(B)
            elif signal_transform == "magnitude":
                B = np.abs(B)
        return B

    e = T - O_list[L]
    B = [None] * (L + 1)
    B[L] = e
    J_out = [None] * (L + 1)
    B_syn = [None] * (L + 1)
    chain = e  # sbp: processed J of the layer above
    for h in range(L - 1, 0, -1):
        if algorithm == "top":
            B[h] = np.zeros_like(O_list[h])
            J_out[h] = np.zeros_like(O_list[h])
            continue
        if per_synapse:
            R = np.asarray(R_list[h - 1], dtype=dtype)  # (N_h, N_{h-1}, N_L)
            J_W = np.einsum("bk,ijk->bij", e, R)  # J_bij = e_b . r_ij
            J_W = received(J_W, h)
            B_W = postsynaptic(J_W, h)
            B_b = J_b = None
            if r_list[h - 1] is not None:
                r = np.asarray(r_list[h - 1], dtype=dtype)  # (N_h, N_L)
                J_b = received(e @ r.T, h, bias_part=True)
                B_b = postsynaptic(J_b, h)
            J_out[h] = (J_W, J_b)
            B_syn[h] = (B_W, B_b)
            continue
        W_up = np.asarray(weights[h], dtype=dtype)  # W^{h+1}
        if algorithm == "bp":
            J = B[h + 1] @ W_up
        elif algorithm == "sbp":
            J = chain @ W_up
        else:
            F = np.asarray(feedback[h - 1], dtype=dtype)
            src = B[h + 1] if srcs[h - 1] == "above" else e
            J = src @ F.T
        J = received(J, h)
        chain = J
        J_out[h] = J
        B[h] = postsynaptic(J, h)

    return dict(e=e, B=B[1:], J=J_out[1:L], B_synapse=B_syn[1:L], sources=srcs)


def channel_signals(weights, biases, x, y, algorithm, feedback=(), *, activation="tanh", output="softmax", **options):
    """The learning channel of docs/channels.md on one batch.

    algorithm: 'bp', 'sbp', 'rbp', 'srbp', 'arbp', 'asrbp' or 'top' (arbp/asrbp
      give the same signals as rbp/srbp; they differ only in channel_step).
    feedback: [F^1, ..., F^{L-1}], F^h of shape (N_h, N_{h+1}) for source "above",
      (N_h, N_L) for source "output"; empty for bp/sbp/top and per-synapse srbp.
    Options (keyword only):
      sources=None | "above" | "output" | list per hidden layer (feedback algorithms;
        None -> "above" for rbp/arbp, "output" for srbp/asrbp).
      derivative=True | False | list per hidden layer.
      dropout_masks=None | list per hidden layer of 0/1 arrays (batch, N_h) (None
        entries: no dropout there); dropout_p (used for the inverted scaling only),
        dropout_inverted=False (kept entries divided by 1 - p).
      signal_transform="none" | "sign" | "magnitude"; transform_target="signal" |
        "update" (with "update" the signals are untouched; see channel_step).
      quantize=None | "signal" | "update"; quantize_bits (required when quantize is
        set); quantize_alpha (default 2^-3 for signal, 2^-6 for update);
        quantize_rounding="nearest" | "stochastic"; quantize_noise (stochastic only):
          signal mode: list per hidden layer (index h-1) of u arrays (batch, N_h); for
            per-synapse layers a pair (u_W (batch, N_h, N_{h-1}), u_b (batch, N_h) or None).
          update mode: see channel_step (ignored here).
      per_synapse_tensors=None | [R^1..R^{L-1}], R^h (N_h, N_{h-1}, N_L) (srbp only);
        per_synapse_bias=None | [r^1..r^{L-1}], r^h (N_h, N_L) or None.
    Steps per hidden layer: J from the source -> dropout -> Q (signal mode) ->
    derivative -> transform (signal target); B^h after all of these travels down.

    Returns a dict:
      S, O:       forward pass lists (as forward()), T: targets, e = T - O^L,
      B:          [B^1..B^L] (batch, N_h); None for per-synapse hidden layers; zeros
                  for hidden layers under "top",
      J:          [J^1..J^{L-1}] after dropout and signal quantisation (before the
                  derivative); per-synapse: pairs (J_W, J_b),
      B_synapse:  [None or (B_W (batch, N_h, N_{h-1}), B_b (batch, N_h) or None)] per
                  hidden layer (per-synapse only),
      sources:    the resolved per-layer sources."""
    S_list, O_list = forward(weights, biases, x, activation, output)
    T = targets_from(y, O_list[-1].shape[1], dtype=O_list[-1].dtype)
    out = _channel_from_forward(weights, S_list, O_list, T, algorithm, feedback, activation=activation, **options)
    out.update(S=S_list, O=O_list, T=T)
    return out


# ----------------------------------------------------------------------------
# Channel: SGD step
# ----------------------------------------------------------------------------


def _per_example_update(lr_t, B_layer, O_prev):
    """Per-example update tensor (batch, N_h, N_{h-1}): (eta * B_bi) * O_bj, or
    (eta * B_bij) * O_bj for a per-synapse signal tensor."""
    scaled = lr_t * B_layer
    if scaled.ndim == 2:
        scaled = scaled[:, :, None]
    return scaled * O_prev[:, None, :]


def channel_step(
    state,
    x,
    y,
    algorithm,
    feedback=(),
    *,
    activation="tanh",
    output="softmax",
    lr=0.1,
    decay=0.0,
    momentum=0.0,
    feedback_lr_scale=1.0,
    frozen_layers=(),
    **options,
):
    """One Keras-style SGD step of any channel variant (docs/channels.md).

    state: as initial_state(); not modified. feedback: as channel_signals.
    lr, decay, momentum: eta = lr / (1 + decay * t); v <- mu v + U; W <- W + v.
    feedback_lr_scale: rho of arbp/asrbp: F^h <- F^h + rho * eta * (O^h)^T src / n with
      src = B^{h+1} for source "above" and e for "output" (B^{h+1} as it travels down,
      i.e. after dropout / signal quantisation / signal transform; O^h of the forward
      pass). No momentum, no quantisation; applied to every hidden layer, frozen or not.
    frozen_layers: paper numbering 1..L; their W, b and velocities are left unchanged.
    options: as channel_signals, plus, for quantize="update" with stochastic rounding,
      quantize_noise = list per layer 1..L (index h-1) of pairs
        (u_W (batch, N_h, N_{h-1}), u_b (batch, N_h) or None)
      the uniform noise of each per-example update entry (the per-example tensor
      (eta * B_bi) * O^{h-1}_bj, resp. eta * B_bi); entries for layers that are not
      updated (frozen, hidden under "top") may be None.
    Update U of layer h (added to the velocity):
      plain:          eta * (B^h)^T O^{h-1} / n   and eta * mean_rows(B^h)
      quantize=update (every layer incl. top): mean_b Q((eta * B_bi) * O_bj), mean_b Q(eta * B_bi)
      per-synapse:    B_bi replaced by B_bij (bias: its own signal)
      transform_target="update", hidden layers only, applied last:
                      sign -> eta * sign(U), magnitude -> |U|.

    Returns (new_state, batch_loss, info); info is a dict with
      feedback: the feedback after the step (new list; updated for arbp/asrbp,
                copies otherwise), delta_w / delta_b: U per layer (zeros for layers not
                updated; None for absent biases), lr_t, and the channel dict of
                channel_signals under "channel"."""
    weights = state["weights"]
    L = len(weights)
    biases = _bias_list(state["biases"], L)
    vel_w = state["vel_w"]
    vel_b = _bias_list(state["vel_b"], L)
    t = int(state["t"])
    frozen = set()
    for h in frozen_layers:
        if not 1 <= int(h) <= L:
            raise ValueError("frozen layer %r outside 1..%d" % (h, L))
        frozen.add(int(h))
    rho = float(feedback_lr_scale)

    S_list, O_list = forward(weights, biases, x, activation, output)
    dtype = O_list[-1].dtype
    T = targets_from(y, O_list[-1].shape[1], dtype=dtype)
    batch_loss = loss(O_list[-1], T, output)
    ch = _channel_from_forward(weights, S_list, O_list, T, algorithm, feedback, activation=activation, **options)
    ch.update(S=S_list, O=O_list, T=T)

    qcfg = _check_quantize_config(
        options.get("quantize"),
        options.get("quantize_bits"),
        options.get("quantize_alpha"),
        options.get("quantize_rounding", "nearest"),
    )
    q_update = qcfg is not None and options.get("quantize") == "update"
    update_noise = options.get("quantize_noise") if q_update else None
    if q_update and qcfg["rounding"] == "stochastic":
        if update_noise is None or len(update_noise) != L:
            raise ValueError("stochastic update quantisation needs one noise entry per layer (L)")
    transform = options.get("signal_transform", "none")
    on_update = options.get("transform_target", "signal") == "update"

    batch = O_list[0].shape[0]
    lr_t = lr / (1.0 + decay * t)
    eta = dtype.type(lr_t)

    new_w, new_b, new_vw, new_vb, delta_w, delta_b = [], [], [], [], [], []
    for h in range(1, L + 1):
        W, b = np.asarray(weights[h - 1]), biases[h - 1]
        vW, vb = np.asarray(vel_w[h - 1]), vel_b[h - 1]
        if h in frozen or (algorithm == "top" and h < L):
            new_w.append(W.copy())
            new_vw.append(vW.copy())
            new_b.append(None if b is None else np.array(b))
            new_vb.append(None if vb is None else np.array(vb))
            delta_w.append(np.zeros(W.shape, dtype=dtype))
            delta_b.append(None if b is None else np.zeros(np.shape(b), dtype=dtype))
            continue
        O_prev = O_list[h - 1]
        syn = ch["B_synapse"][h - 1] if h < L else None
        if syn is not None:
            B_W, B_b = syn
        else:
            B_W = B_b = ch["B"][h - 1]
        if b is not None and B_b is None:
            raise ValueError("layer %d has a bias but no per-synapse bias vectors" % h)

        if q_update:
            noise = update_noise[h - 1] if update_noise is not None else None
            if qcfg["rounding"] == "stochastic" and noise is None:
                raise ValueError("missing update-quantisation noise for layer %d" % h)
            P_W = _per_example_update(eta, B_W, O_prev)  # (batch, N_h, N_{h-1}), literal
            U_W = np.mean(_apply_q(P_W, qcfg, None if noise is None else noise[0]), axis=0)
            U_b = None
            if b is not None:
                P_b = eta * B_b  # (batch, N_h)
                u_b = None if noise is None else noise[1]
                if qcfg["rounding"] == "stochastic" and u_b is None:
                    raise ValueError("missing bias update noise for layer %d" % h)
                U_b = np.mean(_apply_q(P_b, qcfg, u_b), axis=0)
        elif syn is not None:
            U_W = np.mean(_per_example_update(eta, B_W, O_prev), axis=0)
            U_b = None if b is None else eta * np.mean(B_b, axis=0)
        else:
            U_W = lr_t * ((B_W.T @ O_prev) / batch)  # as sgd_step
            U_b = None if b is None else lr_t * np.mean(B_b, axis=0)

        if on_update and h < L and transform != "none":
            if transform == "sign":
                U_W = eta * np.sign(U_W)
                U_b = None if U_b is None else eta * np.sign(U_b)
            else:
                U_W = np.abs(U_W)
                U_b = None if U_b is None else np.abs(U_b)

        delta_w.append(np.asarray(U_W, dtype=dtype))
        vW_next = momentum * vW + U_W
        new_vw.append(vW_next.astype(W.dtype, copy=False))
        new_w.append((W + vW_next).astype(W.dtype, copy=False))
        if b is None:
            new_b.append(None)
            new_vb.append(None)
            delta_b.append(None)
        else:
            b = np.asarray(b)
            if vb is None:
                vb = np.zeros_like(b)
            delta_b.append(np.asarray(U_b, dtype=dtype))
            vb_next = momentum * np.asarray(vb) + U_b
            new_vb.append(vb_next.astype(b.dtype, copy=False))
            new_b.append((b + vb_next).astype(b.dtype, copy=False))

    fb = [] if feedback is None else list(feedback)
    new_feedback = [np.array(F, dtype=dtype) for F in fb]
    if algorithm in ADAPTIVE_ALGORITHMS:
        for h in range(1, L):
            src = ch["B"][h] if ch["sources"][h - 1] == "above" else ch["e"]  # B^{h+1} or e
            G_F = ((src.T @ O_list[h]) / batch).T  # (N_h, N_source)
            new_feedback[h - 1] = new_feedback[h - 1] + (rho * lr_t) * G_F

    new_state = dict(weights=new_w, biases=new_b, vel_w=new_vw, vel_b=new_vb, t=t + 1)
    info = dict(feedback=new_feedback, delta_w=delta_w, delta_b=delta_b, lr_t=lr_t, channel=ch)
    return new_state, batch_loss, info


# ----------------------------------------------------------------------------
# Diagnostics
# ----------------------------------------------------------------------------


def angle_degrees(a, b):
    """Angle in degrees between two arrays, both flattened (float64):
    arccos(clip(<a, b> / (|a| |b|), -1, 1)). NaN when either is all zeros."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError("arrays of %d and %d elements" % (a.size, b.size))
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return float("nan")
    return float(np.degrees(np.arccos(np.clip(np.dot(a, b) / (na * nb), -1.0, 1.0))))


def diagnostics(
    weights,
    biases,
    x,
    y,
    algorithm,
    feedback=(),
    *,
    activation="tanh",
    output="softmax",
    bp_derivative=True,
    last_updates=None,
    **options,
):
    """Per-layer diagnostics of a channel on a probe batch (x, y).

    signal_angles[h-1]:   angle between the channel's B^h (channel_signals with the
                          given options: pass the masks/noise you want, or none) and
                          BP's B^h from the same forward pass: plain bp with derivative
                          bp_derivative (default True: the true gradient signal), no
                          dropout / quantisation / transform. None for per-synapse layers.
    feedback_angles[h-1]: angle between F^h and counterpart(weights, h, source_h)
                          (feedback algorithms; [] otherwise).
    weight_norms:         Frobenius norms of W^1..W^L.
    feedback_norms:       Frobenius norms of F^1..F^{L-1} ([] without feedback).
    update_norms:         Frobenius norms of the arrays in last_updates (e.g.
                          info["delta_w"] of channel_step: the increment U before
                          momentum), None when not given."""
    ch = channel_signals(weights, biases, x, y, algorithm, feedback, activation=activation, output=output, **options)
    L = len(weights)
    B_bp = _channel_from_forward(
        weights, ch["S"], ch["O"], ch["T"], "bp", (), derivative=bp_derivative, activation=activation
    )["B"]
    signal_angles = [
        None if ch["B"][h - 1] is None else angle_degrees(ch["B"][h - 1], B_bp[h - 1]) for h in range(1, L)
    ]
    fb = [] if feedback is None else list(feedback)
    feedback_angles = (
        [angle_degrees(fb[h - 1], counterpart(weights, h, ch["sources"][h - 1])) for h in range(1, L)] if fb else []
    )
    return dict(
        signal_angles=signal_angles,
        feedback_angles=feedback_angles,
        weight_norms=[float(np.linalg.norm(np.asarray(W))) for W in weights],
        feedback_norms=[float(np.linalg.norm(np.asarray(F))) for F in fb],
        update_norms=None if last_updates is None else [float(np.linalg.norm(np.asarray(U))) for U in last_updates],
    )
