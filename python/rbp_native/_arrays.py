"""Argument checks shared by the Python wrappers: clear errors before anything reaches the core."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

DTYPES = {"float32": np.float32, "float64": np.float64}


def parse_dtype(dtype: Any) -> np.dtype:
    """Return the numpy dtype for "float32"/"float64" (or the numpy types themselves)."""
    key: str | None
    if isinstance(dtype, str):
        key = dtype
    else:
        # np.dtype(None) is float64 by numpy's convention; a missing dtype here is a mistake.
        try:
            key = np.dtype(dtype).name if dtype is not None else None
        except (TypeError, ValueError):  # not a dtype at all (an object, a malformed tuple)
            key = None
    if key not in DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    return np.dtype(DTYPES[key])


def as_integer(value: Any, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """`value` as an int, refusing what int() would silently truncate or reinterpret (1.5, "3",
    True) and anything outside [minimum, maximum]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        low = "" if minimum is None else f"{minimum} <= "
        high = "" if maximum is None else f" <= {maximum}"
        raise ValueError(f"{name} must satisfy {low}{name}{high}, got {value}")
    return value


def as_real(value: Any, name: str) -> float:
    """`value` as a finite float; a bool, a string or None is refused rather than reinterpreted."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def as_flag(value: Any, name: str) -> bool:
    """`value` as a bool; only True and False (numpy's included): bool("no") would be True."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def as_inputs(x: Any, dtype: np.dtype, features: int, name: str = "x") -> np.ndarray:
    """Inputs as a C-contiguous (N, features) array of `dtype`.

    Float arrays of the other precision are converted (a copy, as with any dtype change);
    anything else that is not a real floating array raises TypeError.
    """
    array = np.asarray(x)
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a numeric array, got dtype {array.dtype}")
    if array.ndim == 1 and features == array.shape[0]:
        raise ValueError(f"{name} must be 2-dimensional (examples, {features}); use {name}[None, :] for one example")
    if array.ndim != 2:
        raise ValueError(f"{name} must have shape (examples, {features}), got {array.shape}")
    if array.shape[1] != features:
        raise ValueError(f"{name} has {array.shape[1]} features per example, the network expects {features}")
    if array.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 examples)")
    return finite_as(array, dtype, name)


def all_finite(array: np.ndarray) -> bool:
    """Whether every value of `array` is finite: the core's vectorised scan for C-contiguous float32
    and float64 arrays (numpy's isfinite allocates a boolean array as large as the data, and took
    about thirty times as long on MNIST's training images), numpy's for the rest."""
    if array.dtype.kind in "biu":
        return True
    if array.dtype in (np.float32, np.float64) and array.flags.c_contiguous:
        from ._native import _core

        return bool(_core.all_finite(array))
    return bool(np.isfinite(array).all())


def finite_as(array: np.ndarray, dtype: np.dtype, name: str) -> np.ndarray:
    """A C-contiguous copy (or the array itself) in `dtype`, refusing NaN, infinity and values that
    overflow `dtype` (1e39 into float32) with a message that says which."""
    if not all_finite(array):
        raise ValueError(f"{name} contains NaN or infinity")
    with np.errstate(over="ignore"):  # reported below, by name, instead of numpy's RuntimeWarning
        converted = np.ascontiguousarray(array, dtype=dtype)
    if converted is not array and not all_finite(converted):
        raise ValueError(
            f"{name} has values beyond the range of {np.dtype(dtype).name} "
            f"(largest magnitude {np.finfo(dtype).max:.4g})"
        )
    return converted


def as_targets(y: Any, dtype: np.dtype, outputs: int, rows: int, name: str = "y") -> np.ndarray:
    """Labels as int64 of shape (rows,), or targets as a (rows, outputs) array of `dtype`."""
    array = np.asarray(y)
    if array.ndim == 1:
        if array.dtype.kind not in "iu":
            if array.dtype.kind == "f" and array.size and np.array_equal(array, np.round(array)):
                raise TypeError(f"{name} holds class labels as floats; pass them as integers (e.g. {name}.astype(int))")
            raise TypeError(f"{name} must hold integer class labels, got dtype {array.dtype}")
        if array.shape[0] != rows:
            raise ValueError(f"{name} has {array.shape[0]} labels for {rows} examples")
        classes = 2 if outputs == 1 else outputs
        if array.size and (array.min() < 0 or array.max() >= classes):
            bad = array[(array < 0) | (array >= classes)][0]
            raise ValueError(f"{name} contains label {bad}, outside [0, {classes})")
        return np.ascontiguousarray(array, dtype=np.int64)
    if array.ndim == 2:
        if array.dtype.kind not in "fiu":
            raise TypeError(f"{name} targets must be numeric, got dtype {array.dtype}")
        if array.shape != (rows, outputs):
            raise ValueError(f"{name} targets must have shape ({rows}, {outputs}), got {array.shape}")
        return finite_as(array, dtype, name)
    raise ValueError(
        f"{name} must be 1-D class labels or 2-D targets of shape (examples, {outputs}), got {array.shape}"
    )
