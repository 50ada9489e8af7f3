"""MNIST, Fashion-MNIST and CIFAR-10 loaders.

CIFAR-10 (``load("cifar10")``) is read by :mod:`rbp_native._cifar`, whose docstring describes its
layouts, its cache and its download; everything below is about MNIST and Fashion-MNIST.

``load(name)`` returns ``(train, test)`` as :class:`Dataset` objects whose ``x`` is a
C-contiguous ``float32`` array of shape ``(N, 784)`` with values ``pixel / 255`` in
``[0, 1]`` and whose ``y`` is an ``int64`` array of shape ``(N,)``.

The four standard IDX files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``), gzipped (``.gz``) or plain, are
looked up under a data root, which is the ``root`` argument, else the environment variable
``RBP_NATIVE_DATA``, else ``~/.cache/rbp_native``.  For a root ``R`` the directories
searched, in order, are:

* mnist:         ``R/mnist/``, ``R/MNIST/raw/`` (torchvision's layout), ``R/``
* fashion-mnist: ``R/fashion-mnist/``, ``R/FashionMNIST/raw/``, ``R/``, and finally
  ``/usr/share/datasets/fashion-mnist/`` (Debian package ``dataset-fashion-mnist``)

The first directory that holds all four files is used (files are never mixed across
directories).  Within a directory the plain file is preferred over the ``.gz`` file when
both exist.  Nothing is cached between calls.

With ``download=True`` missing files are fetched into ``R/<name>/`` (through torchvision
when it is importable, which writes ``R/MNIST/raw/`` or ``R/FashionMNIST/raw/``, otherwise
with :mod:`urllib.request` from the mirrors in :data:`MIRRORS`, with a progress bar on a
terminal).  Every file fetched with urllib is checked against :data:`MD5` and moved into
place atomically only when the checksum matches.  ``load`` downloads only when asked; the
command line (``rbp-native train``, ``reproduce``, ``run``) asks unless given
``--no-download``.
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.util
import os
import sys
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

from ._torchvision import from_torchvision

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetError",
    "DownloadError",
    "MD5",
    "MIRRORS",
    "data_root",
    "from_torchvision",
    "load",
    "search_dirs",
]

PathLike = Union[str, os.PathLike[str]]

#: Canonical dataset names accepted by :func:`load`.
DATASETS: tuple[str, ...] = ("mnist", "fashion-mnist", "cifar10")

_ALIASES: dict[str, str] = {
    "mnist": "mnist",
    "fashion-mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "cifar10": "cifar10",
    "cifar-10": "cifar10",
}

ENV_VAR = "RBP_NATIVE_DATA"

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
ROWS = COLS = 28
NUM_CLASSES = 10

#: Base file names of the IDX files, keyed by (split, kind).
FILES: dict[tuple[str, str], str] = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}

CLASSES: dict[str, tuple[str, ...]] = {
    "mnist": tuple(str(i) for i in range(10)),
    "fashion-mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
}

#: Sub-directories of the root searched for each dataset, in order ("." is the root).
LAYOUTS: dict[str, tuple[str, ...]] = {
    "mnist": ("mnist", "MNIST/raw", "."),
    "fashion-mnist": ("fashion-mnist", "FashionMNIST/raw", "."),
}

#: Absolute directories searched after the root-relative ones (system packages).
SYSTEM_DIRS: dict[str, tuple[str, ...]] = {
    "mnist": (),
    "fashion-mnist": ("/usr/share/datasets/fashion-mnist",),
}

#: Official MD5 checksums of the ``.gz`` files, used to verify downloads.  Module level so
#: that it can be substituted (e.g. in tests).
MD5: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}

#: Download mirrors (base URLs ending in "/"), tried in order.
MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}

_DOWNLOAD_TIMEOUT_S = 60.0
_CHUNK = 1 << 20


class DatasetError(ValueError):
    """A dataset file is corrupt or inconsistent, or a download failed its checksum."""


class DownloadError(OSError):
    """Every mirror failed for a file (network error); the message lists the URLs tried."""


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """An immutable (frozen) pair of inputs and labels.

    Attributes:
        x: ``float32`` C-contiguous array, shape ``(N, 784)`` (or ``(N, 28, 28)`` when loaded
            with ``flatten=False``; CIFAR-10: ``(N, 3, 32, 32)``, or ``(N, 3072)`` with
            ``flatten=True``), values in ``[0, 1]`` (standardised per channel when loaded with
            ``normalize``).
        y: ``int64`` array of shape ``(N,)``; for loaded data the labels are in ``0..9``.
        name: canonical dataset name, e.g. ``"mnist"`` or ``"fashion-mnist"``.
        classes: class names; ``classes[k]`` names label ``k``.
        split: ``"train"`` or ``"test"`` for loaded data (``""`` if not given).

    ``x`` and ``y`` are converted on construction to C-contiguous ``float32`` / ``int64``
    (no copy when they already are).  The arrays themselves stay writable; the dataclass
    only prevents rebinding the fields.  Equality is identity.
    """

    x: np.ndarray
    y: np.ndarray
    name: str
    classes: tuple[str, ...]
    split: str = ""

    def __post_init__(self) -> None:
        x = np.ascontiguousarray(self.x, dtype=np.float32)
        y = np.ascontiguousarray(self.y, dtype=np.int64)
        if x.ndim < 2:
            raise ValueError(f"x must have shape (N, features...), got {x.shape}")
        if y.ndim != 1:
            raise ValueError(f"y must have shape (N,), got {y.shape}")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} rows but y has {y.shape[0]} labels")
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "classes", tuple(self.classes))

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def num_classes(self) -> int:
        """Number of classes, ``len(classes)``."""
        return len(self.classes)

    def take(self, indices: Any) -> Dataset:
        """Return a new Dataset with the samples selected by ``indices``.

        ``indices`` may be a slice, a sequence/array of integer positions (negative values
        count from the end, repeats allowed) or a boolean mask of length ``len(self)``.
        The result's arrays are C-contiguous; for a slice they may share memory with
        ``self`` (numpy view), otherwise they are copies.
        """
        if isinstance(indices, slice):
            idx: Any = indices
        else:
            idx = np.asarray(indices)
            if idx.dtype == np.bool_:
                if idx.shape != (len(self),):
                    raise IndexError(f"boolean mask must have shape ({len(self)},), got {idx.shape}")
            elif idx.size == 0:
                idx = idx.astype(np.intp)
            elif not np.issubdtype(idx.dtype, np.integer):
                raise TypeError(f"indices must be integers, got dtype {idx.dtype}")
            elif idx.ndim != 1:
                raise IndexError(f"indices must be 1-D, got shape {idx.shape}")
        return dataclasses.replace(self, x=self.x[idx], y=self.y[idx])

    def subset(self, n: int) -> Dataset:
        """Return the first ``n`` samples as a new Dataset (views, no copy).

        Raises ``ValueError`` if ``n`` is negative or larger than ``len(self)``.
        """
        n = int(n)
        if n < 0 or n > len(self):
            raise ValueError(f"subset size must be in 0..{len(self)}, got {n}")
        return self.take(slice(0, n))

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"x={self.x.dtype}{tuple(self.x.shape)}, y={self.y.dtype}{tuple(self.y.shape)}, "
            f"num_classes={self.num_classes})"
        )


# ----------------------------------------------------------------------------------------
# Name and directory resolution


def _canonical(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a str, got {type(name).__name__}")
    key = name.strip().lower().replace("_", "-")
    try:
        return _ALIASES[key]
    except KeyError:
        valid = ", ".join(repr(n) for n in DATASETS)
        raise ValueError(
            f"unknown dataset {name!r}; valid names: {valid} "
            "(case-insensitive; 'fashion_mnist' is accepted for 'fashion-mnist')"
        ) from None


def data_root(root: PathLike | None = None) -> Path:
    """Resolve the data root: ``root`` if given, else ``$RBP_NATIVE_DATA`` if set and
    non-empty, else ``~/.cache/rbp_native``.  ``~`` is expanded; the path need not exist."""
    if root is not None:
        return Path(os.fspath(root)).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "rbp_native"


def search_dirs(name: str, root: PathLike | None = None) -> list[Path]:
    """The directories :func:`load` searches for ``name`` under ``root``, in order (for cifar10 also
    the tar files)."""
    canonical = _canonical(name)
    base = data_root(root)
    if canonical == "cifar10":
        from . import _cifar

        return [source.path for source in _cifar.candidates(base)]
    dirs = [base if sub == "." else base / sub for sub in LAYOUTS[canonical]]
    dirs.extend(Path(d) for d in SYSTEM_DIRS[canonical])
    return dirs


def _find_file(directory: Path, base: str) -> Path | None:
    """Plain file first, then ``.gz``; None if neither is a regular file."""
    for candidate in (directory / base, directory / (base + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _locate(dirs: Sequence[Path]) -> tuple[dict[tuple[str, str], Path] | None, list[str]]:
    """Return (files of the first complete directory, description of each directory)."""
    notes: list[str] = []
    for d in dirs:
        found = {key: _find_file(d, base) for key, base in FILES.items()}
        missing = [FILES[key] for key, path in found.items() if path is None]
        if not missing:
            return {k: p for k, p in found.items() if p is not None}, notes
        if not d.is_dir():
            notes.append(f"  {d}  (directory does not exist)")
        elif len(missing) == len(FILES):
            notes.append(f"  {d}  (no dataset files)")
        else:
            notes.append(f"  {d}  (incomplete, missing: {', '.join(missing)}[.gz])")
    return None, notes


def _not_found(canonical: str, base: Path, notes: list[str]) -> FileNotFoundError:
    files = ", ".join(f"{b}[.gz]" for b in FILES.values())
    hints = [
        f"  - put the files in {base / canonical} (or pass root=... / set {ENV_VAR} to a "
        f"directory that has a '{canonical}' sub-directory),",
        f"  - or call load({canonical!r}, download=True) (the command line does unless given "
        f"--no-download) to fetch them into {base / canonical}",
    ]
    if canonical == "fashion-mnist":
        hints[-1] += ","
        hints.append(
            "  - or install the Debian package: apt-get install dataset-fashion-mnist "
            "(files in /usr/share/datasets/fashion-mnist/)"
        )
    return FileNotFoundError(
        f"{canonical} data not found: no directory holds all of {files}.\n"
        "Searched:\n" + "\n".join(notes) + "\nTo get the data:\n" + "\n".join(hints)
    )


# ----------------------------------------------------------------------------------------
# IDX decoding


def _read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read file: {exc}") from exc
    if path.name.endswith(".gz") or data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
            raise DatasetError(f"{path}: truncated or invalid gzip data ({exc})") from exc
    return data


def _header(path: Path, data: bytes, magic: int, ndim: int) -> list[int]:
    what = "images" if magic == IMAGES_MAGIC else "labels"
    size = 4 * (1 + ndim)
    if len(data) < size:
        raise DatasetError(f"{path}: file too short for an IDX {what} header ({len(data)} bytes, need {size})")
    fields = [int(v) for v in np.frombuffer(data, dtype=">u4", count=1 + ndim)]
    if fields[0] != magic:
        other = {IMAGES_MAGIC: " (an images file?)", LABELS_MAGIC: " (a labels file?)"}
        raise DatasetError(
            f"{path}: bad magic number {fields[0]}{other.get(fields[0], '')}, expected {magic} for IDX {what}"
        )
    return fields[1:]


def _check_size(path: Path, data: bytes, header: int, payload: int, count: int) -> None:
    expected = header + payload
    if len(data) < expected:
        raise DatasetError(
            f"{path}: truncated: header announces {count} items ({expected} bytes) "
            f"but the data has only {len(data)} bytes"
        )
    if len(data) > expected:
        raise DatasetError(
            f"{path}: {len(data) - expected} trailing bytes after the {count} items "
            f"announced by the header ({expected} bytes expected)"
        )


def _read_images(path: Path) -> np.ndarray:
    """Decode an IDX images file into a uint8 array of shape (N, 784)."""
    data = _read_bytes(path)
    count, rows, cols = _header(path, data, IMAGES_MAGIC, 3)
    if (rows, cols) != (ROWS, COLS):
        raise DatasetError(f"{path}: image size is {rows}x{cols}, expected {ROWS}x{COLS}")
    _check_size(path, data, 16, count * rows * cols, count)
    return np.frombuffer(data, dtype=np.uint8, count=count * rows * cols, offset=16).reshape(count, rows * cols)


def _read_labels(path: Path) -> np.ndarray:
    """Decode an IDX labels file into an int64 array of shape (N,)."""
    data = _read_bytes(path)
    (count,) = _header(path, data, LABELS_MAGIC, 1)
    _check_size(path, data, 8, count, count)
    raw = np.frombuffer(data, dtype=np.uint8, count=count, offset=8)
    if count and int(raw.max()) >= NUM_CLASSES:
        bad = int(np.flatnonzero(raw >= NUM_CLASSES)[0])
        raise DatasetError(f"{path}: label {int(raw[bad])} at index {bad} is outside 0..{NUM_CLASSES - 1}")
    return raw.astype(np.int64)


def _load_split(canonical: str, split: str, files: dict[tuple[str, str], Path], flatten: bool) -> Dataset:
    images_path, labels_path = files[(split, "images")], files[(split, "labels")]
    pixels = _read_images(images_path)
    labels = _read_labels(labels_path)
    if pixels.shape[0] != labels.shape[0]:
        raise DatasetError(f"{images_path} has {pixels.shape[0]} images but {labels_path} has {labels.shape[0]} labels")
    x = pixels.astype(np.float32)
    x /= np.float32(255)  # in place: same values as pixels.astype(float32) / float32(255)
    if not flatten:
        x = x.reshape(-1, ROWS, COLS)
    return Dataset(x=x, y=labels, name=canonical, classes=CLASSES[canonical], split=split)


# ----------------------------------------------------------------------------------------
# Downloading


def _torchvision_available() -> bool:
    """True if torchvision can be found (used to choose the download backend)."""
    try:
        return importlib.util.find_spec("torchvision") is not None
    except (ImportError, ValueError):
        return False


def _download_torchvision(canonical: str, base: Path) -> None:
    import torchvision.datasets as tvd  # noqa: PLC0415 (optional dependency)

    cls = tvd.MNIST if canonical == "mnist" else tvd.FashionMNIST
    cls(str(base), train=True, download=True)
    cls(str(base), train=False, download=True)


def _fetch(url: str, target: Path, md5: str) -> None:
    """Download ``url`` to ``target`` through a temp file in the same directory; the temp
    file is moved into place only if its MD5 equals ``md5``.  Network problems (a body shorter
    than its Content-Length included) propagate as OSError / http.client.HTTPException; a
    checksum mismatch raises DatasetError."""
    import hashlib  # here, not at import: hashlib and urllib load OpenSSL and http (MBs resident)
    import urllib.request

    from tqdm import tqdm

    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5(usedforsecurity=False)
        request = urllib.request.Request(url, headers={"User-Agent": "rbp-native"})
        with os.fdopen(fd, "wb") as out:
            with urllib.request.urlopen(request, timeout=_DOWNLOAD_TIMEOUT_S) as response:
                # disable=None: a bar on a terminal, nothing in logs and captured output
                announced = _content_length(response)
                received = 0
                with tqdm(
                    total=announced,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=f"downloading {target.name}",
                    disable=None,
                    leave=False,
                ) as bar:
                    while True:
                        chunk = response.read(_CHUNK)
                        if not chunk:
                            break
                        digest.update(chunk)
                        out.write(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
                # urllib returns a short body without complaint when the connection drops
                if announced is not None and received < announced:
                    raise ConnectionError(f"connection closed after {received} of {announced} bytes")
            out.flush()
            os.fsync(out.fileno())
        got = digest.hexdigest()
        if got != md5.lower():
            raise DatasetError(f"{url}: MD5 checksum mismatch (got {got}, expected {md5})")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _content_length(response: Any) -> int | None:
    """The announced size in bytes, if the server sent one (for the progress bar)."""
    headers = getattr(response, "headers", None)
    length = headers.get("Content-Length") if headers is not None else None
    return int(length) if length and length.isdigit() else None


def _download_urllib(canonical: str, target_dir: Path) -> None:
    import http.client

    try:  # before any network access: a read-only data folder is the user's to fix, not a mirror's
        target_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=target_dir):
            pass
    except OSError as exc:
        raise DownloadError(
            f"cannot write the {canonical} download into {target_dir} ({exc}); point {ENV_VAR} "
            f"(or root=... / --data-root) at a writable folder, or put the files there yourself"
        ) from exc
    checksums = MD5[canonical]
    for base in FILES.values():
        if _find_file(target_dir, base) is not None:
            continue
        filename = base + ".gz"
        target = target_dir / filename
        failures: list[str] = []
        mismatch = False
        for mirror in MIRRORS[canonical]:
            url = mirror + filename
            try:
                _fetch(url, target, checksums[filename])
                break
            except DatasetError as exc:
                mismatch = True
                failures.append(f"  {url}: {exc}")
            except (OSError, http.client.HTTPException) as exc:
                failures.append(f"  {url}: {type(exc).__name__}: {exc}")
        else:
            msg = f"could not download {filename} for {canonical}; tried:\n" + "\n".join(failures)
            if mismatch:
                raise DatasetError(msg)
            files = ", ".join(name + ".gz" for name in FILES.values())
            raise DownloadError(
                f"{msg}\nNo mirror could be reached (offline?). Copy the four files ({files}) into "
                f"{target_dir}, or point {ENV_VAR} (or root=... / --data-root) at a folder holding "
                f"them in a '{canonical}' sub-folder."
            )


def _download(canonical: str, base: Path) -> None:
    torchvision_error: Exception | None = None
    if _torchvision_available():
        try:
            _download_torchvision(canonical, base)
            return
        except Exception as exc:  # noqa: BLE001 - fall back to our own downloader
            torchvision_error = exc
    try:
        _download_urllib(canonical, base / canonical)
    except (DatasetError, DownloadError) as exc:
        if torchvision_error is not None:
            note = f"torchvision download failed first: {type(torchvision_error).__name__}: {torchvision_error}"
            if sys.version_info >= (3, 11):
                exc.add_note(note)
            else:  # no exception notes before Python 3.11: the note joins the message
                exc.args = (f"{exc}\n{note}",)
        raise


# ----------------------------------------------------------------------------------------
# Public entry point


def load(
    name: str,
    root: PathLike | None = None,
    download: bool = False,
    *,
    flatten: bool | None = None,
    normalize: bool | tuple[Sequence[float], Sequence[float]] | None = None,
) -> tuple[Dataset, Dataset]:
    """Load MNIST, Fashion-MNIST or CIFAR-10 as ``(train, test)``.

    Args:
        name: ``"mnist"``, ``"fashion-mnist"`` or ``"cifar10"`` (case-insensitive;
            ``"fashion_mnist"`` and ``"cifar-10"`` are accepted too).
        root: data root; default ``$RBP_NATIVE_DATA``, else ``~/.cache/rbp_native``.
            See the module docstring for the directories searched under it (for cifar10,
            :mod:`rbp_native._cifar`; there ``root`` may also name a tar of image folders).
        download: if no searched directory has all four files, fetch the missing ones into
            ``<root>/<name>/`` (via torchvision into ``<root>/MNIST/raw/`` resp.
            ``<root>/FashionMNIST/raw/`` when torchvision is importable), verifying MD5s.
            For cifar10: the official python version (``cifar-10-python.tar.gz``, MD5-checked)
            extracted into ``<root>/cifar-10-batches-py/``.
        flatten: ``True`` gives ``x`` of shape ``(N, 784)`` (cifar10: ``(N, 3072)``, channel
            planes R, G, B one after another), ``False`` ``(N, 28, 28)`` (cifar10:
            ``(N, 3, 32, 32)``); the default (None) is ``True`` for MNIST and Fashion-MNIST and
            ``False`` for cifar10.
        normalize: cifar10 only: ``True`` standardises each colour channel of both splits with
            the mean and standard deviation of the training split's pixels (``x / 255``), a pair
            ``(mean, std)`` of three values each uses those; None or False keeps ``x / 255``.

    Returns:
        ``(train, test)``; 60000 / 10000 samples for the official MNIST files, 50000 / 10000
        for CIFAR-10.

    Raises:
        ValueError: unknown ``name``, or ``normalize`` for a dataset other than cifar10 or with
            bad values.
        ImportError: a cifar10 image-folder copy needs decoding and Pillow is not installed.
        FileNotFoundError: the files are not found (and ``download`` is false); the message
            lists every directory searched and how to get the data.
        DatasetError: a file is corrupt (bad magic, dimensions other than 28x28, size not
            matching the header, invalid gzip, image/label count mismatch, label > 9) or a
            download failed its checksum.
        DownloadError: a file could not be downloaded from any mirror.
    """
    canonical = _canonical(name)
    base = data_root(root)
    if canonical == "cifar10":
        from . import _cifar

        return _cifar.load(base, download, flatten=bool(flatten), normalize=normalize)
    if normalize is not None and normalize is not False:
        raise ValueError(f"normalize is implemented for cifar10 (per colour channel), not for {canonical}")
    flatten = True if flatten is None else flatten
    dirs = search_dirs(canonical, base)
    files, notes = _locate(dirs)
    if files is None and download:
        _download(canonical, base)
        files, notes = _locate(dirs)
    if files is None:
        raise _not_found(canonical, base, notes)
    train = _load_split(canonical, "train", files, flatten)
    test = _load_split(canonical, "test", files, flatten)
    return train, test
