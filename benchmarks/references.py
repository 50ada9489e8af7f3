"""The training step of rbp-native written two more ways, for the benchmarks: numpy and PyTorch.

Both implement exactly the math of the native core (README "The algorithms"), float32:

- forward ``S^h = O^{h-1} W^hT + b^h``, ``O^h = tanh(S^h)`` for hidden layers, softmax output;
- ``e = T - O^L`` with T one-hot; the batch loss (cross-entropy from the log-sum-exp of S^L) and
  the number of correct predictions are computed every batch, as the core's ``train_epoch`` does;
- channel: ``bp`` ``J^h = B^{h+1} W^{h+1}``, ``rbp`` ``J^h = B^{h+1} F^hT``, ``srbp`` ``J^h = e F^hT``
  (``F^h`` of shape ``(n_h, n_source)``), ``B^h = (1 - O^h**2) * J^h``;
- with ``quantize_bits`` (srbp's quantised signals), each hidden ``J^h`` is replaced before the
  derivative by ``Q(J) = clip(D * round(J / D), -alpha, alpha)``, ``D = alpha * 2^(1 - bits)``, rounding
  half to even (rbp-native's ``quantize="signal"`` with nearest rounding);
- after all signals are computed, ``W^h += lr_t/n * B^hT O^{h-1}``, ``b^h += lr_t/n * sum_rows B^h``
  with ``lr_t = lr / (1 + decay * t)``;
- an epoch reshuffles the examples (a fresh permutation), gathers each mini-batch into a
  preallocated buffer and runs the step; the last batch may be smaller.

They are written the way a careful user of each library would: preallocated buffers and ``out=``
arguments, in-place ``addmm_`` for the update under ``torch.no_grad()``, no autograd. The PyTorch
trainer can also run its step through ``torch.compile``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

ALGORITHMS = ("bp", "rbp", "srbp")


def quantizer(bits: int | None, alpha: float) -> tuple[np.float32, np.float32, np.float32] | None:
    """(1/D, D, alpha) in float32 for Q(x) = clip(D * round(x / D), -alpha, alpha), D = alpha * 2^(1 - bits),
    computed as rbp-native computes them (D in double, then rounded to float32); None for no quantiser."""
    if bits is None:
        return None
    step = np.float32(alpha * 2.0 ** (1 - bits))
    return np.float32(1) / step, step, np.float32(alpha)


class NumpyEpochs:
    """An epoch of a numpy reference trainer: shuffled batches gathered into the trainer's buffers
    ``X``/``Y``, each handed to its ``step``; and copies of its parameters ``W``/``b``."""

    X: np.ndarray
    Y: np.ndarray
    W: list[np.ndarray]
    b: list[np.ndarray]
    batch: int
    rng: np.random.Generator

    def step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
        raise NotImplementedError

    def epoch(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        total = x.shape[0]
        order = self.rng.permutation(total)
        loss, correct = 0.0, 0
        for first in range(0, total, self.batch):
            idx = order[first : first + self.batch]
            n = idx.shape[0]
            np.take(x, idx, axis=0, out=self.X[:n])
            np.take(y, idx, out=self.Y[:n])
            batch_loss, batch_correct = self.step(self.X[:n], self.Y[:n])
            loss += batch_loss
            correct += batch_correct
        return loss / total, correct / total

    def weights(self) -> list[np.ndarray]:
        return [w.copy() for w in self.W]

    def biases(self) -> list[np.ndarray]:
        return [b.copy() for b in self.b]


class NumpyTrainer(NumpyEpochs):
    def __init__(
        self,
        weights: Sequence[np.ndarray],
        biases: Sequence[np.ndarray],
        feedback: Sequence[np.ndarray],
        algorithm: str,
        lr: float,
        decay: float,
        batch_size: int,
        seed: int = 0,
        quantize_bits: int | None = None,
        quantize_alpha: float = 0.125,
    ) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(algorithm)
        self.quantizer = quantizer(quantize_bits, quantize_alpha)
        self.W = [np.array(w, dtype=np.float32, order="C") for w in weights]
        self.b = [np.array(b, dtype=np.float32).reshape(-1) for b in biases]
        self.F = [np.array(f, dtype=np.float32, order="C") for f in feedback]
        self.algorithm = algorithm
        self.lr, self.decay, self.batch = float(lr), float(decay), int(batch_size)
        self.t = 0
        self.rng = np.random.default_rng(seed)
        L = len(self.W)
        n = self.batch
        sizes = [self.W[0].shape[1]] + [w.shape[0] for w in self.W]
        self.sizes = sizes
        f32 = np.float32
        self.S = [np.empty((n, sizes[h + 1]), f32) for h in range(L)]
        self.O = [np.empty((n, sizes[h + 1]), f32) for h in range(L)]
        self.D = [np.empty((n, sizes[h + 1]), f32) for h in range(L - 1)]
        self.B = [np.empty((n, sizes[h + 1]), f32) for h in range(L)]
        self.J = [np.empty((n, sizes[h + 1]), f32) for h in range(L - 1)]
        self.G = [np.empty_like(w) for w in self.W]
        self.gb = [np.empty_like(b) for b in self.b]
        self.X = np.empty((n, sizes[0]), f32)
        self.T = np.zeros((n, sizes[-1]), f32)
        self.Y = np.empty(n, np.int64)
        self.rowmax = np.empty((n, 1), f32)
        self.rowsum = np.empty((n, 1), f32)

    def step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
        """One SGD step on the batch (x, y) (n <= batch_size rows); returns (summed loss, correct)."""
        n = x.shape[0]
        L = len(self.W)
        W, b, F = self.W, self.b, self.F
        S = [s[:n] for s in self.S]
        O = [o[:n] for o in self.O]
        D = [d[:n] for d in self.D]
        B = [s[:n] for s in self.B]
        J = [j[:n] for j in self.J]
        prev = x
        for h in range(L):
            np.matmul(prev, W[h].T, out=S[h])
            S[h] += b[h]
            if h + 1 < L:
                np.tanh(S[h], out=O[h])
                np.multiply(O[h], O[h], out=D[h])
                np.subtract(1.0, D[h], out=D[h])
            else:
                m = self.rowmax[:n]
                z = self.rowsum[:n]
                np.max(S[h], axis=1, keepdims=True, out=m)
                np.subtract(S[h], m, out=O[h])
                np.exp(O[h], out=O[h])
                np.sum(O[h], axis=1, keepdims=True, out=z)
                np.divide(O[h], z, out=O[h])
            prev = O[h]
        # loss and accuracy, then e = T - O
        top = O[L - 1]
        lse = (m + np.log(z)).reshape(-1)
        loss = float(np.sum(lse) - np.sum(S[L - 1][np.arange(n), y]))
        correct = int(np.count_nonzero(np.argmax(top, axis=1) == y))
        T = self.T[:n]
        T.fill(0.0)
        T[np.arange(n), y] = 1.0
        np.subtract(T, top, out=B[L - 1])
        # channel
        for h in range(L - 2, -1, -1):
            if self.algorithm == "bp":
                np.matmul(B[h + 1], W[h + 1], out=J[h])
            elif self.algorithm == "rbp":
                np.matmul(B[h + 1], F[h].T, out=J[h])
            else:
                np.matmul(B[L - 1], F[h].T, out=J[h])
            if self.quantizer:
                inv, step, alpha = self.quantizer
                J[h] *= inv
                np.rint(J[h], out=J[h])
                J[h] *= step
                np.clip(J[h], -alpha, alpha, out=J[h])
            np.multiply(D[h], J[h], out=B[h])
        # update
        scale = np.float32(self.lr / (1.0 + self.decay * self.t) / n)
        for h in range(L):
            src = x if h == 0 else O[h - 1]
            np.matmul(B[h].T, src, out=self.G[h])
            self.G[h] *= scale
            W[h] += self.G[h]
            np.sum(B[h], axis=0, out=self.gb[h])
            self.gb[h] *= scale
            b[h] += self.gb[h]
        self.t += 1
        return loss, correct


class TorchEpochs:
    """An epoch of a PyTorch reference trainer: shuffled batches (its ``generator``) gathered into its
    buffers ``X``/``Y``, each handed to its ``step``; and copies of its parameters ``W``/``b``."""

    torch: Any
    generator: Any
    X: Any
    Y: Any
    W: list[Any]
    b: list[Any]
    batch: int

    def step(self, x: Any, y: Any) -> tuple[Any, Any]:
        raise NotImplementedError

    def epoch(self, x: Any, y: Any) -> tuple[float, float]:
        torch = self.torch
        total = x.shape[0]
        with torch.no_grad():
            order = torch.randperm(total, generator=self.generator)
            loss = torch.zeros((), dtype=torch.float64)
            correct = torch.zeros((), dtype=torch.int64)
            for first in range(0, total, self.batch):
                idx = order[first : first + self.batch]
                n = idx.shape[0]
                torch.index_select(x, 0, idx, out=self.X[:n])
                torch.index_select(y, 0, idx, out=self.Y[:n])
                batch_loss, batch_correct = self.step(self.X[:n], self.Y[:n])
                loss += batch_loss
                correct += batch_correct
        return float(loss) / total, float(correct) / total

    def weights(self) -> list[np.ndarray]:
        return [w.numpy().copy() for w in self.W]

    def biases(self) -> list[np.ndarray]:
        return [b.numpy().copy() for b in self.b]


class TorchTrainer(TorchEpochs):
    def __init__(
        self,
        weights: Sequence[np.ndarray],
        biases: Sequence[np.ndarray],
        feedback: Sequence[np.ndarray],
        algorithm: str,
        lr: float,
        decay: float,
        batch_size: int,
        seed: int = 0,
        compile: bool = False,
        quantize_bits: int | None = None,
        quantize_alpha: float = 0.125,
    ) -> None:
        import torch

        if algorithm not in ALGORITHMS:
            raise ValueError(algorithm)
        self.torch = torch
        q = quantizer(quantize_bits, quantize_alpha)
        self.quantizer = tuple(float(v) for v in q) if q else None
        f32 = torch.float32
        self.W = [torch.tensor(np.asarray(w, np.float32)) for w in weights]
        self.b = [torch.tensor(np.asarray(b, np.float32).reshape(-1)) for b in biases]
        self.F = [torch.tensor(np.asarray(f, np.float32)) for f in feedback]
        self.Ft = [f.t().contiguous() for f in self.F]  # F^hT, so that J = B @ F^hT is a plain mm
        self.algorithm = algorithm
        self.lr, self.decay, self.batch = float(lr), float(decay), int(batch_size)
        self.t = 0
        self.generator = torch.Generator().manual_seed(seed)
        L = len(self.W)
        n = self.batch
        sizes = [self.W[0].shape[1]] + [w.shape[0] for w in self.W]
        self.sizes = sizes
        self.S = [torch.empty((n, sizes[h + 1]), dtype=f32) for h in range(L)]
        self.O = [torch.empty((n, sizes[h + 1]), dtype=f32) for h in range(L)]
        self.D = [torch.empty((n, sizes[h + 1]), dtype=f32) for h in range(L - 1)]
        self.B = [torch.empty((n, sizes[h + 1]), dtype=f32) for h in range(L)]
        self.J = [torch.empty((n, sizes[h + 1]), dtype=f32) for h in range(L - 1)]
        self.X = torch.empty((n, sizes[0]), dtype=f32)
        self.T = torch.zeros((n, sizes[-1]), dtype=f32)
        self.Y = torch.empty(n, dtype=torch.int64)
        self.compiled = None
        if compile:
            self.compiled = torch.compile(self._functional_step, dynamic=False)

    # The eager step: preallocated buffers, out= and in-place ops.
    def _eager_step(self, x: Any, y: Any, scale: float) -> tuple[Any, Any]:
        torch = self.torch
        n = x.shape[0]
        L = len(self.W)
        W, b = self.W, self.b
        S = [s[:n] for s in self.S]
        O = [o[:n] for o in self.O]
        D = [d[:n] for d in self.D]
        B = [s[:n] for s in self.B]
        J = [j[:n] for j in self.J]
        prev = x
        for h in range(L):
            torch.addmm(b[h], prev, W[h].t(), out=S[h])
            if h + 1 < L:
                torch.tanh(S[h], out=O[h])
                torch.mul(O[h], O[h], out=D[h])
                D[h].neg_().add_(1.0)
            else:
                m = S[h].amax(dim=1, keepdim=True)
                torch.sub(S[h], m, out=O[h])
                O[h].exp_()
                z = O[h].sum(dim=1, keepdim=True)
                O[h].div_(z)
            prev = O[h]
        top = O[L - 1]
        loss = (m + z.log()).sum() - S[L - 1].gather(1, y.view(-1, 1)).sum()
        correct = (top.argmax(dim=1) == y).sum()
        T = self.T[:n]
        T.zero_()
        T.scatter_(1, y.view(-1, 1), 1.0)
        torch.sub(T, top, out=B[L - 1])
        for h in range(L - 2, -1, -1):
            if self.algorithm == "bp":
                torch.mm(B[h + 1], W[h + 1], out=J[h])
            elif self.algorithm == "rbp":
                torch.mm(B[h + 1], self.Ft[h], out=J[h])
            else:
                torch.mm(B[L - 1], self.Ft[h], out=J[h])
            if self.quantizer:
                inv, step, alpha = self.quantizer
                J[h].mul_(inv).round_().mul_(step).clamp_(-alpha, alpha)
            torch.mul(D[h], J[h], out=B[h])
        for h in range(L):
            src = x if h == 0 else O[h - 1]
            W[h].addmm_(B[h].t(), src, alpha=scale)
            b[h].add_(B[h].sum(dim=0), alpha=scale)
        return loss, correct

    # The same step without out= buffers, for torch.compile (inductor plans its own memory); the
    # parameters are still updated in place.
    def _functional_step(self, x: Any, y: Any, scale: Any, W: list, b: list, Ft: list) -> tuple[Any, Any]:
        torch = self.torch
        L = len(W)
        O = []
        D = []
        prev = x
        s = None
        for h in range(L):
            s = torch.addmm(b[h], prev, W[h].t())
            if h + 1 < L:
                o = torch.tanh(s)
                D.append(1.0 - o * o)
            else:
                o = torch.softmax(s, dim=1)
            O.append(o)
            prev = o
        top = O[L - 1]
        loss = torch.logsumexp(s, dim=1).sum() - s.gather(1, y.view(-1, 1)).sum()
        correct = (top.argmax(dim=1) == y).sum()
        e = torch.nn.functional.one_hot(y, top.shape[1]).to(top.dtype) - top
        B = [None] * L
        B[L - 1] = e
        for h in range(L - 2, -1, -1):
            if self.algorithm == "bp":
                j = B[h + 1] @ W[h + 1]
            elif self.algorithm == "rbp":
                j = B[h + 1] @ Ft[h]
            else:
                j = e @ Ft[h]
            if self.quantizer:
                inv, step, alpha = self.quantizer
                j = torch.clamp(torch.round(j * inv) * step, -alpha, alpha)
            B[h] = D[h] * j
        for h in range(L):
            src = x if h == 0 else O[h - 1]
            W[h].add_(scale * (B[h].t() @ src))
            b[h].add_(scale * B[h].sum(dim=0))
        return loss, correct

    def step(self, x: Any, y: Any) -> tuple[Any, Any]:
        torch = self.torch
        n = x.shape[0]
        scale = self.lr / (1.0 + self.decay * self.t) / n
        with torch.no_grad():
            if self.compiled is not None:
                out = self.compiled(x, y, torch.tensor(scale, dtype=torch.float32), self.W, self.b, self.Ft)
            else:
                out = self._eager_step(x, y, scale)
        self.t += 1
        return out
