"""Plain-numpy reference implementation of the rbp-native training math.

This module is the test oracle for the C++ core. It is written for
readability, not speed: every quantity is computed directly from its
definition (see docs/paper-notes.md, sections 1, 2 and 2.5).

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
    floating = [np.asarray(a).dtype for a in arrays
                if a is not None and np.issubdtype(np.asarray(a).dtype, np.floating)]
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
    z = np.exp(-np.abs(s))                     # in (0, 1]
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

    o = np.array(x, dtype=dtype)               # copy: O^0
    if o.ndim != 2:
        raise ValueError("x must be (batch, n0)")
    S_list = [None]
    O_list = [o]
    for h in range(1, n_layers + 1):
        W = np.asarray(weights[h - 1], dtype=dtype)
        b = biases[h - 1]
        if W.shape[1] != O_list[h - 1].shape[1]:
            raise ValueError("W^%d has shape %s, input has width %d"
                             % (h, W.shape, O_list[h - 1].shape[1]))
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

def _signals_from_forward(weights, S_list, O_list, T, algorithm, feedback,
                          derivative, activation):
    """B^1..B^L (list, index h-1 -> B^h) from an already computed forward pass."""
    if algorithm not in ALGORITHMS:
        raise ValueError("unknown algorithm %r" % (algorithm,))
    L = len(weights)
    n_hidden = L - 1
    dtype = O_list[-1].dtype
    flags = _derivative_flags(derivative, n_hidden)
    feedback = list(feedback)
    sizes = [O.shape[1] for O in O_list]       # n_0 .. n_L

    if algorithm in ("rbp", "srbp"):
        if len(feedback) != n_hidden:
            raise ValueError("%s needs %d feedback matrices, got %d"
                             % (algorithm, n_hidden, len(feedback)))
        for h in range(1, L):
            F = np.asarray(feedback[h - 1])
            upper = sizes[h + 1] if algorithm == "rbp" else sizes[L]
            if F.shape != (sizes[h], upper):
                raise ValueError("feedback for hidden layer %d must be %s, got %s"
                                 % (h, (sizes[h], upper), F.shape))
    elif feedback:
        raise ValueError("%s takes no feedback matrices" % (algorithm,))

    e = T - O_list[L]                          # top error, (batch, n_L)
    B = [None] * (L + 1)                       # B[h] = B^h, B[0] unused
    B[L] = e

    e_times_W = e                              # running product for sbp
    for h in range(L - 1, 0, -1):
        W_up = np.asarray(weights[h], dtype=dtype)        # W^{h+1}, (n_{h+1}, n_h)
        if algorithm == "top":
            B[h] = np.zeros_like(O_list[h])
            continue
        if algorithm == "bp":
            J = B[h + 1] @ W_up
        elif algorithm == "sbp":
            e_times_W = e_times_W @ W_up                  # e W^L ... W^{h+1}
            J = e_times_W
        elif algorithm == "rbp":
            F = np.asarray(feedback[h - 1], dtype=dtype)  # (n_h, n_{h+1})
            J = B[h + 1] @ F.T
        else:  # srbp
            F = np.asarray(feedback[h - 1], dtype=dtype)  # (n_h, n_L)
            J = e @ F.T
        if flags[h - 1]:
            B[h] = activation_derivative(activation, S_list[h]) * J
        else:
            B[h] = J
    return B[1:]


def signals(weights, biases, x, y, algorithm, feedback=(), derivative=True,
            activation="tanh", output="softmax"):
    """Postsynaptic learning signals [B^1, ..., B^L], B^h of shape (batch, n_h).

    algorithm: 'bp', 'sbp', 'rbp', 'srbp' or 'top' (see module docs / paper
    notes section 2). feedback[h-1] is F^h for hidden layer h: shape
    (n_h, n_{h+1}) for rbp, (n_h, n_L) for srbp; empty otherwise.
    derivative: bool, or one bool per hidden layer (multiply J^h by f'(S^h))."""
    S_list, O_list = forward(weights, biases, x, activation, output)
    T = targets_from(y, O_list[-1].shape[1], dtype=O_list[-1].dtype)
    return _signals_from_forward(weights, S_list, O_list, T, algorithm,
                                 feedback, derivative, activation)


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


def sgd_step(state, x, y, algorithm, feedback=(), derivative=True,
             activation="tanh", output="softmax", lr=0.1, decay=0.0, momentum=0.0):
    """One Keras-style SGD step on the batch (x, y).

    lr_t = lr / (1 + decay * t), t = number of updates done before this one.
    G_W^h = B^h^T O^{h-1} / batch,  G_b^h = mean over the batch of B^h.
    v <- momentum * v + lr_t * G;  W <- W + v   (same for biases).
    Under 'top' the hidden layers are left alone (velocity stays zero).

    Returns (new_state, batch_loss), batch_loss being the loss of the forward
    pass before the update. ``state`` is not modified."""
    weights = state["weights"]
    L = len(weights)
    biases = _bias_list(state["biases"], L)
    vel_w = state["vel_w"]
    vel_b = _bias_list(state["vel_b"], L)
    t = int(state["t"])

    S_list, O_list = forward(weights, biases, x, activation, output)
    T = targets_from(y, O_list[-1].shape[1], dtype=O_list[-1].dtype)
    batch_loss = loss(O_list[-1], T, output)
    B = _signals_from_forward(weights, S_list, O_list, T, algorithm,
                              feedback, derivative, activation)

    batch = O_list[0].shape[0]
    lr_t = lr / (1.0 + decay * t)

    new_w, new_b, new_vw, new_vb = [], [], [], []
    for h in range(1, L + 1):
        W, b = np.asarray(weights[h - 1]), biases[h - 1]
        vW, vb = np.asarray(vel_w[h - 1]), vel_b[h - 1]
        frozen = (algorithm == "top" and h < L)
        if frozen:
            new_w.append(W.copy())
            new_vw.append(vW.copy())
            new_b.append(None if b is None else np.array(b))
            new_vb.append(None if vb is None else np.array(vb))
            continue
        B_h = B[h - 1]                          # (batch, n_h)
        G_W = (B_h.T @ O_list[h - 1]) / batch   # (n_h, n_{h-1})
        vW_next = momentum * vW + lr_t * G_W
        new_vw.append(vW_next.astype(W.dtype, copy=False))
        new_w.append((W + vW_next).astype(W.dtype, copy=False))
        if b is None:
            new_b.append(None)
            new_vb.append(None)
        else:
            b = np.asarray(b)
            if vb is None:
                vb = np.zeros_like(b)
            G_b = np.mean(B_h, axis=0)          # (n_h,)
            vb_next = momentum * np.asarray(vb) + lr_t * G_b
            new_vb.append(vb_next.astype(b.dtype, copy=False))
            new_b.append((b + vb_next).astype(b.dtype, copy=False))

    new_state = dict(weights=new_w, biases=new_b, vel_w=new_vw, vel_b=new_vb, t=t + 1)
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
    b64 = [None if b is None else np.array(b, dtype=np.float64)
           for b in _bias_list(biases, L)]
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
