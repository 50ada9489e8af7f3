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

One module per family of systems, on the interface in :mod:`.base`: :mod:`.a111`,
:mod:`.chain` (A[1,...,1], SRBP/RBP and gradient descent), :mod:`.a1n1`, :mod:`.autoencoder`
(A[N,1,N]), :mod:`.linear` (A[N0,N1,N2] and A[2,2,2]), :mod:`.power` (the power unit) and
:mod:`.theorem1` (``dx/dt = Q(x)`` itself); :mod:`.registry` is the catalogue the CLI and the
plots use.

Notation follows the paper's section 7 (and docs/theory.md): ``alpha = E(IT)``,
``beta = E(I^2)``, ``P`` the end-to-end product, SRBP channel weights ``c_i`` (layer ``i``
receives ``c_i (T - O)``), ``c_L = 1``.
"""

from __future__ import annotations

from .a1n1 import A1N1, a1n1_leading_coefficient
from .a111 import A111, a111_is_attractor, a111_parabola_hyperbola_intersection, a111_stability
from .autoencoder import AN1N
from .base import System
from .chain import Chain, ChainGD, chain_leading_coefficient, rbp_to_srbp, srbp_to_rbp
from .integration import integrate, jacobian
from .linear import A222, Linear3
from .power import PowerUnit
from .registry import REGISTRY, make_systems
from .results import Check, Integration
from .theorem1 import PolynomialODE

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
