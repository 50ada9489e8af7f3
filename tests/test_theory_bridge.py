"""The native trainer (full batch, linear units, no momentum/decay) follows the averaged ODEs.

One native step is one forward-Euler step of the system's right-hand side with dt = lr, so
(1) it matches a numpy Euler step to rounding, (2) the trajectory stays within O(lr) of the
ODE solution at t = k lr, and (3) that error halves when lr halves (first order).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("rbp_native._core")

from rbp_native.theory import A1N1, A111, A222, AN1N, Chain, ChainGD, Linear3
from rbp_native.theory.bridge import (
    compare,
    convergence_order,
    matrix_dataset,
    native_setup,
    scalar_dataset,
)

T_END = 3.0
LR = 0.01
#: stated tolerance: max_k |native(k lr) - y(k lr)|_inf at lr = 0.01 over t in [0, 3]
TOLERANCE = 0.02

CASES = [
    ("A[1,1,1] SRBP", lambda: A111(), None),
    ("A[1,1,1,1] SRBP", lambda: Chain(c=(1.0, 0.5), a0=(0.5, 0.5, 0.5)), None),
    ("A[1,1,1,1,1] RBP", lambda: Chain(c=(0.8, -0.6, 0.9), a0=(0.4, -0.3, 0.5, 0.6)), "rbp"),
    ("A[1,1,1] BP", lambda: ChainGD(a0=(0.5, -1.0)), None),
    ("A[1,1,1,1] BP", lambda: ChainGD(a0=(0.5, -0.8, 0.3)), None),
    ("A[1,3,1] SRBP", lambda: A1N1(), None),
    ("A[3,1,3] SRBP", lambda: AN1N(), None),
    ("A[3,2,2] SRBP", lambda: Linear3(), None),
    ("A[2,2,2] SRBP", lambda: A222(), None),
]


def test_datasets_have_the_statistics():
    x, t = scalar_dataset(0.7, 1.3)
    assert np.mean(x * x) == pytest.approx(1.3) and np.mean(x * t) == pytest.approx(0.7)
    S = np.array([[1.0, 0.3], [0.3, 0.8]])
    STI = np.array([[0.5, -0.2], [0.1, 0.4], [0.3, 0.3]])
    x, t = matrix_dataset(S, STI)
    assert np.allclose(x.T @ x / len(x), S) and np.allclose(t.T @ x / len(x), STI)


@pytest.mark.parametrize("name,make,algorithm", CASES, ids=[c[0] for c in CASES])
def test_native_follows_ode(name, make, algorithm):
    system = make()
    result = compare(system, LR, T_END, algorithm)
    assert result.euler_gap < 1e-12  # one native step == one Euler step
    assert result.max_error < TOLERANCE, result.max_error
    errs, slope = convergence_order(system, [0.02, 0.01, 0.005], T_END, algorithm)
    assert np.all(errs[1:] / errs[:-1] > 0.4) and np.all(errs[1:] / errs[:-1] < 0.6), errs
    assert 0.9 < slope < 1.1


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    alpha=st.floats(0.3, 1.5),
    beta=st.floats(0.5, 1.5),
    c1=st.floats(0.3, 1.5) | st.floats(-1.5, -0.3),
    a1=st.floats(-1, 1),
    a2=st.floats(-1, 1),
)
def test_native_a111_random_parameters(alpha, beta, c1, a1, a2):
    system = A111(alpha=alpha, beta=beta, c1=c1, a1=a1, a2=a2)
    small, half = compare(system, 0.01, 2.0), compare(system, 0.005, 2.0)
    assert small.euler_gap < 1e-12 and half.euler_gap < 1e-12
    assert half.max_error <= 0.6 * small.max_error + 1e-12


def test_native_srbp_training_reaches_theorem1_limit():
    """Long native SRBP training ends within O(lr) of the Theorem 1 root."""
    system = A111(alpha=1.0, beta=1.0, c1=1.0, a1=0.5, a2=-1.0)
    pred = system.predict()
    errors = []
    for lr in (0.02, 0.01):
        setup = native_setup(system, lr)
        for _ in range(round(40.0 / lr)):
            setup.step()
        errors.append(np.max(np.abs(setup.state() - pred.state)))
    assert errors[1] < 0.02
    assert errors[1] < 0.7 * errors[0]  # shrinks with lr
    w = setup.state()
    assert w[0] * w[1] == pytest.approx(1.0, abs=1e-9)  # on the hyperbola alpha = beta P
