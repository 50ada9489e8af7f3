"""Theorem 1 itself: ``dx/dt = Q(x)`` for a given polynomial."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
from numpy.polynomial import Polynomial

from ..polynomial import Prediction, real_roots, theorem1, time_to_reach
from .base import System, _signed_uniform
from .results import Check, Integration, make_check


@dataclass
class PolynomialODE(System):
    """``dx/dt = Q(x)`` for a given polynomial (coefficients ascending)."""

    coefficients: tuple = (0.0, 3.0, 0.0, -1.0)  # 3x - x^3: roots -sqrt3, 0, sqrt3
    x0: float = 0.5

    name: ClassVar[str] = "theorem1"
    theorem: ClassVar[str] = "Thm 1"
    t_max: ClassVar[float] = 100.0

    def __post_init__(self) -> None:
        self.coefficients = tuple(float(v) for v in np.ravel(self.coefficients))
        self._poly = Polynomial(np.array(self.coefficients))

    @property
    def label(self) -> str:
        return "dx/dt = Q(x)"

    @property
    def y0(self) -> np.ndarray:
        return np.array([self.x0])

    def rhs(self, t, y):
        return self._poly(np.asarray(y))

    def reduced_polynomial(self) -> Polynomial:
        return self._poly

    def predict(self) -> Prediction:
        p = theorem1(self._poly, self.x0)
        return replace(p, state=np.array([p.limit]))

    @property
    def bound(self) -> float:
        """Blow-up bound: far beyond the roots, yet small enough for the time to the
        singularity to stay resolvable in floating point."""
        roots, _ = real_roots(self._poly)
        scale = 1.0 + max([abs(self.x0)] + [abs(r) for r in roots])
        n = self._poly.degree()
        if n < 2:
            return 1e3 * scale
        # time left to the singularity from |x| = B is ~ 1/((n-1)|kn| B^(n-1)): keep >= 1e-9
        lead = abs(float(self._poly.coef[-1]))
        resolvable = (1e9 / ((n - 1) * lead)) ** (1.0 / (n - 1))
        return max(min(1e3, resolvable), 10.0) * scale

    def integrate(self, **kwargs) -> Integration:
        kwargs.setdefault("bound", self.bound)
        return super().integrate(**kwargs)

    def checks(self, integration: Integration | None = None) -> list[Check]:
        integ = integration or self.integrate()
        pred = self.predict()
        q = [float(v) for v in np.round(self._poly.coef, 3)]
        name = f"Thm 1: Q = {q}, x0 = {self.x0:.3g}"
        if pred.diverges:
            # time to reach the integrator's bound, exact for every degree; for degree >= 2
            # it is within ~1/(|kn| bound^(n-1)) of the finite escape time blowup_time
            t_pred = time_to_reach(self._poly, self.x0, math.copysign(self.bound, pred.limit))
            t_got = integ.blowup_time if integ.blew_up and integ.blowup_time is not None else math.inf
            same_side = integ.blew_up and np.sign(integ.y_end[0]) == np.sign(pred.limit)
            d = abs(t_pred - t_got) / max(1.0, t_pred) if same_side else math.inf
            esc = (
                f", escape t*={pred.blowup_time:.6g}"
                if pred.finite_time and pred.blowup_time is not None
                else ", infinite time"
            )
            return [
                make_check(
                    self.label,
                    name + f" diverges (time to |x| = {self.bound:.3g})",
                    f"{pred.limit:+} at t={t_pred:.6g}{esc}",
                    f"{integ.limit[0]:+} at t={t_got:.6g}",
                    d,
                    1e-5,
                )
            ]
        if pred.kind == "attracting":
            return [self._limit_check(name, pred, integ)]
        got = float(integ.y_end[0])
        return [
            make_check(
                self.label,
                name + f" ({pred.kind} root)",
                pred.limit,
                got,
                abs(pred.limit - got) / (1 + abs(pred.limit)),
                1e-2,
            )
        ]

    @classmethod
    def random(cls, rng: np.random.Generator) -> PolynomialODE:
        k = int(rng.integers(1, 4))
        roots = np.sort(rng.uniform(-2, 2, k))
        while k > 1 and np.min(np.diff(roots)) < 0.3:
            roots = np.sort(rng.uniform(-2, 2, k))
        lead = _signed_uniform(rng, 0.3, 1.5)
        poly = lead * Polynomial.fromroots(roots)
        x0 = float(rng.uniform(-2.5, 2.5))
        while np.min(np.abs(roots - x0)) < 0.1:
            x0 = float(rng.uniform(-2.5, 2.5))
        return cls(coefficients=tuple(poly.coef), x0=x0)
