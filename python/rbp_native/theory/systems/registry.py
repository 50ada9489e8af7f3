"""The catalogue of systems used by the CLI and the plots."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.polynomial import Polynomial

from .a1n1 import A1N1
from .a111 import A111
from .autoencoder import AN1N
from .base import System
from .chain import Chain, ChainGD
from .linear import A222, Linear3
from .power import PowerUnit
from .theorem1 import PolynomialODE


def _theorem1_defaults() -> list[System]:
    q = (-Polynomial.fromroots([-2.0, 1.0, 1.0, 3.0])).coef  # -(x+2)(x-1)^2(x-3)
    return [
        PolynomialODE((0.0, 3.0, 0.0, -1.0), 0.5),  # -> sqrt(3)
        PolynomialODE(tuple(q), 0.0),  # -> 1 (double root, from below)
        PolynomialODE(tuple(q), 2.0),  # -> 3
        PolynomialODE(tuple(q), -3.0),  # -> -inf, finite time
        PolynomialODE((1.0, 0.0, 1.0), 0.0),
    ]  # 1 + x^2: escape at pi/2


def _theorem1_random(rng: np.random.Generator) -> list[System]:
    return [PolynomialODE.random(rng) for _ in range(4)]


#: name -> (description, default instances, random instances)
REGISTRY: dict[str, tuple[str, Any, Any]] = {
    "theorem1": ("Theorem 1: dx/dt = Q(x), limit root or finite-time blow-up", _theorem1_defaults, _theorem1_random),
    "a111": (
        "A[1,1,1] RBP (Thm 2): cubic, parabola invariant, stability",
        lambda: [A111()],
        lambda r: [A111.random(r)],
    ),
    "a111-bp": (
        "A[1,1,1] BP (gradient descent): quadratic in s = (a1+a2)^2",
        lambda: [ChainGD()],
        lambda r: [ChainGD.random(r, L=2)],
    ),
    "a1111": (
        "A[1,1,1,1] SRBP (Thm 3): degree 7, lead -beta c2^2/(16c1^2)",
        lambda: [Chain()],
        lambda r: [Chain.random(r, L=3)],
    ),
    "chain": (
        "A[1,...,1] SRBP, L = 4 and 5 (Thm 4): degree 2^L - 1",
        lambda: [
            Chain(c=(1.0, 0.8, 0.6), a0=(0.5, 0.4, 0.3, 0.2)),
            Chain(c=(0.9, -0.7, 0.8, 0.5), a0=(0.3, 0.2, 0.4, -0.3, 0.5)),
        ],
        lambda r: [Chain.random(r, L=4), Chain.random(r, L=5)],
    ),
    "chain-gd": (
        "A[1,...,1] gradient descent, L = 4: invariants a_i^2 - a_j^2",
        lambda: [ChainGD(a0=(0.5, -0.8, 0.3, 1.1))],
        lambda r: [ChainGD.random(r, L=4)],
    ),
    "a1n1": (
        "A[1,N,1] RBP (Thm 5): affine/quadratic couplings, cubic",
        lambda: [A1N1()],
        lambda r: [A1N1.random(r, N=int(r.integers(2, 5)))],
    ),
    "an1n": (
        "A[N,1,N] autoencoder, Sigma = I (Lemma 1, Thm 6)",
        lambda: [AN1N()],
        lambda r: [AN1N.random(r, N=int(r.integers(2, 5)))],
    ),
    "linear3": (
        "A[N0,N1,N2] linear (eq. 88, Thms 7-8): invariant, partial convergence",
        lambda: [Linear3()],
        lambda r: [Linear3.random(r)],
    ),
    "a222": ("A[2,2,2], Sigma = C = I (Thm 10): converges, BA -> I", lambda: [A222()], lambda r: [A222.random(r)]),
    "power": (
        "O = a2 (a1 I)^mu with f' (eq. 114, Thm 12), mu = 3 and mu = 1.5",
        lambda: [PowerUnit(), PowerUnit(mu=1.5, a1=0.8)],
        lambda r: [PowerUnit.random(r, derivative=True)],
    ),
    "power-nof": (
        "O = a2 (a1 I)^mu without f' (eq. 113): no fixed point, both regimes",
        lambda: [PowerUnit(derivative=False), PowerUnit(derivative=False, gamma=2.0)],
        lambda r: [PowerUnit.random(r, derivative=False)],
    ),
}


def make_systems(name: str, rng: np.random.Generator | None = None) -> list[System]:
    """Instances of a catalogue entry: the defaults, or random ones drawn from ``rng``."""
    if name not in REGISTRY:
        raise KeyError(f"unknown system {name!r}; known: {', '.join(REGISTRY)}")
    _, default, rand = REGISTRY[name]
    return list(default() if rng is None else rand(rng))
