"""Synthetic MNIST-format (IDX) files for the tests: the loader's tests and every test that needs a
small data set on disk (the ``tiny_mnist`` fixture of conftest.py)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

N_TRAIN, N_TEST = 7, 3
BASES = {
    "train-images": "train-images-idx3-ubyte",
    "train-labels": "train-labels-idx1-ubyte",
    "test-images": "t10k-images-idx3-ubyte",
    "test-labels": "t10k-labels-idx1-ubyte",
}


def images_bytes(pixels: np.ndarray, rows: int = 28, cols: int = 28, magic: int = 2051) -> bytes:
    pixels = np.asarray(pixels, dtype=np.uint8)
    return struct.pack(">IIII", magic, len(pixels), rows, cols) + pixels.tobytes()


def labels_bytes(labels: np.ndarray, magic: int = 2049) -> bytes:
    labels = np.asarray(labels, dtype=np.uint8)
    return struct.pack(">II", magic, len(labels)) + labels.tobytes()


def make_raw(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    tr = rng.integers(0, 256, size=(N_TRAIN, 784), dtype=np.uint8)
    te = rng.integers(0, 256, size=(N_TEST, 784), dtype=np.uint8)
    tr[0, :2] = (0, 255)  # make sure both extremes occur
    return {
        "train-images": tr,
        "train-labels": np.array([0, 1, 2, 3, 9, 5, 0], dtype=np.uint8),
        "test-images": te,
        "test-labels": np.array([7, 8, 9], dtype=np.uint8),
    }


def encode(raw: dict[str, np.ndarray]) -> dict[str, bytes]:
    return {k: (images_bytes(v) if k.endswith("images") else labels_bytes(v)) for k, v in raw.items()}


def write_set(
    directory: Path,
    raw: dict[str, np.ndarray] | None = None,
    gz: bool = True,
    overrides: dict[str, bytes] | None = None,
    skip: tuple[str, ...] = (),
) -> dict[str, Path]:
    """Write the four IDX files into ``directory``; return key -> path."""
    directory.mkdir(parents=True, exist_ok=True)
    blobs = encode(raw if raw is not None else make_raw())
    blobs.update(overrides or {})
    paths = {}
    for key, blob in blobs.items():
        if key in skip:
            continue
        if gz:
            path = directory / (BASES[key] + ".gz")
            path.write_bytes(gzip.compress(blob, mtime=0))
        else:
            path = directory / BASES[key]
            path.write_bytes(blob)
        paths[key] = path
    return paths


def expected_x(pixels: np.ndarray) -> np.ndarray:
    return pixels.astype(np.float32) / np.float32(255)
