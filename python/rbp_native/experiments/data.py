"""Data sets for experiments: MNIST, Fashion-MNIST and CIFAR-10 through :func:`rbp_native.datasets.load`,
and a small synthetic set for tests and quick checks. Each process loads a data set once.

Inputs are flattened (``(N, C*H*W)`` in C, H, W order), which an MLP needs and a
:class:`~rbp_native.Sequential` with an image ``input_shape`` reads as images; pixels are ``x / 255``
(CIFAR-10 is not standardised per channel: the paper does not say it was)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..datasets import Dataset

_CACHE: dict[str, tuple[Dataset, Dataset]] = {}


def synthetic(
    train: int = 1000, test: int = 200, features: int = 784, classes: int = 10, noise: float = 0.3, seed: int = 0
) -> tuple[Dataset, Dataset]:
    """Gaussian clusters in ``[0, 1]^features``: a centre per class drawn uniformly, examples are the
    centre plus N(0, noise^2) noise, clipped to [0, 1]; labels are balanced-at-random. The same
    arguments give the same arrays."""
    rng = np.random.default_rng(seed)
    centres = rng.random((classes, features))
    names = tuple(str(c) for c in range(classes))

    def draw(n: int, split: str) -> Dataset:
        y = rng.integers(0, classes, size=n)
        x = np.clip(centres[y] + noise * rng.standard_normal((n, features)), 0.0, 1.0).astype(np.float32)
        return Dataset(x=x, y=y.astype(np.int64), name="synthetic", classes=names, split=split)

    return draw(train, "train"), draw(test, "test")


def load_data(spec: dict[str, Any], root: str | None = None, download: bool = False) -> tuple[Dataset, Dataset]:
    """``(train, test)`` for a dataset spec (``Experiment.dataset_spec()``), cached per process."""
    key = json.dumps([spec, root], sort_keys=True)
    if key not in _CACHE:
        if spec["name"] == "synthetic":
            train, test = synthetic(**spec["synthetic"])
        else:
            from .. import datasets

            train, test = datasets.load(spec["name"], root=root, download=download, flatten=True)
        take = balanced_subset if spec.get("subset") == "balanced" else first
        if spec.get("limit") is not None and spec["limit"] < len(train):
            train = take(train, spec["limit"])
        if spec.get("test_limit") is not None and spec["test_limit"] < len(test):
            test = take(test, spec["test_limit"])
        _CACHE[key] = (train, test)
    return _CACHE[key]


def describe_source(spec: dict[str, Any], root: str | None = None) -> str | None:
    """Which copy of CIFAR-10 a run reads (its path and layout: an official version, or image folders
    such as a JPEG re-encoded copy, whose pixels differ from the official ones); None for the other
    data sets, whose files are checked against the official checksums."""
    if spec["name"] != "cifar10":
        return None
    from .. import _cifar, datasets

    source, _ = _cifar.locate(datasets.data_root(root))
    return source.describe() if source is not None else None


def first(dataset: Dataset, n: int) -> Dataset:
    """The first `n` examples (MNIST and Fashion-MNIST, whose files are in no class order)."""
    return dataset.subset(n)


def balanced_subset(dataset: Dataset, n: int) -> Dataset:
    """`n` examples taken from the classes in turn, each class's in file order: the first of class 0,
    the first of class 1, ..., the second of class 0, ... (the first ``n % classes`` classes get one more
    where `n` does not divide), kept in file order. CIFAR-10 copies may be sorted by class (the image
    folders are), where the first `n` examples would hold one class only."""
    y = dataset.y
    rank = np.empty(len(y), dtype=np.int64)  # position of each example within its class
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        rank[members] = np.arange(len(members))
    chosen = np.lexsort((y, rank))[:n]  # by rank, then by label
    return dataset.take(np.sort(chosen))
