"""Figures for the theory module (matplotlib, Agg canvas, imported lazily).

Every function writes one PNG atomically (a temporary file in the target directory, then
:func:`os.replace`) and returns its :class:`~pathlib.Path`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from ._deps import require_matplotlib
from .systems import (
    A111,
    Chain,
    PolynomialODE,
    a111_parabola_hyperbola_intersection,
    a111_stability,
)

__all__ = ["plot_all", "plot_chains", "plot_phase_portrait", "plot_theorem1", "save_figure"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Render ``fig`` with the Agg canvas and write it to ``path`` atomically."""
    _, FigureCanvasAgg = require_matplotlib()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fd, tmp = tempfile.mkstemp(prefix="." + path.stem + "-", suffix=".png", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format="png", dpi=dpi)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; use the usual mode
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:  # pragma: no cover
            pass
        raise
    return path


def plot_phase_portrait(
    path: str | os.PathLike,
    alpha: float = 1.0,
    beta: float = 1.0,
    c1: float = 1.0,
    lim: float = 3.0,
    starts=None,
    t_max: float = 30.0,
) -> Path:
    """The A[1,1,1] RBP phase plane (the paper's Fig. 11).

    Stream lines of ``(da1/dt, da2/dt)``; the hyperbolas ``a1 a2 = alpha/beta`` (fixed points:
    solid where attracting, ``beta(c1 a2 + a1^2) > 0``, dashed where not); the parabola
    ``a1^2 + c1 a2 = 0``; sample trajectories (which follow the parabolas
    ``a2 = a1^2/(2c1) + K``) with their starts (o) and the Theorem 1 predictions (*).
    """
    Figure, _ = require_matplotlib()
    fig = Figure(figsize=(7.0, 6.5))
    ax = fig.add_subplot(1, 1, 1)
    g = np.linspace(-lim, lim, 41)
    A1, A2 = np.meshgrid(g, g)
    proto = A111(alpha=alpha, beta=beta, c1=c1)
    U, V = proto.rhs(0.0, np.stack([A1.ravel(), A2.ravel()]))
    U, V = U.reshape(A1.shape), V.reshape(A1.shape)
    speed = np.log1p(np.hypot(U, V))
    ax.streamplot(A1, A2, U, V, color=speed, cmap="Greys", density=1.3, linewidth=0.6, arrowsize=0.7)

    x = np.linspace(-lim, lim, 2001)
    x = x[np.abs(x) > 1e-3]
    h = alpha / (beta * x)
    stable = a111_stability(x, h, c1, beta) > 0
    inside = np.abs(h) <= lim
    for mask, style, lab in (
        (stable & inside, "-", "fixed points, attracting"),
        (~stable & inside, "--", "fixed points, unstable"),
    ):
        yy = np.where(mask, h, np.nan)
        ax.plot(x, yy, style, color="tab:red", lw=2.0, label=lab)
    par = -(x**2) / c1
    ax.plot(x, np.where(np.abs(par) <= lim, par, np.nan), color="tab:blue", lw=1.5, label=r"$a_1^2 + c_1 a_2 = 0$")
    p1, p2 = a111_parabola_hyperbola_intersection(alpha, beta, c1)
    if abs(p1) <= lim and abs(p2) <= lim:
        ax.plot([p1], [p2], "s", color="tab:purple", ms=6, label="parabola meets hyperbola")

    if starts is None:
        angles = np.linspace(0, 2 * np.pi, 12, endpoint=False) + 0.2
        starts = [(0.85 * lim * np.cos(a), 0.85 * lim * np.sin(a)) for a in angles]
        starts += [(0.3, -0.5), (-0.4, 0.2)]
    for k, (s1, s2) in enumerate(starts):
        sys_k = A111(alpha=alpha, beta=beta, c1=c1, a1=float(s1), a2=float(s2))
        integ = sys_k.integrate(t_max=t_max)
        a1, a2 = integ.y
        keep = (np.abs(a1) <= 1.5 * lim) & (np.abs(a2) <= 1.5 * lim)
        ax.plot(a1[keep], a2[keep], color="tab:green", lw=1.1, label="trajectories" if k == 0 else None)
        ax.plot([s1], [s2], "o", color="tab:green", ms=4)
        pred = sys_k.predict()
        if pred.state is not None and np.all(np.abs(pred.state) <= lim):
            ax.plot([pred.state[0]], [pred.state[1]], "*", color="k", ms=9, label="Theorem 1 limit" if k == 0 else None)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_xlabel(r"$a_1$")
    ax.set_ylabel(r"$a_2$")
    ax.set_title(rf"A[1,1,1] RBP: $\alpha$={alpha:g}, $\beta$={beta:g}, $c_1$={c1:g}")
    ax.legend(loc="lower left", fontsize=7, framealpha=0.9)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_chains(path: str | os.PathLike, systems: list[Chain] | None = None, t_max: float = 40.0) -> Path:
    """Trajectories ``a_i(t)`` of A[1,...,1] chains (SRBP) with the predicted limits
    (Theorem 1 on the degree ``2^L - 1`` polynomial) as dashed lines."""
    Figure, _ = require_matplotlib()
    if systems is None:
        systems = [
            Chain(c=(1.0,), a0=(0.5, -1.0)),
            Chain(c=(1.0, 0.5), a0=(0.5, 0.5, 0.5)),
            Chain(c=(1.0, 0.8, 0.6), a0=(0.5, 0.4, 0.3, 0.2)),
            Chain(c=(0.9, -0.7, 0.8, 0.5), a0=(0.3, 0.2, 0.4, -0.3, 0.5)),
        ]
    n = len(systems)
    cols = 2 if n > 1 else 1
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(5.0 * cols, 3.4 * rows))
    for k, s in enumerate(systems):
        ax = fig.add_subplot(rows, cols, k + 1)
        t_eval = np.linspace(0.0, t_max, 600)
        integ = s.integrate(t_eval=t_eval)
        pred = s.predict()
        for i in range(s.L):
            (line,) = ax.plot(integ.t, integ.y[i], lw=1.4, label=f"$a_{i + 1}$")
            if pred.state is not None:
                ax.axhline(pred.state[i], ls="--", lw=0.9, color=line.get_color())
        ax.set_title(f"{s.label}: deg Q = {2**s.L - 1}", fontsize=9)
        ax.set_xlabel("t")
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_theorem1(path: str | os.PathLike, coefficients=None, x0s=None, t_max: float = 6.0) -> Path:
    """Theorem 1: ``Q(x)`` with its roots (left) and ``x(t)`` from several starts with the
    predicted limits (right; diverging runs end at their blow-up)."""
    Figure, _ = require_matplotlib()
    from numpy.polynomial import Polynomial

    if coefficients is None:
        coefficients = (-Polynomial.fromroots([-2.0, 1.0, 1.0, 3.0])).coef
    if x0s is None:
        x0s = [-2.2, -1.5, 0.0, 0.8, 1.5, 2.5, 3.5]
    poly = Polynomial(np.asarray(coefficients, dtype=float))
    fig = Figure(figsize=(10.0, 4.0))
    ax1 = fig.add_subplot(1, 2, 1)
    ax2 = fig.add_subplot(1, 2, 2)
    lo, hi = min(x0s) - 0.5, max(x0s) + 0.5
    xs = np.linspace(lo, hi, 800)
    ax1.plot(xs, poly(xs), color="k", lw=1.2)
    ax1.axhline(0.0, color="0.6", lw=0.8)
    s0 = PolynomialODE(tuple(poly.coef), 0.0).predict()
    for r, m in zip(s0.roots, s0.multiplicities):
        ax1.plot([r], [0.0], "o", color="tab:red", ms=5 + 2 * (m - 1))
    ax1.set_xlabel("x")
    ax1.set_ylabel("Q(x)")
    ax1.set_title("Q and its real roots", fontsize=9)
    for x0 in x0s:
        s = PolynomialODE(tuple(poly.coef), float(x0))
        integ = s.integrate(t_max=t_max, t_cap=t_max)
        keep = np.abs(integ.y[0]) <= 2 * max(abs(lo), abs(hi))
        (line,) = ax2.plot(integ.t[keep], integ.y[0][keep], lw=1.3)
        p = s.predict()
        if not p.diverges:
            ax2.axhline(p.limit, ls="--", lw=0.8, color=line.get_color())
    ax2.set_ylim(lo - 1, hi + 1)
    ax2.set_xlabel("t")
    ax2.set_ylabel("x(t)")
    ax2.set_title("x(t) and Theorem 1 limits (dashed)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


_FIGURES: dict[str, tuple[str, Callable[[Path], Path]]] = {
    "a111": ("a111_phase_portrait.png", plot_phase_portrait),
    "chain": ("chains.png", plot_chains),
    "theorem1": ("theorem1.png", plot_theorem1),
}


def plot_all(directory: str | os.PathLike, names: list[str] | None = None) -> list[Path]:
    """Write the figures relevant to the catalogue entries ``names`` (default: all three)."""
    directory = Path(directory)
    wanted = {
        "a111": "a111",
        "a111-bp": "a111",
        "a1111": "chain",
        "chain": "chain",
        "chain-gd": "chain",
        "theorem1": "theorem1",
    }
    keys = list(_FIGURES) if names is None else sorted({wanted[n] for n in names if n in wanted})
    return [func(directory / fname) for key in keys for fname, func in [_FIGURES[key]]]
