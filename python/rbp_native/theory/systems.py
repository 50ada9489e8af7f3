"""Averaged (continuous-time, full-batch) learning dynamics of the paper's small networks.

Every system is a small dataclass holding its data statistics, channel weights and initial
state, with

* ``rhs(t, y)``: the right-hand side, vectorised (``y`` of shape ``(n,)`` or ``(n, k)``, as
  :func:`scipy.integrate.solve_ivp` passes with ``vectorized=True``);
* ``invariants(y)``: the conserved quantities, as functions of the state;
* ``reduced_polynomial()``: the 1-D polynomial ``Q`` of ``da1/dt = Q(a1)`` obtained by
  eliminating the other weights with the invariants (exact polynomial arithmetic);
* ``predict()``: Theorem 1 applied to ``Q`` (or the system's own theorem), with the full
  predicted limit state;
* ``integrate()``: a tight-tolerance numerical integration (:func:`integrate`);
* ``checks()``: the table rows comparing prediction and integration.

Notation follows docs/paper-notes.md section 7: ``alpha = E(IT)``, ``beta = E(I^2)``,
``P`` the end-to-end product, SRBP channel weights ``c_i`` (layer ``i`` receives
``c_i (T - O)``), ``c_L = 1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
from numpy.polynomial import Polynomial

from ._deps import require_scipy
from .polynomial import Prediction, real_roots, theorem1, time_to_reach

__all__ = [
    "A1N1",
    "A111",
    "A222",
    "AN1N",
    "REGISTRY",
    "Chain",
    "ChainGD",
    "Check",
    "Integration",
    "Linear3",
    "PolynomialODE",
    "PowerUnit",
    "System",
    "a1n1_leading_coefficient",
    "a111_is_attractor",
    "a111_parabola_hyperbola_intersection",
    "a111_stability",
    "chain_leading_coefficient",
    "integrate",
    "jacobian",
    "make_systems",
    "rbp_to_srbp",
    "srbp_to_rbp",
]

_X = Polynomial([0.0, 1.0])


# ---------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------

@dataclass
class Integration:
    """A numerical trajectory. ``y`` has shape ``(n, len(t))``; ``limit`` is the final state
    with components beyond the blow-up bound replaced by ``+-inf``."""

    t: np.ndarray
    y: np.ndarray
    limit: np.ndarray
    blew_up: bool
    converged: bool
    residual: float
    blowup_time: float | None = None
    message: str = ""

    @property
    def t_end(self) -> float:
        return float(self.t[-1])

    @property
    def y_end(self) -> np.ndarray:
        return self.y[:, -1]


@dataclass(frozen=True)
class Check:
    """One row of the report: a prediction next to the integrated value."""

    system: str
    name: str
    prediction: Any
    integrated: Any
    difference: float
    tolerance: float
    verdict: str

    @property
    def ok(self) -> bool:
        return self.verdict == "OK"


def make_check(system: str, name: str, prediction: Any, integrated: Any, difference: float,
               tolerance: float, ok: bool | None = None) -> Check:
    difference = float(difference)
    if ok is None:
        ok = math.isfinite(difference) and difference <= tolerance
    return Check(system, name, prediction, integrated, difference, float(tolerance),
                 "OK" if ok else "FAIL")


def _state_difference(pred: np.ndarray, got: np.ndarray) -> float:
    pred = np.asarray(pred, dtype=float).ravel()
    got = np.asarray(got, dtype=float).ravel()
    if pred.shape != got.shape or not np.all(np.isfinite(got)):
        return math.inf
    return float(np.max(np.abs(pred - got)) / (1.0 + np.max(np.abs(pred))))


# ---------------------------------------------------------------------------------------
# Integration
# ---------------------------------------------------------------------------------------

def _solve(rhs, t0: float, t1: float, y0: np.ndarray, *, method: str, rtol: float,
           atol: float, bound: float, vectorized: bool, t_eval: np.ndarray | None):
    """Step an ODE solver from t0 to t1, stopping when ``max|y| >= bound``.

    Returns ``(t, y, status, t_hit, message)``; status 0 finished, 1 bound reached, -1 failed.
    A hand-written loop rather than ``solve_ivp``'s terminal event: near a finite-time
    singularity the event root-finding can fail, and the step size can stall below the
    spacing of floating-point times, which is reported as reaching the bound.
    """
    sp = require_scipy()
    methods = {"LSODA": sp.integrate.LSODA, "Radau": sp.integrate.Radau,
               "BDF": sp.integrate.BDF, "RK45": sp.integrate.RK45,
               "DOP853": sp.integrate.DOP853}
    kwargs: dict[str, Any] = {"rtol": rtol, "atol": atol}
    if method != "LSODA":
        kwargs["vectorized"] = vectorized
    solver = methods[method](rhs, t0, y0, t1, **kwargs)
    ts, ys = ([], []) if t_eval is not None else ([t0], [y0.copy()])
    if t_eval is not None and t_eval.size and t_eval[0] <= t0:
        ts.append(t0)
        ys.append(y0.copy())
    k_eval = int(np.searchsorted(t_eval, t0, side="right")) if t_eval is not None else 0
    stalled = 0
    while solver.status == "running":
        t_old = solver.t
        message = solver.step()
        if solver.status == "failed":
            return np.array(ts), np.array(ys).T, -1, None, str(message)
        t_new, y_new = solver.t, solver.y
        hit = not np.all(np.isfinite(y_new)) or np.max(np.abs(y_new)) >= bound
        stalled = stalled + 1 if (t_new - t_old) <= 8 * np.spacing(abs(t_new)) else 0
        t_hit = None
        if hit:
            t_hit = t_new
            dense = solver.dense_output()

            def g(t, dense=dense):
                return bound - np.max(np.abs(dense(t)))
            try:
                if g(t_old) > 0 and g(t_new) < 0:
                    t_hit = float(sp.optimize.brentq(g, t_old, t_new, xtol=1e-300,
                                                     rtol=4 * np.finfo(float).eps))
            except (ValueError, RuntimeError):  # pragma: no cover - keep the step end
                pass
        if t_eval is not None:
            end = t_hit if hit else t_new
            dense = solver.dense_output() if k_eval < t_eval.size and \
                t_eval[k_eval] <= end else None
            while k_eval < t_eval.size and t_eval[k_eval] <= end:
                ts.append(float(t_eval[k_eval]))
                ys.append(np.asarray(dense(t_eval[k_eval])))
                k_eval += 1
        elif hit:
            ts.append(t_hit)
            ys.append(np.asarray(solver.dense_output()(t_hit)) if t_hit != t_new
                      else y_new.copy())
        else:
            ts.append(t_new)
            ys.append(y_new.copy())
        if hit:
            return np.array(ts), np.array(ys).T, 1, t_hit, "bound reached"
        if stalled >= 50:   # |dy/dt| beyond what float times resolve: a singularity
            return (np.array(ts), np.array(ys).T, 1, t_new,
                    "step size below time resolution (singularity)")
    y_arr = np.array(ys).T if ys else np.empty((y0.size, 0))
    return np.array(ts), y_arr, 0, None, "ok"


def integrate(rhs, y0, *, t_max: float = 200.0, t_cap: float | None = None,
              t_eval: np.ndarray | None = None, method: str = "LSODA", rtol: float = 1e-10,
              atol: float = 1e-12, bound: float = 1e8, ftol: float = 1e-10,
              vectorized: bool = True) -> Integration:
    """Integrate ``dy/dt = rhs(t, y)`` from ``y0`` (scipy's LSODA by default; also "Radau",
    "BDF", "RK45", "DOP853").

    The integration stops when ``max|y|`` reaches ``bound`` (finite-time blow-up;
    ``blowup_time`` is when).  Without ``t_eval`` the horizon ``t_max`` is extended (x4 each
    time, up to ``t_cap``, default ``64 t_max``) until the state is stationary:
    ``max|rhs| <= ftol * max(1, max|y|)`` (``converged``).  With ``t_eval`` the solution is
    reported at exactly those times (from the solver's dense output), without extension.
    """
    y0 = np.asarray(y0, dtype=float).ravel()
    opts = {"method": method, "rtol": rtol, "atol": atol, "bound": bound,
            "vectorized": vectorized}

    def residual(y) -> float:
        return float(np.max(np.abs(np.asarray(rhs(0.0, y), dtype=float)))) if y.size else 0.0

    def is_stationary(y) -> bool:
        return residual(y) <= ftol * max(1.0, float(np.max(np.abs(y))))

    ts: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    blew_up, blow_t, message = False, None, ""
    if t_eval is not None:
        t_eval = np.asarray(t_eval, dtype=float)
        t, y, status, t_hit, message = _solve(rhs, 0.0, float(t_eval[-1]), y0,
                                              t_eval=t_eval, **opts)
        ts.append(t)
        ys.append(y)
        blew_up, blow_t = status == 1, t_hit
    elif is_stationary(y0):
        ts.append(np.array([0.0]))
        ys.append(y0[:, None])
    else:
        t_cap = 64.0 * t_max if t_cap is None else t_cap
        t0, horizon, y_start = 0.0, float(t_max), y0
        while True:
            t, y, status, t_hit, message = _solve(rhs, t0, horizon, y_start, t_eval=None,
                                                  **opts)
            ts.append(t if not ts else t[1:])
            ys.append(y if not ys else y[:, 1:])
            y_start = y[:, -1]
            if status == 1:
                blew_up, blow_t = True, t_hit
                break
            if status < 0 or is_stationary(y_start) or horizon >= t_cap:
                break
            t0, horizon = horizon, min(4.0 * horizon, t_cap)
    t = np.concatenate(ts)
    yy = np.concatenate(ys, axis=1)
    end = yy[:, -1] if yy.size else y0
    limit = end.copy()
    if blew_up:
        big = ~np.isfinite(end) | (np.abs(end) >= 0.5 * bound)
        big[int(np.argmax(np.where(np.isfinite(end), np.abs(end), np.inf)))] = True
        limit[big] = np.sign(end[big]) * math.inf
    res = residual(end) if np.all(np.isfinite(end)) else math.inf
    converged = (not blew_up) and res <= ftol * max(1.0, float(np.max(np.abs(end))))
    return Integration(t=t, y=yy, limit=limit, blew_up=blew_up, converged=converged,
                       residual=res, blowup_time=blow_t, message=str(message))


def jacobian(rhs, y: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central finite-difference Jacobian of ``rhs(0, y)``."""
    y = np.asarray(y, dtype=float).ravel()
    n = y.size
    J = np.empty((n, n))
    for j in range(n):
        h = eps * max(1.0, abs(y[j]))
        yp, ym = y.copy(), y.copy()
        yp[j] += h
        ym[j] -= h
        J[:, j] = (np.asarray(rhs(0.0, yp)) - np.asarray(rhs(0.0, ym))) / (2 * h)
    return J


def _bc(v: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Reshape a parameter vector so it broadcasts against a (n, *trailing) state slice."""
    return np.asarray(v).reshape(np.shape(v) + (1,) * (np.ndim(y) - 1))


# ---------------------------------------------------------------------------------------
# Base class
# ---------------------------------------------------------------------------------------

class System:
    """Common interface of the ODE systems (see the module docstring)."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    theorem: ClassVar[str] = ""
    t_max: ClassVar[float] = 200.0
    limit_tol: ClassVar[float] = 1e-6
    invariant_tol: ClassVar[float] = 1e-6

    # -- to be provided ---------------------------------------------------------------
    @property
    def y0(self) -> np.ndarray:
        raise NotImplementedError

    def rhs(self, t, y):
        raise NotImplementedError

    def invariants(self, y) -> dict[str, np.ndarray]:
        return {}

    def reduced_polynomial(self) -> Polynomial | None:
        return None

    def predict(self) -> Prediction | None:
        return None

    def checks(self, integration: Integration | None = None) -> list[Check]:
        raise NotImplementedError

    @classmethod
    def default(cls) -> System:
        return cls()  # type: ignore[call-arg]

    @classmethod
    def random(cls, rng: np.random.Generator) -> System:
        raise NotImplementedError

    # -- shared helpers ---------------------------------------------------------------
    @property
    def label(self) -> str:
        return self.title or self.name

    def integrate(self, **kwargs) -> Integration:
        kwargs.setdefault("t_max", self.t_max)
        return integrate(self.rhs, self.y0, **kwargs)

    def residual(self, y) -> float:
        return float(np.max(np.abs(self.rhs(0.0, np.asarray(y, dtype=float)))))

    def invariant_drift(self, integration: Integration) -> float:
        """Largest relative change of any conserved quantity along the trajectory."""
        inv = self.invariants(integration.y)
        worst = 0.0
        for v in inv.values():
            v = np.asarray(v, dtype=float)
            v = v.reshape(-1, v.shape[-1])
            v0 = v[:, :1]
            d = np.max(np.abs(v - v0) / (1.0 + np.abs(v0)))
            worst = max(worst, float(d))
        return worst

    def _invariant_check(self, integ: Integration) -> Check:
        inv0 = self.invariants(self.y0)
        names = ", ".join(inv0)
        vals = np.concatenate([np.ravel(v) for v in inv0.values()]) if inv0 else np.empty(0)
        drift = self.invariant_drift(integ)
        return make_check(self.label, f"invariant {names}", _short(vals),
                          f"drift {drift:.1e}", drift, self.invariant_tol)

    def _limit_check(self, name: str, pred: Prediction | None, integ: Integration) -> Check:
        if pred is None or pred.state is None:
            return make_check(self.label, name, "n/a", "n/a", math.nan, 0, ok=False)
        if pred.diverges:
            return make_check(self.label, name, "diverges", _short(integ.limit),
                              0.0 if integ.blew_up else math.inf, 0.0)
        ok_run = integ.converged and not integ.blew_up
        d = _state_difference(pred.state, integ.limit) if ok_run else math.inf
        return make_check(self.label, name, _short(pred.state), _short(integ.limit), d,
                          self.limit_tol)


def _short(v: Any) -> Any:
    """Values as they are shown in the table."""
    if isinstance(v, (float, int, np.floating, np.integer)):
        return float(v)
    if isinstance(v, np.ndarray):
        v = np.asarray(v, dtype=float).ravel()
        return v if v.size > 1 else float(v[0])
    return v


def _rng_sign(rng: np.random.Generator) -> float:
    return 1.0 if rng.random() < 0.5 else -1.0


def _signed_uniform(rng: np.random.Generator, lo: float, hi: float, size=None):
    mag = rng.uniform(lo, hi, size)
    sgn = np.where(rng.random(size) < 0.5, -1.0, 1.0)
    return mag * sgn


def _well_conditioned(poly: Polynomial, root: float, min_slope: float) -> bool:
    """|Q'(root)| large enough that an integration converges in reasonable time."""
    return abs(poly.deriv()(root)) >= min_slope


# ---------------------------------------------------------------------------------------
# A[1,1,1]
# ---------------------------------------------------------------------------------------

def a111_stability(a1, a2, c1, beta):
    """``beta (c1 a2 + a1^2)``: minus the non-zero eigenvalue of the A[1,1,1] RBP Jacobian at a
    fixed point on the hyperbola (the other eigenvalue, along the hyperbola, is 0)."""
    return beta * (c1 * np.asarray(a2) + np.asarray(a1) ** 2)


def a111_is_attractor(a1, a2, c1, beta) -> bool:
    """A fixed point of A[1,1,1] RBP is an attractor iff ``beta (c1 a2 + a1^2) > 0``."""
    return bool(a111_stability(a1, a2, c1, beta) > 0)


def a111_parabola_hyperbola_intersection(alpha: float, beta: float, c1: float
                                         ) -> tuple[float, float]:
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
        return {"K = a2 - a1^2/(2c1)": a2 - a1 ** 2 / (2 * self.c1)}

    @property
    def K(self) -> float:
        return self.a2 - self.a1 ** 2 / (2 * self.c1)

    def reduced_polynomial(self) -> Polynomial:
        """``Q(a1) = c1 (alpha - beta a1 (a1^2/(2c1) + K))``; for ``c1 = 0`` the linear
        ``da2/dt = a1 (alpha - beta a1 a2)`` in the variable a2."""
        if self.c1 == 0:
            return self.a1 * (self.alpha - self.beta * self.a1 * _X)
        a2x = _X ** 2 / (2 * self.c1) + self.K
        return self.c1 * (self.alpha - self.beta * _X * a2x)

    def predict(self) -> Prediction:
        Q = self.reduced_polynomial()
        if self.c1 == 0:
            p = theorem1(Q, self.a2)
            state = np.array([self.a1, p.limit])
            return replace(p, state=state, quantities={"P": self.a1 * p.limit},
                           note="c1 = 0: a1 frozen, a2 does gradient descent")
        p = theorem1(Q, self.a1)
        a1 = p.limit
        a2 = a1 ** 2 / (2 * self.c1) + self.K
        return replace(p, state=np.array([a1, a2]),
                       quantities={"P": a1 * a2, "stability": a111_stability(a1, a2, self.c1,
                                                                              self.beta)})

    def checks(self, integration: Integration | None = None) -> list[Check]:
        integ = integration or self.integrate()
        pred = self.predict()
        rows = [self._limit_check(f"{self.theorem}: limit (Thm 1 on cubic Q)", pred, integ)]
        rows.append(self._invariant_check(integ))
        a1, a2 = integ.limit
        s = float(a111_stability(a1, a2, self.c1, self.beta))
        rows.append(make_check(self.label, "limit is an attractor: beta(c1 a2 + a1^2) > 0",
                               "> 0", s, max(0.0, -s), 0.0, ok=s > 0))
        P = a1 * a2
        rows.append(make_check(self.label, "limit on hyperbola a1 a2 = alpha/beta",
                               self.alpha / self.beta, P,
                               abs(P - self.alpha / self.beta), self.limit_tol))
        Q = self.reduced_polynomial()
        if self.c1 != 0:
            lead = -self.beta / 2
            rows.append(make_check(self.label, "deg Q = 3, lead = -beta/2", (3, lead),
                                   (Q.degree(), float(Q.coef[-1])),
                                   abs(Q.coef[-1] - lead) + abs(Q.degree() - 3), 1e-12))
        return rows

    @classmethod
    def random(cls, rng: np.random.Generator) -> A111:
        for _ in range(200):
            s = cls(alpha=_signed_uniform(rng, 0.3, 2.0), beta=rng.uniform(0.3, 2.0),
                    c1=_signed_uniform(rng, 0.2, 2.0), a1=rng.uniform(-2, 2),
                    a2=rng.uniform(-2, 2))
            p = s.predict()
            if _well_conditioned(p.polynomial, p.limit, 0.05):
                return s
        return s


# ---------------------------------------------------------------------------------------
# Chains A[1,...,1]
# ---------------------------------------------------------------------------------------

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
        lead_a = cc[i + 1] / (2 * cc[i]) * lead_a ** 2
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
        return {f"K{i + 1}": y[i + 1] - c[i + 1] / (2 * c[i]) * y[i] ** 2
                for i in range(self.L - 1)}

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
        rows = [self._limit_check(f"{th}: limit (Thm 1 on Q, deg {2 ** self.L - 1})",
                                  pred, integ)]
        rows.append(self._invariant_check(integ))
        P = float(np.prod(integ.limit))
        rows.append(make_check(self.label, "limit on alpha - beta P = 0",
                               self.alpha / self.beta, P, abs(P - self.alpha / self.beta),
                               self.limit_tol))
        Q = self.reduced_polynomial()
        deg = 2 ** self.L - 1
        lead = chain_leading_coefficient(self.beta, self.c)
        name = f"deg Q = {deg}, lead = " + ("-beta c2^2/(16c1^2)" if self.L == 3 else
                                             "-c1 beta prod l_i < 0")
        if self.L == 3:
            lead = -self.beta * self.c[1] ** 2 / (16 * self.c[0] ** 2)
        diff = abs(Q.degree() - deg) + abs(Q.coef[-1] - lead) / abs(lead)
        rows.append(make_check(self.label, name, (deg, lead), (Q.degree(), float(Q.coef[-1])),
                               diff, 1e-10, ok=diff <= 1e-10 and Q.coef[-1] < 0))
        return rows

    @classmethod
    def random(cls, rng: np.random.Generator, L: int = 3) -> Chain:
        for _ in range(200):
            s = cls(alpha=rng.uniform(0.3, 1.5), beta=rng.uniform(0.5, 1.5),
                    c=tuple(_signed_uniform(rng, 0.3, 1.5, L - 1)),
                    a0=tuple(rng.uniform(-1.2, 1.2, L)))
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
        m = int(np.argmin(a ** 2))
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
        mags = np.sqrt(np.maximum(x + a ** 2 - a[m] ** 2, 0.0))
        signs = np.where(a >= 0, 1.0, -1.0)
        others = np.prod(np.delete(signs, m))
        signs[m] = np.sign(self.alpha / self.beta) * others if self.alpha != 0 else signs[m]
        state = signs * mags
        return Prediction(limit=x, diverges=False, polynomial=R, x0=float(a[m] ** 2),
                          roots=roots, state=state, quantities={"P": float(np.prod(state))},
                          note=f"x = a{m + 1}^2: positive root of x prod(x + D_j) - "
                               "(alpha/beta)^2")

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
        return replace(p, state=state, quantities={"P": float(state[0] * state[1])},
                       note="Theorem 1 on s = (a1 + a2)^2")

    def checks(self, integration: Integration | None = None) -> list[Check]:
        integ = integration or self.integrate()
        pred = self.predict()
        name = ("BP: limit (Thm 1 on quadratic Q(s), s = (a1+a2)^2)" if self.L == 2 else
                "GD: limit from invariants a_i^2 - a_j^2")
        rows = [self._limit_check(name, pred, integ)]
        if self.L == 2:
            rows.append(self._limit_check("GD: limit from invariants a_i^2 - a_j^2",
                                          self._predict_by_invariants(), integ))
        rows.append(self._invariant_check(integ))
        P = float(np.prod(integ.limit))
        rows.append(make_check(self.label, "limit on alpha - beta P = 0",
                               self.alpha / self.beta, P, abs(P - self.alpha / self.beta),
                               self.limit_tol))
        return rows

    @classmethod
    def random(cls, rng: np.random.Generator, L: int = 2) -> ChainGD:
        for _ in range(200):
            a0 = rng.uniform(-1.5, 1.5, L)
            srt = np.sort(a0 ** 2)
            if srt[1] - srt[0] > 0.05 and np.prod(np.abs(a0)) > 0.02 or L == 2:
                break
        return cls(alpha=_signed_uniform(rng, 0.3, 1.5), beta=rng.uniform(0.5, 1.5),
                   a0=tuple(a0))


# ---------------------------------------------------------------------------------------
# A[1,N,1]
# ---------------------------------------------------------------------------------------

def a1n1_leading_coefficient(beta: float, c) -> float:
    """The paper's leading coefficient of the A[1,N,1] cubic: ``-beta sum c_i^2/(2 c1^2)``."""
    c = np.asarray(c, dtype=float)
    return float(-beta * np.sum(c ** 2) / (2 * c[0] ** 2))


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
        a, b = y[: self.N], y[self.N:]
        e = self.alpha - self.beta * np.sum(a * b, axis=0)
        return np.concatenate([_bc(self.c, a) * e, a * e], axis=0)

    def invariants(self, y) -> dict[str, np.ndarray]:
        y = np.asarray(y)
        a, b = y[: self.N], y[self.N:]
        c = _bc(self.c, a)
        out = {"b_i - a_i^2/(2c_i)": b - a ** 2 / (2 * c)}
        if self.N > 1:
            out["a_i - (c_i/c_1) a_1"] = a[1:] - c[1:] / c[0] * a[0]
        return out

    def couplings(self) -> tuple[list[Polynomial], list[Polynomial]]:
        c, a0, b0 = np.array(self.c), np.array(self.a0), np.array(self.b0)
        a_polys = [c[i] / c[0] * (_X - a0[0]) + a0[i] for i in range(self.N)]
        K = b0 - a0 ** 2 / (2 * c)
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
        P = float(np.dot(state[: self.N], state[self.N:]))
        return replace(p, state=state, quantities={"P": P})

    def checks(self, integration: Integration | None = None) -> list[Check]:
        integ = integration or self.integrate()
        rows = [self._limit_check(f"{self.theorem}: limit (Thm 1 on cubic Q)", self.predict(),
                                  integ)]
        rows.append(self._invariant_check(integ))
        Q = self.reduced_polynomial()
        lead = a1n1_leading_coefficient(self.beta, self.c)
        diff = abs(Q.degree() - 3) + abs(Q.coef[-1] - lead) / abs(lead)
        rows.append(make_check(self.label, "deg Q = 3, lead = -beta sum c_i^2/(2c1^2)",
                               (3, lead), (Q.degree(), float(Q.coef[-1])), diff, 1e-12))
        y = integ.limit
        P = float(np.dot(y[: self.N], y[self.N:]))
        rows.append(make_check(self.label, "limit on alpha - beta P = 0",
                               self.alpha / self.beta, P, abs(P - self.alpha / self.beta),
                               self.limit_tol))
        return rows

    @classmethod
    def random(cls, rng: np.random.Generator, N: int = 3) -> A1N1:
        for _ in range(200):
            s = cls(alpha=_signed_uniform(rng, 0.3, 1.5), beta=rng.uniform(0.5, 1.5),
                    c=tuple(_signed_uniform(rng, 0.2, 1.5, N)),
                    a0=tuple(rng.uniform(-1, 1, N)), b0=tuple(rng.uniform(-1, 1, N)))
            p = s.predict()
            if _well_conditioned(p.polynomial, p.limit, 0.05):
                return s
        return s


# ---------------------------------------------------------------------------------------
# A[N,1,N] autoencoder
# ---------------------------------------------------------------------------------------

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
        AS = np.einsum("i...,ij->j...", A, self.Sigma_II)         # (A S_II)_j
        CB = np.sum(C * B, axis=0)
        CS = _bc(np.asarray(self.C) @ self.Sigma_TI, A)            # (C S_TI)_j
        dA = CS - CB * AS
        STA = np.einsum("ij,j...->i...", self.Sigma_TI, A)         # (S_TI A^T)_i
        dB = STA - B * np.sum(AS * A, axis=0)
        return np.concatenate([dA, dB], axis=0)

    def invariants(self, y) -> dict[str, np.ndarray]:
        y = np.asarray(y)
        A, B = y[: self.N], y[self.N:]
        return {"|A|^2/2 - CB": 0.5 * np.sum(A * A, axis=0) - np.sum(_bc(self.C, A) * B,
                                                                        axis=0)}

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
            return Prediction(limit=math.nan, diverges=False,
                              note="Theorem 6 needs Sigma_II = Sigma_TI = I")
        C = np.array(self.C)
        c2 = float(C @ C)
        A0 = np.array(self.A0)
        f0 = float(A0 @ C) / c2
        g0 = float(np.linalg.norm(A0 - f0 * C))
        Q = self.reduced_polynomial()
        if g0 <= 1e-14 * (1 + np.linalg.norm(A0)):
            p = theorem1(Q, f0)          # A stays parallel to C: exact 1-D dynamics
        else:
            roots, mults = real_roots(Q)
            lam = float(roots[roots > 0].max())
            p = Prediction(limit=lam, diverges=False, polynomial=Q, x0=f0, roots=roots,
                           multiplicities=mults, kind="attracting",
                           note="Theorem 6: positive root of |C|^2 l^3/2 - K l - 1")
        lam = p.limit
        state = np.concatenate([lam * C, C / (lam * c2)])
        return replace(p, state=state, quantities={"BA": np.outer(C, C) / c2,
                                                   "lambda": lam})

    def checks(self, integration: Integration | None = None) -> list[Check]:
        integ = integration or self.integrate()
        rows = [self._invariant_check(integ)]
        rows[0] = replace(rows[0], name="Lemma 1: " + rows[0].name)
        if self.identity_data:
            pred = self.predict()
            rows.append(self._limit_check(f"{self.theorem}: A -> lC, B -> C^T/(l|C|^2)",
                                          pred, integ))
            N = self.N
            BA = np.outer(integ.limit[N:], integ.limit[:N])
            d = float(np.max(np.abs(BA - pred.quantities["BA"]))) if integ.converged \
                else math.inf
            rows.append(make_check(self.label, f"{self.theorem}: BA -> C^T C/|C|^2",
                                   "C^T C/|C|^2", f"max err {d:.1e}", d, self.limit_tol))
        return rows

    @classmethod
    def random(cls, rng: np.random.Generator, N: int = 3) -> AN1N:
        return cls(C=tuple(rng.normal(size=N)), A0=tuple(0.5 * rng.normal(size=N)),
                   B0=tuple(0.5 * rng.normal(size=N)))


# ---------------------------------------------------------------------------------------
# A[N0,N1,N2] and A[2,2,2]
# ---------------------------------------------------------------------------------------

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
        if (self.Sigma_II.shape != (n0, n0) or self.Sigma_TI.shape != (n2, n0)
                or self.C1.shape != (n1, n2) or self.A2.shape != (n2, n1)):
            raise ValueError("inconsistent shapes: A1 N1xN0, A2 N2xN1, C1 N1xN2, "
                             "Sigma_II N0xN0, Sigma_TI N2xN0")

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
        A2 = y[n1 * n0:].reshape((n2, n1) + rest)
        return A1, A2

    def rhs(self, t, y):
        y = np.asarray(y)
        A1, A2 = self.unpack(y)
        rest = y.shape[1:]
        P = np.einsum("ij...,jk...->ik...", A2, A1)
        M = self.Sigma_TI.reshape(self.Sigma_TI.shape + (1,) * len(rest)) - np.einsum(
            "ij...,jk->ik...", P, self.Sigma_II)
        dA1 = np.einsum("ij,jk...->ik...", self.C1, M)
        dA2 = np.einsum("ij...,kj...->ik...", M, A1)
        n0, n1, n2 = self.sizes
        return np.concatenate([dA1.reshape((n1 * n0,) + rest),
                               dA2.reshape((n2 * n1,) + rest)], axis=0)

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
        return Prediction(limit=math.nan, diverges=False,
                          quantities={"C1A2A1": self.target()},
                          note="Theorem 8: partial convergence C1 A2 A1 -> C1 S_TI S_II^-1")

    def checks(self, integration: Integration | None = None) -> list[Check]:
        integ = integration or self.integrate()
        rows = [self._invariant_check(integ)]
        target = self.target()
        A1, A2 = self.unpack(integ.limit)
        got = self.C1 @ A2 @ A1
        d = float(np.max(np.abs(got - target)) / (1 + np.max(np.abs(target)))) \
            if np.all(np.isfinite(got)) else math.inf
        rows.append(make_check(self.label, f"{self.theorem}: C1A2A1 -> C1 S_TI S_II^-1",
                               _short(target), _short(got), d, 1e-6))
        A1s, A2s = self.unpack(integ.y)
        nA1 = float(np.max(np.sqrt(np.sum(A1s ** 2, axis=(0, 1)))))
        CA2 = np.einsum("ij,jk...->ik...", self.C1, A2s)
        nCA2 = float(np.max(np.sqrt(np.sum(CA2 ** 2, axis=(0, 1)))))
        rows.append(make_check(self.label, "Thm 7/8: no blow-up, |A1|, |C1A2| bounded",
                               "bounded", f"max |A1| {nA1:.3g}, |C1A2| {nCA2:.3g}",
                               0.0 if not integ.blew_up else math.inf, 0.0,
                               ok=not integ.blew_up))
        return rows

    @classmethod
    def random(cls, rng: np.random.Generator, sizes: tuple[int, int, int] | None = None
               ) -> Linear3:
        n0, n1, n2 = sizes if sizes is not None else tuple(int(v) for v in
                                                            rng.integers(1, 4, size=3))
        M = rng.normal(size=(n0, n0))
        S = M @ M.T / n0 + 0.5 * np.eye(n0)
        for _ in range(200):   # no very slow modes: see well_conditioned()
            C1 = rng.normal(size=(n1, n2))
            s = cls(Sigma_II=S, Sigma_TI=rng.normal(size=(n2, n0)), C1=C1,
                    A1=0.3 * rng.normal(size=(n1, n0)), A2=0.3 * rng.normal(size=(n2, n1)))
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
        rows.append(make_check(self.label, f"{self.theorem}: (A, B) converges",
                               "stationary", f"|rhs| {integ.residual:.1e}",
                               integ.residual, 1e-8, ok=integ.converged))
        return rows

    @classmethod
    def random(cls, rng: np.random.Generator, sizes=None) -> A222:
        return cls(A1=0.5 * rng.normal(size=(2, 2)), A2=0.5 * rng.normal(size=(2, 2)))


# ---------------------------------------------------------------------------------------
# Non-linear power unit O = a2 (a1 I)^mu
# ---------------------------------------------------------------------------------------

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
        return cls(mu=mu, alpha=float(np.mean(T * _pow(I, mu))),
                   beta=float(np.mean(_pow(I, mu) ** 2)), gamma=float(np.mean(T * I)),
                   delta=float(np.mean(I * _pow(I, mu))), **kwargs)

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
        return {"a2 - a1^2/(2 mu c1)": a2 - a1 ** 2 / (2 * self.mu * self.c1)}

    @property
    def K(self) -> float:
        return self.a2 - self.a1 ** 2 / (2 * self.mu * self.c1)

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
        a2x = _X ** 2 / (2 * m * self.c1) + self.K
        return m * self.c1 * _X ** (m - 1) * (self.alpha - self.beta * _X ** m * a2x)

    def eq117_root(self) -> float:
        """Positive root ``t`` of ``beta t^mu (t^2/(2 mu c1) + K) = alpha`` (eq. 117)."""
        if not (self.alpha > 0 and self.c1 > 0):
            raise ValueError("Theorem 12 assumes alpha > 0, beta > 0, c1 > 0")
        sp = require_scipy()
        g = lambda t: self.beta * t ** self.mu * (t * t / (2 * self.mu * self.c1) + self.K) \
            - self.alpha
        hi = 1.0
        while g(hi) < 0:
            hi *= 2.0
        return float(sp.optimize.brentq(g, 0.0, hi, xtol=1e-15, rtol=1e-14))

    def predict(self) -> Prediction:
        if not self.derivative:
            return Prediction(limit=math.nan, diverges=not self.has_fixed_point(),
                              note="eq. 113: no fixed point unless alpha delta = beta gamma")
        Q = self.reduced_polynomial()
        if Q is not None:
            p = theorem1(Q, self.a1)
        else:
            p = Prediction(limit=self.eq117_root(), diverges=False, x0=self.a1,
                           note="non-integer mu: positive root of eq. 117 (brentq)")
        a1 = p.limit
        a2 = a1 * a1 / (2 * self.mu * self.c1) + self.K
        return replace(p, state=np.array([a1, a2]),
                       quantities={"P": a2 * float(_pow(a1, self.mu))})

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
            rows = [self._limit_check(f"{self.theorem}: a1 -> positive root of eq. 117",
                                      pred, integ)]
            if self.alpha > 0 and self.c1 > 0 and self.a1 > 0:
                r = self.eq117_root()
                got = float(integ.limit[0])
                rows.append(make_check(self.label, "eq. 117 root (brentq) = integrated a1",
                                       r, got, abs(r - got) / (1 + abs(r)), self.limit_tol))
            rows.append(self._invariant_check(integ))
            Q = self.reduced_polynomial()
            if Q is not None:
                m = int(self.mu)
                rows.append(make_check(self.label, f"deg Q = {2 * m + 1}, lead = -beta/2",
                                       (2 * m + 1, -self.beta / 2),
                                       (Q.degree(), float(Q.coef[-1])),
                                       abs(Q.degree() - 2 * m - 1)
                                       + abs(Q.coef[-1] + self.beta / 2), 1e-12))
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
        if self.derivative or not (min(self.alpha, self.beta, self.gamma, self.delta,
                                       self.c1, self.a1) > 0):
            return None
        p_top, p_bottom = self.alpha / self.beta, self.gamma / self.delta
        if p_bottom == p_top:
            return None
        if p_bottom > p_top:
            return {"regime": "a1 -> inf", "P": p_top, "index": 0, "power": 1,
                    "rate": self.c1 * (self.gamma - self.delta * p_top), "excess": 0.0}
        return {"regime": "a1 -> 0, a2 -> inf", "P": p_bottom, "index": 1, "power": 2,
                "rate": 2 * p_bottom * (self.alpha - self.beta * p_bottom),
                "excess": (p_bottom - p_top) ** 2}

    def _checks_no_derivative(self, integration: Integration | None) -> list[Check]:
        T = 400.0
        integ = integration or self.integrate(t_max=T, t_cap=T, rtol=1e-9, atol=1e-11)
        fixed = self.has_fixed_point()
        rows = [make_check(self.label, "eq. 113: no fixed point (alpha delta != beta gamma)",
                           "none", "exists" if fixed else "none", 0.0 if not fixed else 1.0,
                           0.0)]
        res = integ.residual
        rows.append(make_check(self.label, "trajectory does not converge", "no limit",
                               "blows up" if integ.blew_up else f"|rhs| {res:.2g}",
                               0.0 if (integ.blew_up or not integ.converged) else 1.0, 0.0))
        asym = self.no_derivative_asymptotics()
        if asym is None or integ.blew_up:
            return rows
        t_end = integ.t_end
        a1, a2 = integ.y_end
        P = float(a2 * _pow(a1, self.mu))
        rows.append(make_check(self.label, f"{asym['regime']}: P(t) -> {asym['P']:.4g}",
                               asym["P"], P, abs(P - asym["P"]) / (1 + abs(asym["P"])), 5e-3))
        # slope over the second half of the run removes the O(1) offset of the transient
        w = integ.y[asym["index"]] ** asym["power"]
        w_half = float(np.interp(t_end / 2, integ.t, w))
        rate = float((w[-1] - w_half) / (t_end / 2))
        which = "d(a1)/dt" if asym["index"] == 0 else "d(a2^2)/dt"
        rows.append(make_check(self.label, f"growth {which} -> {asym['rate']:.4g}",
                               asym["rate"], rate, abs(rate - asym["rate"]) / asym["rate"],
                               0.02))
        exc = float(self.loss_excess(integ.y_end))
        rows.append(make_check(self.label, "excess loss (P - alpha/beta)^2", asym["excess"],
                               exc, abs(exc - asym["excess"]), 5e-3))
        return rows

    @classmethod
    def random(cls, rng: np.random.Generator, derivative: bool = True) -> PowerUnit:
        mu = float(rng.integers(1, 4)) if rng.random() < 0.7 else float(rng.uniform(1.0, 3.0))
        while True:
            s = cls(mu=mu, derivative=derivative, alpha=rng.uniform(0.3, 1.5),
                    beta=rng.uniform(0.5, 1.5), gamma=rng.uniform(0.2, 1.5),
                    delta=rng.uniform(0.5, 1.5), c1=rng.uniform(0.3, 1.5),
                    a1=rng.uniform(0.2, 1.5), a2=rng.uniform(-1, 1))
            # without f': keep the two critical products apart (clean asymptotics)
            if derivative or abs(s.gamma / s.delta - s.alpha / s.beta) >= 0.2:
                return s


# ---------------------------------------------------------------------------------------
# Theorem 1 itself
# ---------------------------------------------------------------------------------------

@dataclass
class PolynomialODE(System):
    """``dx/dt = Q(x)`` for a given polynomial (coefficients ascending)."""

    coefficients: tuple = (0.0, 3.0, 0.0, -1.0)   # 3x - x^3: roots -sqrt3, 0, sqrt3
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
            t_got = integ.blowup_time if integ.blew_up else math.inf
            same_side = integ.blew_up and np.sign(integ.y_end[0]) == np.sign(pred.limit)
            d = abs(t_pred - t_got) / max(1.0, t_pred) if same_side else math.inf
            esc = (f", escape t*={pred.blowup_time:.6g}" if pred.finite_time and
                   pred.blowup_time is not None else ", infinite time")
            return [make_check(self.label, name + f" diverges (time to |x| = {self.bound:.3g})",
                               f"{pred.limit:+} at t={t_pred:.6g}{esc}",
                               f"{integ.limit[0]:+} at t={t_got:.6g}", d, 1e-5)]
        if pred.kind == "attracting":
            return [self._limit_check(name, pred, integ)]
        got = float(integ.y_end[0])
        return [make_check(self.label, name + f" ({pred.kind} root)", pred.limit, got,
                           abs(pred.limit - got) / (1 + abs(pred.limit)), 1e-2)]

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


# ---------------------------------------------------------------------------------------
# Catalogue used by the CLI and the plots
# ---------------------------------------------------------------------------------------

def _theorem1_defaults() -> list[System]:
    q = (-Polynomial.fromroots([-2.0, 1.0, 1.0, 3.0])).coef   # -(x+2)(x-1)^2(x-3)
    return [PolynomialODE((0.0, 3.0, 0.0, -1.0), 0.5),          # -> sqrt(3)
            PolynomialODE(tuple(q), 0.0),                         # -> 1 (double root, from below)
            PolynomialODE(tuple(q), 2.0),                         # -> 3
            PolynomialODE(tuple(q), -3.0),                        # -> -inf, finite time
            PolynomialODE((1.0, 0.0, 1.0), 0.0)]                  # 1 + x^2: escape at pi/2


def _theorem1_random(rng: np.random.Generator) -> list[System]:
    return [PolynomialODE.random(rng) for _ in range(4)]


#: name -> (description, default instances, random instances)
REGISTRY: dict[str, tuple[str, Any, Any]] = {
    "theorem1": ("Theorem 1: dx/dt = Q(x), limit root or finite-time blow-up",
                 _theorem1_defaults, _theorem1_random),
    "a111": ("A[1,1,1] RBP (Thm 2): cubic, parabola invariant, stability",
             lambda: [A111()], lambda r: [A111.random(r)]),
    "a111-bp": ("A[1,1,1] BP (gradient descent): quadratic in s = (a1+a2)^2",
                lambda: [ChainGD()], lambda r: [ChainGD.random(r, L=2)]),
    "a1111": ("A[1,1,1,1] SRBP (Thm 3): degree 7, lead -beta c2^2/(16c1^2)",
              lambda: [Chain()], lambda r: [Chain.random(r, L=3)]),
    "chain": ("A[1,...,1] SRBP, L = 4 and 5 (Thm 4): degree 2^L - 1",
              lambda: [Chain(c=(1.0, 0.8, 0.6), a0=(0.5, 0.4, 0.3, 0.2)),
                       Chain(c=(0.9, -0.7, 0.8, 0.5), a0=(0.3, 0.2, 0.4, -0.3, 0.5))],
              lambda r: [Chain.random(r, L=4), Chain.random(r, L=5)]),
    "chain-gd": ("A[1,...,1] gradient descent, L = 4: invariants a_i^2 - a_j^2",
                 lambda: [ChainGD(a0=(0.5, -0.8, 0.3, 1.1))], lambda r: [ChainGD.random(r, L=4)]),
    "a1n1": ("A[1,N,1] RBP (Thm 5): affine/quadratic couplings, cubic",
             lambda: [A1N1()], lambda r: [A1N1.random(r, N=int(r.integers(2, 5)))]),
    "an1n": ("A[N,1,N] autoencoder, Sigma = I (Lemma 1, Thm 6)",
             lambda: [AN1N()], lambda r: [AN1N.random(r, N=int(r.integers(2, 5)))]),
    "linear3": ("A[N0,N1,N2] linear (eq. 88, Thms 7-8): invariant, partial convergence",
                lambda: [Linear3()], lambda r: [Linear3.random(r)]),
    "a222": ("A[2,2,2], Sigma = C = I (Thm 10): converges, BA -> I",
             lambda: [A222()], lambda r: [A222.random(r)]),
    "power": ("O = a2 (a1 I)^mu with f' (eq. 114, Thm 12), mu = 3 and mu = 1.5",
              lambda: [PowerUnit(), PowerUnit(mu=1.5, a1=0.8)],
              lambda r: [PowerUnit.random(r, derivative=True)]),
    "power-nof": ("O = a2 (a1 I)^mu without f' (eq. 113): no fixed point, both regimes",
                  lambda: [PowerUnit(derivative=False), PowerUnit(derivative=False, gamma=2.0)],
                  lambda r: [PowerUnit.random(r, derivative=False)]),
}


def make_systems(name: str, rng: np.random.Generator | None = None) -> list[System]:
    """Instances of a catalogue entry: the defaults, or random ones drawn from ``rng``."""
    if name not in REGISTRY:
        raise KeyError(f"unknown system {name!r}; known: {', '.join(REGISTRY)}")
    _, default, rand = REGISTRY[name]
    return list(default() if rng is None else rand(rng))
