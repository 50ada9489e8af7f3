"""The paper's theory, computed (Baldi, Sadowski & Lu 2018, section 7).

The averaged (continuous-time, full-batch) learning dynamics of the small linear and power-unit
networks, their conserved quantities, Theorem 1 for ``dx/dt = Q(x)`` applied to each system's
reduced polynomial, tight-tolerance integrations, and the bridge to the native trainer.

numpy is enough for :mod:`.polynomial`; integrating needs scipy and the figures matplotlib
(``pip install rbp-native[theory]``), both imported lazily.  See docs/theory.md.
"""

from .polynomial import (
    Prediction,
    always_converges,
    as_polynomial,
    blowup_time,
    real_roots,
    root_kind,
    theorem1,
    time_to_reach,
)
from .systems import (
    A1N1,
    A111,
    A222,
    AN1N,
    REGISTRY,
    Chain,
    ChainGD,
    Check,
    Integration,
    Linear3,
    PolynomialODE,
    PowerUnit,
    System,
    a1n1_leading_coefficient,
    a111_is_attractor,
    a111_parabola_hyperbola_intersection,
    a111_stability,
    chain_leading_coefficient,
    integrate,
    jacobian,
    make_systems,
    rbp_to_srbp,
    srbp_to_rbp,
)

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
    "Prediction",
    "System",
    "a1n1_leading_coefficient",
    "a111_is_attractor",
    "a111_parabola_hyperbola_intersection",
    "a111_stability",
    "always_converges",
    "as_polynomial",
    "blowup_time",
    "chain_leading_coefficient",
    "integrate",
    "jacobian",
    "make_systems",
    "rbp_to_srbp",
    "real_roots",
    "root_kind",
    "srbp_to_rbp",
    "theorem1",
    "time_to_reach",
]
