"""The convolutional network of the paper's CIFAR-10 experiment (section 4.2) and its training step written
two more ways, for the benchmarks: numpy (im2col) and PyTorch (a manual backward pass under ``no_grad``).

The network (:class:`ConvNet`, the paper's by default): ``blocks`` × [convolution ``filters`` × ``kernel``²,
stride 1, "same" padding, tanh → max-pooling ``pool``², stride ``pool_stride``, "same" padding] → dense
``dense`` tanh → softmax ``classes``. Both references implement exactly the math of rbp-native's core
(docs/conv.md), in float32 (as timed) or float64 (for the agreement check, where no rounding can flip a pool's
winner, see benchmarks/README.md):

- "same" pads as TensorFlow does (:func:`same_padding`): output ``ceil(size / stride)``, the odd padding
  row/column at the bottom/right; for the 3×3 stride-2 pool on an even side that is one row and column at
  the bottom/right only. Pool padding never wins (it is ``-inf``); on ties the first maximum in row-major
  window order wins; backward, each pooled output's signal is added at its winner.
- Stage h is layer h with its activation and its pool; ``S^h`` the layer's output before the pool,
  ``O^h`` the stage's (pooled) output; ``B^h = (1 - tanh(S^h)^2) * J^h`` at the size of ``S^h``.
- ``bp``: ``J^h`` is the adjoint of layer h+1 applied to ``B^{h+1}`` (the transposed convolution with
  ``K^{h+1}`` under a convolution, ``B^{h+1} W^{h+1}`` under a dense layer), at ``O^h``, routed through
  the pool to ``S^h``.
- ``rbp``: the same with fixed random feedback: under a convolution the transposed convolution with the
  feedback **kernel** ``F^h`` (the shape of ``K^{h+1}``), under a dense layer ``B^{h+1} (F^h)^T`` with
  ``F^h`` of shape ``(N_h, N_{h+1})``; routed.
- ``srbp``: ``J^h = e (F^h)^T`` injected at ``S^h`` (before the pool, rbp-native's default), ``F^h`` of
  shape ``(C·H·W of S^h, N_L)``: no routing and no transposed convolution.
- after every signal is computed from the weights before the step: ``ΔK^h = Σ_i B^h_i col(O^{h-1}_i)^T``
  (the convolution's weight gradient), ``Δb^h`` = the sum of ``B^h`` over examples and positions (dense:
  ``B^hT O^{h-1}`` and the column sums), then Keras momentum ``v = μ v + (η_t / n) Δ; W += v`` with
  ``η_t = lr / (1 + decay t)`` (``W += (η_t / n) Δ`` without momentum).

An epoch reshuffles the examples, gathers each mini-batch into a preallocated buffer and runs the step;
the loss and the number of correct predictions are computed every batch, as rbp-native's epoch does.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from references import NumpyEpochs, TorchEpochs

ALGORITHMS = ("bp", "rbp", "srbp")


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """(output length, padding before, padding after) of a "same" window on one axis, as TensorFlow
    pads (and rbp-native, cpp/src/conv.cpp): the odd padding row/column goes after (bottom/right)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


@dataclasses.dataclass(frozen=True)
class ConvNet:
    """The paper's CIFAR-10 network by default; smaller ones (fewer filters, a smaller image) for tests."""

    channels: int = 3
    side: int = 32
    blocks: int = 3
    filters: int = 64
    kernel: int = 5
    pool: int = 3
    pool_stride: int = 2
    dense: int = 1024
    classes: int = 10

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"conv net: {field.name} must be a positive integer, got {value!r}")
        if self.kernel % 2 == 0:
            # PyTorch's conv2d pads symmetrically; an even kernel's "same" padding is not.
            raise ValueError(f"conv net: kernel must be odd, got {self.kernel}")

    @classmethod
    def parse(cls, text: str) -> ConvNet:
        """The default network with ``name=value`` overrides, comma-separated (``"filters=8,side=16"``);
        ``""`` or ``"paper"`` is the paper's network."""
        if text in ("", "paper"):
            return cls()
        names = [f.name for f in dataclasses.fields(cls)]
        values: dict[str, int] = {}
        for item in text.split(","):
            name, sep, value = item.partition("=")
            if not sep or name not in names or not value.strip().lstrip("-").isdigit():
                raise ValueError(
                    f"conv net: expected 'paper' or NAME=INTEGER items separated by commas with NAME one of "
                    f"{', '.join(names)}; got {item!r}"
                )
            values[name] = int(value)
        return cls(**values)

    def describe(self) -> str:
        side = self.side
        shapes = [f"{self.channels}x{side}x{side}"]
        for _ in range(self.blocks):
            side = same_padding(side, self.pool, self.pool_stride)[0]
            shapes.append(f"{self.filters}x{side}x{side}")
        return (
            f"{shapes[0]} → {self.blocks} × [conv {self.filters} {self.kernel}x{self.kernel} same tanh → maxpool "
            f"{self.pool}x{self.pool} stride {self.pool_stride} same] ({' → '.join(shapes)}) → dense {self.dense} "
            f"tanh → softmax {self.classes}"
        )

    @property
    def input_size(self) -> int:
        return self.channels * self.side * self.side

    def conv_stages(self) -> list[dict[str, int]]:
        """Per convolution block: its input channels and side, the convolution's padding before/after
        (its output has the input's side), and the pool's output side and padding before/after."""
        stages = []
        channels, side = self.channels, self.side
        for _ in range(self.blocks):
            _, conv_before, conv_after = same_padding(side, self.kernel, 1)
            pooled, pool_before, pool_after = same_padding(side, self.pool, self.pool_stride)
            stages.append(
                {
                    "in_channels": channels,
                    "side": side,
                    "conv_before": conv_before,
                    "conv_after": conv_after,
                    "pooled": pooled,
                    "pool_before": pool_before,
                    "pool_after": pool_after,
                }
            )
            channels, side = self.filters, pooled
        return stages

    @property
    def flat_size(self) -> int:
        """Units of the last pooled output, the dense layer's input."""
        return self.filters * self.conv_stages()[-1]["pooled"] ** 2

    def sequential(self, seed: int = 0, dtype: str = "float32") -> Any:
        """The network in rbp-native."""
        import rbp_native as rbp

        layers = rbp.layers
        stack: list[Any] = []
        for _ in range(self.blocks):
            stack.append(layers.Conv2D(self.filters, self.kernel, stride=1, padding="same", activation="tanh"))
            stack.append(layers.MaxPool2D(self.pool, stride=self.pool_stride, padding="same"))
        stack += [layers.Flatten(), layers.Dense(self.dense, "tanh"), layers.Dense(self.classes, "softmax")]
        return rbp.Sequential(stack, input_shape=(self.channels, self.side, self.side), dtype=dtype, seed=seed)

    def macs_per_example(self, algorithm: str) -> dict[str, int]:
        """Multiply-accumulates of one training example's step: ``forward`` (every layer),
        ``backward_weights`` (every layer's weight gradient: as many as its forward product) and
        ``channel`` (bp/rbp: the adjoint of every layer above a hidden stage, with the forward weights
        or the feedback, which has their shape: the transposed convolutions of blocks 2.. and the dense
        layers' products; the first convolution needs no data gradient. srbp: ``e (F^h)^T`` for every
        hidden stage, ``N_L`` per unit of ``S^h``; no transposed convolution)."""
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {algorithm!r}")
        conv = [self.filters * st["side"] ** 2 * st["in_channels"] * self.kernel**2 for st in self.conv_stages()]
        dense = self.dense * self.flat_size
        output = self.classes * self.dense
        forward = sum(conv) + dense + output
        if algorithm == "srbp":
            pre_pool = sum(self.filters * st["side"] ** 2 for st in self.conv_stages())
            channel = (pre_pool + self.dense) * self.classes
        else:
            channel = sum(conv[1:]) + dense + output
        return {"forward": forward, "backward_weights": forward, "channel": channel}

    def flops_per_example(self, algorithm: str) -> int:
        """2 × the multiply-accumulates of :meth:`macs_per_example`."""
        return 2 * sum(self.macs_per_example(algorithm).values())


def _check_inputs(
    net: ConvNet, weights: Sequence[Any], biases: Sequence[Any], feedback: Sequence[Any], algorithm: str
) -> None:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r} (expected one of {', '.join(ALGORITHMS)})")
    layers = net.blocks + 2
    if len(weights) != layers or len(biases) != layers:
        raise ValueError(f"expected {layers} weights and biases, got {len(weights)} and {len(biases)}")
    expected = layers - 1 if algorithm != "bp" else 0
    if len(feedback) != expected:
        raise ValueError(f"{algorithm} needs {expected} feedback matrices, got {len(feedback)}")


class NumpyConvTrainer(NumpyEpochs):
    """The step in numpy. Activities of the convolution blocks are kept channel-major,
    ``(C, N, H, W)``, so that a convolution is one matrix product over the whole batch: ``K (O, C·k·k)``
    times the im2col patches ``(C·k·k, N·H·W)``, which gives the next ``(O, N, H, W)`` directly; the
    transposed convolution is ``K^T`` times the signal, summed back into the padded input (col2im)."""

    def __init__(
        self,
        net: ConvNet,
        weights: Sequence[np.ndarray],
        biases: Sequence[np.ndarray],
        feedback: Sequence[np.ndarray],
        algorithm: str,
        lr: float,
        decay: float,
        momentum: float,
        batch_size: int,
        seed: int = 0,
        dtype: str = "float32",
    ) -> None:
        _check_inputs(net, weights, biases, feedback, algorithm)
        self.net, self.algorithm = net, algorithm
        self.stages = net.conv_stages()
        self.dtype = np.dtype(dtype)
        self.W = [np.array(w, dtype=self.dtype, order="C") for w in weights]
        self.b = [np.array(b, dtype=self.dtype).reshape(-1) for b in biases]
        self.F = [np.array(f, dtype=self.dtype, order="C") for f in feedback]
        self.velocity = [(np.zeros_like(w), np.zeros_like(b)) for w, b in zip(self.W, self.b)] if momentum else None
        self.lr, self.decay, self.momentum, self.batch = float(lr), float(decay), float(momentum), int(batch_size)
        self.t = 0
        self.rng = np.random.default_rng(seed)
        self.X = np.empty((self.batch, net.input_size), self.dtype)
        self.Y = np.empty(self.batch, np.int64)
        self._workspaces: dict[int, dict[str, Any]] = {}

    def _workspace(self, n: int) -> dict[str, Any]:
        """Buffers for a batch of n examples (the epoch's last batch may be smaller): made once per size."""
        ws = self._workspaces.get(n)
        if ws is not None:
            return ws
        dtype, k, p, net = self.dtype, self.net.kernel, self.net.pool, self.net
        ws: dict[str, Any] = {
            key: [] for key in ("conv_in", "cols", "S", "pool_in", "windows", "argmax", "pooled", "routed", "col2im")
        }
        for st in self.stages:
            c, side, pooled = st["in_channels"], st["side"], st["pooled"]
            padded = side + st["conv_before"] + st["conv_after"]
            ws["conv_in"].append(np.zeros((c, n, padded, padded), dtype))  # the border stays zero
            ws["cols"].append(np.empty((c, k, k, n, side, side), dtype))
            ws["S"].append(np.empty((net.filters, n * side * side), dtype))
            pool_side = side + st["pool_before"] + st["pool_after"]
            ws["pool_in"].append(np.full((net.filters, n, pool_side, pool_side), -np.inf, dtype))  # border never wins
            ws["windows"].append(np.empty((p * p, net.filters, n, pooled, pooled), dtype))
            ws["argmax"].append(np.empty((net.filters, n, pooled, pooled), np.int64))
            ws["pooled"].append(np.empty((net.filters, n, pooled, pooled), dtype))
            ws["routed"].append(np.empty((net.filters, n, pool_side, pool_side), dtype))
            ws["col2im"].append(np.empty((c, n, padded, padded), dtype))
        ws["flat"] = np.empty((n, net.flat_size), dtype)
        ws["T"] = np.zeros((n, net.classes), dtype)
        self._workspaces[n] = ws
        return ws

    def _pool_window(self, array: np.ndarray, r: int, pooled: int) -> np.ndarray:
        """The strided view of ``array`` (C, N, H, W) that holds position r (row-major) of every window."""
        dy, dx = divmod(r, self.net.pool)
        s = self.net.pool_stride
        return array[:, :, dy : dy + s * (pooled - 1) + 1 : s, dx : dx + s * (pooled - 1) + 1 : s]

    def _conv_forward(self, ws: dict[str, Any], h: int, n: int) -> None:
        """S^h, tanh, and the pool: the next block's input (or the flat dense input) from ws["conv_in"][h]."""
        st, net, k = self.stages[h], self.net, self.net.kernel
        side, pooled = st["side"], st["pooled"]
        xp, cols, s = ws["conv_in"][h], ws["cols"][h], ws["S"][h]
        for dy in range(k):
            for dx in range(k):
                cols[:, dy, dx] = xp[:, :, dy : dy + side, dx : dx + side]
        np.matmul(self.W[h].reshape(net.filters, -1), cols.reshape(-1, n * side * side), out=s)
        s += self.b[h][:, None]
        np.tanh(s, out=s)  # S^h is needed only as tanh(S^h): kept in place
        pool_in = ws["pool_in"][h]
        top = st["pool_before"]
        pool_in[:, :, top : top + side, top : top + side] = s.reshape(net.filters, n, side, side)
        windows = ws["windows"][h]
        for r in range(net.pool * net.pool):
            windows[r] = self._pool_window(pool_in, r, pooled)
        np.argmax(windows, axis=0, out=ws["argmax"][h])  # the first maximum in row-major window order
        np.max(windows, axis=0, out=ws["pooled"][h])

    def _route(self, ws: dict[str, Any], h: int, g: np.ndarray) -> np.ndarray:
        """A signal g (C, N, pooled, pooled) at O^h sent back to its winners: (C, N, side, side) at S^h."""
        st, net = self.stages[h], self.net
        out = ws["routed"][h]
        out.fill(0)
        argmax = ws["argmax"][h]
        for r in range(net.pool * net.pool):
            self._pool_window(out, r, st["pooled"])[...] += np.where(argmax == r, g, self.dtype.type(0))
        top, side = st["pool_before"], st["side"]
        return out[:, :, top : top + side, top : top + side]

    def _conv_backward_data(
        self, ws: dict[str, Any], h: int, kernel: np.ndarray, signal: np.ndarray, n: int
    ) -> np.ndarray:
        """The transposed convolution of block h with ``kernel``: ``signal`` (O, N·side²) sent to the
        block's input, at O^{h-1} (C, N, side, side): ``kernel^T signal`` summed back over the patches
        (col2im)."""
        st, k = self.stages[h], self.net.kernel
        c, side = st["in_channels"], st["side"]
        cols = (kernel.reshape(kernel.shape[0], -1).T @ signal).reshape(c, k, k, n, side, side)
        padded = ws["col2im"][h]
        padded.fill(0)
        for dy in range(k):
            for dx in range(k):
                padded[:, :, dy : dy + side, dx : dx + side] += cols[:, dy, dx]
        top = st["conv_before"]
        return padded[:, :, top : top + side, top : top + side]

    def step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
        """One SGD step on the batch (x (n, C·H·W) or (n, C, H, W), y (n,)); returns (summed loss, correct)."""
        n = x.shape[0]
        net, blocks = self.net, self.net.blocks
        ws = self._workspace(n)
        W, F = self.W, self.F
        # forward
        st0 = self.stages[0]
        top, side = st0["conv_before"], st0["side"]
        ws["conv_in"][0][:, :, top : top + side, top : top + side] = x.reshape(n, net.channels, side, side).transpose(
            1, 0, 2, 3
        )
        for h in range(blocks):
            self._conv_forward(ws, h, n)
            if h + 1 < blocks:
                nxt = self.stages[h + 1]
                top, side = nxt["conv_before"], nxt["side"]
                ws["conv_in"][h + 1][:, :, top : top + side, top : top + side] = ws["pooled"][h]
        flat = ws["flat"]
        flat.reshape(n, net.filters, -1)[...] = ws["pooled"][blocks - 1].reshape(net.filters, n, -1).transpose(1, 0, 2)
        hidden = np.tanh(flat @ W[blocks].T + self.b[blocks])
        logits = hidden @ W[blocks + 1].T + self.b[blocks + 1]
        m = logits.max(axis=1, keepdims=True)
        exp = np.exp(logits - m)
        z = exp.sum(axis=1, keepdims=True)
        out = exp / z
        loss = float(np.sum(m[:, 0] + np.log(z[:, 0])) - np.sum(logits[np.arange(n), y]))
        correct = int(np.count_nonzero(np.argmax(out, axis=1) == y))
        T = ws["T"]
        T.fill(0.0)
        T[np.arange(n), y] = 1.0
        e = T - out
        # channel: B^h for every stage, from the weights before this step
        B: list[Any] = [None] * (blocks + 2)
        B[blocks + 1] = e
        # the dense stage's source is e for every algorithm: the output layer is the one above it
        j = e @ (W[blocks + 1] if self.algorithm == "bp" else F[blocks].T)
        B[blocks] = (1 - hidden * hidden) * j
        g = None  # the signal at the last pooled output, (C, N, pooled, pooled)
        if self.algorithm != "srbp":
            above = W[blocks] if self.algorithm == "bp" else F[blocks - 1].T
            g = (B[blocks] @ above).reshape(n, net.filters, -1).transpose(1, 0, 2)
            g = g.reshape(ws["pooled"][blocks - 1].shape)
        for h in range(blocks - 1, -1, -1):
            side = self.stages[h]["side"]
            a = ws["S"][h].reshape(net.filters, n, side, side)  # tanh(S^h)
            if self.algorithm == "srbp":
                j = (e @ F[h].T).reshape(n, net.filters, side, side).transpose(1, 0, 2, 3)
            else:
                j = self._route(ws, h, g)
            B[h] = ((1 - a * a) * j).reshape(net.filters, -1)
            if h > 0 and self.algorithm != "srbp":
                kernel = W[h] if self.algorithm == "bp" else F[h - 1]
                g = self._conv_backward_data(ws, h, kernel, B[h], n)
        # updates
        scale = self.dtype.type(self.lr / (1.0 + self.decay * self.t) / n)
        for h in range(blocks + 2):
            if h < blocks:
                cols = ws["cols"][h]
                dw = (B[h] @ cols.reshape(cols.shape[0] * cols.shape[1] * cols.shape[2], -1).T).reshape(W[h].shape)
                db = B[h].sum(axis=1)
            else:
                src = flat if h == blocks else hidden
                dw = B[h].T @ src
                db = B[h].sum(axis=0)
            if self.velocity is None:
                W[h] += scale * dw
                self.b[h] += scale * db
            else:
                vw, vb = self.velocity[h]
                vw *= self.dtype.type(self.momentum)
                vw += scale * dw
                vb *= self.dtype.type(self.momentum)
                vb += scale * db
                W[h] += vw
                self.b[h] += vb
        self.t += 1
        return loss, correct


class TorchConvTrainer(TorchEpochs):
    """The step in PyTorch eager, as a careful user writes it without autograd: ``F.conv2d``
    forward; ``aten.convolution_backward`` for the weight gradient and, where the channel needs it, the
    transposed convolution (with the forward kernel for bp, with the feedback kernel for rbp: the weight
    gradient depends only on the signal and the input, so one call gives both); the pool through
    ``max_pool2d_with_indices`` on an input padded with ``-inf`` at the bottom/right (PyTorch's own
    ``padding`` is symmetric and would move the windows) and its backward kernel at the winners.
    With ``compile=True`` the whole step runs through ``torch.compile`` (the learning-rate scale passed as
    a tensor, so that its change at every step does not recompile)."""

    def __init__(
        self,
        net: ConvNet,
        weights: Sequence[np.ndarray],
        biases: Sequence[np.ndarray],
        feedback: Sequence[np.ndarray],
        algorithm: str,
        lr: float,
        decay: float,
        momentum: float,
        batch_size: int,
        seed: int = 0,
        dtype: str = "float32",
        compile: bool = False,
    ) -> None:
        import torch

        _check_inputs(net, weights, biases, feedback, algorithm)
        self.torch = torch
        self.net, self.algorithm = net, algorithm
        self.stages = net.conv_stages()
        self.dtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
        self.W = [torch.tensor(np.asarray(w), dtype=self.dtype) for w in weights]
        self.b = [torch.tensor(np.asarray(b).reshape(-1), dtype=self.dtype) for b in biases]
        self.F = [torch.tensor(np.asarray(f), dtype=self.dtype) for f in feedback]
        # Dense feedback transposed once, so that J = B F^T is a plain mm (kernels are used as they are).
        self.Ft = [f.t().contiguous() if f.dim() == 2 else f for f in self.F]
        self.velocity = (
            [(torch.zeros_like(w), torch.zeros_like(b)) for w, b in zip(self.W, self.b)] if momentum else None
        )
        self.lr, self.decay, self.momentum, self.batch = float(lr), float(decay), float(momentum), int(batch_size)
        self.t = 0
        self.generator = torch.Generator().manual_seed(seed)
        self.X = torch.empty((self.batch, net.input_size), dtype=self.dtype)
        self.Y = torch.empty(self.batch, dtype=torch.int64)
        self._workspaces: dict[int, dict[str, Any]] = {}
        self.compiled = torch.compile(self._functional_math, dynamic=False) if compile else None

    def _workspace(self, n: int) -> dict[str, Any]:
        ws = self._workspaces.get(n)
        if ws is not None:
            return ws
        torch, net, dtype = self.torch, self.net, self.dtype
        ws = {"pool_in": [], "D": [], "B": []}
        for st in self.stages:
            side = st["side"]
            pool_side = side + st["pool_before"] + st["pool_after"]
            ws["pool_in"].append(torch.full((n, net.filters, pool_side, pool_side), -float("inf"), dtype=dtype))
            ws["D"].append(torch.empty((n, net.filters, side, side), dtype=dtype))
            ws["B"].append(torch.empty((n, net.filters, side, side), dtype=dtype))
        ws["T"] = torch.zeros((n, net.classes), dtype=dtype)
        self._workspaces[n] = ws
        return ws

    def _interior(self, h: int, pool_in: Any) -> Any:
        st = self.stages[h]
        top, side = st["pool_before"], st["side"]
        return pool_in[:, :, top : top + side, top : top + side]

    def step(self, x: Any, y: Any) -> tuple[Any, Any]:
        """One SGD step on the batch (x (n, C·H·W) or (n, C, H, W), y (n,)); returns (summed loss, correct)."""
        torch = self.torch
        with torch.no_grad():
            scale = self.lr / (1.0 + self.decay * self.t) / x.shape[0]
            if self.compiled is not None:
                out = self.compiled(x, y, torch.tensor(scale, dtype=self.dtype))
            else:
                out = self._math(x, y, scale)
            self.t += 1
            return out

    def _math(self, x: Any, y: Any, scale: float) -> tuple[Any, Any]:
        """The step's arithmetic in eager mode, in the workspaces; `scale` is lr_t / n."""
        torch, net = self.torch, self.net
        aten = torch.ops.aten
        conv2d = torch.nn.functional.conv2d
        n, blocks = x.shape[0], net.blocks
        ws = self._workspace(n)
        W, b = self.W, self.b
        pool, stride = [net.pool] * 2, [net.pool_stride] * 2
        # forward
        inputs = [x.reshape(n, net.channels, net.side, net.side)]
        argmax = []
        for h, st in enumerate(self.stages):
            pad = st["conv_before"]  # == conv_after: the kernel is odd
            s = conv2d(inputs[h], W[h], b[h], padding=pad)
            pool_in = ws["pool_in"][h]
            a = self._interior(h, pool_in)
            torch.tanh(s, out=a)
            d = ws["D"][h]
            torch.mul(a, a, out=d)
            d.neg_().add_(1.0)
            pooled, idx = aten.max_pool2d_with_indices(pool_in, pool, stride)
            inputs.append(pooled)
            argmax.append(idx)
        flat, hidden, out, loss, correct = self._dense_forward(inputs[blocks], y)
        T = ws["T"]
        T.zero_()
        T.scatter_(1, y.view(-1, 1), 1.0)
        e = T.sub_(out)  # T is refilled every step
        # channel, with the weight gradients of the convolutions as they come (from the weights before the step)
        dw, db, g = self._dense_backward(e, flat, hidden, inputs[blocks].shape)
        for h in range(blocks - 1, -1, -1):
            st = self.stages[h]
            bh = ws["B"][h]
            if self.algorithm == "srbp":
                torch.mul(ws["D"][h], torch.mm(e, self.Ft[h]).view(bh.shape), out=bh)
            else:
                routed = aten.max_pool2d_with_indices_backward(
                    g, ws["pool_in"][h], pool, stride, [0, 0], [1, 1], False, argmax[h]
                )
                torch.mul(ws["D"][h], self._interior(h, routed), out=bh)
            g, dw[h], db[h] = self._conv_backward(h, bh, inputs[h])
        self._update(dw, db, scale)
        return loss, correct

    def _functional_math(self, x: Any, y: Any, scale: Any) -> tuple[Any, Any]:
        """The same step without out= buffers or writes into views, for torch.compile (which falls back to
        eager on those); `scale` (lr_t / n) a 0-d tensor."""
        torch, net = self.torch, self.net
        aten, functional = torch.ops.aten, torch.nn.functional
        n, blocks = x.shape[0], net.blocks
        W, b = self.W, self.b
        pool, stride = [net.pool] * 2, [net.pool_stride] * 2
        inputs = [x.reshape(n, net.channels, net.side, net.side)]
        pool_ins, derivatives, argmax = [], [], []
        for h, st in enumerate(self.stages):
            a = torch.tanh(functional.conv2d(inputs[h], W[h], b[h], padding=st["conv_before"]))
            derivatives.append(1.0 - a * a)
            before, after = st["pool_before"], st["pool_after"]
            pool_in = functional.pad(a, (before, after, before, after), value=-float("inf"))
            pooled, idx = aten.max_pool2d_with_indices(pool_in, pool, stride)
            pool_ins.append(pool_in)
            inputs.append(pooled)
            argmax.append(idx)
        flat, hidden, out, loss, correct = self._dense_forward(inputs[blocks], y)
        e = functional.one_hot(y, net.classes).to(out.dtype) - out
        dw, db, g = self._dense_backward(e, flat, hidden, inputs[blocks].shape)
        for h in range(blocks - 1, -1, -1):
            st = self.stages[h]
            if self.algorithm == "srbp":
                bh = derivatives[h] * e.mm(self.Ft[h]).view(derivatives[h].shape)
            else:
                routed = aten.max_pool2d_with_indices_backward(
                    g, pool_ins[h], pool, stride, [0, 0], [1, 1], False, argmax[h]
                )
                top, side = st["pool_before"], st["side"]
                bh = derivatives[h] * routed[:, :, top : top + side, top : top + side]
            g, dw[h], db[h] = self._conv_backward(h, bh, inputs[h])
        self._update(dw, db, scale)
        return loss, correct

    def _dense_forward(self, pooled: Any, y: Any) -> tuple[Any, Any, Any, Any, Any]:
        """The dense stage and the softmax on the last block's pooled maps: (flat input, hidden, softmax
        output, summed loss, correct). In place only on the tensors it creates (no out= buffers), so that
        the eager and the compiled step share it."""
        torch, blocks, W, b = self.torch, self.net.blocks, self.W, self.b
        flat = pooled.reshape(pooled.shape[0], -1)
        hidden = torch.tanh(torch.addmm(b[blocks], flat, W[blocks].t()))
        logits = torch.addmm(b[blocks + 1], hidden, W[blocks + 1].t())
        m = logits.amax(dim=1, keepdim=True)
        out = torch.sub(logits, m).exp_()
        z = out.sum(dim=1, keepdim=True)
        out.div_(z)
        loss = (m + z.log()).sum() - logits.gather(1, y.view(-1, 1)).sum()
        correct = (out.argmax(dim=1) == y).sum()
        return flat, hidden, out, loss, correct

    def _dense_backward(self, e: Any, flat: Any, hidden: Any, pooled_shape: Any) -> tuple[list, list, Any]:
        """From the output error e: the gradient lists (dw, db) with the output and dense layers' entries
        filled in, and the signal passed down to the last block's pooled maps (None for srbp, whose blocks
        take e through their own feedback). Uses up `hidden` (f' computed in place)."""
        torch, blocks, W = self.torch, self.net.blocks, self.W
        dw: list[Any] = [None] * (blocks + 2)
        db: list[Any] = [None] * (blocks + 2)
        dw[blocks + 1], db[blocks + 1] = e.t().mm(hidden), e.sum(0)
        # the dense stage's source is e for every algorithm: the output layer is the one above it
        j = torch.mm(e, W[blocks + 1] if self.algorithm == "bp" else self.Ft[blocks])
        b_dense = hidden.mul_(hidden).neg_().add_(1.0).mul_(j)  # (1 - tanh^2) J
        dw[blocks], db[blocks] = b_dense.t().mm(flat), b_dense.sum(0)
        if self.algorithm == "srbp":
            return dw, db, None
        g = torch.mm(b_dense, W[blocks] if self.algorithm == "bp" else self.Ft[blocks - 1])
        return dw, db, g.view(pooled_shape)

    def _conv_backward(self, h: int, bh: Any, block_input: Any) -> tuple[Any, Any, Any]:
        """Block h's weight and bias gradients from its signal and its input and, where the channel needs
        it (not for the first block, nor for srbp), the signal passed down: the transposed convolution with
        the forward kernel for bp, the feedback kernel F^{h-1} for rbp. The weight gradient depends only on
        the signal and the input, so one call gives all three."""
        st = self.stages[h]
        data = h > 0 and self.algorithm != "srbp"
        back = self.F[h - 1] if data and self.algorithm == "rbp" else self.W[h]
        return self.torch.ops.aten.convolution_backward(
            bh,
            block_input,
            back,
            [self.net.filters],
            [1, 1],
            [st["conv_before"]] * 2,
            [1, 1],
            False,
            [0, 0],
            1,
            [data, True, True],
        )

    def _update(self, dw: list[Any], db: list[Any], scale: Any) -> None:
        """SGD with momentum from the gradients (fresh tensors: scaled in place when `scale` is a tensor)."""
        W, b = self.W, self.b
        for h in range(len(W)):
            if isinstance(scale, float):
                gw, gb, alpha = dw[h], db[h], scale
            else:
                gw, gb, alpha = dw[h].mul_(scale), db[h].mul_(scale), 1.0
            if self.velocity is None:
                W[h].add_(gw, alpha=alpha)
                b[h].add_(gb, alpha=alpha)
            else:
                vw, vb = self.velocity[h]
                vw.mul_(self.momentum).add_(gw, alpha=alpha)
                vb.mul_(self.momentum).add_(gb, alpha=alpha)
                W[h].add_(vw)
                b[h].add_(vb)
