"""A[1,N,1] under RBP (Theorem 5)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
from numpy.polynomial import Polynomial

from ..polynomial import Prediction, theorem1
from .base import _X, System, _bc, _signed_uniform, _well_conditioned
from .results import Check, Integration, make_check


def a1n1_leading_coefficient(beta: float, c) -> float:
    """The paper's leading coefficient of the A[1,N,1] cubic: ``-beta sum c_i^2/(2 c1^2)``."""
    c = np.asarray(c, dtype=float)
    return float(-beta * np.sum(c**2) / (2 * c[0] ** 2))


@dataclass
class A1N1(System):
    """A[1,N,1] (expansive) under RBP: ``da_i/dt = c_i (alpha - beta P)``,
    ``db_i/dt = a_i (alpha - beta P)``, ``P = sum a_i b_i``."""

    alpha: float = 1.0
    beta: float = 1.0
    c: tuple = (1.0, -0.5, 0.8)
    a0: tuple = (0.3, -0.2, 0.1)
    b0: tuple = (-0.5, 0.4, 0.2)

    name: ClassVar[str] = "a1n1"
    title: ClassVar[str] = ""
    theorem: ClassVar[str] = "Thm 5"

    def __post_init__(self) -> None:
        self.c = tuple(float(v) for v in np.ravel(self.c))
        self.a0 = tuple(float(v) for v in np.ravel(self.a0))
        self.b0 = tuple(float(v) for v in np.ravel(self.b0))
        if not (len(self.c) == len(self.a0) == len(self.b0) >= 1):
            raise ValueError("c, a0, b0 must have the same length N >= 1")
        if any(v == 0 for v in self.c):
            raise ValueError("channel weights must be non-zero")
        if not self.beta > 0:
            raise ValueError("beta = E(I^2) must be > 0")

    @property
    def N(self) -> int:
        return len(self.c)

    @property
    def label(self) -> str:
        return f"A[1,{self.N},1] RBP"

    @property
    def y0(self) -> np.ndarray:
        return np.array(self.a0 + self.b0, dtype=float)

    def rhs(self, t, y):
        y = np.asarray(y)
        a, b = y[: self.N], y[self.N :]
        e = self.alpha - self.beta * np.sum(a * b, axis=0)
        return np.concatenate([_bc(self.c, a) * e, a * e], axis=0)

    def invariants(self, y) -> dict[str, np.ndarray]:
        y = np.asarray(y)
        a, b = y[: self.N], y[self.N :]
        c = _bc(self.c, a)
        out = {"b_i - a_i^2/(2c_i)": b - a**2 / (2 * c)}
        if self.N > 1:
            out["a_i - (c_i/c_1) a_1"] = a[1:] - c[1:] / c[0] * a[0]
        return out

    def couplings(self) -> tuple[list[Polynomial], list[Polynomial]]:
        c, a0, b0 = np.array(self.c), np.array(self.a0), np.array(self.b0)
        a_polys = [c[i] / c[0] * (_X - a0[0]) + a0[i] for i in range(self.N)]
        K = b0 - a0**2 / (2 * c)
        b_polys = [a_polys[i] ** 2 / (2 * c[i]) + K[i] for i in range(self.N)]
        return a_polys, b_polys

    def reduced_polynomial(self) -> Polynomial:
        a_polys, b_polys = self.couplings()
        P = Polynomial([0.0])
        for ap, bp in zip(a_polys, b_polys):
            P = P + ap * bp
        return self.c[0] * (self.alpha - self.beta * P)

    def predict(self) -> Prediction:
        p = theorem1(self.reduced_polynomial(), self.a0[0])
        a_polys, b_polys = self.couplings()
        state = np.array([float(q(p.limit)) for q in a_polys + b_polys])
        P = float(np.dot(state[: self.N], state[self.N :]))
        return replace(p, state=state, quantities={"P": P})

    def checks(self, integration: Integration | None = None) -> list[Check]:
        integ = integration or self.integrate()
        rows = [self._limit_check(f"{self.theorem}: limit (Thm 1 on cubic Q)", self.predict(), integ)]
        rows.append(self._invariant_check(integ))
        Q = self.reduced_polynomial()
        lead = a1n1_leading_coefficient(self.beta, self.c)
        diff = abs(Q.degree() - 3) + abs(Q.coef[-1] - lead) / abs(lead)
        rows.append(
            make_check(
                self.label,
                "deg Q = 3, lead = -beta sum c_i^2/(2c1^2)",
                (3, lead),
                (Q.degree(), float(Q.coef[-1])),
                diff,
                1e-12,
            )
        )
        y = integ.limit
        P = float(np.dot(y[: self.N], y[self.N :]))
        rows.append(
            make_check(
                self.label,
                "limit on alpha - beta P = 0",
                self.alpha / self.beta,
                P,
                abs(P - self.alpha / self.beta),
                self.limit_tol,
            )
        )
        return rows

    @classmethod
    def random(cls, rng: np.random.Generator, N: int = 3) -> A1N1:
        for _ in range(200):
            s = cls(
                alpha=_signed_uniform(rng, 0.3, 1.5),
                beta=rng.uniform(0.5, 1.5),
                c=tuple(_signed_uniform(rng, 0.2, 1.5, N)),
                a0=tuple(rng.uniform(-1, 1, N)),
                b0=tuple(rng.uniform(-1, 1, N)),
            )
            p = s.predict()
            if _well_conditioned(p.polynomial, p.limit, 0.05):
                return s
        return s
