"""CIFAR-10 for :func:`rbp_native.datasets.load`: finding, decoding, caching and downloading.

Three layouts are read, all giving the same arrays: ``x`` uint8 ``(N, 3, 32, 32)`` (channels R, G, B;
rows top to bottom) and labels 0..9 in the official class order (:data:`CLASSES`).

* the official python version, a folder ``cifar-10-batches-py/`` (as torchvision downloads it):
  pickled batches ``data_batch_1`` .. ``data_batch_5``, ``test_batch`` and ``batches.meta``. Every
  file's MD5 must equal the official checksum (:data:`PYTHON_MD5`), and the pickles are read by an
  unpickler that builds only dicts, lists, tuples, bytes, str, numbers and the batches' uint8
  arrays: no other class or function named in a file is ever imported or called.
* the official binary version, a folder ``cifar-10-batches-bin/``: ``data_batch_1.bin`` ..
  ``data_batch_5.bin`` and ``test_batch.bin``, records of one label byte and 3072 pixel bytes (a
  32x32 red plane, then green, then blue), and ``batches.meta.txt``, the class names.
* image folders, a folder or a tar file holding ``train/<class>/<image>`` and
  ``test/<class>/<image>`` (optionally under one top folder) with the ten official class names.
  Every image must be 32x32; it is decoded with Pillow (the ``images`` extra) and converted to RGB.
  Within a class the images are taken in the order of their file names.  Files and folders whose
  names start with ``.`` and files next to ``train/`` and ``test/`` (a README) are ignored.

The first load decodes the source and caches the uint8 arrays in an ``.npz`` file, written
atomically; later loads read the cache.  The cache goes beside the data (inside a layout folder,
``<folder>/rbp_native-cache.npz``; next to a tar, ``<tar stem>.rbp_native-cache.npz``) and, where
that folder is not writable or is marked read-only (no write permission bit, which holds even for
root), under ``$XDG_CACHE_HOME/rbp_native/cifar10/`` (default ``~/.cache``); where neither can be
written the data is decoded on every load.  The cache records a fingerprint of the source (the path,
and the name, size and modification time of every file read), so a changed source is decoded again;
a cache that does not match or cannot be read is ignored and rewritten.  The checks of the files
(MD5 checksums included) run when the source is decoded, not when the cache is read.

Searched under the data root ``R``, in order (:func:`candidates`): ``R/cifar-10-batches-py/``,
``R/cifar-10-batches-bin/``, the tar ``R/cifar10-jpeg/cifar10-jpeg.tar`` and the image folders
``R/cifar10-jpeg/``, ``R/cifar10/`` and ``R`` itself; a root that is a file is read as an image tar.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import stat
import tarfile
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_write, atomic_write_npz
from .datasets import Dataset, DatasetError, DownloadError

NAME = "cifar10"

#: Class names, label 0 to 9, in the official order.
CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
CHANNELS, HEIGHT, WIDTH = 3, 32, 32
PIXELS = CHANNELS * HEIGHT * WIDTH
SPLITS = ("train", "test")

PYTHON_DIR = "cifar-10-batches-py"
PYTHON_BATCHES: dict[str, tuple[str, ...]] = {
    "train": tuple(f"data_batch_{k}" for k in range(1, 6)),
    "test": ("test_batch",),
}
PYTHON_META = "batches.meta"
#: Official MD5 checksums of the python version's files (the list torchvision checks).  Module
#: level so that tests can substitute checksums of synthetic files.
PYTHON_MD5: dict[str, str] = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}

BINARY_DIR = "cifar-10-batches-bin"
BINARY_BATCHES: dict[str, tuple[str, ...]] = {
    "train": tuple(f"data_batch_{k}.bin" for k in range(1, 6)),
    "test": ("test_batch.bin",),
}
BINARY_META = "batches.meta.txt"
RECORD_BYTES = 1 + PIXELS

#: The official python-version tarball fetched by ``download=True``, and its MD5.
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
TARBALL = "cifar-10-python.tar.gz"
TARBALL_MD5 = "c58f30108f718f92721af3b95e74349a"

#: Image-folder sources searched under the data root, after the official folders.
IMAGE_TAR = "cifar10-jpeg/cifar10-jpeg.tar"
IMAGE_FOLDERS = ("cifar10-jpeg", "cifar10", ".")

CACHE_NAME = "rbp_native-cache.npz"
# Bump when the cached arrays or the fingerprint change meaning: old caches are then rebuilt.
CACHE_FORMAT = 1

_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
_IMAGE_THREADS = 4


@dataclass(frozen=True)
class Source:
    """A CIFAR-10 copy: its layout (``"python"``, ``"binary"``, ``"folder"`` or ``"tar"``) and path."""

    layout: str
    path: Path

    def describe(self) -> str:
        what = {
            "python": "official python version",
            "binary": "official binary version",
            "folder": "image folders",
            "tar": "image-folder tar",
        }[self.layout]
        return f"{self.path} ({what})"


# ----------------------------------------------------------------------------------------
# Finding the data


def candidates(base: Path) -> list[Source]:
    """The sources looked for under the data root ``base``, in order (or ``base`` itself when it is a
    tar file)."""
    if base.is_file() or base.name.endswith(_TAR_SUFFIXES):
        return [Source("tar", base)]
    found = [
        Source("python", base / PYTHON_DIR),
        Source("binary", base / BINARY_DIR),
        Source("tar", base / IMAGE_TAR),
    ]
    found.extend(Source("folder", base if sub == "." else base / sub) for sub in IMAGE_FOLDERS)
    return found


def _required_files(source: Source) -> list[str]:
    if source.layout == "python":
        return [*PYTHON_BATCHES["train"], *PYTHON_BATCHES["test"], PYTHON_META]
    if source.layout == "binary":
        return [*BINARY_BATCHES["train"], *BINARY_BATCHES["test"], BINARY_META]
    return []


def _probe(source: Source) -> str | None:
    """None when ``source`` is present, else why it is not (for the not-found message)."""
    path = source.path
    if source.layout == "tar":
        return None if path.is_file() else "no such file"
    if not path.is_dir():
        return "directory does not exist"
    if source.layout == "folder":
        absent = [s for s in SPLITS if not (path / s).is_dir()]
        return None if not absent else f"no {' or '.join(a + '/' for a in absent)} folder"
    missing = [f for f in _required_files(source) if not (path / f).is_file()]
    if len(missing) == len(_required_files(source)):
        return "no dataset files"
    return f"incomplete, missing: {', '.join(missing)}" if missing else None


def locate(base: Path) -> tuple[Source | None, list[str]]:
    """The first present source under ``base`` and a note on each one looked at before it."""
    notes: list[str] = []
    for source in candidates(base):
        why = _probe(source)
        if why is None:
            return source, notes
        notes.append(f"  {source.describe()}: {why}")
    return None, notes


def _not_found(base: Path, notes: list[str]) -> FileNotFoundError:
    return FileNotFoundError(
        "cifar10 data not found.\nSearched:\n" + "\n".join(notes) + "\nTo get the data:\n"
        f"  - call load('cifar10', download=True) to fetch the official python version ({URL},\n"
        f"    about 170 MB) into {base / PYTHON_DIR},\n"
        f"  - or put cifar-10-batches-py/ (e.g. from torchvision.datasets.CIFAR10(root, download=True))\n"
        f"    or cifar-10-batches-bin/ in {base},\n"
        f"  - or an image-folder copy (train/<class>/*, test/<class>/*) as {base / 'cifar10'} or a tar\n"
        f"    at {base / IMAGE_TAR},\n"
        f"  - or pass root=... / set RBP_NATIVE_DATA to the directory (or tar file) that holds the data."
    )


# ----------------------------------------------------------------------------------------
# The official python version


class _PickledArray:
    """Stands in for a pickled numpy array: only records the state numpy would restore."""

    state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _PickledDtype:
    """Stands in for a pickled numpy dtype: records its type code (e.g. ``"u1"``)."""

    def __init__(self, code: Any, align: Any = False, copy: Any = False) -> None:
        self.code = code.decode("latin-1") if isinstance(code, bytes) else code

    def __setstate__(self, state: Any) -> None:
        pass  # byte order and flags; a one-byte type has none that matter


def _reconstruct(cls: Any, shape: Any, typecode: Any) -> _PickledArray:
    if cls is not _PickledArray:
        raise pickle.UnpicklingError("_reconstruct called for something other than an ndarray")
    return _PickledArray()


_PICKLE_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _PickledArray,
    ("numpy", "dtype"): _PickledDtype,
}


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR-10 batch with stand-ins for numpy's array constructors and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: a CIFAR-10 batch names only numpy's array constructors"
            ) from None


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _unpickle(path: Path) -> dict[str, Any]:
    data = _read(path)
    expected = PYTHON_MD5[path.name]
    got = _md5(data)
    if got != expected:
        raise DatasetError(
            f"{path}: MD5 checksum mismatch (got {got}, expected the official {expected}): the file is "
            "truncated, corrupt or not the official CIFAR-10 python version"
        )
    try:
        content = _BatchUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:  # noqa: BLE001 - any failure of a hostile or broken pickle is a bad file
        raise DatasetError(f"{path}: not a readable CIFAR-10 python batch ({type(exc).__name__}: {exc})") from exc
    if not isinstance(content, dict):
        raise DatasetError(f"{path}: expected a pickled dict, got {type(content).__name__}")
    return {(k.decode("latin-1") if isinstance(k, bytes) else str(k)): v for k, v in content.items()}


def _array_pixels(path: Path, value: Any) -> np.ndarray:
    """The uint8 (N, 3072) pixels of a batch's ``data`` entry."""
    problem = f"{path}: 'data' is not a uint8 array of shape (N, {PIXELS})"
    if not isinstance(value, _PickledArray) or not isinstance(value.state, tuple) or len(value.state) != 5:
        raise DatasetError(problem)
    _, shape, dtype, fortran, raw = value.state
    if not (isinstance(dtype, _PickledDtype) and dtype.code in ("u1", "uint8")):
        raise DatasetError(problem + f" (dtype {getattr(dtype, 'code', dtype)!r})")
    if not (isinstance(shape, tuple) and len(shape) == 2 and shape[1] == PIXELS and isinstance(shape[0], int)):
        raise DatasetError(problem + f" (shape {shape!r})")
    if isinstance(raw, str):
        raw = raw.encode("latin-1")  # a file unpickled with a text encoding
    if fortran or not isinstance(raw, bytes) or len(raw) != shape[0] * PIXELS:
        raise DatasetError(problem + " (its data does not match its shape)")
    return np.frombuffer(raw, dtype=np.uint8).reshape(shape[0], PIXELS)


def _labels(path: Path, values: Any, count: int) -> np.ndarray:
    if not isinstance(values, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise DatasetError(f"{path}: 'labels' is not a list of integers")
    labels = np.asarray(values, dtype=np.int64)
    _check_labels(path, labels, count)
    return labels


def _check_labels(path: Path, labels: np.ndarray, count: int) -> None:
    if labels.shape != (count,):
        raise DatasetError(f"{path}: {labels.shape[0]} labels for {count} images")
    bad = np.flatnonzero((labels < 0) | (labels >= len(CLASSES)))
    if bad.size:
        raise DatasetError(f"{path}: label {int(labels[bad[0]])} at index {int(bad[0])} is outside 0..9")


def _check_class_names(path: Path, names: Sequence[str]) -> None:
    if tuple(names) != CLASSES:
        raise DatasetError(f"{path}: class names {list(names)} differ from the official {list(CLASSES)}")


def _read_python_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    content = _unpickle(path)
    for key in ("data", "labels"):
        if key not in content:
            raise DatasetError(f"{path}: no {key!r} entry; not a CIFAR-10 python batch")
    pixels = _array_pixels(path, content["data"])
    return pixels.reshape(-1, CHANNELS, HEIGHT, WIDTH), _labels(path, content["labels"], pixels.shape[0])


def _read_python_meta(path: Path) -> None:
    names = _unpickle(path).get("label_names")
    if not isinstance(names, list) or not all(isinstance(n, (bytes, str)) for n in names):
        raise DatasetError(f"{path}: no 'label_names' list; not a CIFAR-10 batches.meta file")
    _check_class_names(path, [n.decode("latin-1") if isinstance(n, bytes) else n for n in names])


# ----------------------------------------------------------------------------------------
# The official binary version


def _read_binary_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    data = _read(path)
    if not data or len(data) % RECORD_BYTES:
        raise DatasetError(
            f"{path}: {len(data)} bytes is not a whole number of {RECORD_BYTES}-byte records (label byte + "
            f"{PIXELS} pixels): truncated or not a CIFAR-10 binary batch"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    _check_labels(path, labels, records.shape[0])
    return records[:, 1:].reshape(-1, CHANNELS, HEIGHT, WIDTH), labels


def _read_binary_meta(path: Path) -> None:
    try:
        text = _read(path).decode("ascii")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not a text file of class names ({exc})") from exc
    _check_class_names(path, [line.strip() for line in text.splitlines() if line.strip()])


# ----------------------------------------------------------------------------------------
# Image folders and tars


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError(
            'decoding CIFAR-10 image files needs Pillow: pip install "rbp-native[images]" (or pip install pillow)'
        ) from exc
    return Image


def _decode_images(items: Sequence[tuple[str, bytes]]) -> np.ndarray:
    """Decode ``(where, encoded bytes)`` pairs into uint8 ``(N, 3, 32, 32)``; ``where`` names the file
    in errors."""
    image_module = _pillow()
    out = np.empty((len(items), CHANNELS, HEIGHT, WIDTH), dtype=np.uint8)

    def decode(index: int) -> None:
        where, data = items[index]
        try:
            with image_module.open(io.BytesIO(data)) as image:
                if image.size != (WIDTH, HEIGHT):
                    raise DatasetError(f"{where}: image is {image.size[0]}x{image.size[1]}, expected 32x32")
                rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
        except DatasetError:
            raise
        except (OSError, ValueError, SyntaxError, image_module.DecompressionBombError) as exc:
            raise DatasetError(f"{where}: cannot decode the image ({type(exc).__name__}: {exc})") from exc
        out[index] = rgb.transpose(2, 0, 1)

    def decode_range(bounds: tuple[int, int]) -> None:
        for index in range(*bounds):
            decode(index)

    chunk = 2048
    ranges = [(start, min(start + chunk, len(items))) for start in range(0, len(items), chunk)]
    workers = max(1, min(_IMAGE_THREADS, os.cpu_count() or 1, len(ranges)))
    if workers == 1:
        for bounds in ranges:
            decode_range(bounds)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(decode_range, ranges):
                pass  # re-raises the first error
    return out


def _image_key(parts: Sequence[str], where: str) -> tuple[str, int, str] | None:
    """(split, label, file name) of an entry at relative path ``parts``; None for entries that are
    ignored; DatasetError, naming the entry as ``where``, for files under train/ or test/ that do not
    fit the layout."""
    if any(p.startswith(".") for p in parts) or len(parts) < 2 or parts[0] not in SPLITS:
        return None
    if len(parts) != 3:
        raise DatasetError(f"{where}: expected {parts[0]}/<class>/<image>, with one of the classes {list(CLASSES)}")
    if parts[1] not in CLASSES:
        raise DatasetError(f"{where}: unknown class folder {parts[1]!r}; the classes are {list(CLASSES)}")
    return parts[0], CLASSES.index(parts[1]), parts[2]


def _assemble(source: Path, entries: list[tuple[tuple[str, int, str], str, bytes]]) -> dict[str, np.ndarray]:
    """Sort (key, where, bytes) entries by split, class and file name; decode; check every class."""
    entries.sort(key=lambda e: e[0])
    arrays: dict[str, np.ndarray] = {}
    for split in SPLITS:
        chosen = [e for e in entries if e[0][0] == split]
        labels = np.asarray([e[0][1] for e in chosen], dtype=np.int64)
        missing = [CLASSES[k] for k in range(len(CLASSES)) if not np.any(labels == k)]
        if missing:
            raise DatasetError(f"{source}: no images in {', '.join(f'{split}/{m}/' for m in missing)}")
        arrays[f"x_{split}"] = _decode_images([(where, data) for _, where, data in chosen])
        arrays[f"y_{split}"] = labels
    return arrays


def _read_folder(root: Path) -> dict[str, np.ndarray]:
    entries = []
    for split in SPLITS:
        for dirpath, dirnames, filenames in os.walk(root / split):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            relative = Path(dirpath).relative_to(root).parts
            for filename in filenames:
                path = Path(dirpath) / filename
                where = str(path)
                key = _image_key((*relative, filename), where)
                if key is not None:
                    entries.append((key, where, _read(path)))
    return _assemble(root, entries)


def _tar_prefix(names: list[str]) -> int:
    """How many leading path components wrap train/ and test/ (0 or 1)."""
    firsts = {n.split("/")[0] for n in names}
    return 1 if len(firsts) == 1 and not firsts & set(SPLITS) else 0


def _check_end_of_archive(tar: tarfile.TarFile, path: Path, members: list[tarfile.TarInfo]) -> None:
    """tarfile ends its member list quietly at a truncated header; an intact archive has a zero
    block after its last member."""
    assert tar.fileobj is not None
    tar.fileobj.seek(tar.offset)
    marker = tar.fileobj.read(tarfile.BLOCKSIZE)
    if len(marker) < tarfile.BLOCKSIZE or marker.strip(b"\0"):
        last = f" after member {members[-1].name}" if members else ""
        raise DatasetError(f"{path}: truncated tar file: the archive ends{last} without its end-of-archive block")


def _read_tar(path: Path) -> dict[str, np.ndarray]:
    entries = []
    seen: set[str] = set()
    try:
        with tarfile.open(path, "r:*") as tar:
            members = tar.getmembers()
            _check_end_of_archive(tar, path, members)
            names = [m.name.removeprefix("./") for m in members]
            skip = _tar_prefix([n for n, m in zip(names, members) if m.isfile()])
            for member, name in zip(members, names):
                if member.isdir():
                    continue
                parts = [p for p in name.split("/") if p][skip:]
                where = f"{path}: member {member.name}"
                key = _image_key(parts, where)
                if key is None:
                    continue
                if not member.isfile():
                    raise DatasetError(f"{path}: member {member.name} is not a regular file")
                if name in seen:
                    raise DatasetError(f"{path}: member {member.name} appears twice")
                seen.add(name)
                handle = tar.extractfile(member)
                assert handle is not None  # a regular file always has data
                entries.append((key, where, handle.read()))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DatasetError(f"{path}: truncated or not a readable tar file ({type(exc).__name__}: {exc})") from exc
    return _assemble(path, entries)


# ----------------------------------------------------------------------------------------
# Decoding any source


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read file: {exc}") from exc


def _read_batches(source: Source) -> dict[str, np.ndarray]:
    reader = _read_python_batch if source.layout == "python" else _read_binary_batch
    batches = PYTHON_BATCHES if source.layout == "python" else BINARY_BATCHES
    if source.layout == "python":
        _read_python_meta(source.path / PYTHON_META)
    else:
        _read_binary_meta(source.path / BINARY_META)
    arrays = {}
    for split, files in batches.items():
        parts = [reader(source.path / f) for f in files]
        arrays[f"x_{split}"] = np.concatenate([p[0] for p in parts])
        arrays[f"y_{split}"] = np.concatenate([p[1] for p in parts])
    return arrays


def decode(source: Source) -> dict[str, np.ndarray]:
    """Read ``source`` into ``x_train``, ``y_train``, ``x_test``, ``y_test`` (uint8 NCHW, int64)."""
    if source.layout in ("python", "binary"):
        return _read_batches(source)
    if source.layout == "folder":
        return _read_folder(source.path)
    return _read_tar(source.path)


# ----------------------------------------------------------------------------------------
# The cache


def _source_files(source: Source) -> Iterator[Path]:
    if source.layout == "tar":
        yield source.path
    elif source.layout == "folder":
        for split in SPLITS:
            for dirpath, dirnames, filenames in os.walk(source.path / split):
                dirnames.sort()
                for filename in sorted(filenames):
                    yield Path(dirpath) / filename
    else:
        for name in _required_files(source):
            yield source.path / name


def fingerprint(source: Source) -> str:
    """A digest of the source's path and of the name, size and modification time of its files."""
    entries = []
    for path in _source_files(source):
        try:
            st = path.stat()
        except OSError as exc:
            raise DatasetError(f"{path}: cannot read file: {exc}") from exc
        entries.append([str(path.relative_to(source.path)) if path != source.path else "", st.st_size, st.st_mtime_ns])
    record = json.dumps([CACHE_FORMAT, source.layout, str(source.path.resolve()), entries])
    return hashlib.sha256(record.encode("utf-8")).hexdigest()


def cache_home() -> Path:
    """``$XDG_CACHE_HOME/rbp_native/cifar10`` (default ``~/.cache/rbp_native/cifar10``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "rbp_native" / NAME


def cache_paths(source: Source) -> list[Path]:
    """Where the cache of ``source`` is looked for and written: beside the data, then the user cache."""
    if source.layout == "tar":
        stem = source.path.name
        for suffix in _TAR_SUFFIXES:
            if stem.endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        beside = source.path.parent / f"{stem}.{CACHE_NAME}"
    else:
        beside = source.path / CACHE_NAME
    digest = hashlib.sha256(str(source.path.resolve()).encode("utf-8")).hexdigest()[:16]
    return [beside, cache_home() / f"{digest}.npz"]


_CACHE_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _read_cache(path: Path, expected: str) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when ``path`` is absent, unreadable, stale or malformed."""
    try:
        # Our own handle: np.load(path) leaks its file when the archive is damaged.
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as archive:
            if str(archive["fingerprint"]) != expected:
                return None
            arrays = {key: archive[key] for key in _CACHE_KEYS}
    except Exception:  # noqa: BLE001 - absent, partial or damaged (OSError, BadZipFile, KeyError...): rebuilt
        return None
    for split in SPLITS:
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if not (
            x.dtype == np.uint8
            and x.ndim == 4
            and x.shape[1:] == (CHANNELS, HEIGHT, WIDTH)
            and y.dtype == np.int64
            and y.shape == (x.shape[0],)
            and (y.size == 0 or (int(y.min()) >= 0 and int(y.max()) < len(CLASSES)))
        ):
            return None
    return arrays


def _marked_writable(directory: Path) -> bool:
    """Whether ``directory`` exists, is writable for this process and has a write permission bit at
    all: a folder marked read-only (``r-x``) is left alone even by root, whom ``os.access`` lets
    write anywhere."""
    try:
        mode = directory.stat().st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)) and os.access(directory, os.W_OK)


def _write_cache(paths: list[Path], digest: str, arrays: dict[str, np.ndarray]) -> Path | None:
    """Write the cache at the first place that takes it (the data's own folder only when it is
    marked writable); the path written, or None if none was."""

    members = {"fingerprint": np.array(digest), **arrays}
    beside, *elsewhere = paths
    for path in ([beside] if _marked_writable(beside.parent) else []) + elsewhere:
        try:
            return atomic_write_npz(path, members)
        except OSError:
            continue  # read-only data folder or full disk: try the next place
    return None


def load_arrays(source: Source) -> tuple[dict[str, np.ndarray], str]:
    """The uint8 arrays of ``source`` from its cache, else decoded (and cached); and where they came
    from (``"cache <path>"``, ``"decoded, cached at <path>"`` or ``"decoded, not cached"``)."""
    digest = fingerprint(source)
    paths = cache_paths(source)
    for path in paths:
        arrays = _read_cache(path, digest)
        if arrays is not None:
            return arrays, f"cache {path}"
    arrays = decode(source)
    written = _write_cache(paths, digest, arrays)
    return arrays, f"decoded, cached at {written}" if written else "decoded, not cached"


# ----------------------------------------------------------------------------------------
# Downloading


def download(base: Path) -> None:
    """Fetch the official python tarball into ``base``, check its MD5, extract ``cifar-10-batches-py/``
    (each file atomically) and delete the tarball."""
    import http.client

    from .datasets import _fetch

    base.mkdir(parents=True, exist_ok=True)
    tarball = base / TARBALL
    try:
        _fetch(URL, tarball, TARBALL_MD5)
    except DatasetError as exc:
        raise DatasetError(f"could not download cifar10: {exc}") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise DownloadError(
            f"could not download cifar10 from {URL}: {type(exc).__name__}: {exc}\n"
            f"Without network access, fetch {TARBALL} elsewhere and extract it in {base} "
            f"(it holds {PYTHON_DIR}/)."
        ) from exc
    _extract_python_batches(tarball, base / PYTHON_DIR)
    tarball.unlink()


def _write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a function of its own: a lambda in the extraction loop would
    close over the loop's variable)."""
    atomic_write(path, lambda out: out.write(data))


def _extract_python_batches(tarball: Path, target: Path) -> None:
    wanted = {f"{PYTHON_DIR}/{name}": name for name in PYTHON_MD5}
    written = set()
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            for member in tar:
                name = wanted.get(member.name.removeprefix("./"))
                if name is None or not member.isfile():
                    continue  # readme.html, folders; nothing is extracted by the member's own path
                handle = tar.extractfile(member)
                assert handle is not None
                _write_bytes(target / name, handle.read())
                written.add(name)
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{tarball}: truncated or not a readable tar.gz file ({exc})") from exc
    missing = sorted(set(PYTHON_MD5) - written)
    if missing:
        raise DatasetError(f"{tarball}: no {', '.join(f'{PYTHON_DIR}/{m}' for m in missing)} in the archive")


# ----------------------------------------------------------------------------------------
# Normalisation and the entry point


def channel_stats(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation (population, float64) of ``pixels / 255`` for uint8
    ``(N, C, H, W)`` pixels.  The sums of the pixel values and of their squares are integers below
    2**53, so float64 accumulates them exactly; blocks keep the float64 copies small."""
    channels = pixels.shape[1]
    sums, squares = np.zeros(channels), np.zeros(channels)
    for start in range(0, pixels.shape[0], 1024):
        block = pixels[start : start + 1024].astype(np.float64)
        sums += block.sum(axis=(0, 2, 3))
        squares += np.einsum("nchw,nchw->c", block, block)
    count = pixels.shape[0] * pixels.shape[2] * pixels.shape[3]
    mean = sums / count
    return mean / 255, np.sqrt(np.maximum(squares / count - mean**2, 0.0)) / 255


def _normalization(normalize: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """The explicit (mean, std) of ``normalize``, validated; None for None/False (and True, whose
    statistics come from the training split)."""
    if normalize is None or normalize is False or normalize is True:
        return None
    try:
        mean, std = (np.asarray(v, dtype=np.float64) for v in normalize)
    except (TypeError, ValueError):
        raise ValueError(
            f"normalize must be True, False/None or a pair (mean, std) of {CHANNELS} values each, got {normalize!r}"
        ) from None
    if mean.shape != (CHANNELS,) or std.shape != (CHANNELS,):
        raise ValueError(f"normalize=(mean, std) needs {CHANNELS} values each, got shapes {mean.shape} and {std.shape}")
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
        raise ValueError(
            f"normalize=(mean, std) needs finite means and positive standard deviations, got {normalize!r}"
        )
    return mean, std


def _unit_interval(pixels: np.ndarray) -> np.ndarray:
    """pixels / 255 in float32, as for MNIST (np.divide(..., dtype=float32) on uint8 is many times
    slower: it casts in small buffers)."""
    x = pixels.astype(np.float32)
    x /= np.float32(255)
    return x


def _standardize(x: np.ndarray, stats: tuple[np.ndarray, np.ndarray]) -> None:
    """x = (x - mean) / std per channel, in place, in float32."""
    mean, std = stats
    x -= mean.astype(np.float32).reshape(1, CHANNELS, 1, 1)
    x /= std.astype(np.float32).reshape(1, CHANNELS, 1, 1)


def load(base: Path, download_missing: bool, *, flatten: bool, normalize: Any) -> tuple[Dataset, Dataset]:
    """:func:`rbp_native.datasets.load` for ``"cifar10"``; ``base`` is the resolved data root."""
    source, notes = locate(base)
    if source is None and download_missing and not (base.is_file() or base.name.endswith(_TAR_SUFFIXES)):
        download(base)
        source, notes = locate(base)
    if source is None:
        raise _not_found(base, notes)
    stats_given = _normalization(normalize)  # bad values fail before any decoding
    arrays, _ = load_arrays(source)
    x_train, x_test = _unit_interval(arrays["x_train"]), _unit_interval(arrays["x_test"])
    stats = channel_stats(arrays["x_train"]) if normalize is True else stats_given
    if stats is not None:
        _standardize(x_train, stats)
        _standardize(x_test, stats)
    datasets = []
    for split, x in (("train", x_train), ("test", x_test)):
        if flatten:
            x = x.reshape(x.shape[0], PIXELS)
        datasets.append(Dataset(x=x, y=arrays[f"y_{split}"], name=NAME, classes=CLASSES, split=split))
    return datasets[0], datasets[1]
