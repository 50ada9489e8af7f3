"""The paper's theory (its section 7), checked numerically.

Property-based: random polynomials / parameters / initial states; every prediction of
Theorem 1 (applied to each system's reduced polynomial) is compared with a tight-tolerance
integration of the ODE, and every conserved quantity is tracked along the integration.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from numpy.polynomial import Polynomial

from rbp_native.theory import (
    A1N1,
    A111,
    A222,
    AN1N,
    Chain,
    ChainGD,
    Linear3,
    PolynomialODE,
    PowerUnit,
    a1n1_leading_coefficient,
    a111_is_attractor,
    a111_parabola_hyperbola_intersection,
    a111_stability,
    always_converges,
    chain_leading_coefficient,
    cli,
    integrate,
    jacobian,
    rbp_to_srbp,
    real_roots,
    srbp_to_rbp,
    theorem1,
    time_to_reach,
)

SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.filter_too_much]}


def signed(lo: float, hi: float):
    return st.builds(lambda m, s: m * s, st.floats(lo, hi), st.sampled_from([-1.0, 1.0]))


def rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b)) / (1.0 + np.max(np.abs(b))))


def assume_reasonable(system) -> None:
    """Keep cases whose convergence happens in reasonable time, as the polynomial tells:
    the limit root attracts at rate |Q'(r)| and the transit x0 -> r takes a bounded time."""
    p = system.predict()
    Q = p.polynomial
    r = p.limit
    assume(abs(Q.deriv()(r)) >= 0.05)
    x0 = p.x0
    gap = r - x0
    if abs(gap) > 1e-3:
        assume(time_to_reach(Q, x0, r - math.copysign(1e-3, gap)) < 500)


def assert_converged_to_prediction(system, tol: float = 1e-6):
    integ = system.integrate()
    pred = system.predict()
    assert not integ.blew_up and integ.converged, integ.message
    assert rel(integ.limit, pred.state) < tol, (integ.limit, pred.state)
    assert system.invariant_drift(integ) < 1e-7
    return integ, pred


def assert_reduction_exact(system, integ, n_points: int = 25) -> None:
    """da1/dt along the trajectory equals Q(a1): the reduction to 1-D is exact."""
    Q = system.reduced_polynomial()
    idx = np.linspace(0, integ.t.size - 1, min(n_points, integ.t.size)).astype(int)
    y = integ.y[:, idx]
    lhs = np.asarray(system.rhs(0.0, y))[0]
    rhs = Q(y[0])
    assert np.allclose(lhs, rhs, rtol=1e-6, atol=1e-6 * (1 + np.max(np.abs(lhs))))


# ---------------------------------------------------------------------------------------
# Theorem 1
# ---------------------------------------------------------------------------------------


@st.composite
def polynomials_with_roots(draw):
    k = draw(st.integers(0, 4))
    roots = sorted(draw(st.lists(st.floats(-3, 3), min_size=k, max_size=k)))
    assume(all(b - a >= 0.3 for a, b in zip(roots, roots[1:])))
    mults = draw(st.lists(st.sampled_from([1, 1, 2]), min_size=k, max_size=k))
    complex_pair = draw(st.booleans()) if k < 4 else False
    lead = draw(signed(0.3, 2.0))
    all_roots = [r for r, m in zip(roots, mults) for _ in range(m)]
    poly = lead * Polynomial.fromroots(all_roots) if all_roots else Polynomial([lead])
    if complex_pair:
        p, q = draw(st.floats(-2, 2)), draw(st.floats(0.4, 2))
        poly = poly * Polynomial([p * p + q * q, -2 * p, 1.0])
    assume(poly.degree() >= 1)
    x0 = draw(st.floats(-4, 4))
    assume(all(abs(x0 - r) >= 0.1 for r in roots))
    return poly, roots, mults, x0


@settings(max_examples=60, **SETTINGS)
@given(polynomials_with_roots())
def test_theorem1_against_integration(case):
    poly, roots, mults, x0 = case
    pred = theorem1(poly, x0)
    found, found_mults = real_roots(poly)
    assert np.allclose(found, roots, atol=1e-6) and list(found_mults) == list(mults)
    system = PolynomialODE(tuple(poly.coef), x0)
    integ = system.integrate()
    x_end = float(integ.y_end[0])
    if pred.diverges:
        assert integ.blew_up and np.sign(x_end) == np.sign(pred.limit)
        t_bound = time_to_reach(poly, x0, math.copysign(system.bound, pred.limit))
        assert integ.blowup_time == pytest.approx(t_bound, rel=1e-5, abs=1e-9)
        if poly.degree() >= 2:
            assert pred.finite_time and pred.blowup_time >= t_bound - 1e-9
            assert pred.blowup_time - t_bound < 1e-2 * max(1.0, pred.blowup_time)
    else:
        assert not integ.blew_up
        assert pred.limit in list(found)
        m = mults[list(found).index(pred.limit)]
        if m == 1:
            assert pred.kind == "attracting"
            assert abs(x_end - pred.limit) < 1e-6
        else:  # double root: approached from x0's side, never crossed
            assert pred.kind == "semi-stable"
            # near the root dx/dt ~ k (x - r)^2 with k = Q''(r)/2, so |x - r| ~ 1/(|k| t): after
            # t_end the distance left is about 1/(|k| t_end), which exceeds 1e-2 when k is small
            k = abs(poly.deriv(2)(pred.limit)) / 2
            assert abs(x_end - pred.limit) < max(1e-2, 2 / (k * integ.t_end))
            assert np.all(np.sign(integ.y[0] - pred.limit) * np.sign(x0 - pred.limit) >= 0)
    if always_converges(poly):
        assert not pred.diverges
    # the between-roots rule: the limit is the nearest root in the direction sign(Q(x0))
    direction = np.sign(poly(x0))
    ahead = [r for r in found if (r - x0) * direction > 0]
    expected = min(ahead, key=lambda r: abs(r - x0)) if ahead else direction * math.inf
    assert pred.limit == expected


@settings(max_examples=25, **SETTINGS)
@given(st.lists(st.floats(-3, 3), min_size=1, max_size=4, unique=True), signed(0.3, 2), st.data())
def test_theorem1_start_on_root(roots, lead, data):
    roots = sorted(roots)
    assume(all(b - a >= 0.1 for a, b in zip(roots, roots[1:])))
    r = data.draw(st.sampled_from(roots))
    pred = theorem1(lead * Polynomial.fromroots(roots), r)
    assert pred.on_root and not pred.diverges and pred.limit == pytest.approx(r, abs=1e-9)


def test_theorem1_low_degrees_and_convergence_criterion():
    assert theorem1([0.0], 1.5).limit == 1.5  # Q = 0
    p = theorem1([2.0], 0.0)  # drift, infinite time
    assert p.diverges and p.limit == math.inf and not p.finite_time
    assert theorem1([1.0, -2.0], 5.0).limit == pytest.approx(0.5)  # stable linear
    p = theorem1([1.0, 2.0], 0.0)  # unstable linear
    assert p.diverges and p.limit == math.inf and not p.finite_time
    p = theorem1([1.0, 0.0, 1.0], 0.0)  # 1 + x^2: tan
    assert p.diverges and p.finite_time and p.blowup_time == pytest.approx(math.pi / 2)
    assert always_converges([1.0, 0.0, 0.0, -1.0])
    assert not always_converges([1.0, 0.0, 0.0, 1.0])
    assert not always_converges([1.0, 0.0, -1.0])
    # triple root recovered as one root of multiplicity 3
    roots, mults = real_roots(-Polynomial.fromroots([0.7, 0.7, 0.7, -1.0]))
    assert np.allclose(roots, [-1.0, 0.7], atol=1e-5) and mults == (1, 3)


# ---------------------------------------------------------------------------------------
# A[1,1,1]
# ---------------------------------------------------------------------------------------

a111_params = st.builds(
    A111,
    alpha=signed(0.2, 2.0),
    beta=st.floats(0.2, 2.0),
    c1=signed(0.2, 2.0),
    a1=st.floats(-2, 2),
    a2=st.floats(-2, 2),
)


@settings(max_examples=50, **SETTINGS)
@given(a111_params)
def test_a111_limit_is_theorem1_root(system):
    assume_reasonable(system)
    integ, pred = assert_converged_to_prediction(system)
    a1, a2 = integ.limit
    Q = system.reduced_polynomial()
    assert Q.degree() == 3 and Q.coef[-1] == pytest.approx(-system.beta / 2)
    # depressed cubic a1^3 + 2 c1 K a1 - 2 c1 alpha/beta = 0 (eq. 30 with 27)
    K = system.K
    assert a1**3 + 2 * system.c1 * K * a1 - 2 * system.c1 * system.alpha / system.beta == pytest.approx(
        0.0, abs=1e-6 * (1 + abs(a1) ** 3)
    )
    assert a1 * a2 == pytest.approx(system.alpha / system.beta, rel=1e-7)
    # the fixed point reached is an attractor
    assert a111_stability(a1, a2, system.c1, system.beta) > 0
    assert pred.kind == "attracting"
    assert_reduction_exact(system, integ)


@settings(max_examples=40, **SETTINGS)
@given(
    alpha=signed(0.3, 2),
    beta=st.floats(0.3, 2),
    c1=signed(0.2, 2),
    a1=signed(0.2, 2.5),
    direction=st.floats(0, 2 * np.pi),
)
def test_a111_stability_condition(alpha, beta, c1, a1, direction):
    """On the hyperbola the Jacobian has eigenvalues 0 and -beta(c1 a2 + a1^2); a small
    perturbation of alpha - beta P decays or grows exactly as that sign says."""
    a2 = alpha / (beta * a1)
    s = float(a111_stability(a1, a2, c1, beta))
    assume(abs(s) > 0.05)
    system = A111(alpha=alpha, beta=beta, c1=c1, a1=a1, a2=a2)
    eig = np.sort(np.linalg.eigvals(jacobian(system.rhs, system.y0)).real)
    assert np.allclose(np.sort([0.0, -s]), eig, atol=1e-5 * (1 + abs(s)))
    u, v = math.cos(direction), math.sin(direction)
    w = a2 * u + a1 * v  # transverse component (linearised alpha - beta P)
    assume(abs(w) > 0.2 * math.hypot(a1, a2))
    eps = 1e-7
    start = A111(alpha=alpha, beta=beta, c1=c1, a1=a1 + eps * u, a2=a2 + eps * v)
    tau = 2.0 / abs(s)
    integ = integrate(start.rhs, start.y0, t_eval=np.array([0.0, tau]), rtol=1e-12, atol=1e-20)
    g0, g1 = alpha - beta * integ.y[0] * integ.y[1]
    ratio = abs(g1 / g0)
    assert ratio == pytest.approx(math.exp(-s * tau), rel=0.05)
    assert (ratio < 1) == a111_is_attractor(a1, a2, c1, beta)


def test_a111_special_points_and_trivial_case():
    p1, p2 = a111_parabola_hyperbola_intersection(2.0, 0.5, 1.5)
    assert p1 * p2 == pytest.approx(2.0 / 0.5) and p1**2 + 1.5 * p2 == pytest.approx(0)
    assert p1 == pytest.approx(-((1.5 * 2.0 / 0.5) ** (1 / 3)))
    assert p2 == pytest.approx(-(2.0 ** (2 / 3)) / (1.5 ** (1 / 3) * 0.5 ** (2 / 3)))
    # c1 = 0: a1 frozen, a2 does gradient descent to alpha/(beta a1)
    s = A111(alpha=1.0, beta=2.0, c1=0.0, a1=0.5, a2=-1.0)
    integ, pred = assert_converged_to_prediction(s)
    assert integ.limit[0] == 0.5 and pred.state[1] == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------
# Chains
# ---------------------------------------------------------------------------------------


@settings(max_examples=40, **SETTINGS)
@given(
    alpha=signed(0.3, 1.5),
    beta=st.floats(0.3, 1.5),
    c1=signed(0.3, 1.5),
    c2=signed(0.3, 1.5),
    a0=st.lists(st.floats(-1.2, 1.2), min_size=3, max_size=3),
)
def test_a1111_degree7_and_limit(alpha, beta, c1, c2, a0):
    system = Chain(alpha=alpha, beta=beta, c=(c1, c2), a0=tuple(a0))
    Q = system.reduced_polynomial()
    assert Q.degree() == 7
    assert Q.coef[-1] == pytest.approx(-beta * c2**2 / (16 * c1**2), rel=1e-12)
    assume_reasonable(system)
    integ, _ = assert_converged_to_prediction(system)
    assert np.prod(integ.limit) == pytest.approx(alpha / beta, rel=1e-7)
    assert_reduction_exact(system, integ)


@settings(max_examples=30, **SETTINGS)
@given(L=st.integers(3, 4), data=st.data())
def test_chain_degree_and_limit(L, data):
    c = data.draw(st.lists(signed(0.4, 1.4), min_size=L - 1, max_size=L - 1))
    a0 = data.draw(st.lists(st.floats(-1.0, 1.0), min_size=L, max_size=L))
    alpha, beta = data.draw(signed(0.3, 1.5)), data.draw(st.floats(0.5, 1.5))
    system = Chain(alpha=alpha, beta=beta, c=tuple(c), a0=tuple(a0))
    Q = system.reduced_polynomial()
    assert Q.degree() == 2**L - 1
    lead = chain_leading_coefficient(beta, c)
    assert lead < 0 and Q.coef[-1] == pytest.approx(lead, rel=1e-10)
    assert always_converges(Q)
    assume_reasonable(system)
    integ, _ = assert_converged_to_prediction(system)
    assert np.prod(integ.limit) == pytest.approx(alpha / beta, rel=1e-7)
    # RBP form: the same system after c^SRBP_i = prod_{k>=i} c^RBP_k
    assert np.allclose(rbp_to_srbp(srbp_to_rbp(c)), c)


@settings(max_examples=30, **SETTINGS)
@given(L=st.integers(2, 4), data=st.data())
def test_chain_gradient_descent(L, data):
    a0 = data.draw(st.lists(st.floats(-1.5, 1.5), min_size=L, max_size=L))
    sq = np.sort(np.square(a0))
    assume(sq[1] - sq[0] > 0.05 and np.prod(np.abs(a0)) > 0.01)
    system = ChainGD(alpha=data.draw(signed(0.3, 1.5)), beta=data.draw(st.floats(0.5, 1.5)), a0=tuple(a0))
    integ, pred = assert_converged_to_prediction(system)
    assert np.prod(integ.limit) == pytest.approx(system.alpha / system.beta, rel=1e-7)
    if L == 2:  # Theorem 1 on the quadratic in s = (a1 + a2)^2 agrees with the invariants
        assert rel(system._predict_by_invariants().state, pred.state) < 1e-9


# ---------------------------------------------------------------------------------------
# A[1,N,1], A[N,1,N], A[N0,N1,N2], A[2,2,2]
# ---------------------------------------------------------------------------------------


@settings(max_examples=40, **SETTINGS)
@given(N=st.integers(1, 4), data=st.data())
def test_a1n1_cubic_and_limit(N, data):
    vec = lambda lo, hi: st.lists(st.floats(lo, hi), min_size=N, max_size=N)
    c = data.draw(st.lists(signed(0.2, 1.5), min_size=N, max_size=N))
    system = A1N1(
        alpha=data.draw(signed(0.3, 1.5)),
        beta=data.draw(st.floats(0.5, 1.5)),
        c=tuple(c),
        a0=tuple(data.draw(vec(-1, 1))),
        b0=tuple(data.draw(vec(-1, 1))),
    )
    Q = system.reduced_polynomial()
    assert Q.degree() == 3
    assert Q.coef[-1] == pytest.approx(a1n1_leading_coefficient(system.beta, c), rel=1e-12)
    assert Q.coef[-1] == pytest.approx(-system.beta * sum(x * x for x in c) / (2 * c[0] ** 2))
    assume_reasonable(system)
    integ, _ = assert_converged_to_prediction(system)
    assert_reduction_exact(system, integ)


@settings(max_examples=30, **SETTINGS)
@given(N=st.integers(1, 4), data=st.data())
def test_an1n_autoencoder(N, data):
    vec = lambda lo, hi: st.lists(st.floats(lo, hi), min_size=N, max_size=N)
    C = np.array(data.draw(vec(-1.5, 1.5)))
    assume(np.linalg.norm(C) > 0.3)
    system = AN1N(C=tuple(C), A0=tuple(data.draw(vec(-1, 1))), B0=tuple(data.draw(vec(-1, 1))))
    A0 = np.array(system.A0)
    assume(N == 1 or np.linalg.norm(A0 - (A0 @ C) / (C @ C) * C) > 1e-3)
    integ, pred = assert_converged_to_prediction(system)
    A, B = integ.limit[:N], integ.limit[N:]
    assert np.allclose(np.outer(B, A), np.outer(C, C) / (C @ C), atol=1e-7)  # Theorem 6
    lam = pred.quantities["lambda"]
    assert np.allclose(A, lam * C, atol=1e-6)
    if N > 1:  # A0 not parallel to C: the positive root (for N = 1, see the next test)
        assert lam > 0
    K = system.K
    assert (C @ C) * lam**3 / 2 - K * lam - 1 == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("N", [1, 3])
def test_an1n_parallel_start_can_reach_negative_root(N):
    """On the invariant set A || C (always so for N = 1) the dynamics are exactly
    df/dt = 1 + K f - |C|^2 f^3/2, and Theorem 1 can pick a *negative* root: A -> lambda C
    with lambda < 0.  BA -> C^T C/|C|^2 still holds."""
    C = np.array([1.0, 0.0, 0.0][:N])
    system = AN1N(C=tuple(C), A0=tuple(-3.0 * C), B0=tuple(1.5 * C))  # K = 4.5 - 1.5 = 3
    integ, pred = assert_converged_to_prediction(system)
    lam = pred.quantities["lambda"]
    assert lam < 0 and pred.kind == "attracting"
    assert np.allclose(integ.limit[:N], lam * C, atol=1e-6)
    B, A = integ.limit[N:], integ.limit[:N]
    assert np.allclose(np.outer(B, A), np.outer(C, C) / (C @ C), atol=1e-7)
    if N > 1:  # a saddle: any transverse perturbation leaves for the positive root
        A0 = -3.0 * C + np.array([0.0, 1e-3, 0.0])
        other = AN1N(C=tuple(C), A0=tuple(A0), B0=tuple(1.5 * C))
        assert other.predict().quantities["lambda"] > 0
        assert_converged_to_prediction(other)


@settings(max_examples=20, **SETTINGS)
@given(N=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_an1n_lemma1_any_statistics(N, seed):
    """Lemma 1 (|A|^2/2 - CB conserved) holds for any S_II, S_TI, not only identity."""
    rng = np.random.default_rng(seed)
    M = rng.normal(size=(N, N))
    system = AN1N(
        C=tuple(rng.normal(size=N)),
        A0=tuple(rng.normal(size=N)),
        B0=tuple(rng.normal(size=N)),
        Sigma_II=M @ M.T / N + 0.5 * np.eye(N),
        Sigma_TI=rng.normal(size=(N, N)),
    )
    integ = system.integrate(t_max=20.0, t_cap=20.0)
    assert not integ.blew_up
    assert system.invariant_drift(integ) < 1e-7


@st.composite
def linear3_systems(draw):
    n0, n1, n2 = (draw(st.integers(1, 3)) for _ in range(3))
    mat = lambda r, c, lo=-1.5, hi=1.5: np.array(
        draw(st.lists(st.floats(lo, hi), min_size=r * c, max_size=r * c))
    ).reshape(r, c)
    M = mat(n0, n0)
    C1 = mat(n1, n2)
    assume(np.linalg.svd(C1, compute_uv=False).min() >= 0.4)
    system = Linear3(
        Sigma_II=M @ M.T / n0 + 0.5 * np.eye(n0),
        Sigma_TI=mat(n2, n0),
        C1=C1,
        A1=mat(n1, n0, -0.5, 0.5),
        A2=mat(n2, n1, -0.5, 0.5),
    )
    # a small non-zero singular value of the target makes its mode converge very slowly
    # (like a deep linear net near the origin): keep them >= 0.15
    assume(system.well_conditioned())
    return system


@settings(max_examples=30, **SETTINGS)
@given(linear3_systems())
def test_linear3_invariant_and_partial_convergence(system):
    integ = system.integrate(t_max=100.0, t_cap=1600.0)
    assert not integ.blew_up  # Theorem 7
    K0 = system.invariant_matrix(system.y0)
    Kt = system.invariant_matrix(integ.y)
    assert np.max(np.abs(Kt - K0[..., None])) < 1e-7 * (1 + np.max(np.abs(K0)))
    A1, A2 = system.unpack(integ.limit)
    target = system.C1 @ system.Sigma_TI @ np.linalg.inv(system.Sigma_II)
    assert np.allclose(system.C1 @ A2 @ A1, target, atol=1e-6)  # Theorem 8
    _, n1, n2 = system.sizes
    if n1 >= n2:  # C1 injective: A2 A1 itself converges to S_TI S_II^-1
        assert np.allclose(A2 @ A1, system.Sigma_TI @ np.linalg.inv(system.Sigma_II), atol=1e-5)


@settings(max_examples=30, **SETTINGS)
@given(st.lists(st.floats(-1, 1), min_size=8, max_size=8))
def test_a222_converges(entries):
    system = A222(A1=np.reshape(entries[:4], (2, 2)), A2=np.reshape(entries[4:], (2, 2)))
    integ = system.integrate()
    assert integ.converged and not integ.blew_up  # Theorem 10
    A, B = system.unpack(integ.limit)
    assert np.allclose(B @ A, np.eye(2), atol=1e-8)
    assert system.invariant_drift(integ) < 1e-7
    # the limit satisfies the two known relations of eq. 112: AB = I, B + B^T - AA^T = K
    K0 = -system.invariant_matrix(system.y0)
    assert np.allclose(A @ B, np.eye(2), atol=1e-7)
    assert np.allclose(B + B.T - A @ A.T, K0, atol=1e-7)


# ---------------------------------------------------------------------------------------
# Non-linear power unit
# ---------------------------------------------------------------------------------------

mus = st.one_of(st.sampled_from([1.0, 2.0, 3.0]), st.floats(1.0, 3.0))


@settings(max_examples=40, **SETTINGS)
@given(
    mu=mus,
    alpha=st.floats(0.3, 1.5),
    beta=st.floats(0.5, 1.5),
    c1=st.floats(0.3, 1.5),
    a1=st.floats(0.1, 1.5),
    a2=st.floats(-1, 1),
)
def test_power_unit_with_derivative_converges_to_eq117(mu, alpha, beta, c1, a1, a2):
    system = PowerUnit(mu=mu, derivative=True, alpha=alpha, beta=beta, c1=c1, a1=a1, a2=a2)
    Q = system.reduced_polynomial()
    if Q is not None:
        m = int(mu)
        assert Q.degree() == 2 * m + 1 and Q.coef[-1] == pytest.approx(-beta / 2)
        assume_reasonable(system)
    integ, _ = assert_converged_to_prediction(system)
    t = system.eq117_root()
    assert integ.limit[0] == pytest.approx(t, rel=1e-6)
    assert beta * t**mu * (t * t / (2 * mu * c1) + system.K) == pytest.approx(alpha)
    a1_end, a2_end = integ.limit
    assert a2_end * a1_end**mu == pytest.approx(alpha / beta, rel=1e-7)  # eq. 116
    if Q is not None:
        assert_reduction_exact(system, integ)


@settings(max_examples=12, **SETTINGS)
@given(
    mu=mus,
    alpha=st.floats(0.3, 1.5),
    beta=st.floats(0.5, 1.5),
    gamma=st.floats(0.2, 1.5),
    delta=st.floats(0.5, 1.5),
    c1=st.floats(0.3, 1.5),
    a1=st.floats(0.2, 1.5),
    a2=st.floats(-1, 1),
)
def test_power_unit_without_derivative_has_no_fixed_point(mu, alpha, beta, gamma, delta, c1, a1, a2):
    assume(abs(gamma / delta - alpha / beta) >= 0.2)
    system = PowerUnit(mu=mu, derivative=False, alpha=alpha, beta=beta, gamma=gamma, delta=delta, c1=c1, a1=a1, a2=a2)
    assert not system.has_fixed_point()
    rows = system.checks()
    assert all(r.ok for r in rows), [(r.name, r.prediction, r.integrated) for r in rows if not r.ok]
    asym = system.no_derivative_asymptotics()
    # the loss stays above its minimum exactly when gamma/delta < alpha/beta
    assert (asym["excess"] > 0) == (gamma / delta < alpha / beta)


# ---------------------------------------------------------------------------------------
# CLI and plots
# ---------------------------------------------------------------------------------------


def _parse(argv):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_all_systems_ok(capsys):
    assert cli.run(_parse([])) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.count(" | ") >= 5][1:]
    assert len(rows) >= 40
    assert all(line.rstrip().endswith("| OK") for line in rows), out
    assert cli.run(_parse(["--seed", "7"])) == 0
    assert "FAIL" not in capsys.readouterr().out


def test_cli_list_and_unknown(capsys):
    assert cli.run(_parse(["--list"])) == 0
    out = capsys.readouterr().out
    for name in (
        "theorem1",
        "a111",
        "a111-bp",
        "a1111",
        "chain",
        "chain-gd",
        "a1n1",
        "an1n",
        "linear3",
        "a222",
        "power",
        "power-nof",
    ):
        assert name in out
    assert cli.run(_parse(["nonsense"])) == 2
    assert cli.run(_parse(["a1111"])) == 0


def test_python_m_entry_point():
    import rbp_native

    root = os.path.dirname(os.path.dirname(os.path.abspath(rbp_native.__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "rbp_native.theory", "a111"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "A[1,1,1] RBP" in proc.stdout and "FAIL" not in proc.stdout


def test_plots_written(tmp_path):
    pytest.importorskip("matplotlib")
    from rbp_native.theory.plots import plot_all

    paths = plot_all(tmp_path)
    assert sorted(p.name for p in paths) == ["a111_phase_portrait.png", "chains.png", "theorem1.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in paths)  # no temp files
