"""The interface every system implements (see the package docstring) and the helpers the
families share."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from numpy.polynomial import Polynomial
from numpy.typing import ArrayLike

from ..polynomial import Prediction
from .integration import integrate
from .results import Check, Integration, _state_difference, make_check

_X = Polynomial([0.0, 1.0])  # the polynomial x, for building reduced polynomials


def _bc(v: ArrayLike, y: np.ndarray) -> np.ndarray:
    """Reshape a parameter vector so it broadcasts against a (n, *trailing) state slice."""
    return np.asarray(v).reshape(np.shape(v) + (1,) * (np.ndim(y) - 1))


class System:
    """Common interface of the ODE systems (see the package docstring)."""

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
        return make_check(
            self.label, f"invariant {names}", _short(vals), f"drift {drift:.1e}", drift, self.invariant_tol
        )

    def _limit_check(self, name: str, pred: Prediction | None, integ: Integration) -> Check:
        if pred is None or pred.state is None:
            return make_check(self.label, name, "n/a", "n/a", math.nan, 0, ok=False)
        if pred.diverges:
            return make_check(
                self.label, name, "diverges", _short(integ.limit), 0.0 if integ.blew_up else math.inf, 0.0
            )
        ok_run = integ.converged and not integ.blew_up
        d = _state_difference(pred.state, integ.limit) if ok_run else math.inf
        return make_check(self.label, name, _short(pred.state), _short(integ.limit), d, self.limit_tol)


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


def _well_conditioned(poly: Polynomial | None, root: float, min_slope: float) -> bool:
    """|Q'(root)| large enough that an integration converges in reasonable time."""
    if poly is None:
        raise ValueError("the system has no reduced polynomial")
    return abs(poly.deriv()(root)) >= min_slope
