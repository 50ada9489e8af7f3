"""Tests for rbp_native.datasets (synthetic IDX files; real data only when available)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from idx_files import (
    BASES,
    N_TEST,
    N_TRAIN,
    encode,
    expected_x,
    images_bytes,
    labels_bytes,
    make_raw,
    write_set,
)
from rbp_native import datasets
from rbp_native.datasets import Dataset, DatasetError, DownloadError, load


@pytest.fixture(autouse=True)
def no_network_no_torchvision(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never take the torchvision branch and never touch the network by accident."""
    monkeypatch.setattr(datasets, "_torchvision_available", lambda: False)

    def forbidden(*args, **kwargs):
        raise AssertionError("unexpected network access")

    monkeypatch.setattr(urllib.request, "urlopen", forbidden)


@pytest.fixture
def no_system_dirs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    fake = tmp_path / "system" / "fashion-mnist"
    monkeypatch.setattr(datasets, "SYSTEM_DIRS", {"mnist": (), "fashion-mnist": (str(fake),)})
    return fake


# ----------------------------------------------------------------------------------------
# loading from the supported layouts


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "plain"])
@pytest.mark.parametrize("layout", ["mnist", "MNIST/raw", "."])
def test_load_mnist_layouts(tmp_path: Path, layout: str, gz: bool) -> None:
    raw = make_raw()
    write_set(tmp_path / layout, raw, gz=gz)
    train, test = load("mnist", root=tmp_path)

    for ds, split, pix, lab in (
        (train, "train", raw["train-images"], raw["train-labels"]),
        (test, "test", raw["test-images"], raw["test-labels"]),
    ):
        assert isinstance(ds, Dataset)
        assert len(ds) == len(lab)
        assert ds.x.shape == (len(lab), 784)
        assert ds.x.dtype == np.float32 and ds.x.flags.c_contiguous
        assert ds.y.dtype == np.int64 and ds.y.shape == (len(lab),)
        np.testing.assert_array_equal(ds.x, expected_x(pix))  # exact
        np.testing.assert_array_equal(ds.y, lab.astype(np.int64))
        assert ds.x.min() >= 0.0 and ds.x.max() <= 1.0
        assert ds.name == "mnist" and ds.split == split
        assert ds.classes == tuple("0123456789") and ds.num_classes == 10
    assert train.x[0, 0] == 0.0 and train.x[0, 1] == 1.0


@pytest.mark.parametrize("layout", ["fashion-mnist", "FashionMNIST/raw", "."])
def test_load_fashion_layouts(tmp_path: Path, layout: str) -> None:
    raw = make_raw(seed=3)
    write_set(tmp_path / layout, raw, gz=(layout != "."))
    train, test = load("fashion-mnist", root=tmp_path)
    np.testing.assert_array_equal(train.x, expected_x(raw["train-images"]))
    np.testing.assert_array_equal(test.y, raw["test-labels"])
    assert train.name == "fashion-mnist"
    assert train.classes[0] == "T-shirt/top" and train.classes[9] == "Ankle boot"
    assert train.num_classes == 10


def test_system_dir_fallback_for_fashion(tmp_path: Path, no_system_dirs: Path) -> None:
    raw = make_raw(seed=4)
    write_set(no_system_dirs, raw)
    train, _ = load("fashion_mnist", root=tmp_path / "empty-root")
    np.testing.assert_array_equal(train.y, raw["train-labels"])


def test_flatten_false(tmp_path: Path) -> None:
    raw = make_raw()
    write_set(tmp_path / "mnist", raw)
    train, test = load("mnist", root=tmp_path, flatten=False)
    assert train.x.shape == (N_TRAIN, 28, 28) and test.x.shape == (N_TEST, 28, 28)
    assert train.x.flags.c_contiguous and train.x.dtype == np.float32
    np.testing.assert_array_equal(train.x.reshape(N_TRAIN, 784), expected_x(raw["train-images"]))


@pytest.mark.parametrize("name", ["MNIST", "Mnist", " mnist "])
def test_name_aliases_mnist(tmp_path: Path, name: str) -> None:
    write_set(tmp_path / "mnist")
    assert load(name, root=tmp_path)[0].name == "mnist"


@pytest.mark.parametrize("name", ["fashion_mnist", "Fashion-MNIST", "FASHION_MNIST"])
def test_name_aliases_fashion(tmp_path: Path, name: str) -> None:
    write_set(tmp_path / "fashion-mnist")
    assert load(name, root=tmp_path)[0].name == "fashion-mnist"


def test_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="svhn") as info:
        load("svhn", root=tmp_path)
    assert all(f"'{name}'" in str(info.value) for name in ("mnist", "fashion-mnist", "cifar10"))


def test_search_order_first_complete_directory_wins(tmp_path: Path) -> None:
    a, b, c = make_raw(1), make_raw(2), make_raw(3)
    write_set(tmp_path / "mnist", a, skip=("test-labels",))  # incomplete: skipped
    write_set(tmp_path / "MNIST" / "raw", b)
    write_set(tmp_path, c)
    train, test = load("mnist", root=tmp_path)
    np.testing.assert_array_equal(train.x, expected_x(b["train-images"]))
    np.testing.assert_array_equal(test.x, expected_x(b["test-images"]))

    write_set(tmp_path / "mnist", a)  # now complete: takes precedence
    train, _ = load("mnist", root=tmp_path)
    np.testing.assert_array_equal(train.x, expected_x(a["train-images"]))


def test_plain_preferred_over_gz_in_same_directory(tmp_path: Path) -> None:
    gz_raw, plain_raw = make_raw(5), make_raw(6)
    write_set(tmp_path / "mnist", gz_raw, gz=True)
    write_set(tmp_path / "mnist", plain_raw, gz=False)
    train, _ = load("mnist", root=tmp_path)
    np.testing.assert_array_equal(train.x, expected_x(plain_raw["train-images"]))


def test_mixed_gz_and_plain_files(tmp_path: Path) -> None:
    raw = make_raw()
    write_set(tmp_path / "mnist", raw, gz=True, skip=("train-images", "test-labels"))
    write_set(tmp_path / "mnist", raw, gz=False, skip=("train-labels", "test-images"))
    train, test = load("mnist", root=tmp_path)
    np.testing.assert_array_equal(train.x, expected_x(raw["train-images"]))
    np.testing.assert_array_equal(test.y, raw["test-labels"])


def test_no_global_cache(tmp_path: Path) -> None:
    a, b = make_raw(1), make_raw(2)
    write_set(tmp_path / "a" / "mnist", a)
    write_set(tmp_path / "b" / "mnist", b)
    np.testing.assert_array_equal(load("mnist", tmp_path / "a")[0].x, expected_x(a["train-images"]))
    np.testing.assert_array_equal(load("mnist", tmp_path / "b")[0].x, expected_x(b["train-images"]))
    write_set(tmp_path / "a" / "mnist", b)  # files changed on disk: re-read
    np.testing.assert_array_equal(load("mnist", tmp_path / "a")[0].x, expected_x(b["train-images"]))


# ----------------------------------------------------------------------------------------
# root resolution


def test_env_var_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = make_raw()
    write_set(tmp_path / "envroot" / "mnist", raw)
    monkeypatch.setenv("RBP_NATIVE_DATA", str(tmp_path / "envroot"))
    assert datasets.data_root() == tmp_path / "envroot"
    train, _ = load("mnist")
    np.testing.assert_array_equal(train.y, raw["train-labels"])

    # an explicit root wins over the environment variable
    other = make_raw(9)
    write_set(tmp_path / "explicit" / "mnist", other)
    train, _ = load("mnist", root=str(tmp_path / "explicit"))
    np.testing.assert_array_equal(train.x, expected_x(other["train-images"]))


def test_default_root_is_home_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RBP_NATIVE_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    expected = tmp_path / ".cache" / "rbp_native"
    assert datasets.data_root() == expected
    with pytest.raises(FileNotFoundError) as info:
        load("mnist")
    assert str(expected / "mnist") in str(info.value)

    monkeypatch.setenv("RBP_NATIVE_DATA", "")  # empty counts as unset
    assert datasets.data_root() == expected
    write_set(expected / "mnist")
    assert len(load("mnist")[0]) == N_TRAIN


# ----------------------------------------------------------------------------------------
# missing files


def test_missing_files_mnist(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        load("mnist", root=tmp_path)
    msg = str(info.value)
    for d in (tmp_path / "mnist", tmp_path / "MNIST" / "raw", tmp_path):
        assert f"  {d}  " in msg
    assert "RBP_NATIVE_DATA" in msg and "root=" in msg and "download=True" in msg
    assert "apt-get" not in msg


def test_missing_files_fashion(tmp_path: Path, no_system_dirs: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        load("fashion-mnist", root=tmp_path / "r")
    msg = str(info.value)
    for d in (
        tmp_path / "r" / "fashion-mnist",
        tmp_path / "r" / "FashionMNIST" / "raw",
        tmp_path / "r",
        no_system_dirs,
    ):
        assert f"  {d}  " in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "download=True" in msg and "RBP_NATIVE_DATA" in msg


def test_default_system_dir_is_debian_path() -> None:
    dirs = datasets.search_dirs("fashion-mnist", "/x")
    assert dirs[-1] == Path("/usr/share/datasets/fashion-mnist")
    assert dirs[:3] == [Path("/x/fashion-mnist"), Path("/x/FashionMNIST/raw"), Path("/x")]


def test_incomplete_directory_reports_missing_file(tmp_path: Path) -> None:
    write_set(tmp_path / "mnist", skip=("test-labels",))
    with pytest.raises(FileNotFoundError) as info:
        load("mnist", root=tmp_path)
    assert "t10k-labels-idx1-ubyte" in str(info.value)
    assert "incomplete" in str(info.value)


# ----------------------------------------------------------------------------------------
# corrupt files


def _corrupt_cases() -> dict[str, tuple[str, bytes | None, bool, str]]:
    """name -> (file key, replacement bytes or None for special handling, gz, regex)."""
    raw = make_raw()
    good = encode(raw)
    return {
        "bad-magic-images": (
            "train-images",
            images_bytes(raw["train-images"], magic=2049),
            True,
            "magic",
        ),
        "bad-magic-labels": (
            "test-labels",
            labels_bytes(raw["test-labels"], magic=1234),
            False,
            "magic",
        ),
        "truncated-payload": ("train-images", good["train-images"][:-5], False, "truncated"),
        "truncated-labels": ("train-labels", good["train-labels"][:-1], True, "truncated"),
        "trailing-bytes": ("test-images", good["test-images"] + b"\0\0\0", True, "trailing"),
        "short-header": ("test-images", good["test-images"][:10], False, "too short"),
        "wrong-dims": (
            "train-images",
            images_bytes(np.zeros((N_TRAIN, 32 * 32)), rows=32, cols=32),
            True,
            "32x32",
        ),
        "label-out-of-range": (
            "train-labels",
            labels_bytes(np.array([0, 1, 2, 10, 4, 5, 6])),
            False,
            "label 10 at index 3",
        ),
    }


@pytest.mark.parametrize("case", list(_corrupt_cases()))
def test_corrupt_file(tmp_path: Path, case: str) -> None:
    key, blob, gz, pattern = _corrupt_cases()[case]
    paths = write_set(tmp_path / "mnist", gz=gz, overrides={key: blob})
    with pytest.raises(DatasetError, match=pattern) as info:
        load("mnist", root=tmp_path)
    assert str(paths[key]) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_truncated_gzip(tmp_path: Path) -> None:
    paths = write_set(tmp_path / "mnist", gz=True)
    p = paths["train-images"]
    p.write_bytes(p.read_bytes()[:-20])
    with pytest.raises(DatasetError, match="gzip") as info:
        load("mnist", root=tmp_path)
    assert str(p) in str(info.value)


def test_invalid_gzip(tmp_path: Path) -> None:
    paths = write_set(tmp_path / "mnist", gz=True)
    p = paths["test-labels"]
    p.write_bytes(b"this is not gzip data at all")
    with pytest.raises(DatasetError, match="gzip") as info:
        load("mnist", root=tmp_path)
    assert str(p) in str(info.value)


def test_corrupt_deflate_stream(tmp_path: Path) -> None:
    paths = write_set(tmp_path / "mnist", gz=True)
    p = paths["train-images"]
    data = bytearray(p.read_bytes())
    data[20:40] = b"\xff" * 20  # garble compressed data after the 10-byte gzip header
    p.write_bytes(bytes(data))
    with pytest.raises(DatasetError) as info:
        load("mnist", root=tmp_path)
    assert str(p) in str(info.value)


def test_count_mismatch(tmp_path: Path) -> None:
    raw = make_raw()
    paths = write_set(tmp_path / "mnist", raw, overrides={"train-labels": labels_bytes(raw["train-labels"][:5])})
    with pytest.raises(DatasetError, match="7 images") as info:
        load("mnist", root=tmp_path)
    msg = str(info.value)
    assert str(paths["train-images"]) in msg and str(paths["train-labels"]) in msg
    assert "5 labels" in msg


# ----------------------------------------------------------------------------------------
# download (urlopen monkeypatched; no network)


class FakeServer:
    """Stands in for urllib.request.urlopen: serves ``files`` (URL -> bytes), raises
    URLError for unknown URLs, and records every URL requested."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requested: list[str] = []

    def __call__(self, request, timeout=None):
        url = request.full_url if isinstance(request, urllib.request.Request) else request
        self.requested.append(url)
        if url not in self.files:
            raise urllib.error.URLError(f"no route to host for {url}")
        return io.BytesIO(self.files[url])


def _gz_payloads(raw: dict[str, np.ndarray]) -> dict[str, bytes]:
    return {BASES[k] + ".gz": gzip.compress(v, mtime=0) for k, v in encode(raw).items()}


def _patch_md5(monkeypatch: pytest.MonkeyPatch, name: str, payloads: dict[str, bytes]) -> None:
    table = {fn: hashlib.md5(blob).hexdigest() for fn, blob in payloads.items()}
    monkeypatch.setitem(datasets.MD5, name, table)


def test_download_success(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = make_raw(11)
    payloads = _gz_payloads(raw)
    _patch_md5(monkeypatch, "mnist", payloads)
    mirror = datasets.MIRRORS["mnist"][0]
    server = FakeServer({mirror + fn: blob for fn, blob in payloads.items()})
    monkeypatch.setattr(urllib.request, "urlopen", server)

    train, test = load("mnist", root=tmp_path, download=True)
    np.testing.assert_array_equal(train.x, expected_x(raw["train-images"]))
    np.testing.assert_array_equal(test.y, raw["test-labels"])
    assert sorted(server.requested) == sorted(mirror + fn for fn in payloads)
    files = sorted(p.name for p in (tmp_path / "mnist").iterdir())
    assert files == sorted(payloads)  # no temp files left behind
    for fn, blob in payloads.items():
        assert (tmp_path / "mnist" / fn).read_bytes() == blob

    # second call: everything present, no network access
    server.requested.clear()
    load("mnist", root=tmp_path, download=True)
    assert server.requested == []


def test_download_falls_back_to_next_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = make_raw(12)
    payloads = _gz_payloads(raw)
    _patch_md5(monkeypatch, "mnist", payloads)
    first, second = "https://m1.invalid/mnist/", "https://m2.invalid/mnist/"
    monkeypatch.setitem(datasets.MIRRORS, "mnist", (first, second))
    server = FakeServer({second + fn: blob for fn, blob in payloads.items()})
    monkeypatch.setattr(urllib.request, "urlopen", server)

    train, _ = load("mnist", root=tmp_path, download=True)
    np.testing.assert_array_equal(train.y, raw["train-labels"])
    fn0 = next(iter(payloads))
    assert server.requested[:2] == [first + fn0, second + fn0]


def test_download_bad_checksum_on_first_mirror_tries_next(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = make_raw(16)
    payloads = _gz_payloads(raw)
    _patch_md5(monkeypatch, "mnist", payloads)
    first, second = "https://m1.invalid/", "https://m2.invalid/"
    monkeypatch.setitem(datasets.MIRRORS, "mnist", (first, second))
    served = {second + fn: blob for fn, blob in payloads.items()}
    served.update({first + fn: blob[:-1] for fn, blob in payloads.items()})  # corrupt copies
    server = FakeServer(served)
    monkeypatch.setattr(urllib.request, "urlopen", server)
    train, _ = load("mnist", root=tmp_path, download=True)
    np.testing.assert_array_equal(train.y, raw["train-labels"])
    assert len(server.requested) == 8


def test_download_fashion_uses_fashion_mirror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_system_dirs: Path
) -> None:
    raw = make_raw(13)
    payloads = _gz_payloads(raw)
    _patch_md5(monkeypatch, "fashion-mnist", payloads)
    mirror = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
    assert datasets.MIRRORS["fashion-mnist"][0] == mirror
    server = FakeServer({mirror + fn: blob for fn, blob in payloads.items()})
    monkeypatch.setattr(urllib.request, "urlopen", server)
    train, _ = load("fashion_mnist", root=tmp_path, download=True)
    assert train.name == "fashion-mnist"
    assert sorted(p.name for p in (tmp_path / "fashion-mnist").iterdir()) == sorted(payloads)


def test_download_only_missing_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = make_raw(14)
    payloads = _gz_payloads(raw)
    _patch_md5(monkeypatch, "mnist", payloads)
    write_set(tmp_path / "mnist", raw, gz=False, skip=("test-images",))
    mirror = datasets.MIRRORS["mnist"][0]
    server = FakeServer({mirror + fn: blob for fn, blob in payloads.items()})
    monkeypatch.setattr(urllib.request, "urlopen", server)
    _, test = load("mnist", root=tmp_path, download=True)
    assert server.requested == [mirror + "t10k-images-idx3-ubyte.gz"]
    np.testing.assert_array_equal(test.x, expected_x(raw["test-images"]))


def test_download_checksum_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = make_raw(15)
    payloads = _gz_payloads(raw)
    _patch_md5(monkeypatch, "mnist", payloads)
    bad = "train-labels-idx1-ubyte.gz"
    monkeypatch.setitem(datasets.MD5["mnist"], bad, "0" * 32)
    served = {m + fn: blob for m in datasets.MIRRORS["mnist"] for fn, blob in payloads.items()}
    monkeypatch.setattr(urllib.request, "urlopen", FakeServer(served))

    with pytest.raises(DatasetError, match="(?i)md5") as info:
        load("mnist", root=tmp_path, download=True)
    assert bad in str(info.value)
    target = tmp_path / "mnist"
    assert not (target / bad).exists()
    assert not (target / bad.removesuffix(".gz")).exists()
    leftovers = [p.name for p in target.iterdir() if p.name.startswith(".") or "part" in p.name]
    assert leftovers == []


def test_download_network_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = FakeServer({})
    monkeypatch.setattr(urllib.request, "urlopen", server)
    with pytest.raises(DownloadError) as info:
        load("mnist", root=tmp_path, download=True)
    msg = str(info.value)
    for mirror in datasets.MIRRORS["mnist"]:
        assert mirror + "train-images-idx3-ubyte.gz" in msg
    assert isinstance(info.value, OSError)
    assert list((tmp_path / "mnist").iterdir()) == []


def test_download_connection_dropped_mid_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Dropping(io.BytesIO):
        def read(self, n: int = -1) -> bytes:
            if self.tell() > 0:
                raise ConnectionResetError("connection reset by peer")
            return super().read(8)

    monkeypatch.setitem(datasets.MIRRORS, "mnist", ("https://m.invalid/",))
    monkeypatch.setattr(urllib.request, "urlopen", lambda req, timeout=None: Dropping(b"x" * 100))
    with pytest.raises(DownloadError, match="ConnectionResetError"):
        load("mnist", root=tmp_path, download=True)
    assert list((tmp_path / "mnist").iterdir()) == []


# ----------------------------------------------------------------------------------------
# download over real HTTP from a server on 127.0.0.1, serving the real MNIST files


_REAL_URLOPEN = urllib.request.urlopen
_GZ = [base + ".gz" for base in datasets.FILES.values()]


class _LocalMirror:
    """An HTTP server on 127.0.0.1 serving ``files`` (name -> bytes) from a thread. ``truncate``
    names files sent with their full Content-Length but only half their bytes."""

    def __init__(self, files: dict[str, bytes]) -> None:
        import http.server
        import threading

        self.files, self.truncate, self.requested = files, set(), []
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                name = self.path.lstrip("/")
                mirror.requested.append(name)
                if name not in mirror.files:
                    self.send_error(404)
                    return
                body = mirror.files[name]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if name in mirror.truncate else body)
                self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def real_gz(tmp_path: Path) -> dict[str, bytes]:
    """The official MNIST .gz files (from RBP_NATIVE_DATA, read-only there), copied into tmp_path."""
    if not os.environ.get("RBP_NATIVE_DATA"):
        pytest.skip("RBP_NATIVE_DATA is not set")
    for directory in datasets.search_dirs("mnist"):
        if all((directory / name).is_file() for name in _GZ):
            copy = tmp_path / "served"
            copy.mkdir()
            for name in _GZ:
                (copy / name).write_bytes((directory / name).read_bytes())
            return {name: (copy / name).read_bytes() for name in _GZ}
    pytest.skip("the official MNIST .gz files are not under RBP_NATIVE_DATA")


@pytest.fixture
def local_mirror(real_gz: dict[str, bytes], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(urllib.request, "urlopen", _REAL_URLOPEN)
    mirror = _LocalMirror(dict(real_gz))
    monkeypatch.setitem(datasets.MIRRORS, "mnist", (mirror.url,))
    yield mirror
    mirror.close()


def _partial_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name not in _GZ)


def test_download_over_http_checks_the_official_checksums(
    tmp_path: Path, local_mirror: _LocalMirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tqdm

    bars = []

    class RecordingBar(tqdm.tqdm):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.shown = 0
            bars.append((kwargs, self))

        def update(self, n=1):
            self.shown += n
            return super().update(n)

    monkeypatch.setattr(tqdm, "tqdm", RecordingBar)
    root = tmp_path / "cache"
    train, test = load("mnist", root=root, download=True)
    # one progress bar per file, sized by Content-Length, shown on a terminal only (disable=None)
    assert sorted(kwargs["total"] for kwargs, _ in bars) == sorted(len(blob) for blob in local_mirror.files.values())
    assert all(kwargs["disable"] is None and bar.shown == kwargs["total"] for kwargs, bar in bars)
    assert (len(train), len(test)) == (60000, 10000)
    assert sorted(local_mirror.requested) == sorted(_GZ)
    assert sorted(p.name for p in (root / "mnist").iterdir()) == sorted(_GZ)  # no temp files left
    for name in _GZ:
        digest = hashlib.md5((root / "mnist" / name).read_bytes()).hexdigest()
        assert digest == datasets.MD5["mnist"][name]


def test_download_over_http_rejects_a_corrupt_file(tmp_path: Path, local_mirror: _LocalMirror) -> None:
    corrupt = "t10k-labels-idx1-ubyte.gz"
    blob = bytearray(local_mirror.files[corrupt])
    blob[len(blob) // 2] ^= 0xFF
    local_mirror.files[corrupt] = bytes(blob)
    root = tmp_path / "cache"
    with pytest.raises(DatasetError, match=f"(?s){corrupt}.*MD5 checksum mismatch"):
        load("mnist", root=root, download=True)
    assert not (root / "mnist" / corrupt).exists()  # nothing under the final name
    assert _partial_files(root / "mnist") == []


def test_download_over_http_rejects_a_truncated_file(tmp_path: Path, local_mirror: _LocalMirror) -> None:
    local_mirror.truncate.add("train-images-idx3-ubyte.gz")
    root = tmp_path / "cache"
    with pytest.raises(DownloadError, match="connection closed after 4956211 of 9912422 bytes"):
        load("mnist", root=root, download=True)
    assert not (root / "mnist" / "train-images-idx3-ubyte.gz").exists()
    assert _partial_files(root / "mnist") == []
    local_mirror.truncate.clear()  # the next try completes the set
    train, _ = load("mnist", root=root, download=True)
    assert len(train) == 60000


def test_download_offline_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    monkeypatch.setattr(urllib.request, "urlopen", _REAL_URLOPEN)
    with socket.socket() as probe:  # a port on 127.0.0.1 that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setitem(datasets.MIRRORS, "mnist", (f"http://127.0.0.1:{port}/",))
    root = tmp_path / "cache"
    with pytest.raises(DownloadError) as info:
        load("mnist", root=root, download=True)
    message = str(info.value)
    assert "offline?" in message and "RBP_NATIVE_DATA" in message and str(root / "mnist") in message
    assert f"http://127.0.0.1:{port}/train-images-idx3-ubyte.gz" in message
    assert list((root / "mnist").iterdir()) == []


def test_download_into_an_unwritable_folder_says_so_before_any_network_access(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"  # a data root that is a file: nothing can be created under it
    blocker.write_bytes(b"")
    with pytest.raises(DownloadError, match="cannot write the mnist download into .*RBP_NATIVE_DATA"):
        load("mnist", root=blocker, download=True)  # the autouse fixture fails any network access


def test_cli_train_downloads_into_the_data_folder(
    tmp_path: Path, local_mirror: _LocalMirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rbp_native.cli import main

    monkeypatch.setenv("RBP_NATIVE_DATA", str(tmp_path / "data"))
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--epochs",
                "1",
                "--hidden",
                "8",
                "--batch-size",
                "500",
                "--threads",
                "1",
                "--train-metrics",
                "running",
                "--no-progress",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert sorted(p.name for p in (tmp_path / "data" / "mnist").iterdir()) == sorted(_GZ)
    assert (out / "model.npz").is_file()


def test_download_not_attempted_without_flag(tmp_path: Path) -> None:
    # the autouse fixture makes any urlopen call fail the test
    with pytest.raises(FileNotFoundError):
        load("mnist", root=tmp_path)
    assert not (tmp_path / "mnist").exists()


def test_no_download_when_data_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args):
        raise AssertionError("download attempted although the data is present")

    monkeypatch.setattr(datasets, "_torchvision_available", lambda: True)
    monkeypatch.setattr(datasets, "_download_torchvision", fail)
    monkeypatch.setattr(datasets, "_download_urllib", fail)
    write_set(tmp_path / "MNIST" / "raw")
    assert len(load("mnist", root=tmp_path, download=True)[0]) == N_TRAIN


def test_torchvision_failure_falls_back_to_urllib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_tv(name: str, base: Path) -> None:
        raise RuntimeError("torchvision mirrors unreachable")

    monkeypatch.setattr(datasets, "_torchvision_available", lambda: True)
    monkeypatch.setattr(datasets, "_download_torchvision", broken_tv)
    server = FakeServer({})
    monkeypatch.setattr(urllib.request, "urlopen", server)
    with pytest.raises(DownloadError) as info:
        load("mnist", root=tmp_path, download=True)
    assert server.requested  # urllib was tried after torchvision failed
    assert any("torchvision mirrors unreachable" in n for n in info.value.__notes__)


def test_torchvision_branch_used_when_available(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_tv(name: str, base: Path) -> None:
        calls.append((name, base))
        write_set(base / "MNIST" / "raw", gz=False)

    monkeypatch.setattr(datasets, "_torchvision_available", lambda: True)
    monkeypatch.setattr(datasets, "_download_torchvision", fake_tv)
    train, _ = load("mnist", root=tmp_path, download=True)
    assert calls == [("mnist", tmp_path)] and len(train) == N_TRAIN


# ----------------------------------------------------------------------------------------
# Dataset


def _small() -> Dataset:
    x = np.arange(5 * 4, dtype=np.float32).reshape(5, 4) / 20
    return Dataset(x=x, y=np.array([0, 1, 2, 3, 4]), name="toy", classes=list("abcde"))


def test_dataset_basics() -> None:
    ds = _small()
    assert len(ds) == 5 and ds.num_classes == 5 and ds.classes == tuple("abcde")
    assert ds.y.dtype == np.int64
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.x = ds.x  # type: ignore[misc]
    assert "n=5" in repr(ds) and len(repr(ds)) < 200
    x, y = ds.x, ds.y  # attribute access, no unpacking needed
    assert x.shape == (5, 4) and y.shape == (5,)


def test_dataset_converts_and_validates() -> None:
    ds = Dataset(x=np.zeros((3, 2), dtype=np.float64, order="F"), y=[1, 2, 3], name="t", classes=("a",))
    assert ds.x.dtype == np.float32 and ds.x.flags.c_contiguous and ds.y.dtype == np.int64
    with pytest.raises(ValueError, match="rows"):
        Dataset(x=np.zeros((3, 2)), y=np.zeros(4), name="t", classes=())
    with pytest.raises(ValueError):
        Dataset(x=np.zeros(3), y=np.zeros(3), name="t", classes=())


def test_subset_and_take() -> None:
    ds = _small()
    sub = ds.subset(3)
    assert len(sub) == 3 and sub.name == "toy" and sub.classes == ds.classes
    np.testing.assert_array_equal(sub.x, ds.x[:3])
    assert len(ds.subset(0)) == 0 and len(ds.subset(5)) == 5
    with pytest.raises(ValueError):
        ds.subset(6)
    with pytest.raises(ValueError):
        ds.subset(-1)

    t = ds.take([4, 0, 4])
    np.testing.assert_array_equal(t.y, [4, 0, 4])
    np.testing.assert_array_equal(t.x, ds.x[[4, 0, 4]])
    assert t.x.flags.c_contiguous and t.x.dtype == np.float32

    m = ds.take(ds.y % 2 == 0)
    np.testing.assert_array_equal(m.y, [0, 2, 4])
    assert len(ds.take([])) == 0
    np.testing.assert_array_equal(ds.take(slice(1, None, 2)).y, [1, 3])
    with pytest.raises(IndexError):
        ds.take(np.array([True, False]))
    with pytest.raises(TypeError):
        ds.take([0.5])


def test_loaded_dataset_subset_keeps_split(tmp_path: Path) -> None:
    write_set(tmp_path / "mnist")
    train, _ = load("mnist", root=tmp_path)
    sub = train.subset(2)
    assert sub.split == "train" and sub.name == "mnist" and sub.x.shape == (2, 784)


# ----------------------------------------------------------------------------------------
# real data (skipped unless available)


def _load_real(name: str) -> tuple[Dataset, Dataset]:
    try:
        return load(name)
    except FileNotFoundError as exc:
        pytest.skip(f"{name} data not available: {str(exc).splitlines()[0]}")


def test_real_mnist() -> None:
    if not os.environ.get("RBP_NATIVE_DATA"):
        pytest.skip("RBP_NATIVE_DATA not set")
    train, test = _load_real("mnist")
    assert (len(train), len(test)) == (60000, 10000)
    assert train.x.shape == (60000, 784) and train.x.dtype == np.float32
    assert train.x.min() == 0.0 and train.x.max() == 1.0
    assert 0.0 <= test.x.min() and test.x.max() <= 1.0
    assert np.bincount(train.y, minlength=10).tolist() == [
        5923,
        6742,
        5958,
        6131,
        5842,
        5421,
        5918,
        6265,
        5851,
        5949,
    ]
    assert np.bincount(test.y, minlength=10).tolist() == [
        980,
        1135,
        1032,
        1010,
        982,
        892,
        958,
        1028,
        974,
        1009,
    ]


def test_real_fashion_mnist() -> None:
    train, test = _load_real("fashion-mnist")
    assert (len(train), len(test)) == (60000, 10000)
    assert train.x.dtype == np.float32 and 0.0 <= train.x.min() and train.x.max() <= 1.0
    assert np.bincount(train.y, minlength=10).tolist() == [6000] * 10
    assert np.bincount(test.y, minlength=10).tolist() == [1000] * 10
