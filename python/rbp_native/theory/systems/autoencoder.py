"""The A[N,1,N] linear autoencoder (Lemma 1, Theorem 6)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
from numpy.polynomial import Polynomial

from ..polynomial import Prediction, real_roots, theorem1
from .base import System, _bc
from .results import Check, Integration, make_check


@dataclass
class AN1N(System):
    """A[N,1,N] (compressive) under RBP: ``A`` (1xN) first layer, ``B`` (Nx1) second layer,
    ``C`` (1xN) channel: ``dA/dt = C (S_TI - B A S_II)``, ``dB/dt = (S_TI - B A S_II) A^T``.

    Lemma 1: ``|A|^2/2 - C B`` is conserved.  Theorem 6 (``S_II = S_TI = I``): with
    ``A = f C/... + A_perp``, ``f -> lambda``, the positive root of
    ``|C|^2 lambda^3/2 - K lambda - 1 = 0`` (``K`` the Lemma 1 constant), ``A_perp -> 0``,
    ``B -> C^T/(lambda |C|^2)`` and ``BA -> C^T C/|C|^2``.
    """

    C: tuple = (1.0, 0.5, -0.5)
    A0: tuple = (0.2, -0.3, 0.1)
    B0: tuple = (0.1, 0.2, -0.2)
    Sigma_II: Any = None
    Sigma_TI: Any = None

    name: ClassVar[str] = "an1n"
    theorem: ClassVar[str] = "Thm 6"

    def __post_init__(self) -> None:
        self.C = tuple(float(v) for v in np.ravel(self.C))
        self.A0 = tuple(float(v) for v in np.ravel(self.A0))
        self.B0 = tuple(float(v) for v in np.ravel(self.B0))
        N = len(self.C)
        if not (len(self.A0) == len(self.B0) == N >= 1):
            raise ValueError("C, A0, B0 must have the same length N")
        self.Sigma_II = np.eye(N) if self.Sigma_II is None else np.asarray(self.Sigma_II, float)
        self.Sigma_TI = np.eye(N) if self.Sigma_TI is None else np.asarray(self.Sigma_TI, float)
        if self.Sigma_II.shape != (N, N) or self.Sigma_TI.shape != (N, N):
            raise ValueError("Sigma_II and Sigma_TI must be N x N")
        if not np.any(self.C):
            raise ValueError("C must be non-zero")

    @property
    def N(self) -> int:
        return len(self.C)

    @property
    def label(self) -> str:
        return f"A[{self.N},1,{self.N}] RBP"

    @property
    def identity_data(self) -> bool:
        I = np.eye(self.N)
        return np.array_equal(self.Sigma_II, I) and np.array_equal(self.Sigma_TI, I)

    @property
    def y0(self) -> np.ndarray:
        return np.array(self.A0 + self.B0, dtype=float)

    def rhs(self, t, y):
        y = np.asarray(y)
        N = self.N
        A, B = y[:N], y[N:]
        C = _bc(self.C, A)
        AS = np.einsum("i...,ij->j...", A, self.Sigma_II)  # (A S_II)_j
        CB = np.sum(C * B, axis=0)
        CS = _bc(np.asarray(self.C) @ self.Sigma_TI, A)  # (C S_TI)_j
        dA = CS - CB * AS
        STA = np.einsum("ij,j...->i...", self.Sigma_TI, A)  # (S_TI A^T)_i
        dB = STA - B * np.sum(AS * A, axis=0)
        return np.concatenate([dA, dB], axis=0)

    def invariants(self, y) -> dict[str, np.ndarray]:
        y = np.asarray(y)
        A, B = y[: self.N], y[self.N :]
        return {"|A|^2/2 - CB": 0.5 * np.sum(A * A, axis=0) - np.sum(_bc(self.C, A) * B, axis=0)}

    @property
    def K(self) -> float:
        return float(self.invariants(self.y0)["|A|^2/2 - CB"])

    def reduced_polynomial(self) -> Polynomial:
        """``Q(f) = 1 + K f - |C|^2 f^3/2``: ``df/dt`` for ``A = f C`` (exact when ``A0`` is
        parallel to ``C``, the limit equation in general)."""
        c2 = float(np.dot(self.C, self.C))
        return Polynomial([1.0, self.K, 0.0, -c2 / 2])

    def predict(self) -> Prediction:
        if not self.identity_data:
            return Prediction(limit=math.nan, diverges=False, note="Theorem 6 needs Sigma_II = Sigma_TI = I")
        C = np.array(self.C)
        c2 = float(C @ C)
        A0 = np.array(self.A0)
        f0 = float(A0 @ C) / c2
        g0 = float(np.linalg.norm(A0 - f0 * C))
        Q = self.reduced_polynomial()
        if g0 <= 1e-14 * (1 + np.linalg.norm(A0)):
            p = theorem1(Q, f0)  # A stays parallel to C: exact 1-D dynamics
        else:
            roots, mults = real_roots(Q)
            lam = float(roots[roots > 0].max())
            p = Prediction(
                limit=lam,
                diverges=False,
                polynomial=Q,
                x0=f0,
                roots=roots,
                multiplicities=mults,
                kind="attracting",
                note="Theorem 6: positive root of |C|^2 l^3/2 - K l - 1",
            )
        lam = p.limit
        state = np.concatenate([lam * C, C / (lam * c2)])
        return replace(p, state=state, quantities={"BA": np.outer(C, C) / c2, "lambda": lam})

    def checks(self, integration: Integration | None = None) -> list[Check]:
        integ = integration or self.integrate()
        rows = [self._invariant_check(integ)]
        rows[0] = replace(rows[0], name="Lemma 1: " + rows[0].name)
        if self.identity_data:
            pred = self.predict()
            rows.append(self._limit_check(f"{self.theorem}: A -> lC, B -> C^T/(l|C|^2)", pred, integ))
            N = self.N
            BA = np.outer(integ.limit[N:], integ.limit[:N])
            d = float(np.max(np.abs(BA - pred.quantities["BA"]))) if integ.converged else math.inf
            rows.append(
                make_check(
                    self.label,
                    f"{self.theorem}: BA -> C^T C/|C|^2",
                    "C^T C/|C|^2",
                    f"max err {d:.1e}",
                    d,
                    self.limit_tol,
                )
            )
        return rows

    @classmethod
    def random(cls, rng: np.random.Generator, N: int = 3) -> AN1N:
        return cls(C=tuple(rng.normal(size=N)), A0=tuple(0.5 * rng.normal(size=N)), B0=tuple(0.5 * rng.normal(size=N)))
