"""Training with a learning channel: mini-batch SGD whose epochs run entirely in the native core."""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from . import _core
from ._arrays import as_inputs, as_targets
from .history import History
from .network import MLP

ALGORITHMS = ("bp", "sbp", "rbp", "srbp", "top")
FEEDBACK_SCALES = ("glorot", "unit")


class TrainingDiverged(FloatingPointError):
    """The training loss became NaN or infinite. ``history`` holds the epochs completed before."""

    def __init__(self, message: str, history: History) -> None:
        super().__init__(message)
        self.history = history


def _split(data: Any, name: str) -> tuple[Any, Any]:
    """Accept a Dataset (anything with ``x`` and ``y``) or an ``(x, y)`` pair."""
    if hasattr(data, "x") and hasattr(data, "y"):
        return data.x, data.y
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return data[0], data[1]
    raise TypeError(f"{name} must be a Dataset or an (x, y) pair, got {type(data).__name__}")


class Trainer:
    """Trains an :class:`MLP` with one of the paper's learning channels.

    For hidden layer h the channel delivers ``J^h`` and the update uses
    ``B^h = f'(S^h) * J^h`` (or ``J^h`` when the derivative is off); the top layer uses
    ``B^L = e = T - O``. Updates are ``W^h += lr_t * mean_batch(B^h O^{h-1}^T)`` and
    ``b^h += lr_t * mean_batch(B^h)``, with ``lr_t = lr / (1 + decay * t)`` after ``t`` updates and
    Keras-style momentum ``v = momentum * v + lr_t * g; W += v``.

    Algorithms: ``"bp"`` ``J^h = W^{h+1}^T B^{h+1}``; ``"sbp"`` ``J^h = W^{h+1}^T ... W^L^T e``;
    ``"rbp"`` ``J^h = F^h B^{h+1}``; ``"srbp"`` ``J^h = F^h e``; ``"top"`` hidden layers frozen.
    ``feedback[h]`` (hidden layer h+1, zero-based list) has shape ``(n_h, n_source)``.

    Parameters
    ----------
    derivative:
        Multiply by the local derivative ``f'(S^h)``: True (all hidden layers, default), False
        (none: the paper's "no f'" variants) or one bool per hidden layer.
    feedback_scale:
        Standard deviation of the zero-mean Gaussian feedback draw: ``"glorot"``
        (``sqrt(2 / (n_h + n_source))``, the Glorot-normal scale of the forward counterpart;
        default) or ``"unit"`` (N(0, 1)).
    seed:
        Run seed; the feedback and shuffling streams are derived from it independently.
    threads:
        Threads of the native core; None uses all cores. Results are bit-identical for the same
        seed and thread count.
    """

    def __init__(
        self,
        net: MLP,
        algorithm: str = "bp",
        derivative: bool | Sequence[bool] = True,
        lr: float = 0.1,
        decay: float = 1e-6,
        momentum: float = 0.0,
        batch_size: int = 100,
        seed: int = 0,
        threads: int | None = None,
        feedback_scale: str = "glorot",
    ) -> None:
        if not isinstance(net, MLP):
            raise TypeError(f"net must be an rbp_native.MLP, got {type(net).__name__}")
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}")
        if feedback_scale not in FEEDBACK_SCALES:
            raise ValueError(f"unknown feedback_scale {feedback_scale!r}; choose one of {', '.join(FEEDBACK_SCALES)}")
        hidden = net.num_layers - 1
        if isinstance(derivative, (bool, np.bool_)):
            flags = [bool(derivative)] * hidden
        else:
            flags = [bool(d) for d in derivative]
            if len(flags) != hidden:
                raise ValueError(f"derivative needs one flag per hidden layer ({hidden}), got {len(flags)}")
        for name, value in (("lr", lr), ("decay", decay), ("momentum", momentum)):
            if not np.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value}")
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if decay < 0:
            raise ValueError(f"decay must be non-negative, got {decay}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
        if int(batch_size) <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if int(seed) < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        if threads is not None and int(threads) <= 0:
            raise ValueError(f"threads must be a positive integer or None, got {threads}")
        self.net = net
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.lr = float(lr)
        self.decay = float(decay)
        self.momentum = float(momentum)
        core_class = _core.Trainer32 if net.dtype == np.float32 else _core.Trainer64
        self._core = core_class(
            net._core, algorithm, flags, feedback_scale, self.lr, self.decay, self.momentum,
            self.batch_size, self.seed, 0 if threads is None else int(threads),
        )

    # -- description ---------------------------------------------------------------------------
    @property
    def algorithm(self) -> str:
        return self._core.algorithm

    @property
    def derivative(self) -> list[bool]:
        return list(self._core.derivative)

    @property
    def feedback_scale(self) -> str:
        return self._core.feedback_scale

    @property
    def threads(self) -> int:
        return self._core.threads

    @property
    def updates(self) -> int:
        """Number of SGD updates done so far (``t`` of the decay schedule)."""
        return self._core.updates

    @property
    def learning_rate(self) -> float:
        """The learning rate the next update will use."""
        return self._core.learning_rate

    @property
    def channel_macs(self) -> int:
        """Multiply-accumulates per example the channel spends producing the hidden signals."""
        return self._core.channel_macs

    def config(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm,
            "derivative": self.derivative,
            "lr": self.lr,
            "decay": self.decay,
            "momentum": self.momentum,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "threads": self.threads,
            "feedback_scale": self.feedback_scale,
        }

    # -- feedback ------------------------------------------------------------------------------
    @property
    def feedback(self) -> list[np.ndarray]:
        """Copies of the feedback matrices (``rbp``: ``(n_h, n_{h+1})``; ``srbp``: ``(n_h, n_L)``)."""
        return [self._core.get_feedback(h) for h in range(self._core.num_feedback)]

    def set_feedback(self, feedback: Sequence[Any]) -> None:
        """Replace every feedback matrix (shapes must match; values must be finite)."""
        count = self._core.num_feedback
        if count == 0:
            raise ValueError(f"algorithm {self.algorithm!r} has no feedback matrices")
        if len(feedback) != count:
            raise ValueError(f"expected {count} feedback matrices, got {len(feedback)}")
        arrays = [self.net._parameter(f, f"feedback[{h}]") for h, f in enumerate(feedback)]
        current = self.feedback
        for h, (new, old) in enumerate(zip(arrays, current)):
            if new.shape != old.shape:
                raise ValueError(f"feedback[{h}] must have shape {old.shape}, got {new.shape}")
        for h, f in enumerate(arrays):
            self._core.set_feedback(h, f)

    # -- training ------------------------------------------------------------------------------
    def _data(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        xs = as_inputs(x, self.net.dtype, self.net.sizes[0])
        ys = as_targets(y, self.net.dtype, self.net.sizes[-1], xs.shape[0])
        return xs, ys

    def step(self, x: Any, y: Any) -> float:
        """One SGD step on exactly this batch; returns the batch loss before the update."""
        return float(self._core.step(*self._data(x, y)))

    def signals(self, x: Any, y: Any) -> list[np.ndarray]:
        """The postsynaptic signals ``B^1 ... B^L`` (each ``(batch, n_h)``) for this batch, with
        ``B^L = T - O``; nothing is updated. Under ``"top"`` the hidden signals are zero."""
        return list(self._core.signals(*self._data(x, y)))

    def evaluate(self, x: Any, y: Any) -> dict[str, float]:
        """Mean loss and accuracy over the given examples."""
        result = self._core.evaluate(*self._data(x, y))
        return {"loss": float(result["loss"]), "accuracy": float(result["accuracy"])}

    def fit(
        self,
        train: Any,
        epochs: int = 1,
        eval: Any = None,
        progress: bool = True,
        callback: Callable[[dict[str, Any]], Any] | None = None,
        train_metrics: str = "full",
        history: History | None = None,
    ) -> History:
        """Train for `epochs` epochs of shuffled mini-batches (the last batch may be smaller).

        train, eval:
            Datasets (with ``x`` and ``y``) or ``(x, y)`` pairs; ``eval`` is evaluated after each epoch.
        progress:
            Show a tqdm bar over the batches of each epoch and a line per epoch.
        callback:
            Called with each epoch's record after it is appended to the history.
        train_metrics:
            ``"full"`` (default) evaluates the whole training set after each epoch; ``"running"``
            reports the mean over the epoch's batches, each measured before its update (cheaper).
        history:
            An existing History to append to (to continue a run).

        Raises :class:`TrainingDiverged` (with ``.history``) when the loss becomes NaN or infinite.
        """
        if int(epochs) < 0:
            raise ValueError(f"epochs must be non-negative, got {epochs}")
        if train_metrics not in ("full", "running"):
            raise ValueError(f"train_metrics must be 'full' or 'running', got {train_metrics!r}")
        x, y = self._data(*_split(train, "train"))
        eval_data = self._data(*_split(eval, "eval")) if eval is not None else None
        if history is None:
            history = History(config={"network": self.net.config(), "trainer": self.config()})
        start_epoch = len(history)
        batches = -(-x.shape[0] // self.batch_size)
        bar = _progress_bar(batches) if progress else None
        try:
            for epoch in range(start_epoch + 1, start_epoch + int(epochs) + 1):
                started = time.perf_counter()
                if bar is not None:
                    bar.reset(total=batches)
                    bar.set_description(f"epoch {epoch}/{start_epoch + int(epochs)}")

                def report(done: int, total: int, loss: float) -> bool:
                    assert bar is not None
                    bar.n = done
                    bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                    bar.refresh()
                    return True

                running = self._core.train_epoch(x, y, report if bar is not None else None, 10)
                lr = self._core.learning_rate
                record: dict[str, Any] = {"epoch": epoch}
                if not np.isfinite(running["loss"]):
                    raise TrainingDiverged(
                        f"training loss became {running['loss']} in epoch {epoch} "
                        f"(algorithm {self.algorithm}, lr {self.lr}); lower the learning rate",
                        history,
                    )
                if train_metrics == "full":
                    full = self._core.evaluate(x, y)
                    record.update(train_loss=full["loss"], train_accuracy=full["accuracy"])
                else:
                    record.update(train_loss=running["loss"], train_accuracy=running["accuracy"])
                if eval_data is not None:
                    measured = self._core.evaluate(*eval_data)
                    record.update(test_loss=measured["loss"], test_accuracy=measured["accuracy"])
                record.update(lr=lr, updates=self.updates, seconds=time.perf_counter() - started)
                history.append(record)
                if bar is not None:
                    bar.write(_format_record(record))
                if callback is not None:
                    callback(record)
        finally:
            if bar is not None:
                bar.close()
        return history


def _progress_bar(total: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="batch", leave=False, dynamic_ncols=True)


def _format_record(record: dict[str, Any]) -> str:
    parts = [f"epoch {record['epoch']:>3}"]
    parts.append(f"train loss {record['train_loss']:.4f} acc {record['train_accuracy']:.4f}")
    if "test_loss" in record:
        parts.append(f"test loss {record['test_loss']:.4f} acc {record['test_accuracy']:.4f}")
    parts.append(f"{record['seconds']:.1f}s")
    return " | ".join(parts)
