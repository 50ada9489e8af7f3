"""Theorem 1 of Baldi, Sadowski & Lu (2018): the one-dimensional polynomial ODE.

For ``dx/dt = Q(x) = k0 + k1 x + ... + kn x^n`` with distinct real roots ``r1 < ... < rk``:

* ``x(0) = r_i``: the solution stays at ``r_i``;
* ``r_i < x(0) < r_{i+1}``: ``x -> r_{i+1}`` if ``Q > 0`` on the interval, ``x -> r_i`` if ``Q < 0``;
* below ``r1``: ``x -> r1`` if ``Q > 0`` there, otherwise ``x -> -inf`` (in finite time when
  ``n >= 2``); above ``rk``: ``x -> rk`` if ``Q < 0`` there, otherwise ``x -> +inf``;
* hence every start converges iff ``n`` is odd and ``kn < 0``.

Double (even-multiplicity) roots need no special case: ``Q`` does not change sign across
them, and the rule above, applied to the intervals between consecutive *distinct* roots, makes
the solution approach such a root from the side where ``Q`` points towards it and never cross
it.  Coefficients are given in ascending order ``(k0, k1, ..., kn)``, as in the paper and in
:class:`numpy.polynomial.Polynomial`.

Only numpy is needed here (``blowup_time`` uses scipy when it is installed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.polynomial import Polynomial

__all__ = [
    "Prediction",
    "always_converges",
    "as_polynomial",
    "blowup_time",
    "real_roots",
    "root_kind",
    "theorem1",
    "time_to_reach",
]


@dataclass(frozen=True)
class Prediction:
    """What the theory predicts for a trajectory.

    ``limit`` is the limit of the 1-D variable (a root of ``polynomial``, or ``+inf``/``-inf``
    when it diverges); ``state`` is the full limit state of a system when it is determined,
    ``quantities`` holds derived limits (e.g. ``{"P": alpha/beta}``).
    """

    limit: float
    diverges: bool
    polynomial: Polynomial | None = None
    x0: float = math.nan
    roots: np.ndarray = field(default_factory=lambda: np.empty(0))
    multiplicities: tuple[int, ...] = ()
    on_root: bool = False
    finite_time: bool = False
    blowup_time: float | None = None
    kind: str = ""
    state: np.ndarray | None = None
    quantities: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def converges(self) -> bool:
        return not self.diverges

    @property
    def degree(self) -> int:
        return -1 if self.polynomial is None else int(self.polynomial.degree())

    @property
    def leading_coefficient(self) -> float:
        return math.nan if self.polynomial is None else float(self.polynomial.coef[-1])


def as_polynomial(q: Any) -> Polynomial:
    """A :class:`Polynomial` (default domain/window, exact zero top coefficients trimmed)."""
    if isinstance(q, Polynomial):
        p = (
            q.convert(domain=[-1, 1], window=[-1, 1])
            if not (np.array_equal(q.domain, [-1, 1]) and np.array_equal(q.window, [-1, 1]))
            else q
        )
        coef = np.asarray(p.coef, dtype=float)
    else:
        coef = np.atleast_1d(np.asarray(q, dtype=float))
        if coef.ndim != 1:
            raise ValueError("polynomial coefficients must be a 1-D sequence")
    if coef.size == 0:
        coef = np.zeros(1)
    nz = np.flatnonzero(coef)
    coef = coef[: nz[-1] + 1] if nz.size else coef[:1] * 0.0
    if not np.all(np.isfinite(coef)):
        raise ValueError("polynomial coefficients must be finite")
    return Polynomial(coef)


def _polish(p: Polynomial, r: float, iterations: int = 8) -> float:
    """Newton-polish a simple real root; keep each step only if it lowers |Q|."""
    dp = p.deriv()
    best, fbest = r, abs(p(r))
    x = r
    for _ in range(iterations):
        d = dp(x)
        if d == 0 or not np.isfinite(d):
            break
        x = x - p(x) / d
        fx = abs(p(x))
        if not np.isfinite(fx) or fx >= fbest:
            break
        best, fbest = x, fx
    return float(best)


def real_roots(q: Any, *, cluster_tol: float = 1e-5, imag_tol: float = 1e-7) -> tuple[np.ndarray, tuple[int, ...]]:
    """Distinct real roots (ascending) of ``q`` and their multiplicities.

    The roots of the companion matrix are grouped (single linkage, relative distance
    ``cluster_tol``): a root of multiplicity ``m`` comes out as ``m`` nearby numbers, whose
    mean is accurate.  A group whose mean is real (``|Im| <= imag_tol (1 + |z|)``) is a real
    root of multiplicity ``m``; simple roots are Newton-polished.  Distinct roots closer than
    ``cluster_tol`` (relative) are therefore merged.
    """
    p = as_polynomial(q)
    if p.degree() < 1:
        return np.empty(0), ()
    z = np.asarray(p.roots(), dtype=complex)
    n = z.size
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            if abs(z[i] - z[j]) <= cluster_tol * (1.0 + max(abs(z[i]), abs(z[j]))):
                parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    found: list[tuple[float, int]] = []
    for members in groups.values():
        m = complex(np.mean(z[members]))
        if abs(m.imag) <= imag_tol * (1.0 + abs(m)):
            r = m.real
            if len(members) == 1:
                r = _polish(p, r)
            found.append((float(r), len(members)))
    found.sort()
    roots = np.array([r for r, _ in found], dtype=float)
    mults = tuple(k for _, k in found)
    return roots, mults


def always_converges(q: Any) -> bool:
    """Theorem 1's last clause: every start converges iff the degree is odd and ``kn < 0``."""
    p = as_polynomial(q)
    n = p.degree()
    return n % 2 == 1 and p.coef[-1] < 0


def root_kind(q: Any, root: float, roots: np.ndarray | None = None) -> str:
    """``'attracting'``, ``'repelling'`` or ``'semi-stable'`` for a real root of ``q``."""
    p = as_polynomial(q)
    if roots is None:
        roots, _ = real_roots(p)
    roots = np.asarray(roots)
    i = int(np.argmin(np.abs(roots - root)))
    left = _sign_between(p, roots, i)  # sign of Q just left of roots[i]
    right = _sign_between(p, roots, i + 1)  # sign of Q just right of roots[i]
    if left > 0 and right < 0:
        return "attracting"
    if left < 0 and right > 0:
        return "repelling"
    return "semi-stable"


def _sign_between(p: Polynomial, roots: np.ndarray, i: int) -> float:
    """Sign of Q on the open interval (roots[i-1], roots[i]) (i = 0: below, i = k: above)."""
    k = roots.size
    n = p.degree()
    lead = np.sign(p.coef[-1])
    if k == 0:
        return float(lead)  # no real root: even degree, sign of the leading term
    if i >= k:
        return float(lead)
    if i <= 0:
        return float(lead * (-1) ** n)
    mid = 0.5 * (roots[i - 1] + roots[i])
    s = np.sign(p(mid))
    if s == 0:  # pragma: no cover - only for merged/near-coincident roots
        s = np.sign(p(roots[i - 1] + 0.25 * (roots[i] - roots[i - 1])))
    return float(s)


def blowup_time(q: Any, x0: float, direction: int) -> float | None:
    """``T* = integral from x0 to direction*inf of dx / Q(x)``: the finite escape time.

    Returns ``None`` when scipy is missing or the integral does not converge (degree < 2).
    """
    p = as_polynomial(q)
    if p.degree() < 2:
        return math.inf
    try:
        from scipy.integrate import quad
    except ImportError:  # pragma: no cover
        return None
    d = 1.0 if direction > 0 else -1.0

    # substitute x = x0 + d * u / (1 - u), u in [0, 1)
    def f(u: float) -> float:
        if u >= 1.0:
            return 0.0
        x = x0 + d * u / (1.0 - u)
        return d / (p(x) * (1.0 - u) ** 2)

    val, _ = quad(f, 0.0, 1.0, limit=200, epsabs=1e-13, epsrel=1e-10)
    return float(val)


def time_to_reach(q: Any, x0: float, x1: float) -> float:
    """``integral from x0 to x1 of dx / Q(x)``: the time ``dx/dt = Q(x)`` takes from ``x0`` to
    ``x1`` (meaningful when ``Q`` has no root between them).  Needs scipy."""
    from scipy.integrate import quad

    p = as_polynomial(q)
    if p.degree() <= 1:  # closed forms: linear drift / exponential
        k0, k1 = np.append(p.coef, 0.0)[:2]
        if k1 == 0:
            return (x1 - x0) / k0
        r = -k0 / k1
        return math.log((x1 - r) / (x0 - r)) / k1
    d = 1.0 if x1 >= x0 else -1.0
    s = abs(x1 - x0)

    # x = x0 + d u/(1-u), u in [0, s/(1+s)]: smooth even when |x1 - x0| is huge
    def f(u: float) -> float:
        return d / (p(x0 + d * u / (1.0 - u)) * (1.0 - u) ** 2)

    val, _ = quad(f, 0.0, s / (1.0 + s), limit=400, epsabs=1e-13, epsrel=1e-11)
    return float(val)


def theorem1(
    q: Any, x0: float, *, root_tol: float = 1e-9, cluster_tol: float = 1e-5, with_blowup_time: bool = True
) -> Prediction:
    """Predict the fate of ``dx/dt = Q(x)``, ``x(0) = x0`` (Theorem 1).

    ``q``: coefficients ``(k0, ..., kn)`` (ascending) or a :class:`Polynomial`.
    Returns a :class:`Prediction` whose ``limit`` is the root reached, or ``+inf``/``-inf``
    (``diverges`` true; ``finite_time`` true when the degree is at least 2, then
    ``blowup_time`` is the escape time).  ``x0`` within ``root_tol`` (relative) of a root
    counts as starting on it (``on_root``).  Degrees 0 and 1, which the theorem excludes
    (n > 1), are handled too: a constant drifts linearly, a linear Q converges iff k1 < 0.
    """
    p = as_polynomial(q)
    x0 = float(x0)
    if not math.isfinite(x0):
        raise ValueError("x0 must be finite")
    n = p.degree()
    lead = float(p.coef[-1])
    if n == 0:
        if lead == 0.0:
            return Prediction(
                limit=x0,
                diverges=False,
                polynomial=p,
                x0=x0,
                on_root=True,
                kind="fixed",
                note="Q = 0: every point is fixed",
            )
        d = 1 if lead > 0 else -1
        return Prediction(
            limit=d * math.inf,
            diverges=True,
            polynomial=p,
            x0=x0,
            finite_time=False,
            blowup_time=math.inf,
            kind="diverges",
            note="constant Q: linear drift",
        )
    roots, mults = real_roots(p, cluster_tol=cluster_tol)
    common: dict[str, Any] = {"polynomial": p, "x0": x0, "roots": roots, "multiplicities": mults}

    if roots.size:
        j = int(np.argmin(np.abs(roots - x0)))
        r = float(roots[j])
        if p(x0) == 0.0 or abs(x0 - r) <= root_tol * (1.0 + abs(r)):
            return Prediction(limit=r, diverges=False, on_root=True, kind=root_kind(p, r, roots), **common)

    i = int(np.searchsorted(roots, x0))  # roots[i-1] < x0 < roots[i]
    s = _sign_between(p, roots, i)
    target: float | None = None
    if s > 0 and i < roots.size:
        target = float(roots[i])
    elif s < 0 and i > 0:
        target = float(roots[i - 1])
    if target is not None:
        return Prediction(limit=target, diverges=False, kind=root_kind(p, target, roots), **common)
    d = 1 if s > 0 else -1
    finite = n >= 2
    t_star = blowup_time(p, x0, d) if (finite and with_blowup_time) else (math.inf if not finite else None)
    return Prediction(
        limit=d * math.inf, diverges=True, finite_time=finite, blowup_time=t_star, kind="diverges", **common
    )
