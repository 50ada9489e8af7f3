"""Tests for CIFAR-10 loading (rbp_native._cifar through datasets.load) and from_torchvision.

The official layouts are tested on small synthetic files written here in those formats: the python
batches as Python 2's cPickle wrote them (protocol 2, py2 strings, numpy's array reconstruction), the
binary batches as label + R, G, B planes.  Image folders use PNG, which is lossless, so pixels can be
compared exactly.  The real JPEG copy is tested when RBP_NATIVE_DATA has it.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import socket
import struct
import sys
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from rbp_native import _cifar, datasets
from rbp_native.datasets import DatasetError, DownloadError, load

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
PER_BATCH, N_TEST = 12, 11  # every class occurs in the test split and in the training split


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own user cache folder."""
    home = tmp_path_factory.mktemp("xdg-cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home


def make_raw(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_train = 5 * PER_BATCH
    x_train = rng.integers(0, 256, size=(n_train, 3, 32, 32), dtype=np.uint8)
    x_test = rng.integers(0, 256, size=(N_TEST, 3, 32, 32), dtype=np.uint8)
    x_train[0, 0, 0, :2] = (0, 255)
    y_train = np.concatenate([np.arange(10), rng.integers(0, 10, n_train - 10)]).astype(np.int64)
    y_test = np.concatenate([np.arange(10), [3]]).astype(np.int64)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


# ----------------------------------------------------------------------------------------
# writers for the official formats


def _py2_str(data: bytes) -> bytes:
    if len(data) < 256:
        return b"U" + bytes([len(data)]) + data
    return b"T" + struct.pack("<i", len(data)) + data


def _py2_int(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])
    if 0 <= value < 65536:
        return b"M" + struct.pack("<H", value)
    return b"J" + struct.pack("<i", value)


def _py2_array(pixels: np.ndarray) -> bytes:
    """A uint8 (N, 3072) array as numpy 1.x under Python 2 pickled it."""
    n, width = pixels.shape
    return (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
        + _py2_int(0)
        + b"\x85"
        + _py2_str(b"b")
        + b"\x87R("
        + _py2_int(1)
        + _py2_int(n)
        + _py2_int(width)
        + b"\x86cnumpy\ndtype\n"
        + _py2_str(b"u1")
        + _py2_int(0)
        + _py2_int(1)
        + b"\x87R("
        + _py2_int(3)
        + _py2_str(b"|")
        + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xff"
        + _py2_int(0)
        + b"tb\x89"
        + _py2_str(pixels.tobytes())
        + b"tb"
    )


def _py2_value(value) -> bytes:
    if isinstance(value, bytes):
        return _py2_str(value)
    if isinstance(value, int):
        return _py2_int(value)
    if isinstance(value, np.ndarray):
        return _py2_array(value)
    if isinstance(value, list):
        return b"](" + b"".join(_py2_value(v) for v in value) + b"e"
    raise TypeError(type(value))


def py2_pickle(content: dict) -> bytes:
    body = b"".join(_py2_value(k) + _py2_value(v) for k, v in content.items())
    return b"\x80\x02}(" + body + b"u."


def python_files(raw: dict[str, np.ndarray]) -> dict[str, bytes]:
    files = {}
    for k in range(5):
        rows = slice(k * PER_BATCH, (k + 1) * PER_BATCH)
        files[f"data_batch_{k + 1}"] = py2_pickle(
            {
                b"batch_label": f"training batch {k + 1} of 5".encode(),
                b"labels": [int(v) for v in raw["y_train"][rows]],
                b"data": raw["x_train"][rows].reshape(-1, 3072),
                b"filenames": [b"img_%d.png" % i for i in range(PER_BATCH)],
            }
        )
    files["test_batch"] = py2_pickle(
        {
            b"batch_label": b"testing batch 1 of 1",
            b"labels": [int(v) for v in raw["y_test"]],
            b"data": raw["x_test"].reshape(-1, 3072),
            b"filenames": [b"t_%d.png" % i for i in range(N_TEST)],
        }
    )
    files["batches.meta"] = py2_pickle(
        {b"num_cases_per_batch": PER_BATCH, b"label_names": [c.encode() for c in CLASSES], b"num_vis": 3072}
    )
    return files


def write_python(root: Path, raw: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    files = python_files(raw)
    for name, blob in files.items():
        (folder / name).write_bytes(blob)
    patch_md5(monkeypatch, files)
    return folder


def patch_md5(monkeypatch: pytest.MonkeyPatch, files: dict[str, bytes]) -> None:
    monkeypatch.setattr(_cifar, "PYTHON_MD5", {n: hashlib.md5(b).hexdigest() for n, b in files.items()})


def binary_files(raw: dict[str, np.ndarray]) -> dict[str, bytes]:
    def records(x: np.ndarray, y: np.ndarray) -> bytes:
        return np.concatenate([y.astype(np.uint8)[:, None], x.reshape(len(x), -1)], axis=1).tobytes()

    files = {
        f"data_batch_{k + 1}.bin": records(
            raw["x_train"][k * PER_BATCH : (k + 1) * PER_BATCH], raw["y_train"][k * PER_BATCH : (k + 1) * PER_BATCH]
        )
        for k in range(5)
    }
    files["test_batch.bin"] = records(raw["x_test"], raw["y_test"])
    files["batches.meta.txt"] = ("\n".join(CLASSES) + "\n\n").encode()
    return files


def write_binary(root: Path, raw: dict[str, np.ndarray]) -> Path:
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for name, blob in binary_files(raw).items():
        (folder / name).write_bytes(blob)
    return folder


def png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels.transpose(1, 2, 0))).save(out, format="PNG")
    return out.getvalue()


def image_members(raw: dict[str, np.ndarray], prefix: str = "") -> dict[str, bytes]:
    """Image files named so that file-name order within a class is the order of the arrays."""
    members = {}
    for split in ("train", "test"):
        for i, (pixels, label) in enumerate(zip(raw[f"x_{split}"], raw[f"y_{split}"])):
            members[f"{prefix}{split}/{CLASSES[label]}/{i:04d}.png"] = png(pixels)
    return members


def sorted_by_class(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays in image-folder order: class, then file name (here the original index)."""
    out = {}
    for split in ("train", "test"):
        order = np.argsort(raw[f"y_{split}"], kind="stable")
        out[f"x_{split}"], out[f"y_{split}"] = raw[f"x_{split}"][order], raw[f"y_{split}"][order]
    return out


def write_folder(root: Path, raw: dict[str, np.ndarray]) -> Path:
    for name, blob in image_members(raw).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(blob)
    return root


def write_tar(path: Path, members: dict[str, bytes], directories: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        if directories:
            for d in sorted({str(Path(n).parent) for n in members}):
                info = tarfile.TarInfo(d)
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


def assert_loaded(train, test, raw: dict[str, np.ndarray]) -> None:
    for ds, split in ((train, "train"), (test, "test")):
        assert ds.x.dtype == np.float32 and ds.x.flags.c_contiguous
        assert ds.x.shape == (len(raw[f"y_{split}"]), 3, 32, 32)
        np.testing.assert_array_equal(ds.x, raw[f"x_{split}"].astype(np.float32) / np.float32(255))
        np.testing.assert_array_equal(ds.y, raw[f"y_{split}"])
        assert ds.y.dtype == np.int64
        assert ds.name == "cifar10" and ds.split == split and ds.classes == CLASSES


# ----------------------------------------------------------------------------------------
# layouts


def test_python_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = make_raw()
    write_python(tmp_path, raw, monkeypatch)
    train, test = load("cifar10", root=tmp_path)
    assert_loaded(train, test, raw)
    assert train.x.min() == 0.0 and train.x.max() == 1.0


def test_binary_layout(tmp_path: Path) -> None:
    raw = make_raw(1)
    write_binary(tmp_path, raw)
    assert_loaded(*load("cifar-10", root=tmp_path), raw)


def test_folder_layout(tmp_path: Path) -> None:
    raw = make_raw(2)
    write_folder(tmp_path / "cifar10", raw)
    (tmp_path / "cifar10" / "README.md").write_text("not an image")
    (tmp_path / "cifar10" / "train" / "cat" / ".DS_Store").write_bytes(b"\0junk")
    assert_loaded(*load("CIFAR10", root=tmp_path), sorted_by_class(raw))
    # the folder itself as the root
    assert_loaded(*load("cifar10", root=tmp_path / "cifar10"), sorted_by_class(raw))


@pytest.mark.parametrize("prefix", ["", "./", "cifar10-images/"])
def test_tar_layout(tmp_path: Path, prefix: str) -> None:
    raw = make_raw(3)
    tar = write_tar(tmp_path / "cifar10-jpeg" / "cifar10-jpeg.tar", image_members(raw, prefix))
    assert_loaded(*load("cifar10", root=tmp_path), sorted_by_class(raw))
    # the tar itself as the root; members without directory entries
    other = write_tar(tmp_path / "elsewhere" / "copy.tar", image_members(raw, prefix), directories=False)
    assert_loaded(*load("cifar10", root=other), sorted_by_class(raw))
    assert tar.is_file()


def test_gzipped_tar(tmp_path: Path) -> None:
    raw = make_raw(4)
    members = image_members(raw)
    path = tmp_path / "data.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    assert_loaded(*load("cifar10", root=path), sorted_by_class(raw))


def test_layouts_agree_and_python_comes_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = make_raw(5)
    write_python(tmp_path, raw, monkeypatch)
    write_binary(tmp_path, make_raw(6))  # different data: must not be read
    assert datasets.search_dirs("cifar10", tmp_path)[:2] == [
        tmp_path / "cifar-10-batches-py",
        tmp_path / "cifar-10-batches-bin",
    ]
    assert_loaded(*load("cifar10", root=tmp_path), raw)


def test_environment_variable_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = make_raw(7)
    write_binary(tmp_path, raw)
    monkeypatch.setenv("RBP_NATIVE_DATA", str(tmp_path))
    assert_loaded(*load("cifar10"), raw)


def test_flatten(tmp_path: Path) -> None:
    raw = make_raw(8)
    write_binary(tmp_path, raw)
    train, test = load("cifar10", root=tmp_path, flatten=True)
    assert train.x.shape == (5 * PER_BATCH, 3072) and test.x.shape == (N_TEST, 3072)
    np.testing.assert_array_equal(train.x, raw["x_train"].reshape(-1, 3072).astype(np.float32) / np.float32(255))


# ----------------------------------------------------------------------------------------
# normalisation


def test_normalize_with_training_statistics(tmp_path: Path) -> None:
    raw = make_raw(9)
    write_binary(tmp_path, raw)
    train, test = load("cifar10", root=tmp_path, normalize=True)
    plain = raw["x_train"].astype(np.float64) / 255
    mean, std = plain.mean(axis=(0, 2, 3)), plain.std(axis=(0, 2, 3))
    expected_test = (raw["x_test"].astype(np.float32) / np.float32(255) - mean[:, None, None]) / std[:, None, None]
    np.testing.assert_allclose(train.x.mean(axis=(0, 2, 3), dtype=np.float64), 0.0, atol=1e-6)
    np.testing.assert_allclose(train.x.std(axis=(0, 2, 3), dtype=np.float64), 1.0, rtol=1e-5)
    np.testing.assert_allclose(test.x, expected_test, rtol=1e-5, atol=1e-6)
    assert train.x.dtype == np.float32


def test_normalize_with_given_statistics(tmp_path: Path) -> None:
    raw = make_raw(10)
    write_binary(tmp_path, raw)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    _, test = load("cifar10", root=tmp_path, normalize=(mean, std))
    expected = (raw["x_test"] / 255.0 - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
    np.testing.assert_allclose(test.x, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "normalize",
    [((0.5, 0.5), (0.2, 0.2)), ((0.5, 0.5, 0.5), (0.2, 0.0, 0.2)), ((0.5, np.nan, 0.5), (0.2, 0.2, 0.2)), "yes", 3],
)
def test_normalize_bad_values(tmp_path: Path, normalize) -> None:
    write_binary(tmp_path, make_raw())
    with pytest.raises(ValueError, match="normalize"):
        load("cifar10", root=tmp_path, normalize=normalize)


def test_normalize_is_for_cifar_only(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="normalize is implemented for cifar10"):
        load("mnist", root=tmp_path, normalize=True)


# ----------------------------------------------------------------------------------------
# the cache


def _forbid_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(source):
        raise AssertionError(f"decoded {source} again instead of reading the cache")

    monkeypatch.setattr(_cifar, "decode", fail)


def test_cache_beside_the_data_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = make_raw(11)
    tar = write_tar(tmp_path / "cifar10-jpeg" / "cifar10-jpeg.tar", image_members(raw))
    load("cifar10", root=tmp_path)
    cache = tmp_path / "cifar10-jpeg" / "cifar10-jpeg.rbp_native-cache.npz"
    assert cache.is_file()
    assert sorted(p.name for p in tar.parent.iterdir()) == sorted([tar.name, cache.name])  # no temp files
    with np.load(cache, allow_pickle=False) as archive:
        assert set(archive.files) == {"fingerprint", "x_train", "y_train", "x_test", "y_test"}
        assert archive["x_train"].dtype == np.uint8
    _forbid_decoding(monkeypatch)
    assert_loaded(*load("cifar10", root=tmp_path), sorted_by_class(raw))


def test_changed_source_is_decoded_again(tmp_path: Path) -> None:
    first, second = make_raw(12), make_raw(13)
    write_binary(tmp_path, first)
    assert_loaded(*load("cifar10", root=tmp_path), first)
    batch = tmp_path / "cifar-10-batches-bin" / "test_batch.bin"
    stat = batch.stat()
    batch.write_bytes(binary_files(second)["test_batch.bin"])
    os.utime(batch, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    _, test = load("cifar10", root=tmp_path)
    np.testing.assert_array_equal(test.y, second["y_test"])


def test_damaged_cache_is_rebuilt(tmp_path: Path) -> None:
    raw = make_raw(14)
    write_binary(tmp_path, raw)
    load("cifar10", root=tmp_path)
    cache = tmp_path / "cifar-10-batches-bin" / "rbp_native-cache.npz"
    cache.write_bytes(cache.read_bytes()[:1000])
    assert_loaded(*load("cifar10", root=tmp_path), raw)
    with np.load(cache, allow_pickle=False) as archive:
        assert archive["x_train"].shape == raw["x_train"].shape


def test_cache_in_the_user_cache_when_the_data_folder_is_read_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_cache: Path
) -> None:
    raw = make_raw(15)
    folder = write_binary(tmp_path, raw)
    folder.chmod(0o555)
    try:
        load("cifar10", root=tmp_path)
        assert not (folder / "rbp_native-cache.npz").exists()
        cached = list((private_cache / "rbp_native" / "cifar10").glob("*.npz"))
        assert len(cached) == 1
        _forbid_decoding(monkeypatch)
        assert_loaded(*load("cifar10", root=tmp_path), raw)
    finally:
        folder.chmod(0o755)


def test_no_writable_cache_place_still_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = make_raw(19)
    folder = write_binary(tmp_path / "data", raw)
    blocked = tmp_path / "blocked"
    blocked.write_text("a file, so no cache folder can be made under it")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    folder.chmod(0o555)
    try:
        assert_loaded(*load("cifar10", root=tmp_path / "data"), raw)
        assert_loaded(*load("cifar10", root=tmp_path / "data"), raw)
        assert sorted(p.name for p in folder.iterdir()) == sorted(binary_files(raw))
    finally:
        folder.chmod(0o755)


def test_cached_image_copy_loads_without_pillow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = make_raw(16)
    write_tar(tmp_path / "cifar10-jpeg" / "cifar10-jpeg.tar", image_members(raw))
    load("cifar10", root=tmp_path)
    monkeypatch.setitem(sys.modules, "PIL", None)
    assert_loaded(*load("cifar10", root=tmp_path), sorted_by_class(raw))


def test_missing_pillow_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_tar(tmp_path / "cifar10-jpeg" / "cifar10-jpeg.tar", image_members(make_raw(17)))
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match=r'pip install "rbp-native\[images\]"'):
        load("cifar10", root=tmp_path)


# ----------------------------------------------------------------------------------------
# bad files


def test_python_checksum_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_python(tmp_path, make_raw(), monkeypatch)
    path = folder / "data_batch_3"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DatasetError, match=r"data_batch_3: MD5 checksum mismatch"):
        load("cifar10", root=tmp_path)


def test_official_checksums_apply_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_python(tmp_path, make_raw(), monkeypatch)
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DatasetError, match=r"batches.meta: MD5 checksum mismatch .* the official 5ff9c542"):
        load("cifar10", root=tmp_path)


@pytest.mark.parametrize(
    "content, message",
    [
        (lambda files: files["data_batch_1"][:-40], "not a readable CIFAR-10 python batch"),
        (lambda files: b"not a pickle at all", "not a readable CIFAR-10 python batch"),
        (lambda files: b"\x80\x02cos\nsystem\nU\x04trueq\x85R.", r"refusing to load os\.system"),
        (lambda files: b"\x80\x02cbuiltins\neval\nU\x011\x85R.", r"refusing to load builtins\.eval"),
        (lambda files: b"\x80\x02]q\x00.", "expected a pickled dict"),
        (lambda files: py2_pickle({b"labels": [1]}), "no 'data' entry"),
        (lambda files: py2_pickle({b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]}), "label 10"),
        (lambda files: py2_pickle({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}), "1 labels for 2"),
        (lambda files: py2_pickle({b"data": np.zeros((1, 1024), np.uint8), b"labels": [1]}), r"shape \(1, 1024\)"),
        (lambda files: py2_pickle({b"data": b"raw bytes", b"labels": [1]}), "is not a uint8 array"),
    ],
)
def test_bad_python_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content, message: str) -> None:
    raw = make_raw()
    folder = write_python(tmp_path, raw, monkeypatch)
    files = python_files(raw)
    files["data_batch_1"] = content(files)
    (folder / "data_batch_1").write_bytes(files["data_batch_1"])
    patch_md5(monkeypatch, files)
    with pytest.raises(DatasetError, match=message) as info:
        load("cifar10", root=tmp_path)
    assert str(folder / "data_batch_1") in str(info.value)


def test_python_meta_with_other_class_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = make_raw()
    folder = write_python(tmp_path, raw, monkeypatch)
    files = python_files(raw)
    files["batches.meta"] = py2_pickle({b"label_names": [b"apple"] * 10})
    (folder / "batches.meta").write_bytes(files["batches.meta"])
    patch_md5(monkeypatch, files)
    with pytest.raises(DatasetError, match="batches.meta: class names"):
        load("cifar10", root=tmp_path)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("data_batch_2.bin", lambda b: b[:-1], "not a whole number of 3073-byte records"),
        ("test_batch.bin", lambda b: b"", "not a whole number"),
        ("test_batch.bin", lambda b: bytes([10]) + b[1:], "label 10 at index 0"),
        ("batches.meta.txt", lambda b: b"cat\ndog\n", "class names"),
        ("batches.meta.txt", lambda b: b"\xff\xfe", "not a text file"),
    ],
)
def test_bad_binary_files(tmp_path: Path, name: str, content, message: str) -> None:
    folder = write_binary(tmp_path, make_raw())
    path = folder / name
    path.write_bytes(content(path.read_bytes()))
    with pytest.raises(DatasetError, match=message) as info:
        load("cifar10", root=tmp_path)
    assert str(path) in str(info.value)


def test_bad_image_files(tmp_path: Path) -> None:
    raw = make_raw()
    root = write_folder(tmp_path / "cifar10", raw)
    victim = sorted((root / "test" / "dog").iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:30])
    with pytest.raises(DatasetError, match="cannot decode the image") as info:
        load("cifar10", root=tmp_path)
    assert str(victim) in str(info.value)

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (32, 31)).save(out, format="PNG")
    victim.write_bytes(out.getvalue())
    with pytest.raises(DatasetError, match="image is 32x31, expected 32x32"):
        load("cifar10", root=tmp_path)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: {**m, "train/lion/0.png": next(iter(m.values()))}, "unknown class folder 'lion'"),
        (lambda m: {**m, "train/cat/extra/0.png": next(iter(m.values()))}, r"expected train/<class>/<image>"),
        (lambda m: {k: v for k, v in m.items() if not k.startswith("test/frog/")}, r"no images in test/frog/"),
        (lambda m: {**m, "test/cat/0000.png": b"\x89PNG broken"}, "member test/cat/0000.png: cannot decode"),
        (lambda m: {**m, "test/cat/0000.jpg": _jpeg()[:-100]}, "member test/cat/0000.jpg: cannot decode"),
    ],
)
def test_bad_image_tar(tmp_path: Path, change, message: str) -> None:
    tar = write_tar(tmp_path / "c.tar", change(image_members(make_raw())), directories=False)
    with pytest.raises(DatasetError, match=message) as info:
        load("cifar10", root=tar)
    assert str(tar) in str(info.value)


def _jpeg() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(out, format="JPEG", quality=95)
    return out.getvalue()


def test_truncated_and_wrong_format_tar(tmp_path: Path) -> None:
    tar = write_tar(tmp_path / "c.tar", image_members(make_raw()))
    blob = tar.read_bytes()
    for cut in (len(blob) // 2, len(blob) // 3 + 100, len(blob) - 10240):
        tar.write_bytes(blob[:cut])
        with pytest.raises(DatasetError, match="c.tar: truncated"):
            load("cifar10", root=tar)
    tar.write_bytes(b"this is no tar file" * 100)
    with pytest.raises(DatasetError, match="c.tar: truncated or not a readable tar file"):
        load("cifar10", root=tar)


def test_symlink_member_rejected(tmp_path: Path) -> None:
    members = image_members(make_raw())
    path = tmp_path / "c.tar"
    write_tar(path, members, directories=False)
    with tarfile.open(path, "a") as tar:
        info = tarfile.TarInfo("train/cat/link.png")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(DatasetError, match="link.png is not a regular file"):
        load("cifar10", root=path)


# ----------------------------------------------------------------------------------------
# not found and download


def test_not_found_says_where_it_looked(tmp_path: Path) -> None:
    (tmp_path / "cifar-10-batches-bin").mkdir()
    (tmp_path / "cifar-10-batches-bin" / "data_batch_1.bin").write_bytes(b"")
    with pytest.raises(FileNotFoundError) as info:
        load("cifar10", root=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "incomplete, missing: data_batch_2.bin" in message
    assert str(tmp_path / "cifar10-jpeg" / "cifar10-jpeg.tar") in message
    assert "download=True" in message and "RBP_NATIVE_DATA" in message


def _tarball(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, blob in {**files, "readme.html": b"<html></html>"}.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return out.getvalue()


@pytest.fixture
def http_server():
    """Serves a dict {path: bytes} on 127.0.0.1; yields (base URL, dict, list of requested paths)."""
    content: dict[str, bytes] = {}
    requested: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            requested.append(self.path)
            blob = content.get(self.path)
            if blob is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(blob)))
            self.end_headers()
            self.wfile.write(blob)

        def log_message(self, *args) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", content, requested
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, http_server) -> None:
    base_url, content, requested = http_server
    raw = make_raw(18)
    files = python_files(raw)
    blob = _tarball(files)
    content["/cifar-10-python.tar.gz"] = blob
    monkeypatch.setattr(_cifar, "URL", base_url + "/cifar-10-python.tar.gz")
    monkeypatch.setattr(_cifar, "TARBALL_MD5", hashlib.md5(blob).hexdigest())
    patch_md5(monkeypatch, files)
    with pytest.raises(FileNotFoundError):
        load("cifar10", root=tmp_path)
    assert requested == []
    assert_loaded(*load("cifar10", root=tmp_path, download=True), raw)
    assert requested == ["/cifar-10-python.tar.gz"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-10-batches-py"]  # tarball removed
    assert sorted(p.name for p in (tmp_path / "cifar-10-batches-py").iterdir()) == sorted(
        [*files, "rbp_native-cache.npz"]
    )
    load("cifar10", root=tmp_path, download=True)  # present: no second download
    assert len(requested) == 1


def test_download_checksum_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, http_server) -> None:
    base_url, content, _ = http_server
    content["/c.tar.gz"] = _tarball(python_files(make_raw()))
    monkeypatch.setattr(_cifar, "URL", base_url + "/c.tar.gz")
    with pytest.raises(DatasetError, match="MD5 checksum mismatch"):
        load("cifar10", root=tmp_path, download=True)
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_download_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(_cifar, "URL", f"http://127.0.0.1:{port}/cifar-10-python.tar.gz")
    with pytest.raises(DownloadError, match="could not download cifar10") as info:
        load("cifar10", root=tmp_path, download=True)
    assert "cifar-10-python.tar.gz elsewhere" in str(info.value)


def test_download_of_a_broken_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, http_server) -> None:
    base_url, content, _ = http_server
    blob = _tarball({"data_batch_1": b"only one file"})
    content["/c.tar.gz"] = blob
    monkeypatch.setattr(_cifar, "URL", base_url + "/c.tar.gz")
    monkeypatch.setattr(_cifar, "TARBALL_MD5", hashlib.md5(blob).hexdigest())
    with pytest.raises(DatasetError, match=r"no .*cifar-10-batches-py/data_batch_2"):
        load("cifar10", root=tmp_path, download=True)


# ----------------------------------------------------------------------------------------
# from_torchvision


class FakeVision:
    """What torchvision's datasets look like: len, (input, target) items, classes, train."""

    def __init__(self, items, classes=None, train=None) -> None:
        self.items, self.classes, self.train = items, classes, train

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        return self.items[index]


def test_from_torchvision_pil_images() -> None:
    from PIL import Image

    raw = make_raw()
    items = [(Image.fromarray(x.transpose(1, 2, 0)), int(y)) for x, y in zip(raw["x_test"], raw["y_test"])]
    ds = datasets.from_torchvision(FakeVision(items, classes=list(CLASSES), train=False))
    np.testing.assert_array_equal(ds.x, raw["x_test"].astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(ds.y, raw["y_test"])
    assert ds.classes == CLASSES and ds.split == "test" and ds.name == "fakevision"

    grey = [(Image.fromarray(np.full((28, 28), 51, np.uint8)), np.int64(3))] * 2
    flat = datasets.from_torchvision(FakeVision(grey), flatten=True)
    assert flat.x.shape == (2, 784) and np.all(flat.x == np.float32(0.2))
    assert flat.classes == tuple("0123") and flat.split == ""


def test_from_torchvision_arrays() -> None:
    rng = np.random.default_rng(0)
    floats = [(rng.standard_normal((3, 4, 4)).astype(np.float32), np.array(k % 2)) for k in range(5)]
    ds = datasets.from_torchvision(FakeVision(floats, train=True))
    np.testing.assert_array_equal(ds.x, np.stack([f[0] for f in floats]))
    assert ds.split == "train" and ds.classes == ("0", "1")
    ints = [(np.full((1, 2, 2), 255, np.uint8), 0)]
    np.testing.assert_array_equal(datasets.from_torchvision(FakeVision(ints)).x, np.ones((1, 1, 2, 2)))


@pytest.mark.parametrize(
    "items, error, message",
    [
        ([], ValueError, "empty"),
        ([(np.zeros((3, 2, 2)), 0), (np.zeros((3, 2, 3)), 1)], ValueError, "inputs must share a shape"),
        ([(np.zeros((3, 2, 2)), 0.5)], TypeError, "not an integer class label"),
        ([(np.zeros((3, 2, 2)), True)], TypeError, "not an integer class label"),
        ([(np.full((3, 2, 2), np.nan), 0)], ValueError, "NaN"),
        ([(np.zeros((3, 2, 2)), -1)], ValueError, "negative class label"),
        ([("a string", 0)], TypeError, "not an image, tensor or array"),
    ],
)
def test_from_torchvision_rejects(items, error, message: str) -> None:
    with pytest.raises(error, match=message):
        datasets.from_torchvision(FakeVision(items))


# ----------------------------------------------------------------------------------------
# the real JPEG copy


def _real_tar() -> Path:
    root = os.environ.get("RBP_NATIVE_DATA")
    if not root:
        pytest.skip("RBP_NATIVE_DATA is not set")
    tar = Path(root) / "cifar10-jpeg" / "cifar10-jpeg.tar"
    if not tar.is_file():
        pytest.skip(f"no CIFAR-10 JPEG copy at {tar}")
    return tar


@pytest.mark.slow
def test_real_jpeg_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    tar = _real_tar()
    calls = []
    decode = _cifar.decode
    monkeypatch.setattr(_cifar, "decode", lambda source: calls.append(source) or decode(source))
    train, test = load("cifar10", root=tar.parent.parent)
    assert calls == [_cifar.Source("tar", tar)]
    assert train.x.shape == (50000, 3, 32, 32) and test.x.shape == (10000, 3, 32, 32)
    np.testing.assert_array_equal(np.bincount(train.y), [5000] * 10)
    np.testing.assert_array_equal(np.bincount(test.y), [1000] * 10)
    # the data folder's README: decoded training-set channel means and standard deviations
    np.testing.assert_allclose(train.x.mean(axis=(0, 2, 3), dtype=np.float64), [0.4913, 0.4821, 0.4465], atol=1e-4)
    np.testing.assert_allclose(train.x.std(axis=(0, 2, 3), dtype=np.float64), [0.2452, 0.2428, 0.2606], atol=1e-4)
    # spot checks against Pillow directly: the first and last members of each split
    with tarfile.open(tar) as archive:
        for name, ds, index in (
            ("train/airplane/0000.jpg", train, 0),
            ("train/truck/4999.jpg", train, 49999),
            ("test/airplane/0000.jpg", test, 0),
            ("test/truck/0999.jpg", test, 9999),
        ):
            member = archive.extractfile(name)
            assert member is not None
            pixels = np.asarray(Image.open(io.BytesIO(member.read())).convert("RGB"))
            np.testing.assert_array_equal(ds.x[index], pixels.transpose(2, 0, 1).astype(np.float32) / np.float32(255))
    # the second load reads the cache; a data folder marked read-only is never written to
    if not tar.parent.stat().st_mode & 0o222:
        assert not tar.with_name("cifar10-jpeg.rbp_native-cache.npz").exists()
    again, _ = load("cifar10", root=tar.parent.parent)
    assert len(calls) == 1
    np.testing.assert_array_equal(again.x, train.x)
