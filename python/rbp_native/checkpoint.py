"""Checkpoint files: the whole state of a :class:`~rbp_native.Trainer` in one ``.npz``.

A checkpoint holds the network (configuration, weights, biases), the feedback matrices (adapted ones
included), the momentum velocities, the state of every random stream (shuffling, feedback, dropout,
quantisation), the update counter, an epoch in progress (its order and running metrics), the history
so far, the trainer's options, the package version and a format version. Nothing is pickled: arrays
are plain ``.npy`` members and everything else is one JSON document (``meta``), read back with
``allow_pickle=False``. Files are written atomically (temporary file, fsync, rename), so an
interruption, a second Ctrl-C included, leaves the previous checkpoint whole.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_write_npz

FORMAT = "rbp-native-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file cannot be used: missing, truncated, corrupt, foreign, newer or inconsistent."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to a checkpoint")


def write(path: str | os.PathLike[str], meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    """Write ``meta`` (JSON) and ``arrays`` to ``path`` atomically."""
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta}
    members = dict(arrays)
    members["meta"] = np.array(json.dumps(payload, default=_jsonable, allow_nan=True))
    return atomic_write_npz(path, members)


def read(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(meta, arrays)`` of a checkpoint, every member read and checked; raises CheckpointError
    naming the file and what is wrong."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with open(path, "rb") as handle:
            data = np.load(handle, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise CheckpointError(f"{path} is not an rbp-native checkpoint (a single array, not an archive)")
            with data:
                names = list(data.files)
                if "meta" not in names:
                    raise CheckpointError(f"{path} is not an rbp-native checkpoint (it has no 'meta' entry)")
                arrays = {name: data[name] for name in names}
    except CheckpointError:
        raise
    # zipfile raises NotImplementedError for a damaged compression-method field and RuntimeError for
    # a damaged flag that marks a member encrypted; zlib.error for a damaged deflate stream.
    except (
        zipfile.BadZipFile,
        EOFError,
        OSError,
        ValueError,
        KeyError,
        NotImplementedError,
        RuntimeError,
        zlib.error,
    ) as error:
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt?): {error}") from error
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except ValueError as error:
        raise CheckpointError(f"{path}: its 'meta' entry is not valid JSON: {error}") from error
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not an rbp-native checkpoint (format {meta.get('format')!r})"
            if isinstance(meta, dict)
            else f"{path} is not an rbp-native checkpoint"
        )
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{path}: invalid format version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer rbp-native ({meta.get('version', '?')}, checkpoint format {version}); "
            f"this one ({_package_version()}) reads format {FORMAT_VERSION} and older: upgrade rbp-native"
        )
    for key in ("network", "trainer", "state", "history"):
        if not isinstance(meta.get(key), dict):
            raise CheckpointError(f"{path}: the checkpoint's '{key}' section is missing or not a table")
    return meta, arrays


def array(path: str | os.PathLike[str], arrays: dict[str, np.ndarray], name: str) -> np.ndarray:
    try:
        return arrays[name]
    except KeyError:
        raise CheckpointError(f"{path}: the checkpoint has no '{name}' array") from None


def finite_float(path: str | os.PathLike[str], value: Any, name: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise CheckpointError(f"{path}: '{name}' must be a finite number, got {value!r}")
    return float(value)


def _package_version() -> str:
    from . import __version__

    return __version__
