"""Tight-tolerance integration of ``dy/dt = rhs(t, y)`` with finite-time blow-up detection, and a
finite-difference Jacobian."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._deps import require_scipy
from .results import Integration


def _solve(
    rhs,
    t0: float,
    t1: float,
    y0: np.ndarray,
    *,
    method: str,
    rtol: float,
    atol: float,
    bound: float,
    vectorized: bool,
    t_eval: np.ndarray | None,
):
    """Step an ODE solver from t0 to t1, stopping when ``max|y| >= bound``.

    Returns ``(t, y, status, t_hit, message)``; status 0 finished, 1 bound reached, -1 failed.
    A hand-written loop rather than ``solve_ivp``'s terminal event: near a finite-time
    singularity the event root-finding can fail, and the step size can stall below the
    spacing of floating-point times, which is reported as reaching the bound.
    """
    sp = require_scipy()
    methods = {
        "LSODA": sp.integrate.LSODA,
        "Radau": sp.integrate.Radau,
        "BDF": sp.integrate.BDF,
        "RK45": sp.integrate.RK45,
        "DOP853": sp.integrate.DOP853,
    }
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
                    t_hit = float(sp.optimize.brentq(g, t_old, t_new, xtol=1e-300, rtol=4 * np.finfo(float).eps))
            except (ValueError, RuntimeError):  # pragma: no cover - keep the step end
                pass
        if t_eval is not None:
            end = t_hit if hit else t_new
            if k_eval < t_eval.size and t_eval[k_eval] <= end:
                dense = solver.dense_output()
                while k_eval < t_eval.size and t_eval[k_eval] <= end:
                    ts.append(float(t_eval[k_eval]))
                    ys.append(np.asarray(dense(t_eval[k_eval])))
                    k_eval += 1
        elif hit:
            assert t_hit is not None  # set above whenever hit
            ts.append(t_hit)
            ys.append(np.asarray(solver.dense_output()(t_hit)) if t_hit != t_new else y_new.copy())
        else:
            ts.append(t_new)
            ys.append(y_new.copy())
        if hit:
            return np.array(ts), np.array(ys).T, 1, t_hit, "bound reached"
        if stalled >= 50:  # |dy/dt| beyond what float times resolve: a singularity
            return (np.array(ts), np.array(ys).T, 1, t_new, "step size below time resolution (singularity)")
    y_arr = np.array(ys).T if ys else np.empty((y0.size, 0))
    return np.array(ts), y_arr, 0, None, "ok"


def integrate(
    rhs,
    y0,
    *,
    t_max: float = 200.0,
    t_cap: float | None = None,
    t_eval: np.ndarray | None = None,
    method: str = "LSODA",
    rtol: float = 1e-10,
    atol: float = 1e-12,
    bound: float = 1e8,
    ftol: float = 1e-10,
    vectorized: bool = True,
) -> Integration:
    """Integrate ``dy/dt = rhs(t, y)`` from ``y0`` (scipy's LSODA by default; also "Radau",
    "BDF", "RK45", "DOP853").

    The integration stops when ``max|y|`` reaches ``bound`` (finite-time blow-up;
    ``blowup_time`` is when).  Without ``t_eval`` the horizon ``t_max`` is extended (x4 each
    time, up to ``t_cap``, default ``64 t_max``) until the state is stationary:
    ``max|rhs| <= ftol * max(1, max|y|)`` (``converged``).  With ``t_eval`` the solution is
    reported at exactly those times (from the solver's dense output), without extension.
    """
    y0 = np.asarray(y0, dtype=float).ravel()
    opts: dict[str, Any] = {"method": method, "rtol": rtol, "atol": atol, "bound": bound, "vectorized": vectorized}

    def residual(y) -> float:
        return float(np.max(np.abs(np.asarray(rhs(0.0, y), dtype=float)))) if y.size else 0.0

    def is_stationary(y) -> bool:
        return residual(y) <= ftol * max(1.0, float(np.max(np.abs(y))))

    ts: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    blew_up, blow_t, message = False, None, ""
    if t_eval is not None:
        t_eval = np.asarray(t_eval, dtype=float)
        t, y, status, t_hit, message = _solve(rhs, 0.0, float(t_eval[-1]), y0, t_eval=t_eval, **opts)
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
            t, y, status, t_hit, message = _solve(rhs, t0, horizon, y_start, t_eval=None, **opts)
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
    return Integration(
        t=t,
        y=yy,
        limit=limit,
        blew_up=blew_up,
        converged=converged,
        residual=res,
        blowup_time=blow_t,
        message=str(message),
    )


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
