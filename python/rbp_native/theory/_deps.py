"""Lazy imports of the optional dependencies of :mod:`rbp_native.theory` (extra ``theory``)."""

from __future__ import annotations

_HINT = "pip install rbp-native[theory]"


def require_scipy():
    """Import and return :mod:`scipy` (with ``integrate`` and ``optimize`` loaded)."""
    try:
        import scipy
        import scipy.integrate
        import scipy.optimize
    except ImportError as exc:  # pragma: no cover - exercised only without scipy
        raise ImportError("rbp_native.theory needs scipy to integrate the ODE systems; " + _HINT) from exc
    return scipy


def require_matplotlib():
    """Import matplotlib's object-oriented API without touching the global backend.

    Returns ``(Figure, FigureCanvasAgg)``; figures are rendered with the Agg canvas, so no
    display and no ``pyplot`` state are involved.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - exercised only without matplotlib
        raise ImportError("rbp_native.theory needs matplotlib to draw figures; " + _HINT) from exc
    return Figure, FigureCanvasAgg
