"""Linear chains A[1,...,1]: SRBP/RBP (Theorems 3 and 4) and gradient descent."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
from numpy.polynomial import Polynomial

from ..polynomial import Prediction, real_roots, theorem1
from .base import _X, System, _bc, _signed_uniform, _well_conditioned
from .results import Check, Integration, make_check


def rbp_to_srbp(c_rbp) -> np.ndarray:
    """SRBP channel weights of a chain from RBP ones: layer ``i`` receives the error through
    ``c^RBP_i ... c^RBP_{L-1}``, so ``c^SRBP_i = prod_{k >= i} c^RBP_k``."""
    c = np.asarray(c_rbp, dtype=float)
    return np.cumprod(c[::-1])[::-1].copy()


def srbp_to_rbp(c_srbp) -> np.ndarray:
    """Inverse of :func:`rbp_to_srbp`: ``c^RBP_i = c^SRBP_i / c^SRBP_{i+1}`` (``c_L = 1``)."""
    c = np.append(np.asarray(c_srbp, dtype=float), 1.0)
    return c[:-1] / c[1:]


def chain_leading_coefficient(beta: float, c) -> float:
    """Closed-form leading coefficient of the chain's ``Q``: ``-c1 beta prod_{i>=2} l_i``
    with ``l_2 = c2/(2c1)``, ``l_{i+1} = c_{i+1}/(2c_i) l_i^2`` (``c_L = 1``).
    For L = 3 this is the paper's ``-beta c2^2/(16 c1^2)``."""
    cc = list(np.asarray(c, dtype=float)) + [1.0]
    lead_a = 1.0
    prod = 1.0
    for i in range(len(cc) - 1):
        lead_a = cc[i + 1] / (2 * cc[i]) * lead_a**2
        prod *= lead_a
    return -cc[0] * beta * prod


@dataclass
class Chain(System):
    """A[1,...,1] with L weight layers under SRBP (= RBP after ``rbp_to_srbp``):
    ``da_i/dt = c_i (alpha - beta P) prod_{k<i} a_k``, ``c_L = 1``, ``P = prod a_i``.
    ``c`` holds ``c_1 .. c_{L-1}``; ``a0`` the initial ``a_1 .. a_L``."""

    alpha: float = 1.0
    beta: float = 1.0
    c: tuple = (1.0, 0.5)
    a0: tuple = (0.5, 0.5, 0.5)

    name: ClassVar[str] = "chain"
    title: ClassVar[str] = ""
    theorem: ClassVar[str] = "Thm 4"
    t_max: ClassVar[float] = 200.0

    def __post_init__(self) -> None:
        self.c = tuple(float(v) for v in np.ravel(self.c))
        self.a0 = tuple(float(v) for v in np.ravel(self.a0))
        if len(self.a0) < 2 or len(self.c) != len(self.a0) - 1:
            raise ValueError("a chain needs L >= 2 weights a0 and L-1 channel weights c")
        if any(v == 0 for v in self.c):
            raise ValueError("channel weights must be non-zero (c_i = 0 freezes a_i)")
        if not self.beta > 0:
            raise ValueError("beta = E(I^2) must be > 0")

    @classmethod
    def from_rbp(cls, alpha: float, beta: float, c_rbp, a0) -> Chain:
        return cls(alpha=alpha, beta=beta, c=tuple(rbp_to_srbp(c_rbp)), a0=tuple(a0))

    @property
    def L(self) -> int:
        return len(self.a0)

    @property
    def label(self) -> str:
        return "A[" + ",".join(["1"] * (self.L + 1)) + "] SRBP"

    @property
    def theorem_label(self) -> str:
        return {2: "Thm 2", 3: "Thm 3"}.get(self.L, "Thm 4")

    @property
    def c_full(self) -> np.ndarray:
        return np.array(list(self.c) + [1.0])

    @property
    def y0(self) -> np.ndarray:
        return np.array(self.a0, dtype=float)

    def rhs(self, t, y):
        y = np.asarray(y)
        pre = np.cumprod(np.concatenate([np.ones_like(y[:1]), y[:-1]], axis=0), axis=0)
        P = pre[-1] * y[-1]
        e = self.alpha - self.beta * P
        return _bc(self.c_full, y) * pre * e

    def invariants(self, y) -> dict[str, np.ndarray]:
        y = np.asarray(y)
        c = self.c_full
        return {f"K{i + 1}": y[i + 1] - c[i + 1] / (2 * c[i]) * y[i] ** 2 for i in range(self.L - 1)}

    def couplings(self) -> list[Polynomial]:
        """``a_i`` as polynomials in ``a_1`` (degree ``2^(i-1)``)."""
        c = self.c_full
        inv = self.invariants(self.y0)
        polys = [_X]
        for i in range(self.L - 1):
            polys.append(c[i + 1] / (2 * c[i]) * polys[-1] ** 2 + float(inv[f"K{i + 1}"]))
        return polys

    def reduced_polynomial(self) -> Polynomial:
        P = Polynomial([1.0])
        for p in self.couplings():
            P = P * p
        return self.c[0] * (self.alpha - self.beta * P)

    def predict(self) -> Prediction:
        Q = self.reduced_polynomial()
        p = theorem1(Q, self.a0[0])
        state = np.array([float(q(p.limit)) for q in self.couplings()])
        return replace(p, state=state, quantities={"P": float(np.prod(state))})

    def checks(self, integration: Integration | None = None) -> list[Check]:
        integ = integration or self.integrate()
        pred = self.predict()
        th = self.theorem_label
        rows = [self._limit_check(f"{th}: limit (Thm 1 on Q, deg {2**self.L - 1})", pred, integ)]
        rows.append(self._invariant_check(integ))
        P = float(np.prod(integ.limit))
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
        Q = self.reduced_polynomial()
        deg = 2**self.L - 1
        lead = chain_leading_coefficient(self.beta, self.c)
        name = f"deg Q = {deg}, lead = " + ("-beta c2^2/(16c1^2)" if self.L == 3 else "-c1 beta prod l_i < 0")
        if self.L == 3:
            lead = -self.beta * self.c[1] ** 2 / (16 * self.c[0] ** 2)
        diff = abs(Q.degree() - deg) + abs(Q.coef[-1] - lead) / abs(lead)
        rows.append(
            make_check(
                self.label,
                name,
                (deg, lead),
                (Q.degree(), float(Q.coef[-1])),
                diff,
                1e-10,
                ok=diff <= 1e-10 and Q.coef[-1] < 0,
            )
        )
        return rows

    @classmethod
    def random(cls, rng: np.random.Generator, L: int = 3) -> Chain:
        for _ in range(200):
            s = cls(
                alpha=rng.uniform(0.3, 1.5),
                beta=rng.uniform(0.5, 1.5),
                c=tuple(_signed_uniform(rng, 0.3, 1.5, L - 1)),
                a0=tuple(rng.uniform(-1.2, 1.2, L)),
            )
            p = s.predict()
            if _well_conditioned(p.polynomial, p.limit, 0.05):
                return s
        return s


@dataclass
class ChainGD(System):
    """A[1,...,1] under gradient descent (BP): ``da_i/dt = (alpha - beta P) prod_{k != i} a_k``.

    Invariants ``a_i^2 - a_1^2``.  For L = 2 (A[1,1,1] under BP) ``s = (a1 + a2)^2`` obeys the
    quadratic ODE ``ds/dt = -(beta/2) s^2 + 2 alpha s + beta K^2/2`` (``K = a1^2 - a2^2``),
    to which Theorem 1 applies.  For any L the limit is fixed by the invariants: with ``m``
    the weight of least magnitude and ``D_j = a_j(0)^2 - a_m(0)^2``, ``x = a_m^2`` is the
    unique positive root of ``x prod_{j != m}(x + D_j) = (alpha/beta)^2``; only ``a_m`` can
    change sign, and it ends with the sign making ``P = alpha/beta``.
    """

    alpha: float = 1.0
    beta: float = 1.0
    a0: tuple = (0.5, -1.0)

    name: ClassVar[str] = "chain-gd"
    theorem: ClassVar[str] = "GD"

    def __post_init__(self) -> None:
        self.a0 = tuple(float(v) for v in np.ravel(self.a0))
        if len(self.a0) < 2:
            raise ValueError("a chain needs L >= 2 weights")
        if not self.beta > 0:
            raise ValueError("beta = E(I^2) must be > 0")

    @property
    def L(self) -> int:
        return len(self.a0)

    @property
    def label(self) -> str:
        return "A[" + ",".join(["1"] * (self.L + 1)) + "] BP"

    @property
    def y0(self) -> np.ndarray:
        return np.array(self.a0, dtype=float)

    def rhs(self, t, y):
        y = np.asarray(y)
        one = np.ones_like(y[:1])
        pre = np.cumprod(np.concatenate([one, y[:-1]], axis=0), axis=0)
        suf = np.cumprod(np.concatenate([one, y[:0:-1]], axis=0), axis=0)[::-1]
        P = pre[-1] * y[-1]
        return (self.alpha - self.beta * P) * pre * suf

    def invariants(self, y) -> dict[str, np.ndarray]:
        y = np.asarray(y)
        return {f"a{i + 1}^2 - a1^2": y[i] ** 2 - y[0] ** 2 for i in range(1, self.L)}

    def reduced_polynomial(self) -> Polynomial | None:
        """L = 2 only: ``Q(s)`` for ``s = (a1 + a2)^2`` (or ``s = (a1 - a2)^2`` if
        ``a1 + a2 = 0``, where ``ds/dt = -2 alpha s - beta s^2/2``)."""
        if self.L != 2:
            return None
        a1, a2 = self.a0
        K = a1 * a1 - a2 * a2
        if a1 + a2 != 0:
            return Polynomial([self.beta * K * K / 2, 2 * self.alpha, -self.beta / 2])
        return Polynomial([0.0, -2 * self.alpha, -self.beta / 2])

    def limit_polynomial(self) -> tuple[Polynomial, int]:
        a = np.array(self.a0)
        m = int(np.argmin(a**2))
        R = _X
        for j in range(self.L):
            if j != m:
                R = R * (_X + (a[j] ** 2 - a[m] ** 2))
        return R - (self.alpha / self.beta) ** 2, m

    def _predict_by_invariants(self) -> Prediction:
        a = np.array(self.a0)
        R, m = self.limit_polynomial()
        roots, _ = real_roots(R)
        pos = roots[roots >= 0]
        x = float(pos.max()) if pos.size else 0.0
        mags = np.sqrt(np.maximum(x + a**2 - a[m] ** 2, 0.0))
        signs = np.where(a >= 0, 1.0, -1.0)
        others = np.prod(np.delete(signs, m))
        signs[m] = np.sign(self.alpha / self.beta) * others if self.alpha != 0 else signs[m]
        state = signs * mags
        return Prediction(
            limit=x,
            diverges=False,
            polynomial=R,
            x0=float(a[m] ** 2),
            roots=roots,
            state=state,
            quantities={"P": float(np.prod(state))},
            note=f"x = a{m + 1}^2: positive root of x prod(x + D_j) - (alpha/beta)^2",
        )

    def predict(self) -> Prediction:
        if self.L != 2:
            return self._predict_by_invariants()
        a1, a2 = self.a0
        Q = self.reduced_polynomial()
        if a1 + a2 != 0:
            u0 = a1 + a2
            p = theorem1(Q, u0 * u0)
            u = math.copysign(math.sqrt(max(p.limit, 0.0)), u0)
            v = (a1 * a1 - a2 * a2) / u if u != 0 else 0.0
        else:
            v0 = a1 - a2
            p = theorem1(Q, v0 * v0)
            v = math.copysign(math.sqrt(max(p.limit, 0.0)), v0)
            u = 0.0
        state = np.array([(u + v) / 2, (u - v) / 2])
        return replace(
            p, state=state, quantities={"P": float(state[0] * state[1])}, note="Theorem 1 on s = (a1 + a2)^2"
        )

    def checks(self, integration: Integration | None = None) -> list[Check]:
        integ = integration or self.integrate()
        pred = self.predict()
        name = (
            "BP: limit (Thm 1 on quadratic Q(s), s = (a1+a2)^2)"
            if self.L == 2
            else "GD: limit from invariants a_i^2 - a_j^2"
        )
        rows = [self._limit_check(name, pred, integ)]
        if self.L == 2:
            rows.append(
                self._limit_check("GD: limit from invariants a_i^2 - a_j^2", self._predict_by_invariants(), integ)
            )
        rows.append(self._invariant_check(integ))
        P = float(np.prod(integ.limit))
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
    def random(cls, rng: np.random.Generator, L: int = 2) -> ChainGD:
        for _ in range(200):
            a0 = rng.uniform(-1.5, 1.5, L)
            srt = np.sort(a0**2)
            if srt[1] - srt[0] > 0.05 and np.prod(np.abs(a0)) > 0.02 or L == 2:
                break
        return cls(alpha=_signed_uniform(rng, 0.3, 1.5), beta=rng.uniform(0.5, 1.5), a0=tuple(a0))
