"""Arrays for the trainer from any torchvision (or torch-style) dataset: ``datasets.from_torchvision``."""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .datasets import Dataset


def _sample_array(image: Any, index: int) -> np.ndarray:
    """One input as a float32 array: PIL images become (channels, height, width) with values
    pixel / 255; tensors and arrays keep their shape, uint8 ones are divided by 255."""
    if type(image).__module__.startswith("PIL."):
        array = np.asarray(image)
        if array.dtype == np.bool_:
            array = array.astype(np.uint8) * np.uint8(255)
        if array.dtype != np.uint8:
            raise TypeError(
                f"sample {index}: PIL image of mode {getattr(image, 'mode', '?')!r} is not 8-bit; "
                "convert it (e.g. transform=ToTensor()) first"
            )
        array = array[np.newaxis] if array.ndim == 2 else array.transpose(2, 0, 1)
    else:
        if hasattr(image, "detach") and hasattr(image, "numpy"):  # a torch tensor
            image = image.detach().cpu().numpy()
        array = np.asarray(image)
        if array.dtype == np.object_ or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
            raise TypeError(f"sample {index}: input of type {type(image).__name__} is not an image, tensor or array")
    converted = array.astype(np.float32)
    if array.dtype == np.uint8:
        converted /= np.float32(255)
    return converted


def _label(target: Any, index: int) -> int:
    if hasattr(target, "item") and getattr(target, "ndim", None) == 0:  # numpy scalar, 0-d tensor
        target = target.item()
    if isinstance(target, bool) or not isinstance(target, numbers.Integral):
        raise TypeError(f"sample {index}: target {target!r} is not an integer class label")
    return int(target)


def from_torchvision(dataset: Any, *, flatten: bool = False) -> Dataset:
    """Turn a torchvision dataset (anything with ``len()`` and ``dataset[i] -> (input, target)``)
    into a :class:`~rbp_native.datasets.Dataset` for the trainer.

    Every sample is read through ``dataset[i]``, so the dataset's own ``transform`` and
    ``target_transform`` apply.  Inputs are converted as follows: a PIL image (torchvision's
    datasets without a transform) becomes ``(channels, height, width)`` with values ``pixel / 255``,
    like ``transforms.ToTensor()``; a tensor or numpy array keeps its shape, and is divided by 255
    when its dtype is uint8.  All inputs must have the same shape.  Targets must be integer class
    labels (int, numpy integer or a 0-d tensor).

    Args:
        dataset: e.g. ``torchvision.datasets.CIFAR10(root, train=True)``.
        flatten: reshape ``x`` to ``(N, features)`` (for an MLP).

    Returns:
        A Dataset with float32 ``x`` of shape ``(N, *input_shape)``, int64 ``y``, ``classes`` from
        ``dataset.classes`` when it has one name per label (else ``"0"``, ``"1"``, ...), ``name``
        the dataset's class name in lower case, and ``split`` ``"train"``/``"test"`` from
        ``dataset.train`` (or ``dataset.split``) where that says so.

    Raises:
        ValueError: the dataset is empty, inputs differ in shape, or an input is not finite.
        TypeError: an input or a target cannot be converted.
    """
    from .datasets import Dataset

    count = len(dataset)
    if count == 0:
        raise ValueError(f"{type(dataset).__name__} is empty")
    first = None
    x: np.ndarray | None = None
    y = np.empty(count, dtype=np.int64)
    for index in range(count):
        image, target = dataset[index]
        array = _sample_array(image, index)
        if x is None:
            first = array.shape
            x = np.empty((count, *first), dtype=np.float32)
        elif array.shape != first:
            raise ValueError(f"sample {index} has shape {array.shape}, sample 0 has {first}: inputs must share a shape")
        x[index] = array
        y[index] = _label(target, index)
    assert x is not None
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{type(dataset).__name__}: inputs contain NaN or infinity")
    if y.min() < 0:
        raise ValueError(f"{type(dataset).__name__}: negative class label {int(y.min())}")
    names = getattr(dataset, "classes", None)
    if isinstance(names, (list, tuple)) and len(names) > int(y.max()):
        classes = tuple(str(c) for c in names)
    else:
        classes = tuple(str(k) for k in range(int(y.max()) + 1))
    train = getattr(dataset, "train", None)
    split = getattr(dataset, "split", None)
    if isinstance(train, bool):
        split_name = "train" if train else "test"
    else:
        split_name = split if split in ("train", "test") else ""
    if flatten:
        x = x.reshape(count, -1)
    return Dataset(x=x, y=y, name=type(dataset).__name__.lower(), classes=classes, split=split_name)
