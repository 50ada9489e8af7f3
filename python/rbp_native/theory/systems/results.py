"""What the systems report: a numerical trajectory (:class:`Integration`) and one row of the
theory report (:class:`Check`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Integration:
    """A numerical trajectory. ``y`` has shape ``(n, len(t))``; ``limit`` is the final state
    with components beyond the blow-up bound replaced by ``+-inf``."""

    t: np.ndarray
    y: np.ndarray
    limit: np.ndarray
    blew_up: bool
    converged: bool
    residual: float
    blowup_time: float | None = None
    message: str = ""

    @property
    def t_end(self) -> float:
        return float(self.t[-1])

    @property
    def y_end(self) -> np.ndarray:
        return self.y[:, -1]


@dataclass(frozen=True)
class Check:
    """One row of the report: a prediction next to the integrated value."""

    system: str
    name: str
    prediction: Any
    integrated: Any
    difference: float
    tolerance: float
    verdict: str

    @property
    def ok(self) -> bool:
        return self.verdict == "OK"


def make_check(
    system: str,
    name: str,
    prediction: Any,
    integrated: Any,
    difference: float,
    tolerance: float,
    ok: bool | None = None,
) -> Check:
    difference = float(difference)
    if ok is None:
        ok = math.isfinite(difference) and difference <= tolerance
    return Check(system, name, prediction, integrated, difference, float(tolerance), "OK" if ok else "FAIL")


def _state_difference(pred: np.ndarray, got: np.ndarray) -> float:
    pred = np.asarray(pred, dtype=float).ravel()
    got = np.asarray(got, dtype=float).ravel()
    if pred.shape != got.shape or not np.all(np.isfinite(got)):
        return math.inf
    return float(np.max(np.abs(pred - got)) / (1.0 + np.max(np.abs(pred))))
