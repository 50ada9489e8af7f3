"""Feedforward networks A[N0, ..., NL] backed by the native core."""

from __future__ import annotations

import ast
import math
import numbers
import os
from typing import Any, Sequence, Union

import numpy as np

from ._native import _core
from ._arrays import as_flag, as_inputs, as_integer, finite_as, parse_dtype
from ._io import atomic_write

ACTIVATIONS = ("tanh", "logistic", "relu", "linear")
OUTPUTS = ("softmax", "logistic", "linear")
INITS = ("glorot_normal", "glorot_uniform", "he_normal", "lecun_normal")

Connectivity = Union[float, Sequence[float], None]

# Widths beyond this are a typo, not a network: a 2^31-wide layer would ask for exabytes.
MAX_WIDTH = 2**31 - 1


def _densities(connectivity: Connectivity, layers: int) -> list[float]:
    """One connection density per weight layer from ``connectivity`` (None: all dense)."""
    if connectivity is None:
        return [1.0] * layers
    if isinstance(connectivity, numbers.Real) and not isinstance(connectivity, bool):
        values = [connectivity] * layers
    elif isinstance(connectivity, (str, bytes, bool)) or not hasattr(connectivity, "__len__"):
        raise TypeError(
            f"connectivity must be a density in (0, 1] or a list of {layers} densities, got {connectivity!r}"
        )
    else:
        values = list(connectivity)
        if len(values) != layers:
            raise ValueError(f"connectivity needs one density per weight layer ({layers}), got {len(values)}")
    densities = []
    for h, p in enumerate(values):
        if isinstance(p, bool) or not isinstance(p, numbers.Real):
            raise TypeError(f"connectivity of W^{h + 1} must be a number in (0, 1], got {p!r}")
        p = float(p)
        if p == 0.0:
            raise ValueError(
                f"connectivity of W^{h + 1} is 0: a layer with no connections passes no signal; "
                "use a density in (0, 1]"
            )
        if not (math.isfinite(p) and 0.0 < p <= 1.0):
            raise ValueError(f"connectivity of W^{h + 1} must lie in (0, 1], got {p}")
        densities.append(p)
    return densities


class MLP:
    """A fully connected network with weights ``W^h`` of shape ``(n_h, n_{h-1})`` as in the paper.

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
        for name, value, choices in (("activation", activation, ACTIVATIONS), ("output", output, OUTPUTS),
                                     ("init", init, INITS)):
            if not isinstance(value, str) or value not in choices:
                raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
        seed = as_integer(seed, "seed", 0, 2**64 - 1)
        bias = as_flag(bias, "bias")
        densities = _densities(connectivity, len(sizes) - 1)
        self.dtype = parse_dtype(dtype)
        self.seed = seed
        core_class = _core.Network32 if self.dtype == np.float32 else _core.Network64
        self._core = core_class(sizes, activation, output, bias, init, self.seed, densities)

    # -- description ---------------------------------------------------------------------------
    @property
    def sizes(self) -> list[int]:
        return list(self._core.sizes)

    @property
    def activation(self) -> str:
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
        return (
            f"MLP({arch}, activation={self.activation!r}, output={self.output!r}, dtype={self.dtype.name!r}{sparse})"
        )

    # -- parameters ----------------------------------------------------------------------------
    @property
    def weights(self) -> list[np.ndarray]:
        """Copies of ``W^1 ... W^L``, each of shape ``(n_h, n_{h-1})`` (zeros off a sparse layer's mask)."""
        return [self._core.get_weight(h) for h in range(self.num_layers)]

    @property
    def biases(self) -> list[np.ndarray]:
        """Copies of the biases ``b^1 ... b^L`` (empty list when the network has none)."""
        if not self.bias:
            return []
        return [self._core.get_bias(h) for h in range(self.num_layers)]

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Replace every weight matrix (shapes must match; values must be finite; a sparse layer's
        matrix must be zero off its connectivity mask)."""
        if len(weights) != self.num_layers:
            raise ValueError(f"weights: expected {self.num_layers} weight matrices, got {len(weights)}")
        arrays = [self._parameter(w, f"weights[{h}]") for h, w in enumerate(weights)]
        for h, w in enumerate(arrays):
            expected = (self.sizes[h + 1], self.sizes[h])
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
            self._core.set_weight(h, w)

    def set_biases(self, biases: Sequence[Any]) -> None:
        """Replace every bias vector (shapes must match; values must be finite)."""
        if not self.bias:
            raise ValueError("biases: this network was built with bias=False")
        if len(biases) != self.num_layers:
            raise ValueError(f"biases: expected {self.num_layers} bias vectors, got {len(biases)}")
        arrays = [self._parameter(b, f"biases[{h}]") for h, b in enumerate(biases)]
        for h, b in enumerate(arrays):
            if b.shape != (self.sizes[h + 1],):
                raise ValueError(f"biases[{h}] must have shape ({self.sizes[h + 1]},), got {b.shape}")
        for h, b in enumerate(arrays):
            self._core.set_bias(h, b)

    def _parameter(self, value: Any, name: str) -> np.ndarray:
        array = np.asarray(value)
        if array.dtype.kind not in "fiu":
            raise TypeError(f"{name} must be numeric, got dtype {array.dtype}")
        return finite_as(array, self.dtype, name)

    # -- inference -----------------------------------------------------------------------------
    def forward(self, x: Any) -> np.ndarray:
        """Output activations ``O^L`` for inputs of shape ``(N, N0)`` (probabilities for softmax)."""
        return self._core.forward(as_inputs(x, self.dtype, self.sizes[0]))

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
        atomic_write(path, lambda handle: np.savez(handle, **arrays))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "MLP":
        """Rebuild a network written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as data:
            config = ast.literal_eval(str(data["config"]))
            net = cls(**config)
            net.set_weights([data[f"W{h + 1}"] for h in range(net.num_layers)])
            if net.bias:
                net.set_biases([data[f"b{h + 1}"] for h in range(net.num_layers)])
        return net
