"""Plain-numpy oracle of the convolutional networks and their learning channels (docs/conv.md).

Written from the definitions, independently of the core's kernels: convolution by im2col built with
numpy slicing of a zero-padded array, its adjoints by scattering patches back, max-pooling by
``np.argmax`` over each window flattened in row-major order (the first maximum wins; padding is
-inf so that it never wins), and the pool's backward pass by ``np.add.at`` at the winners.

Every matrix product (a convolution, its two adjoints, a dense layer's product, a feedback product, a
weight gradient) reads its two operands through ``operand``, the identity unless a ``rounded_operands``
block replaces it (the bf16 products of ``Trainer(precision="bf16")``); the bias gradients are plain sums.

A network is a list of stages, each a dict: ``{"kind": "conv", "K": (O, C, kh, kw), "b": (O,) or None,
"stride": s, "padding": "same"|"valid", "pools": [(kh, kw, stride, padding), ...]}`` or
``{"kind": "dense", "W": (n_out, n_in), "b": (n_out,) or None}``. Activities are kept as
(N, C, H, W) arrays for spatial stages and (N, n) for dense ones; flattening is C, H, W order.
"""

import contextlib

import numpy as np

from reference import activation, activation_derivative

operand = lambda a: a  # noqa: E731  (see rounded_operands)


@contextlib.contextmanager
def rounded_operands(rounding):
    """Inside the block every product's operands are ``rounding(a)`` (float64 kept)."""
    global operand
    saved = operand
    operand = lambda a: np.asarray(rounding(a), dtype=np.float64)  # noqa: E731
    try:
        yield
    finally:
        operand = saved


def window_axis(size, kernel, stride, padding):
    """(output length, padding before) of a sliding window on one axis."""
    if padding == "valid":
        return (size - kernel) // stride + 1, 0
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2


def _padded(x, kh, kw, stride, padding, fill):
    """x (N, C, H, W) padded for the window, and the output size."""
    _, _, h, w = x.shape
    oh, top = window_axis(h, kh, stride, padding)
    ow, left = window_axis(w, kw, stride, padding)
    bottom = max((oh - 1) * stride + kh - h - top, 0)
    right = max((ow - 1) * stride + kw - w - left, 0)
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=fill)
    return xp, oh, ow, top, left


def im2col(x, kh, kw, stride, padding):
    """Patches (N, C*kh*kw, oh*ow), row index (c*kh + dy)*kw + dx; zeros over the padding."""
    n, c = x.shape[:2]
    xp, oh, ow, _, _ = _padded(x, kh, kw, stride, padding, 0.0)
    cols = np.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
    for dy in range(kh):
        for dx in range(kw):
            cols[:, :, dy, dx] = xp[:, :, dy : dy + stride * oh : stride, dx : dx + stride * ow : stride]
    return cols.reshape(n, c * kh * kw, oh * ow), oh, ow


def col2im(cols, shape, kh, kw, stride, padding):
    """The adjoint of im2col: patches (N, C*kh*kw, oh*ow) summed back into an (N, C, H, W) array."""
    n, c, h, w = shape
    xp, oh, ow, top, left = _padded(np.zeros(shape, dtype=cols.dtype), kh, kw, stride, padding, 0.0)
    cols = cols.reshape(n, c, kh, kw, oh, ow)
    for dy in range(kh):
        for dx in range(kw):
            xp[:, :, dy : dy + stride * oh : stride, dx : dx + stride * ow : stride] += cols[:, :, dy, dx]
    return xp[:, :, top : top + h, left : left + w]


def conv_forward(x, K, b, stride, padding):
    o, c, kh, kw = K.shape
    cols, oh, ow = im2col(operand(x), kh, kw, stride, padding)
    s = np.einsum("ok,nkp->nop", operand(K).reshape(o, -1), cols)
    if b is not None:
        s = s + b[None, :, None]
    return s.reshape(x.shape[0], o, oh, ow)


def conv_backward_data(g, K, input_shape, stride, padding):
    """The transposed convolution: the signal g (N, O, oh, ow) sent back to the input's shape."""
    o, c, kh, kw = K.shape
    n = g.shape[0]
    cols = np.einsum("ok,nop->nkp", operand(K).reshape(o, -1), operand(g).reshape(n, o, -1))
    return col2im(cols, (n,) + tuple(input_shape), kh, kw, stride, padding)


def conv_weight_gradient(g, x, kernel_shape, stride, padding):
    """sum_i g_i col(x_i)^T as a kernel, and the bias sums."""
    o, c, kh, kw = kernel_shape
    cols, _, _ = im2col(operand(x), kh, kw, stride, padding)
    dk = np.einsum("nop,nkp->ok", operand(g).reshape(g.shape[0], o, -1), cols).reshape(kernel_shape)
    return dk, g.sum(axis=(0, 2, 3))


def maxpool_forward(x, kh, kw, stride, padding):
    """(y, argmax): argmax holds, per output, the flat index (c, y, x) of the winner in the input."""
    n, c, h, w = x.shape
    xp, oh, ow, top, left = _padded(x, kh, kw, stride, padding, -np.inf)
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    argmax = np.empty((n, c, oh, ow), dtype=np.int64)
    for i in range(oh):
        for j in range(ow):
            window = xp[:, :, i * stride : i * stride + kh, j * stride : j * stride + kw].reshape(n, c, -1)
            k = np.argmax(window, axis=2)  # the first maximum in row-major window order
            y[:, :, i, j] = np.take_along_axis(window, k[..., None], axis=2)[..., 0]
            row = i * stride + k // kw - top
            col = j * stride + k % kw - left
            argmax[:, :, i, j] = np.arange(c)[None, :] * h * w + row * w + col
    return y, argmax


def maxpool_route(g, argmax, input_shape):
    """The pool's backward pass: each output's signal added at its winner."""
    n = g.shape[0]
    out = np.zeros((n, int(np.prod(input_shape))), dtype=g.dtype)
    rows = np.repeat(np.arange(n), argmax[0].size)
    np.add.at(out, (rows, argmax.reshape(-1)), g.reshape(-1))
    return out.reshape((n,) + tuple(input_shape))


def forward(stages, x, hidden="tanh", output="softmax"):
    """Per stage: S (pre-activation), A = f(S), O (pooled), the pools' inputs and argmax."""
    L = len(stages)
    record = []
    o = x
    for h, st in enumerate(stages):
        if st["kind"] == "conv":
            s = conv_forward(o, st["K"], st.get("b"), st["stride"], st["padding"])
        else:
            flat = o.reshape(o.shape[0], -1)
            s = operand(flat) @ operand(st["W"]).T + (0 if st.get("b") is None else st["b"])
        a = activation(output if h == L - 1 else hidden, s)
        pools = []
        cur = a
        for kh, kw, stride, padding in st.get("pools", []):
            y, am = maxpool_forward(cur, kh, kw, stride, padding)
            pools.append((cur.shape[1:], am))
            cur = y
        record.append({"input": o, "S": s, "A": a, "O": cur, "pools": pools})
        o = cur
    return record


def _flat(a):
    return a.reshape(a.shape[0], -1)


def route(rec, g):
    """A signal at the stage's pooled output sent back through its pools to S's size (flat)."""
    for shape, am in reversed(rec["pools"]):
        g = maxpool_route(g.reshape(am.shape), am, shape)
    return _flat(g)


def adjoint(stage, rec_input, g):
    """The weighted layer's adjoint: g (flat, at its output) to its input's size (flat)."""
    if stage["kind"] == "conv":
        n = g.shape[0]
        out_shape = conv_forward(rec_input[:1], stage["K"], None, stage["stride"], stage["padding"]).shape[1:]
        return _flat(
            conv_backward_data(
                g.reshape((n,) + out_shape), stage["K"], rec_input.shape[1:], stage["stride"], stage["padding"]
            )
        )
    return operand(g) @ operand(stage["W"])


def signals(
    stages,
    x,
    T,
    algorithm,
    feedback=(),
    derivative=True,
    hidden="tanh",
    output="softmax",
    injection="pre_pool",
    sources=None,
    transform="none",
    quantizer=None,
):
    """B^1 .. B^L (flat, at S's size). ``feedback[h]``: a dense (rows, n_source) matrix, or, for rbp
    under a convolution, a kernel of that convolution's shape. ``transform`` ("sign", "magnitude")
    applies to each hidden B^h as it is formed, so the layers below receive the transformed signal;
    ``quantizer`` (a function) to each hidden J^h before the derivative."""
    rec = forward(stages, x, hidden, output)
    L = len(stages)
    e = T - _flat(rec[-1]["O"])
    flags = [derivative] * (L - 1) if isinstance(derivative, bool) else list(derivative)
    if sources is None:
        sources = ["output" if algorithm == "srbp" else "above"] * (L - 1)
    B = [None] * L
    J = [None] * L
    B[L - 1] = e
    J[L - 1] = e
    for h in range(L - 2, -1, -1):
        above = stages[h + 1]
        inp = rec[h + 1]["input"]
        if algorithm == "bp":
            j = route(rec[h], adjoint(above, inp, B[h + 1]))
        elif algorithm == "sbp":
            j = route(rec[h], adjoint(above, inp, J[h + 1]))
        elif algorithm in ("rbp", "srbp"):
            F = feedback[h]
            source = B[h + 1] if sources[h] == "above" else e
            if F.ndim == 4:
                j = route(
                    rec[h],
                    adjoint(
                        {"kind": "conv", "K": F, "stride": above["stride"], "padding": above["padding"]}, inp, source
                    ),
                )
            elif sources[h] == "above" or injection == "post_pool":
                j = route(rec[h], operand(source) @ operand(F).T)
            else:
                j = operand(source) @ operand(F).T
        elif algorithm == "top":
            j = np.zeros_like(_flat(rec[h]["S"]))
        else:
            raise ValueError(algorithm)
        if quantizer is not None:
            j = quantizer(j)
        J[h] = j
        d = _flat(activation_derivative(hidden, rec[h]["S"]))
        B[h] = d * j if flags[h] else j
        if transform == "sign":
            B[h] = np.sign(B[h])
        elif transform == "magnitude":
            B[h] = np.abs(B[h])
    return B, rec


def step(
    stages,
    x,
    T,
    lr,
    algorithm,
    feedback=(),
    derivative=True,
    hidden="tanh",
    output="softmax",
    injection="pre_pool",
    sources=None,
):
    """One SGD step without momentum: the new stages."""
    B, rec = signals(stages, x, T, algorithm, feedback, derivative, hidden, output, injection, sources)
    n = x.shape[0]
    new = []
    for h, st in enumerate(stages):
        st = dict(st)
        if algorithm == "top" and h < len(stages) - 1:
            new.append(st)
            continue
        inp = rec[h]["input"]
        if st["kind"] == "conv":
            g = B[h].reshape(rec[h]["S"].shape)
            dk, db = conv_weight_gradient(g, inp, st["K"].shape, st["stride"], st["padding"])
            st["K"] = st["K"] + lr * dk / n
        else:
            st["W"] = st["W"] + lr * operand(B[h]).T @ operand(_flat(inp)) / n
            db = B[h].sum(axis=0)
        if st.get("b") is not None:
            st["b"] = st["b"] + lr * db / n
        new.append(st)
    return new


def loss(stages, x, T, hidden="tanh"):
    """Mean softmax cross-entropy of the network's output."""
    rec = forward(stages, x, hidden, "softmax")
    s = _flat(rec[-1]["S"])
    s = s - s.max(axis=1, keepdims=True)
    log_p = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
    return float(-(T * log_p).sum() / x.shape[0])
