"""The non-linear power unit ``O = a2 (a1 I)^mu`` (eqs. 113-114, Theorem 12)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
from numpy.polynomial import Polynomial

from .._deps import require_scipy
from ..polynomial import Prediction, theorem1
from .base import _X, System
from .results import Check, Integration, make_check


def _pow(x, mu: float):
    """``x^mu``: plain power for integer ``mu``, sign-preserving ``sign(x)|x|^mu`` otherwise."""
    if float(mu).is_integer():
        return np.asarray(x, dtype=float) ** int(mu)
    x = np.asarray(x, dtype=float)
    return np.sign(x) * np.abs(x) ** mu


@dataclass
class PowerUnit(System):
    """A[1,1,1] with hidden unit ``O1 = (a1 I)^mu``, linear output (section 7.9).

    Without the derivative (eq. 113): ``da1/dt = c1 (gamma - delta P)``,
    ``da2/dt = a1^mu (alpha - beta P)``; with it (eq. 114):
    ``da1/dt = mu c1 a1^(mu-1) (alpha - beta P)``, same ``da2/dt``; ``P = a2 a1^mu``,
    ``alpha = E(T I^mu)``, ``beta = E(I^2mu)``, ``gamma = E(T I)``, ``delta = E(I^(mu+1))``.
    """

    mu: float = 3.0
    derivative: bool = True
    alpha: float = 1.0
    beta: float = 1.0
    gamma: float = 0.5
    delta: float = 1.0
    c1: float = 1.0
    a1: float = 0.5
    a2: float = 0.2

    name: ClassVar[str] = "power"
    theorem: ClassVar[str] = "Thm 12"
    t_max: ClassVar[float] = 200.0

    def __post_init__(self) -> None:
        if self.mu <= 0:
            raise ValueError("mu must be > 0")
        if not self.beta > 0:
            raise ValueError("beta must be > 0")

    @classmethod
    def from_data(cls, I, T, mu: float, **kwargs) -> PowerUnit:
        """Statistics from samples of inputs ``I`` and targets ``T``."""
        I = np.asarray(I, dtype=float)
        T = np.asarray(T, dtype=float)
        return cls(
            mu=mu,
            alpha=float(np.mean(T * _pow(I, mu))),
            beta=float(np.mean(_pow(I, mu) ** 2)),
            gamma=float(np.mean(T * I)),
            delta=float(np.mean(I * _pow(I, mu))),
            **kwargs,
        )

    @property
    def label(self) -> str:
        mu = int(self.mu) if float(self.mu).is_integer() else self.mu
        return f"power mu={mu} " + ("with f'" if self.derivative else "no f'")

    @property
    def y0(self) -> np.ndarray:
        return np.array([self.a1, self.a2], dtype=float)

    def rhs(self, t, y):
        a1, a2 = y[0], y[1]
        a1mu = _pow(a1, self.mu)
        P = a2 * a1mu
        if self.derivative:
            da1 = self.mu * self.c1 * _pow(a1, self.mu - 1) * (self.alpha - self.beta * P)
        else:
            da1 = self.c1 * (self.gamma - self.delta * P) * np.ones_like(a1mu)
        return np.stack([da1, a1mu * (self.alpha - self.beta * P)])

    def invariants(self, y) -> dict[str, np.ndarray]:
        if not self.derivative:
            return {}
        a1, a2 = np.asarray(y)[0], np.asarray(y)[1]
        return {"a2 - a1^2/(2 mu c1)": a2 - a1**2 / (2 * self.mu * self.c1)}

    @property
    def K(self) -> float:
        return self.a2 - self.a1**2 / (2 * self.mu * self.c1)

    def has_fixed_point(self) -> bool:
        """Existence of a fixed point.  With f': ``a2 a1^mu = alpha/beta`` on the coupling
        curve (for a1 != 0).  Without: needs ``alpha delta = beta gamma`` (a1 != 0) or
        ``gamma = 0`` (a1 = 0)."""
        if self.derivative:
            return True
        return self.gamma == 0 or self.alpha * self.delta == self.beta * self.gamma

    def reduced_polynomial(self) -> Polynomial | None:
        """Integer ``mu`` with f': ``Q(a1) = mu c1 a1^(mu-1) (alpha - beta a1^mu
        (a1^2/(2 mu c1) + K))``, degree ``2 mu + 1``, leading coefficient ``-beta/2``."""
        if not self.derivative or not float(self.mu).is_integer():
            return None
        m = int(self.mu)
        a2x = _X**2 / (2 * m * self.c1) + self.K
        return m * self.c1 * _X ** (m - 1) * (self.alpha - self.beta * _X**m * a2x)

    def eq117_root(self) -> float:
        """Positive root ``t`` of ``beta t^mu (t^2/(2 mu c1) + K) = alpha`` (eq. 117)."""
        if not (self.alpha > 0 and self.c1 > 0):
            raise ValueError("Theorem 12 assumes alpha > 0, beta > 0, c1 > 0")
        sp = require_scipy()

        def g(t):
            return self.beta * t**self.mu * (t * t / (2 * self.mu * self.c1) + self.K) - self.alpha

        hi = 1.0
        while g(hi) < 0:
            hi *= 2.0
        return float(sp.optimize.brentq(g, 0.0, hi, xtol=1e-15, rtol=1e-14))

    def predict(self) -> Prediction:
        if not self.derivative:
            return Prediction(
                limit=math.nan,
                diverges=not self.has_fixed_point(),
                note="eq. 113: no fixed point unless alpha delta = beta gamma",
            )
        Q = self.reduced_polynomial()
        if Q is not None:
            p = theorem1(Q, self.a1)
        else:
            p = Prediction(
                limit=self.eq117_root(),
                diverges=False,
                x0=self.a1,
                note="non-integer mu: positive root of eq. 117 (brentq)",
            )
        a1 = p.limit
        a2 = a1 * a1 / (2 * self.mu * self.c1) + self.K
        return replace(p, state=np.array([a1, a2]), quantities={"P": a2 * float(_pow(a1, self.mu))})

    def loss_excess(self, y) -> np.ndarray:
        """``E - E_min`` up to the factor ``beta/2``: ``(P - alpha/beta)^2`` (the loss is
        ``E(T^2)/2 - alpha P + beta P^2/2``)."""
        a1, a2 = np.asarray(y)[0], np.asarray(y)[1]
        P = a2 * _pow(a1, self.mu)
        return (P - self.alpha / self.beta) ** 2

    def checks(self, integration: Integration | None = None) -> list[Check]:
        if self.derivative:
            integ = integration or self.integrate()
            pred = self.predict()
            rows = [self._limit_check(f"{self.theorem}: a1 -> positive root of eq. 117", pred, integ)]
            if self.alpha > 0 and self.c1 > 0 and self.a1 > 0:
                r = self.eq117_root()
                got = float(integ.limit[0])
                rows.append(
                    make_check(
                        self.label,
                        "eq. 117 root (brentq) = integrated a1",
                        r,
                        got,
                        abs(r - got) / (1 + abs(r)),
                        self.limit_tol,
                    )
                )
            rows.append(self._invariant_check(integ))
            Q = self.reduced_polynomial()
            if Q is not None:
                m = int(self.mu)
                rows.append(
                    make_check(
                        self.label,
                        f"deg Q = {2 * m + 1}, lead = -beta/2",
                        (2 * m + 1, -self.beta / 2),
                        (Q.degree(), float(Q.coef[-1])),
                        abs(Q.degree() - 2 * m - 1) + abs(Q.coef[-1] + self.beta / 2),
                        1e-12,
                    )
                )
            return rows
        return self._checks_no_derivative(integration)

    def no_derivative_asymptotics(self) -> dict[str, Any] | None:
        """Asymptotics of eq. 113 (derived here, not in the paper), for
        ``alpha, beta, gamma, delta, c1 > 0``, ``a1(0) > 0`` and ``gamma/delta != alpha/beta``:

        * ``gamma/delta > alpha/beta``: ``a1 ~ r t -> inf`` with
          ``r = c1 (gamma - delta alpha/beta)``, ``a2 -> 0``, ``P -> alpha/beta`` (the loss
          tends to its minimum, but the weights diverge);
        * ``gamma/delta < alpha/beta``: ``a1 -> 0+``, ``a2 ~ sqrt(r t) -> inf`` with
          ``r = 2 (gamma/delta)(alpha - beta gamma/delta)``, ``P -> gamma/delta`` (the loss
          stays above its minimum by ``beta/2 (gamma/delta - alpha/beta)^2``).
        """
        if self.derivative or not (min(self.alpha, self.beta, self.gamma, self.delta, self.c1, self.a1) > 0):
            return None
        p_top, p_bottom = self.alpha / self.beta, self.gamma / self.delta
        if p_bottom == p_top:
            return None
        if p_bottom > p_top:
            return {
                "regime": "a1 -> inf",
                "P": p_top,
                "index": 0,
                "power": 1,
                "rate": self.c1 * (self.gamma - self.delta * p_top),
                "excess": 0.0,
            }
        return {
            "regime": "a1 -> 0, a2 -> inf",
            "P": p_bottom,
            "index": 1,
            "power": 2,
            "rate": 2 * p_bottom * (self.alpha - self.beta * p_bottom),
            "excess": (p_bottom - p_top) ** 2,
        }

    def _checks_no_derivative(self, integration: Integration | None) -> list[Check]:
        T = 400.0
        integ = integration or self.integrate(t_max=T, t_cap=T, rtol=1e-9, atol=1e-11)
        fixed = self.has_fixed_point()
        rows = [
            make_check(
                self.label,
                "eq. 113: no fixed point (alpha delta != beta gamma)",
                "none",
                "exists" if fixed else "none",
                0.0 if not fixed else 1.0,
                0.0,
            )
        ]
        res = integ.residual
        rows.append(
            make_check(
                self.label,
                "trajectory does not converge",
                "no limit",
                "blows up" if integ.blew_up else f"|rhs| {res:.2g}",
                0.0 if (integ.blew_up or not integ.converged) else 1.0,
                0.0,
            )
        )
        asym = self.no_derivative_asymptotics()
        if asym is None or integ.blew_up:
            return rows
        t_end = integ.t_end
        a1, a2 = integ.y_end
        P = float(a2 * _pow(a1, self.mu))
        rows.append(
            make_check(
                self.label,
                f"{asym['regime']}: P(t) -> {asym['P']:.4g}",
                asym["P"],
                P,
                abs(P - asym["P"]) / (1 + abs(asym["P"])),
                5e-3,
            )
        )
        # slope over the second half of the run removes the O(1) offset of the transient
        w = integ.y[asym["index"]] ** asym["power"]
        w_half = float(np.interp(t_end / 2, integ.t, w))
        rate = float((w[-1] - w_half) / (t_end / 2))
        which = "d(a1)/dt" if asym["index"] == 0 else "d(a2^2)/dt"
        rows.append(
            make_check(
                self.label,
                f"growth {which} -> {asym['rate']:.4g}",
                asym["rate"],
                rate,
                abs(rate - asym["rate"]) / asym["rate"],
                0.02,
            )
        )
        exc = float(self.loss_excess(integ.y_end))
        rows.append(
            make_check(
                self.label, "excess loss (P - alpha/beta)^2", asym["excess"], exc, abs(exc - asym["excess"]), 5e-3
            )
        )
        return rows

    @classmethod
    def random(cls, rng: np.random.Generator, derivative: bool = True) -> PowerUnit:
        mu = float(rng.integers(1, 4)) if rng.random() < 0.7 else float(rng.uniform(1.0, 3.0))
        while True:
            s = cls(
                mu=mu,
                derivative=derivative,
                alpha=rng.uniform(0.3, 1.5),
                beta=rng.uniform(0.5, 1.5),
                gamma=rng.uniform(0.2, 1.5),
                delta=rng.uniform(0.5, 1.5),
                c1=rng.uniform(0.3, 1.5),
                a1=rng.uniform(0.2, 1.5),
                a2=rng.uniform(-1, 1),
            )
            # without f': keep the two critical products apart (clean asymptotics)
            if derivative or abs(s.gamma / s.delta - s.alpha / s.beta) >= 0.2:
                return s
