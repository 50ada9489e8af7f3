"""The bridge from the ODEs to the real algorithm: the native trainer, full batch, follows them.

For a linear network with squared error and full-batch SGD (no momentum, no decay), one
native step is exactly one forward-Euler step of the averaged ODE with ``dt = lr``:
``W^h += lr * mean_batch(B^h O^{h-1}^T)`` and the batch means are the data statistics
(``alpha = E(IT)``, ``beta = E(I^2)``, ``S_II``, ``S_TI``) of a small deterministic data set
built to have them exactly.  So the native trajectory at step ``k`` stays within ``O(lr)``
of the ODE solution at ``t = k lr`` (Euler is first order), and coincides with a numpy Euler
integration of the system's ``rhs`` to rounding.

Supported systems (:mod:`.systems`): ``A111`` (SRBP), ``Chain`` (SRBP, or RBP with
:func:`.systems.srbp_to_rbp` feedback), ``ChainGD`` (BP), ``A1N1`` (SRBP), ``AN1N`` and
``Linear3``/``A222`` (SRBP).  Needs the compiled package (``rbp_native._core``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .systems import A1N1, A111, AN1N, Chain, ChainGD, Linear3, System, srbp_to_rbp

if TYPE_CHECKING:
    from ..network import MLP
    from ..trainer import Trainer

__all__ = [
    "BridgeResult",
    "NativeSetup",
    "compare",
    "convergence_order",
    "euler",
    "matrix_dataset",
    "native_setup",
    "scalar_dataset",
]


def scalar_dataset(alpha: float, beta: float, noise: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Four scalar examples with ``E(I^2) = beta`` and ``E(IT) = alpha`` exactly.

    ``I = sqrt(beta) (1, -1, 1, -1)``, ``T = (alpha/beta) I + noise (1, 1, -1, -1)``: the
    noise is orthogonal to ``I`` (so the targets are not exactly realisable, yet the averaged
    dynamics depend on ``alpha`` and ``beta`` only).  Shapes ``(4, 1)``.
    """
    if not beta > 0:
        raise ValueError("beta must be > 0")
    s = math.sqrt(beta)
    x = s * np.array([1.0, -1.0, 1.0, -1.0])
    t = (alpha / beta) * x + noise * np.array([1.0, 1.0, -1.0, -1.0])
    return x[:, None], t[:, None]


def matrix_dataset(Sigma_II, Sigma_TI) -> tuple[np.ndarray, np.ndarray]:
    """``2 N0`` examples with ``mean(x x^T) = S_II`` and ``mean(t x^T) = S_TI`` exactly.

    With ``S_II = L L^T`` (Cholesky), the inputs are ``+-sqrt(N0) L e_k`` and the targets
    ``t = S_TI S_II^{-1} x``.  Shapes ``(2 N0, N0)`` and ``(2 N0, N2)``.
    """
    S = np.atleast_2d(np.asarray(Sigma_II, dtype=float))
    STI = np.atleast_2d(np.asarray(Sigma_TI, dtype=float))
    n0 = S.shape[0]
    Lc = np.linalg.cholesky(S)
    cols = math.sqrt(n0) * Lc.T  # row k = sqrt(N0) (L e_k)^T
    x = np.concatenate([cols, -cols], axis=0)
    M = STI @ np.linalg.inv(S)
    return x, x @ M.T


@dataclass
class NativeSetup:
    """A native network and trainer reproducing ``system``, with its data and state map."""

    system: System
    algorithm: str
    net: MLP
    trainer: Trainer
    x: np.ndarray
    t: np.ndarray

    def state(self) -> np.ndarray:
        """The network's weights as the system's state vector."""
        W = [np.asarray(w, dtype=float) for w in self.net.weights]
        s = self.system
        if isinstance(s, A111):
            return np.array([W[0][0, 0], W[1][0, 0]])
        if isinstance(s, (Chain, ChainGD)):
            return np.array([w[0, 0] for w in W])
        if isinstance(s, A1N1):
            return np.concatenate([W[0][:, 0], W[1][0, :]])
        if isinstance(s, AN1N):
            return np.concatenate([W[0][0, :], W[1][:, 0]])
        if isinstance(s, Linear3):
            return np.concatenate([W[0].ravel(), W[1].ravel()])
        raise TypeError(f"no native mapping for {type(s).__name__}")

    def step(self) -> float:
        return float(self.trainer.step(self.x, self.t))


def native_setup(system: System, lr: float, algorithm: str | None = None) -> NativeSetup:
    """Build the native network/trainer for ``system`` (linear units, no bias, float64).

    ``algorithm`` defaults to ``"bp"`` for :class:`ChainGD` and ``"srbp"`` otherwise; a
    :class:`Chain` also accepts ``"rbp"`` (feedback ``c^RBP = srbp_to_rbp(c)``).
    """
    import rbp_native as rbp

    if isinstance(system, A111):
        sizes = [1, 1, 1]
        weights = [np.array([[system.a1]]), np.array([[system.a2]])]
        feedback = [np.array([[system.c1]])]
        x, t = scalar_dataset(system.alpha, system.beta)
    elif isinstance(system, ChainGD):
        sizes = [1] * (system.L + 1)
        weights = [np.array([[a]]) for a in system.a0]
        feedback = []
        x, t = scalar_dataset(system.alpha, system.beta)
    elif isinstance(system, Chain):
        sizes = [1] * (system.L + 1)
        weights = [np.array([[a]]) for a in system.a0]
        cs = srbp_to_rbp(system.c) if algorithm == "rbp" else np.asarray(system.c)
        feedback = [np.array([[c]]) for c in cs]
        x, t = scalar_dataset(system.alpha, system.beta)
    elif isinstance(system, A1N1):
        sizes = [1, system.N, 1]
        weights = [np.array(system.a0)[:, None], np.array(system.b0)[None, :]]
        feedback = [np.array(system.c)[:, None]]
        x, t = scalar_dataset(system.alpha, system.beta)
    elif isinstance(system, AN1N):
        sizes = [system.N, 1, system.N]
        weights = [np.array(system.A0)[None, :], np.array(system.B0)[:, None]]
        feedback = [np.array(system.C)[None, :]]
        x, t = matrix_dataset(system.Sigma_II, system.Sigma_TI)
    elif isinstance(system, Linear3):
        n0, n1, n2 = system.sizes
        sizes = [n0, n1, n2]
        weights = [system.A1.copy(), system.A2.copy()]
        feedback = [system.C1.copy()]
        x, t = matrix_dataset(system.Sigma_II, system.Sigma_TI)
    else:
        raise TypeError(f"no native mapping for {type(system).__name__}")
    if algorithm is None:
        algorithm = "bp" if isinstance(system, ChainGD) else "srbp"
    if algorithm == "bp":
        if not isinstance(system, ChainGD):
            raise ValueError("algorithm 'bp' is the ChainGD system")
        feedback = []
    elif algorithm == "rbp" and not isinstance(system, Chain) and len(sizes) > 3:
        raise ValueError("algorithm 'rbp' is supported for chains (and = srbp for L = 2)")
    elif isinstance(system, ChainGD):
        raise ValueError("ChainGD is trained with algorithm 'bp'")
    net = rbp.MLP(sizes, activation="linear", output="linear", bias=False, dtype="float64")
    net.set_weights([np.ascontiguousarray(w, dtype=np.float64) for w in weights])
    trainer = rbp.Trainer(net, algorithm=algorithm, lr=lr, decay=0.0, momentum=0.0, batch_size=x.shape[0])
    if feedback:
        trainer.set_feedback([np.ascontiguousarray(f, dtype=np.float64) for f in feedback])
    return NativeSetup(system, algorithm, net, trainer, np.ascontiguousarray(x), np.ascontiguousarray(t))


def euler(system: System, lr: float, steps: int) -> np.ndarray:
    """Forward Euler on ``system.rhs`` with ``dt = lr``: shape ``(n, steps + 1)``."""
    y = np.empty((system.y0.size, steps + 1))
    y[:, 0] = system.y0
    for k in range(steps):
        y[:, k + 1] = y[:, k] + lr * np.asarray(system.rhs(k * lr, y[:, k]))
    return y


@dataclass
class BridgeResult:
    """Native trajectory vs the ODE at ``t_k = k lr`` (``(n, steps + 1)`` arrays)."""

    system: str
    algorithm: str
    lr: float
    times: np.ndarray
    native: np.ndarray
    ode: np.ndarray
    euler: np.ndarray

    @property
    def max_error(self) -> float:
        """``max_k |native(t_k) - y(t_k)|_inf``: the discretisation error, ``O(lr)``."""
        return float(np.max(np.abs(self.native - self.ode)))

    @property
    def euler_gap(self) -> float:
        """``max_k |native_k - euler_k|_inf``: native step vs numpy Euler step (rounding)."""
        return float(np.max(np.abs(self.native - self.euler)))


def compare(system: System, lr: float, t_end: float, algorithm: str | None = None) -> BridgeResult:
    """Run the native trainer for ``round(t_end / lr)`` full-batch steps and compare."""
    steps = round(t_end / lr)
    setup = native_setup(system, lr, algorithm)
    native = np.empty((system.y0.size, steps + 1))
    native[:, 0] = setup.state()
    for k in range(steps):
        setup.step()
        native[:, k + 1] = setup.state()
    times = lr * np.arange(steps + 1)
    integ = system.integrate(t_eval=times, rtol=1e-11, atol=1e-13)
    if integ.y.shape != native.shape:
        raise RuntimeError(f"ODE integration stopped early: {integ.message}")
    return BridgeResult(
        system=system.label,
        algorithm=setup.algorithm,
        lr=lr,
        times=times,
        native=native,
        ode=integ.y,
        euler=euler(system, lr, steps),
    )


def convergence_order(system: System, lrs, t_end: float, algorithm: str | None = None) -> tuple[np.ndarray, float]:
    """Errors ``max_error`` for each learning rate and the fitted log-log slope (~1)."""
    lrs = np.asarray(lrs, dtype=float)
    errs = np.array([compare(system, lr, t_end, algorithm).max_error for lr in lrs])
    slope = float(np.polyfit(np.log(lrs), np.log(errs), 1)[0])
    return errs, slope
