"""Layer descriptions for :class:`rbp_native.Sequential`: validated on construction, with ``config()``.

A layer object only describes a layer; the network builds the native layers from the list. Shapes
are per example, NCHW: ``(channels, height, width)``. Padding ``"same"`` pads as TensorFlow/Keras do
for the given stride (output ``ceil(H / stride)``, the odd padding row/column at the bottom/right);
``"valid"`` has none (output ``floor((H - k) / stride) + 1``). docs/conv.md defines the conventions.
"""

from __future__ import annotations

import numbers
from typing import Any, Sequence, Union

from ._native import _core

# The names, from the core's tables (_core.choices()).
ACTIVATIONS: tuple[str, ...] = _core.choices()["activation"]
OUTPUTS: tuple[str, ...] = _core.choices()["output"]
PADDINGS: tuple[str, ...] = _core.choices()["padding"]

Size2 = Union[int, Sequence[int]]


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _pair(name: str, value: Size2) -> tuple[int, int]:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        n = _positive(name, value)
        return n, n
    # An int still here is a bool; str and bytes have a length but hold no integers.
    if isinstance(value, (int, str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ValueError(f"{name} must be a positive integer or a pair of them, got {value!r}")
    return _positive(name, value[0]), _positive(name, value[1])


def _activation(value: str) -> str:
    if value not in ACTIVATIONS + OUTPUTS:
        raise ValueError(f"unknown activation {value!r}; choose one of {', '.join(ACTIVATIONS + OUTPUTS[:1])}")
    return value


def _padding(value: str) -> str:
    if value not in PADDINGS:
        # worded as the core words its options' bad names
        raise ValueError(f"unknown padding {str(value)!r}; choose one of {', '.join(PADDINGS)}")
    return value


def _window(size: int, kernel: int, stride: int, padding: str) -> int:
    """Output length of a sliding window (see the module docstring); 0 when it does not fit."""
    if padding == "same":
        return -(-size // stride)
    return 0 if size < kernel else (size - kernel) // stride + 1


class Layer:
    """Base of the layer descriptions."""

    kind = ""

    def config(self) -> dict[str, Any]:
        raise NotImplementedError

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "type")
        return f"{type(self).__name__}({args})"


class Dense(Layer):
    """Fully connected layer ``S = O_prev W^T + b`` with ``W`` of shape ``(units, inputs)``; a spatial
    input is read flattened in C, H, W order. ``activation``: a hidden transfer function (tanh,
    logistic, relu, linear) or, for the last layer, the output (softmax, logistic, linear)."""

    kind = "dense"

    def __init__(self, units: int, activation: str = "tanh") -> None:
        self.units = _positive("units", units)
        self.activation = _activation(activation)

    def config(self) -> dict[str, Any]:
        return {"type": "Dense", "units": self.units, "activation": self.activation}

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (self.units,)


class Conv2D(Layer):
    """2-D convolution (a cross-correlation, as PyTorch's ``conv2d``) with ``filters`` kernels of
    ``kernel_size``; its weight has PyTorch's shape ``(filters, in_channels, kh, kw)``."""

    kind = "conv2d"

    def __init__(
        self, filters: int, kernel_size: Size2, stride: int = 1, padding: str = "same", activation: str = "tanh"
    ) -> None:
        self.filters = _positive("filters", filters)
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.stride = _positive("stride", stride)
        self.padding = _padding(padding)
        self.activation = _activation(activation)

    def config(self) -> dict[str, Any]:
        return {
            "type": "Conv2D",
            "filters": self.filters,
            "kernel_size": list(self.kernel_size),
            "stride": self.stride,
            "padding": self.padding,
            "activation": self.activation,
        }

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != 3:
            raise ValueError(f"Conv2D needs a (channels, height, width) input, got shape {input_shape}")
        _, h, w = input_shape
        oh = _window(h, self.kernel_size[0], self.stride, self.padding)
        ow = _window(w, self.kernel_size[1], self.stride, self.padding)
        if oh == 0 or ow == 0:
            raise ValueError(
                f"Conv2D kernel {self.kernel_size} does not fit the input {input_shape} with padding {self.padding!r}"
            )
        return (self.filters, oh, ow)


class MaxPool2D(Layer):
    """Max-pooling per channel over ``pool_size`` windows moved by ``stride`` along both axes
    (default: the pool's height); windows may overlap. Padding positions never win; among equal maxima the first in
    row-major window order wins, and the backward pass routes each output's signal to its winner."""

    kind = "max_pool2d"

    def __init__(self, pool_size: Size2, stride: int | None = None, padding: str = "valid") -> None:
        self.pool_size = _pair("pool_size", pool_size)
        self.stride = self.pool_size[0] if stride is None else _positive("stride", stride)
        self.padding = _padding(padding)

    def config(self) -> dict[str, Any]:
        return {"type": "MaxPool2D", "pool_size": list(self.pool_size), "stride": self.stride, "padding": self.padding}

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != 3:
            raise ValueError(f"MaxPool2D needs a (channels, height, width) input, got shape {input_shape}")
        c, h, w = input_shape
        oh = _window(h, self.pool_size[0], self.stride, self.padding)
        ow = _window(w, self.pool_size[1], self.stride, self.padding)
        if oh == 0 or ow == 0:
            raise ValueError(
                f"MaxPool2D window {self.pool_size} does not fit the input {input_shape} with padding {self.padding!r}"
            )
        return (c, oh, ow)


class Flatten(Layer):
    """Reshape ``(C, H, W)`` to ``C*H*W`` in C, H, W order. Batches are stored flattened in that order
    already, so it computes nothing (a Dense layer after a spatial one flattens implicitly)."""

    kind = "flatten"

    def config(self) -> dict[str, Any]:
        return {"type": "Flatten"}

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        size = 1
        for n in input_shape:
            size *= n
        return (size,)


_TYPES = {"Dense": Dense, "Conv2D": Conv2D, "MaxPool2D": MaxPool2D, "Flatten": Flatten}


def from_config(config: dict[str, Any]) -> Layer:
    """The layer that ``config()`` describes."""
    arguments = dict(config)
    kind = arguments.pop("type", None)
    if kind not in _TYPES:
        raise ValueError(f"unknown layer type {kind!r}; choose one of {', '.join(_TYPES)}")
    return _TYPES[kind](**arguments)
