"""Atomic file writes: results are written to a temporary file in the same folder and renamed
into place, so an interrupted run never leaves a truncated file under the final name."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Mapping

import numpy as np


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(handle)`` on a temporary binary file, fsync it, then rename it over `path`."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def atomic_write_npz(path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray]) -> Path:
    """``np.savez`` of `arrays` (one ``.npy`` member per name) to `path`, atomically."""
    # Any: numpy's stub lets savez's **kwds reach its allow_pickle flag (numpy >= 2.1), which no member
    # name written here is; the members are arrays.
    members: dict[str, Any] = dict(arrays)
    return atomic_write(path, lambda handle: np.savez(handle, **members))
