"""Property-based bad-input tests of the CIFAR-10 readers (the hypothesis profiles of conftest.py): any
truncation or corruption of a batch file, a pickle or an image tar either reads back as a consistent
batch or raises DatasetError naming the file; never another exception, a crash or a hang."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rbp_native import _cifar
from rbp_native.datasets import DatasetError
from test_cifar import binary_files, image_members, make_raw, py2_pickle, write_tar

SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def damaged(data: bytes, draw: st.DrawFn) -> bytes:
    """`data` cut short, with bytes changed, or with bytes inserted."""
    kind = draw(st.sampled_from(["truncate", "flip", "insert"]))
    if kind == "truncate":
        return data[: draw(st.integers(0, max(0, len(data) - 1)))]
    out = bytearray(data)
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(out) - 1))
            out[i] ^= draw(st.integers(1, 255))
        return bytes(out)
    i = draw(st.integers(0, len(out)))
    return bytes(out[:i]) + draw(st.binary(min_size=1, max_size=64)) + bytes(out[i:])


@st.composite
def damaged_from(draw: st.DrawFn, original: bytes) -> bytes:
    return damaged(original, draw)


RAW = make_raw()
BINARY = binary_files(RAW)["test_batch.bin"]


@SETTINGS
@given(data=damaged_from(BINARY))
def test_binary_batch(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "test_batch.bin"
    path.write_bytes(data)
    try:
        x, y = _cifar._read_binary_batch(path)
    except DatasetError as error:
        assert str(path) in str(error)
        return
    assert x.dtype == np.uint8 and x.shape[1:] == (3, 32, 32) and x.shape[0] == y.shape[0] > 0
    assert ((0 <= y) & (y < 10)).all()


PICKLE = py2_pickle({b"labels": [int(v) for v in RAW["y_test"]], b"data": RAW["x_test"].reshape(-1, 3072)})


@SETTINGS
@given(data=damaged_from(PICKLE))
def test_python_batch_past_its_checksum(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    # The MD5 check stops every damaged official file first; with it out of the way the restricted
    # unpickler and the content checks must reject the damage themselves.
    monkeypatch.setitem(_cifar.PYTHON_MD5, "test_batch", _cifar._md5(data))
    path = tmp_path / "test_batch"
    path.write_bytes(data)
    try:
        x, y = _cifar._read_python_batch(path)
    except DatasetError as error:
        assert str(path) in str(error)
        return
    assert x.dtype == np.uint8 and x.shape[1:] == (3, 32, 32) and x.shape[0] == y.shape[0]
    assert ((0 <= y) & (y < 10)).all()


def _tar_bytes() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        return write_tar(Path(folder) / "original.tar", image_members(make_raw(1))).read_bytes()


TAR = _tar_bytes()


@SETTINGS
@given(data=damaged_from(TAR))
def test_image_tar(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "images.tar"
    path.write_bytes(data)
    try:
        arrays = _cifar._read_tar(path)
    except DatasetError as error:
        assert str(path) in str(error)
        return
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        assert x.dtype == np.uint8 and x.shape[1:] == (3, 32, 32) and x.shape[0] == y.shape[0]
