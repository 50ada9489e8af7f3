"""General linear A[N0,N1,N2] (eq. 88, Theorems 7-8) and A[2,2,2] (Theorem 10)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from ..polynomial import Prediction
from .base import System, _short
from .results import Check, Integration, make_check


@dataclass
class Linear3(System):
    """A[N0,N1,N2] linear under RBP/SRBP (eq. 88):
    ``dA1/dt = C1 (S_TI - A2 A1 S_II)``, ``dA2/dt = (S_TI - A2 A1 S_II) A1^T``.

    ``A1`` is N1xN0, ``A2`` N2xN1, ``C1`` N1xN2 (the N2-dim error to layer 1: ``J = C1 e``),
    ``S_II`` N0xN0, ``S_TI`` N2xN0.  Invariant ``A1 A1^T - C1 A2 - A2^T C1^T``; Theorem 8:
    ``C1 A2 A1 -> C1 S_TI S_II^{-1}``.
    """

    Sigma_II: Any = None
    Sigma_TI: Any = None
    C1: Any = None
    A1: Any = None
    A2: Any = None

    name: ClassVar[str] = "linear3"
    theorem: ClassVar[str] = "Thm 8"
    t_max: ClassVar[float] = 100.0

    def __post_init__(self) -> None:
        if self.Sigma_II is None:
            self.Sigma_II = np.array([[1.0, 0.3, 0.0], [0.3, 1.2, -0.2], [0.0, -0.2, 0.8]])
            self.Sigma_TI = np.array([[0.5, -0.4, 0.3], [0.2, 0.6, -0.5]])
            self.C1 = np.array([[1.0, 0.3], [-0.4, 0.8]])
            self.A1 = np.array([[0.1, -0.2, 0.3], [0.2, 0.1, -0.1]])
            self.A2 = np.array([[0.2, -0.1], [0.1, 0.3]])
        self.Sigma_II = np.atleast_2d(np.asarray(self.Sigma_II, dtype=float))
        self.Sigma_TI = np.atleast_2d(np.asarray(self.Sigma_TI, dtype=float))
        self.C1 = np.atleast_2d(np.asarray(self.C1, dtype=float))
        self.A1 = np.atleast_2d(np.asarray(self.A1, dtype=float))
        self.A2 = np.atleast_2d(np.asarray(self.A2, dtype=float))
        n0, n1, n2 = self.sizes
        if (
            self.Sigma_II.shape != (n0, n0)
            or self.Sigma_TI.shape != (n2, n0)
            or self.C1.shape != (n1, n2)
            or self.A2.shape != (n2, n1)
        ):
            raise ValueError("inconsistent shapes: A1 N1xN0, A2 N2xN1, C1 N1xN2, Sigma_II N0xN0, Sigma_TI N2xN0")

    @property
    def sizes(self) -> tuple[int, int, int]:
        n1, n0 = self.A1.shape
        return n0, n1, self.Sigma_TI.shape[0]

    @property
    def label(self) -> str:
        n0, n1, n2 = self.sizes
        return f"A[{n0},{n1},{n2}] RBP"

    @property
    def y0(self) -> np.ndarray:
        return np.concatenate([self.A1.ravel(), self.A2.ravel()])

    def unpack(self, y) -> tuple[np.ndarray, np.ndarray]:
        y = np.asarray(y)
        n0, n1, n2 = self.sizes
        rest = y.shape[1:]
        A1 = y[: n1 * n0].reshape((n1, n0) + rest)
        A2 = y[n1 * n0 :].reshape((n2, n1) + rest)
        return A1, A2

    def rhs(self, t, y):
        y = np.asarray(y)
        A1, A2 = self.unpack(y)
        rest = y.shape[1:]
        P = np.einsum("ij...,jk...->ik...", A2, A1)
        M = self.Sigma_TI.reshape(self.Sigma_TI.shape + (1,) * len(rest)) - np.einsum(
            "ij...,jk->ik...", P, self.Sigma_II
        )
        dA1 = np.einsum("ij,jk...->ik...", self.C1, M)
        dA2 = np.einsum("ij...,kj...->ik...", M, A1)
        n0, n1, n2 = self.sizes
        return np.concatenate([dA1.reshape((n1 * n0,) + rest), dA2.reshape((n2 * n1,) + rest)], axis=0)

    def invariant_matrix(self, y) -> np.ndarray:
        A1, A2 = self.unpack(y)
        AAt = np.einsum("ij...,kj...->ik...", A1, A1)
        CA2 = np.einsum("ij,jk...->ik...", self.C1, A2)
        return AAt - CA2 - np.swapaxes(CA2, 0, 1)

    def invariants(self, y) -> dict[str, np.ndarray]:
        Kmat = self.invariant_matrix(y)
        iu = np.triu_indices(Kmat.shape[0])
        return {"A1A1^T - C1A2 - A2^T C1^T": Kmat[iu]}

    def target(self) -> np.ndarray:
        """``C1 S_TI S_II^{-1}``, the limit of ``C1 A2 A1`` (Theorem 8)."""
        return self.C1 @ self.Sigma_TI @ np.linalg.inv(self.Sigma_II)

    def well_conditioned(self, min_singular: float = 0.15) -> bool:
        """The target has full rank min(N0, N1, N2) (the most C1 A2 A1 can have) with every singular
        value >= ``min_singular``: a small or zero one makes its mode converge slowly (algebraically,
        not exponentially), as in a deep linear network started near the origin."""
        sv = np.linalg.svd(self.target(), compute_uv=False)
        return bool(np.all(sv[: min(self.sizes)] >= min_singular))

    def predict(self) -> Prediction:
        return Prediction(
            limit=math.nan,
            diverges=False,
            quantities={"C1A2A1": self.target()},
            note="Theorem 8: partial convergence C1 A2 A1 -> C1 S_TI S_II^-1",
        )

    def checks(self, integration: Integration | None = None) -> list[Check]:
        integ = integration or self.integrate()
        rows = [self._invariant_check(integ)]
        target = self.target()
        A1, A2 = self.unpack(integ.limit)
        got = self.C1 @ A2 @ A1
        d = float(np.max(np.abs(got - target)) / (1 + np.max(np.abs(target)))) if np.all(np.isfinite(got)) else math.inf
        rows.append(
            make_check(self.label, f"{self.theorem}: C1A2A1 -> C1 S_TI S_II^-1", _short(target), _short(got), d, 1e-6)
        )
        A1s, A2s = self.unpack(integ.y)
        nA1 = float(np.max(np.sqrt(np.sum(A1s**2, axis=(0, 1)))))
        CA2 = np.einsum("ij,jk...->ik...", self.C1, A2s)
        nCA2 = float(np.max(np.sqrt(np.sum(CA2**2, axis=(0, 1)))))
        rows.append(
            make_check(
                self.label,
                "Thm 7/8: no blow-up, |A1|, |C1A2| bounded",
                "bounded",
                f"max |A1| {nA1:.3g}, |C1A2| {nCA2:.3g}",
                0.0 if not integ.blew_up else math.inf,
                0.0,
                ok=not integ.blew_up,
            )
        )
        return rows

    @classmethod
    def random(cls, rng: np.random.Generator, sizes: tuple[int, int, int] | None = None) -> Linear3:
        n0, n1, n2 = sizes if sizes is not None else tuple(int(v) for v in rng.integers(1, 4, size=3))
        M = rng.normal(size=(n0, n0))
        S = M @ M.T / n0 + 0.5 * np.eye(n0)
        for _ in range(200):  # no very slow modes: see well_conditioned()
            C1 = rng.normal(size=(n1, n2))
            s = cls(
                Sigma_II=S,
                Sigma_TI=rng.normal(size=(n2, n0)),
                C1=C1,
                A1=0.3 * rng.normal(size=(n1, n0)),
                A2=0.3 * rng.normal(size=(n2, n1)),
            )
            if np.linalg.svd(C1, compute_uv=False).min() >= 0.4 and s.well_conditioned():
                break
        return s


@dataclass
class A222(Linear3):
    """A[2,2,2] with ``S_II = S_TI = C1 = I`` (Theorem 10): ``dA/dt = I - BA``,
    ``dB/dt = (I - BA) A^T`` with ``A = A1``, ``B = A2``; converges, ``BA -> I``."""

    name: ClassVar[str] = "a222"
    theorem: ClassVar[str] = "Thm 10"

    def __post_init__(self) -> None:
        I = np.eye(2)
        self.Sigma_II, self.Sigma_TI, self.C1 = I, I, I
        if self.A1 is None:
            self.A1 = np.array([[0.3, -0.5], [0.4, 0.2]])
        if self.A2 is None:
            self.A2 = np.array([[-0.2, 0.1], [0.3, -0.4]])
        super().__post_init__()

    def checks(self, integration: Integration | None = None) -> list[Check]:
        integ = integration or self.integrate()
        rows = super().checks(integ)
        rows[1] = replace(rows[1], name=f"{self.theorem}: BA -> I")
        rows.append(
            make_check(
                self.label,
                f"{self.theorem}: (A, B) converges",
                "stationary",
                f"|rhs| {integ.residual:.1e}",
                integ.residual,
                1e-8,
                ok=integ.converged,
            )
        )
        return rows

    @classmethod
    def random(cls, rng: np.random.Generator, sizes=None) -> A222:
        return cls(A1=0.5 * rng.normal(size=(2, 2)), A2=0.5 * rng.normal(size=(2, 2)))
