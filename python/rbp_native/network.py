"""Feedforward networks backed by the native core: :class:`Sequential` (dense, convolution and
max-pooling layers) and :class:`MLP`, a Sequential of dense layers A[N0, ..., NL]."""

from __future__ import annotations

import ast
import math
import numbers
import os
from collections.abc import Iterable
from typing import Any, Sequence, Union

import numpy as np

from . import layers as _layers
from ._arrays import as_flag, as_inputs, as_integer, finite_as, parse_dtype
from ._io import atomic_write_npz
from ._native import _core
from .layers import ACTIVATIONS, OUTPUTS

# The names of the network's options, from the core's tables (_core.choices()), which also check them.
INITS: tuple[str, ...] = _core.choices()["init"]

Connectivity = Union[float, Sequence[float], None]

# Widths beyond this are a typo, not a network: a 2^31-wide layer would ask for exabytes.
MAX_WIDTH = 2**31 - 1


def _densities(connectivity: Connectivity, layers: int) -> list[float]:
    """One connection density per weight layer from ``connectivity`` (None: all dense)."""
    if connectivity is None:
        return [1.0] * layers
    values: list[object]  # checked one by one below: callers pass anything
    if isinstance(connectivity, numbers.Real) and not isinstance(connectivity, bool):
        values = [connectivity] * layers
    elif (
        isinstance(connectivity, (str, bytes, bool))
        or not isinstance(connectivity, Iterable)
        or not hasattr(connectivity, "__len__")
    ):
        raise TypeError(
            f"connectivity must be a density in (0, 1] or a list of {layers} densities, got {connectivity!r}"
        )
    else:
        values = list(connectivity)
        if len(values) != layers:
            raise ValueError(f"connectivity needs one density per weight layer ({layers}), got {len(values)}")
    densities = []
    for h, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"connectivity of W^{h + 1} must be a number in (0, 1], got {value!r}")
        p = float(value)
        if p == 0.0:
            raise ValueError(
                f"connectivity of W^{h + 1} is 0: a layer with no connections passes no signal; use a density in (0, 1]"
            )
        if not (math.isfinite(p) and 0.0 < p <= 1.0):
            raise ValueError(f"connectivity of W^{h + 1} must lie in (0, 1], got {p}")
        densities.append(p)
    return densities


def _stages(layers: Sequence[Any], input_shape: tuple[int, ...]) -> tuple[list[dict[str, Any]], str, str]:
    """The native core's stage descriptions of a layer list, its hidden activation and its output.

    A stage is one weighted layer (Dense or Conv2D) and the MaxPool2D layers that follow it."""
    stages: list[dict[str, Any]] = []
    activations: list[str] = []
    shape = input_shape
    for i, layer in enumerate(layers):
        where = f"layers[{i}] ({type(layer).__name__})"
        try:
            next_shape = layer.output_shape(shape)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
        if isinstance(layer, (_layers.Dense, _layers.Conv2D)):
            stage: dict[str, Any] = {"kind": layer.kind, "pools": []}
            if isinstance(layer, _layers.Dense):
                stage["units"] = layer.units
            else:
                stage.update(
                    filters=layer.filters,
                    kernel_h=layer.kernel_size[0],
                    kernel_w=layer.kernel_size[1],
                    stride=layer.stride,
                    padding=layer.padding,
                )
            stages.append(stage)
            activations.append(layer.activation)
        elif isinstance(layer, _layers.MaxPool2D):
            if not stages or stages[-1]["kind"] != "conv2d" or len(shape) != 3:
                raise ValueError(f"{where}: max-pooling must follow a Conv2D layer (or another MaxPool2D after one)")
            stages[-1]["pools"].append(
                {
                    "size_h": layer.pool_size[0],
                    "size_w": layer.pool_size[1],
                    "stride": layer.stride,
                    "padding": layer.padding,
                }
            )
        elif not isinstance(layer, _layers.Flatten):
            raise TypeError(f"{where} is not a layer of rbp_native.layers")
        shape = next_shape
    if not stages:
        raise ValueError("a network needs at least one Dense or Conv2D layer")
    if stages[-1]["pools"] or not isinstance(layers[-1], (_layers.Dense, _layers.Conv2D)):
        raise ValueError("the last layer must be the output layer (Dense or Conv2D), with nothing after it")
    output = activations[-1]
    if output not in OUTPUTS:
        raise ValueError(f"the output layer's activation must be one of {', '.join(OUTPUTS)}, got {output!r}")
    hidden = set(activations[:-1])
    for h, activation in enumerate(activations[:-1]):
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"hidden layer {h + 1}'s activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}"
            )
    if len(hidden) > 1:
        raise ValueError(
            f"hidden layers with different activations ({', '.join(sorted(hidden))}) are not "
            "supported yet: give every hidden layer the same one"
        )
    return stages, (activations[0] if len(activations) > 1 else "tanh"), output


class Sequential:
    """A feedforward network built from a list of layers (:mod:`rbp_native.layers`).

    >>> import rbp_native as rbp
    >>> net = rbp.Sequential([
    ...     rbp.layers.Conv2D(64, 5, stride=1, padding="same", activation="tanh"),
    ...     rbp.layers.MaxPool2D(3, stride=2, padding="same"),
    ...     rbp.layers.Flatten(),
    ...     rbp.layers.Dense(10, activation="softmax"),
    ... ], input_shape=(3, 32, 32), seed=0)

    Layer h (a Dense or Conv2D layer, numbered 1..L as in the paper) with its activation and the
    MaxPool2D layers after it is stage h: ``S^h`` is its weighted layer's output, ``O^h`` the stage's
    (pooled) output. Inputs are ``(N, C, H, W)`` arrays or the same flattened to ``(N, C*H*W)``.
    ``weights[h]`` is ``(n_out, n_in)`` for a dense layer and ``(out_channels, in_channels, kh, kw)``
    (PyTorch's layout) for a convolution; pooling and flattening have no weights.

    Parameters
    ----------
    layers:
        The layers, in order; the last is the output layer (activation softmax, logistic or linear:
        each paired with its loss so that the top error is ``T - O``). Hidden layers share one
        activation (tanh, logistic, relu or linear). Layer configs (``layer.config()``) are accepted.
    input_shape:
        Shape of one example: ``(channels, height, width)``, or ``(n,)`` for a flat input.
    dtype, seed, init, bias:
        As for :class:`MLP` (``init`` fans of a convolution: ``in_channels*kh*kw`` and
        ``out_channels*kh*kw``, as in Keras).
    """

    def __init__(
        self,
        layers: Sequence[Any],
        input_shape: Sequence[int],
        dtype: Any = "float32",
        seed: int = 0,
        init: str = "glorot_normal",
        bias: bool = True,
    ) -> None:
        layer_list = [_layers.from_config(layer) if isinstance(layer, dict) else layer for layer in layers]
        shape = tuple(int(n) for n in input_shape)
        if len(shape) not in (1, 3) or any(n <= 0 for n in shape):
            raise ValueError(
                f"input_shape must be (channels, height, width) or (features,) with positive sizes, "
                f"got {tuple(input_shape)}"
            )
        stages, activation, output = _stages(layer_list, shape)
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
        if int(seed) < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        self.dtype = parse_dtype(dtype)
        self.seed = int(seed)
        self.layers: list[_layers.Layer] = layer_list
        self.input_shape = shape
        core_class = _core.Network32 if self.dtype == np.float32 else _core.Network64
        native_shape = list(shape) if len(shape) == 3 else [shape[0], 1, 1]
        self._core = core_class(native_shape, stages, activation, output, bool(bias), init, self.seed)
        self._describe_weights()

    def _describe_weights(self) -> None:
        """The public shape of every weight (a convolution's 4-D kernel)."""
        shapes: list[tuple[int, ...]] = []
        weighted = [layer for layer in self.layers if isinstance(layer, (_layers.Dense, _layers.Conv2D))]
        in_channels = self.input_shape[0]
        for h, layer in enumerate(weighted):
            if isinstance(layer, _layers.Conv2D):
                shapes.append((layer.filters, in_channels, *layer.kernel_size))
                in_channels = layer.filters
            else:
                shapes.append((self._core.signal_sizes[h], self._core.sizes[h]))
        self._weight_shapes = shapes

    # -- description ---------------------------------------------------------------------------
    @property
    def sizes(self) -> list[int]:
        """Sizes of ``O^0 ... O^L`` per example (the input and every stage's pooled output, flattened)."""
        return list(self._core.sizes)

    @property
    def activation(self) -> str:
        """The hidden layers' transfer function."""
        return self._core.activation

    @property
    def output(self) -> str:
        return self._core.output

    @property
    def bias(self) -> bool:
        return self._core.bias

    @property
    def init(self) -> str:
        return self._core.init

    @property
    def num_layers(self) -> int:
        """Number of weight layers L."""
        return self._core.num_layers

    @property
    def parameter_count(self) -> int:
        """Trainable parameters: the stored connections (all of ``W^h`` for a dense layer) and biases."""
        return self._core.parameter_count

    def config(self) -> dict[str, Any]:
        """The constructor arguments, for saving and reproducing the network."""
        return {
            "layers": [layer.config() for layer in self.layers],
            "input_shape": list(self.input_shape),
            "dtype": self.dtype.name,
            "seed": self.seed,
            "init": self.init,
            "bias": self.bias,
        }

    def __repr__(self) -> str:
        inner = ", ".join(repr(layer) for layer in self.layers)
        return f"Sequential([{inner}], input_shape={self.input_shape!r}, dtype={self.dtype.name!r})"

    # -- parameters ----------------------------------------------------------------------------
    @property
    def weights(self) -> list[np.ndarray]:
        """Copies of ``W^1 ... W^L``: ``(n_h, n_{h-1})`` for dense layers (zeros off a sparse layer's
        mask), ``(out_channels, in_channels, kh, kw)`` for convolutions."""
        return [self._core.get_weight(h).reshape(self._weight_shapes[h]) for h in range(self.num_layers)]

    @property
    def biases(self) -> list[np.ndarray]:
        """Copies of the biases ``b^1 ... b^L`` (empty list when the network has none)."""
        if not self.bias:
            return []
        biases = []
        for h in range(self.num_layers):
            bias = self._core.get_bias(h)
            assert bias is not None, "a network with biases has one in every weighted layer"
            biases.append(bias)
        return biases

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Replace every weight (shapes must match; values must be finite; a sparse layer's matrix
        must be zero off its connectivity mask)."""
        if len(weights) != self.num_layers:
            raise ValueError(f"weights: expected {self.num_layers} weight matrices, got {len(weights)}")
        arrays = [self._parameter(w, f"weights[{h}]") for h, w in enumerate(weights)]
        for h, w in enumerate(arrays):
            expected = self._weight_shapes[h]
            if w.shape != expected:
                raise ValueError(f"weights[{h}] must have shape {expected}, got {w.shape}")
            mask = self._core.get_mask(h)
            if mask is not None:
                outside = np.argwhere((w != 0) & ~mask)
                if len(outside):
                    i, j = (int(v) for v in outside[0])
                    raise ValueError(
                        f"weights[{h}] has {len(outside)} non-zero entr{'y' if len(outside) == 1 else 'ies'} "
                        f"outside the layer's connectivity mask (first at ({i}, {j}))"
                    )
        for h, w in enumerate(arrays):
            self._core.set_weight(h, w.reshape(w.shape[0], -1))

    def set_biases(self, biases: Sequence[Any]) -> None:
        """Replace every bias vector (shapes must match; values must be finite)."""
        if not self.bias:
            raise ValueError("biases: this network was built with bias=False")
        if len(biases) != self.num_layers:
            raise ValueError(f"biases: expected {self.num_layers} bias vectors, got {len(biases)}")
        arrays = [self._parameter(b, f"biases[{h}]") for h, b in enumerate(biases)]
        for h, b in enumerate(arrays):
            units = self._weight_shapes[h][0]
            if b.shape != (units,):
                raise ValueError(f"biases[{h}] must have shape ({units},), got {b.shape}")
        for h, b in enumerate(arrays):
            self._core.set_bias(h, b)

    def _parameter(self, value: Any, name: str) -> np.ndarray:
        array = np.asarray(value)
        if array.dtype.kind not in "fiu":
            raise TypeError(f"{name} must be numeric, got dtype {array.dtype}")
        return finite_as(array, self.dtype, name)

    def _as_inputs(self, x: Any, name: str = "x") -> np.ndarray:
        """Inputs as a C-contiguous (N, C*H*W) array of the network's dtype; (N, C, H, W) is flattened."""
        array = np.asarray(x)
        if len(self.input_shape) == 3 and array.ndim == 4:
            if array.shape[1:] != self.input_shape:
                raise ValueError(
                    f"{name} has examples of shape {array.shape[1:]}, the network expects {self.input_shape}"
                )
            array = array.reshape(array.shape[0], -1)
        return as_inputs(array, self.dtype, self.sizes[0], name)

    # -- inference -----------------------------------------------------------------------------
    def forward(self, x: Any) -> np.ndarray:
        """Output activations ``O^L`` for inputs of shape ``(N, N0)`` (or ``(N, C, H, W)``)."""
        return self._core.forward(self._as_inputs(x))

    def predict(self, x: Any) -> np.ndarray:
        """Predicted classes (int64): the argmax of the output, or ``O >= 0.5`` for a single output."""
        out = self.forward(x)
        if out.shape[1] == 1:
            return (out[:, 0] >= 0.5).astype(np.int64)
        return np.argmax(out, axis=1).astype(np.int64)

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write configuration and parameters to an ``.npz`` file, atomically."""
        arrays: dict[str, np.ndarray] = {f"W{h + 1}": w for h, w in enumerate(self.weights)}
        arrays.update({f"b{h + 1}": b for h, b in enumerate(self.biases)})
        arrays["config"] = np.array(repr(self.config()))
        atomic_write_npz(path, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "Sequential":
        """Rebuild a network written by :meth:`save` (an :class:`MLP` file gives an MLP)."""
        with np.load(path, allow_pickle=False) as data:
            config = ast.literal_eval(str(data["config"]))
            net: Sequential = Sequential(**config) if "layers" in config else MLP(**config)
            if not isinstance(net, cls):
                raise ValueError(f"{os.fspath(path)} holds a {type(net).__name__}, not an {cls.__name__}")
            net.set_weights([data[f"W{h + 1}"] for h in range(net.num_layers)])
            if net.bias:
                net.set_biases([data[f"b{h + 1}"] for h in range(net.num_layers)])
        return net


class MLP(Sequential):
    """A fully connected network with weights ``W^h`` of shape ``(n_h, n_{h-1})`` as in the paper: a
    :class:`Sequential` of :class:`~rbp_native.layers.Dense` layers on a flat input (the same native
    network), described by its widths.

    Parameters
    ----------
    sizes:
        Layer widths ``[N0, N1, ..., NL]``: input, hidden layers, output.
    activation:
        Hidden transfer function: ``"tanh"`` (default), ``"logistic"``, ``"relu"`` or ``"linear"``.
    output:
        Output unit and its loss, paired so that the top error is exactly ``T - O``:
        ``"softmax"`` + cross-entropy (default), ``"logistic"`` + binary cross-entropy,
        ``"linear"`` + squared error (``0.5 * sum (T - O)^2``).
    dtype:
        ``"float32"`` (default) or ``"float64"``.
    seed:
        Seed of the initialisation stream (derived from it under the name ``"init"``).
    bias:
        Whether layers have biases (initialised to zero).
    init:
        Forward initialisation: ``"glorot_normal"`` (the paper's choice: N(0, 2/(fan_in+fan_out)),
        not truncated), ``"glorot_uniform"``, ``"he_normal"`` or ``"lecun_normal"``.
    connectivity:
        Sparse forward connectivity: a density ``p`` in (0, 1] for every weight layer, or a list with
        one density per weight layer; ``None`` or 1.0 is fully connected. A layer with ``p < 1`` keeps
        each connection of ``W^h`` with probability ``p``, independently, in a fixed random mask drawn
        from the ``"connectivity"`` stream of ``seed`` (one stream per layer, so a mask depends only on
        the seed, the layer index, its shape and its density; a row may be empty). Only the kept
        connections are stored, computed (forward, BP's adjoint, the update) and trained. Their
        initial values are those of the dense network with the same seed (the same formula with
        the dense fan-in and fan-out): a sparse layer starts as ``mask * W_dense``.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str = "tanh",
        output: str = "softmax",
        dtype: Any = "float32",
        seed: int = 0,
        bias: bool = True,
        init: str = "glorot_normal",
        connectivity: Connectivity = None,
    ) -> None:
        if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
            raise TypeError(f"sizes must be a list of layer widths, got {sizes!r}")
        sizes = [as_integer(n, "sizes (each layer width)") for n in sizes]
        if len(sizes) < 2:
            raise ValueError(f"sizes needs at least an input and an output width, got {sizes}")
        if any(n <= 0 for n in sizes):
            raise ValueError(f"every layer width in sizes must be positive, got {sizes}")
        if any(n > MAX_WIDTH for n in sizes):
            raise ValueError(f"a layer width in sizes exceeds {MAX_WIDTH}, got {sizes}")
        seed = as_integer(seed, "seed", 0, 2**64 - 1)
        bias = as_flag(bias, "bias")
        densities = _densities(connectivity, len(sizes) - 1)
        self.dtype = parse_dtype(dtype)
        self.seed = seed
        self.input_shape = (sizes[0],)
        core_class = _core.Network32 if self.dtype == np.float32 else _core.Network64
        self._core = core_class(sizes, activation, output, bias, init, self.seed, densities)
        # After the core, which checks the names (one table, one message).
        self.layers = [*(_layers.Dense(n, activation) for n in sizes[1:-1]), _layers.Dense(sizes[-1], output)]
        self._describe_weights()

    # -- description ---------------------------------------------------------------------------
    @property
    def connectivity(self) -> list[float]:
        """The connection density of each weight layer (1.0: fully connected)."""
        return list(self._core.densities)

    @property
    def masks(self) -> list[np.ndarray]:
        """The connectivity mask of each ``W^h`` (bool, shape ``(n_h, n_{h-1})``; all True when dense)."""
        result = []
        for h in range(self.num_layers):
            mask = self._core.get_mask(h)
            if mask is None:
                mask = np.ones((self.sizes[h + 1], self.sizes[h]), dtype=bool)
            result.append(mask)
        return result

    def config(self) -> dict[str, Any]:
        """The constructor arguments, for saving and reproducing the network."""
        return {
            "sizes": self.sizes,
            "activation": self.activation,
            "output": self.output,
            "dtype": self.dtype.name,
            "seed": self.seed,
            "bias": self.bias,
            "init": self.init,
            "connectivity": self._connectivity_config(),
        }

    def _connectivity_config(self) -> list[float] | None:
        densities = self.connectivity
        return None if all(p == 1.0 for p in densities) else densities

    def __repr__(self) -> str:
        arch = "-".join(str(n) for n in self.sizes)
        sparse = "" if self._connectivity_config() is None else f", connectivity={self.connectivity!r}"
        return f"MLP({arch}, activation={self.activation!r}, output={self.output!r}, dtype={self.dtype.name!r}{sparse})"
