"""A[1,1,1] under RBP (section 7, Theorem 2)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
from numpy.polynomial import Polynomial

from ..polynomial import Prediction, theorem1
from .base import _X, System, _signed_uniform, _well_conditioned
from .results import Check, Integration, make_check


def a111_stability(a1, a2, c1, beta):
    """``beta (c1 a2 + a1^2)``: minus the non-zero eigenvalue of the A[1,1,1] RBP Jacobian at a
    fixed point on the hyperbola (the other eigenvalue, along the hyperbola, is 0)."""
    return beta * (c1 * np.asarray(a2) + np.asarray(a1) ** 2)


def a111_is_attractor(a1, a2, c1, beta) -> bool:
    """A fixed point of A[1,1,1] RBP is an attractor iff ``beta (c1 a2 + a1^2) > 0``."""
    return bool(a111_stability(a1, a2, c1, beta) > 0)


def a111_parabola_hyperbola_intersection(alpha: float, beta: float, c1: float) -> tuple[float, float]:
    """Where the parabola ``a1^2 + c1 a2 = 0`` meets the hyperbola ``a1 a2 = alpha/beta``:
    ``a1 = (-c1 alpha/beta)^(1/3)`` (real cube root), ``a2 = -a1^2/c1``."""
    a1 = float(np.cbrt(-c1 * alpha / beta))
    return a1, -a1 * a1 / c1


@dataclass
class A111(System):
    """A[1,1,1] under RBP (= SRBP): ``da1/dt = c1 (alpha - beta P)``,
    ``da2/dt = a1 (alpha - beta P)``, ``P = a1 a2``."""

    alpha: float = 1.0
    beta: float = 1.0
    c1: float = 1.0
    a1: float = 0.5
    a2: float = -1.0

    name: ClassVar[str] = "a111"
    title: ClassVar[str] = "A[1,1,1] RBP"
    theorem: ClassVar[str] = "Thm 2"

    def __post_init__(self) -> None:
        if not self.beta > 0:
            raise ValueError("beta = E(I^2) must be > 0")

    @property
    def y0(self) -> np.ndarray:
        return np.array([self.a1, self.a2], dtype=float)

    def rhs(self, t, y):
        a1, a2 = y[0], y[1]
        e = self.alpha - self.beta * a1 * a2
        return np.stack([self.c1 * e, a1 * e])

    def invariants(self, y) -> dict[str, np.ndarray]:
        a1, a2 = np.asarray(y)[0], np.asarray(y)[1]
        if self.c1 == 0:
            return {"a1": a1}
        return {"K = a2 - a1^2/(2c1)": a2 - a1**2 / (2 * self.c1)}

    @property
    def K(self) -> float:
        return self.a2 - self.a1**2 / (2 * self.c1)

    def reduced_polynomial(self) -> Polynomial:
        """``Q(a1) = c1 (alpha - beta a1 (a1^2/(2c1) + K))``; for ``c1 = 0`` the linear
        ``da2/dt = a1 (alpha - beta a1 a2)`` in the variable a2."""
        if self.c1 == 0:
            return self.a1 * (self.alpha - self.beta * self.a1 * _X)
        a2x = _X**2 / (2 * self.c1) + self.K
        return self.c1 * (self.alpha - self.beta * _X * a2x)

    def predict(self) -> Prediction:
        Q = self.reduced_polynomial()
        if self.c1 == 0:
            p = theorem1(Q, self.a2)
            state = np.array([self.a1, p.limit])
            return replace(
                p, state=state, quantities={"P": self.a1 * p.limit}, note="c1 = 0: a1 frozen, a2 does gradient descent"
            )
        p = theorem1(Q, self.a1)
        a1 = p.limit
        a2 = a1**2 / (2 * self.c1) + self.K
        return replace(
            p,
            state=np.array([a1, a2]),
            quantities={"P": a1 * a2, "stability": a111_stability(a1, a2, self.c1, self.beta)},
        )

    def checks(self, integration: Integration | None = None) -> list[Check]:
        integ = integration or self.integrate()
        pred = self.predict()
        rows = [self._limit_check(f"{self.theorem}: limit (Thm 1 on cubic Q)", pred, integ)]
        rows.append(self._invariant_check(integ))
        a1, a2 = integ.limit
        s = float(a111_stability(a1, a2, self.c1, self.beta))
        rows.append(
            make_check(
                self.label, "limit is an attractor: beta(c1 a2 + a1^2) > 0", "> 0", s, max(0.0, -s), 0.0, ok=s > 0
            )
        )
        P = a1 * a2
        rows.append(
            make_check(
                self.label,
                "limit on hyperbola a1 a2 = alpha/beta",
                self.alpha / self.beta,
                P,
                abs(P - self.alpha / self.beta),
                self.limit_tol,
            )
        )
        Q = self.reduced_polynomial()
        if self.c1 != 0:
            lead = -self.beta / 2
            rows.append(
                make_check(
                    self.label,
                    "deg Q = 3, lead = -beta/2",
                    (3, lead),
                    (Q.degree(), float(Q.coef[-1])),
                    abs(Q.coef[-1] - lead) + abs(Q.degree() - 3),
                    1e-12,
                )
            )
        return rows

    @classmethod
    def random(cls, rng: np.random.Generator) -> A111:
        for _ in range(200):
            s = cls(
                alpha=_signed_uniform(rng, 0.3, 2.0),
                beta=rng.uniform(0.3, 2.0),
                c1=_signed_uniform(rng, 0.2, 2.0),
                a1=rng.uniform(-2, 2),
                a2=rng.uniform(-2, 2),
            )
            p = s.predict()
            if _well_conditioned(p.polynomial, p.limit, 0.05):
                return s
        return s
