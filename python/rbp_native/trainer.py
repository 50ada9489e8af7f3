"""Training with a learning channel: mini-batch SGD whose epochs run entirely in the native core."""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from ._native import _core
from ._arrays import as_inputs, as_targets
from .history import History
from .network import MLP

# The names each option accepts, from the core's tables (_core.choices(), one table per option);
# the core checks every option (names and values) when the trainer is built.
_CHOICES: dict[str, tuple[str, ...]] = _core.choices()
ALGORITHMS = _CHOICES["algorithm"]
FEEDBACK_SCALES = _CHOICES["feedback_scale"]
FEEDBACK_DISTRIBUTIONS = _CHOICES["feedback_distribution"]
FEEDBACK_STORAGES = _CHOICES["feedback_storage"]
SOURCES = _CHOICES["sources"]
RESAMPLE_MODES = _CHOICES["resample"]
SIGNAL_TRANSFORMS = _CHOICES["signal_transform"]
TRANSFORM_TARGETS = _CHOICES["transform_target"]
QUANTIZE_MODES = _CHOICES["quantize"]
ROUNDINGS = _CHOICES["quantize_rounding"]


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

    Every option of the channel family is a keyword argument; ``docs/channels.md`` gives each
    formula. In short: ``feedback_distribution`` (gaussian, uniform, sign, bernoulli, ones),
    ``feedback_scale``, ``feedback_mean``, sparsity by ``feedback_density`` or ``feedback_nonzeros``
    (``feedback_storage``: by default CSR up to density 0.3 from sources of 32+ units, where it is
    faster than dense), ``congruent`` signs, ``resample`` every batch
    (``"zero_mean"`` or ``"sign_concordant"``), per-layer ``sources`` (``"above"``/``"output"``),
    ``feedback_lr_scale`` (rho of arbp/asrbp), ``per_synapse`` random error (srbp), ``signal_transform``
    (``"sign"``/``"magnitude"``) on the ``transform_target`` (``"signal"`` or ``"update"``),
    ``channel_dropout`` (with ``dropout_inverted``), ``frozen_layers`` (paper numbering 1..L) and
    low-bit ``quantize`` (``"signal"``: alpha 2^-3 by default; ``"update"``: alpha 2^-6) with
    ``quantize_bits``, ``quantize_alpha`` and ``quantize_rounding``.

    Parameters
    ----------
    derivative:
        Multiply by the local derivative ``f'(S^h)``: True (all hidden layers, default), False
        (none: the paper's "no f'" variants) or one bool per hidden layer.
    feedback_scale:
        Scale s of the feedback draw ``F = mean + s * Z``: ``"glorot"`` (``sqrt(2 / (n_h + n_source))``,
        the Glorot-normal scale of the forward counterpart; default), ``"unit"`` (1) or a number.
    seed:
        Run seed; the feedback, shuffling, dropout and quantisation streams are derived from it
        independently.
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
        feedback_scale: str | float = "glorot",
        *,
        feedback_distribution: str = "gaussian",
        feedback_mean: float = 0.0,
        feedback_density: float = 1.0,
        feedback_nonzeros: float | None = None,
        feedback_storage: str = "auto",
        congruent: bool = False,
        resample: str | None = None,
        sources: str | Sequence[str] | None = None,
        feedback_lr_scale: float = 1.0,
        per_synapse: bool = False,
        signal_transform: str = "none",
        transform_target: str = "signal",
        channel_dropout: float = 0.0,
        dropout_inverted: bool = False,
        frozen_layers: Sequence[int] = (),
        quantize: str | None = None,
        quantize_bits: int = 8,
        quantize_alpha: float | None = None,
        quantize_rounding: str = "nearest",
    ) -> None:
        if not isinstance(net, MLP):
            raise TypeError(f"net must be an rbp_native.MLP, got {type(net).__name__}")
        hidden = net.num_layers - 1
        if isinstance(derivative, (bool, np.bool_)):
            flags = [bool(derivative)] * hidden
        else:
            flags = [bool(d) for d in derivative]
        if isinstance(sources, str):
            sources = [sources] * hidden
        elif sources is not None:
            sources = list(sources)
        frozen = [int(layer) for layer in frozen_layers]
        self.net = net
        self._options: dict[str, Any] = {
            "algorithm": algorithm,
            "derivative": flags,
            "lr": float(lr),
            "decay": float(decay),
            "momentum": float(momentum),
            "batch_size": int(batch_size),
            "seed": int(seed),
            "threads": None if threads is None else int(threads),
            "feedback_scale": feedback_scale if isinstance(feedback_scale, str) else float(feedback_scale),
            "feedback_distribution": feedback_distribution,
            "feedback_mean": float(feedback_mean),
            "feedback_density": float(feedback_density),
            "feedback_nonzeros": None if feedback_nonzeros is None else float(feedback_nonzeros),
            "feedback_storage": feedback_storage,
            "congruent": bool(congruent),
            "resample": resample,
            "sources": sources,
            "feedback_lr_scale": float(feedback_lr_scale),
            "per_synapse": bool(per_synapse),
            "signal_transform": signal_transform,
            "transform_target": transform_target,
            "channel_dropout": float(channel_dropout),
            "dropout_inverted": bool(dropout_inverted),
            "frozen_layers": frozen,
            "quantize": quantize,
            "quantize_bits": int(quantize_bits),
            "quantize_alpha": None if quantize_alpha is None else float(quantize_alpha),
            "quantize_rounding": quantize_rounding,
        }
        core_class = _core.Trainer32 if net.dtype == np.float32 else _core.Trainer64
        self._core = core_class(net._core, self._options)
        self._options["quantize_alpha"] = self._core.quantize_alpha
        self._bp_probe: Any = None

    # -- description ---------------------------------------------------------------------------
    @property
    def algorithm(self) -> str:
        return self._core.algorithm

    @property
    def derivative(self) -> list[bool]:
        return list(self._core.derivative)

    @property
    def batch_size(self) -> int:
        return self._options["batch_size"]

    @property
    def seed(self) -> int:
        return self._options["seed"]

    @property
    def lr(self) -> float:
        return self._options["lr"]

    @property
    def decay(self) -> float:
        return self._options["decay"]

    @property
    def momentum(self) -> float:
        return self._options["momentum"]

    @property
    def sources(self) -> list[str]:
        """Per hidden layer, where its feedback comes from ("above" or "output"); empty without feedback."""
        return list(self._core.sources)

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
        """Multiply-accumulates per example that producing the hidden signals takes, counting only
        the non-zero feedback entries (the paper's channel complexity: ``sum_h nnz(F^h)`` for the
        random channels, the forward weights above each hidden layer for BP and SBP). Sparse feedback
        kept in dense storage (``feedback_storage="dense"``, or ``"auto"`` where the dense product is
        faster) multiplies its zeros too, so the kernels then do more work than this count."""
        return self._core.channel_macs

    def config(self) -> dict[str, Any]:
        """Every option of this trainer (``threads`` as resolved)."""
        config = dict(self._options)
        config["threads"] = self.threads
        return config

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
        return float(self._core.step(*self._data(x, y), checked=True))

    def signals(self, x: Any, y: Any) -> list[np.ndarray]:
        """The postsynaptic signals ``B^1 ... B^L`` (each ``(batch, n_h)``) for this batch, with
        ``B^L = T - O``; nothing is updated. Under ``"top"`` the hidden signals are zero; with
        ``per_synapse`` hidden layers have no per-neuron signal and their entries are None.

        No random stream advances: the dropout masks and rounding noise are those the next
        :meth:`step` will draw (when the feedback is not resampled)."""
        signals: list[Any] = list(self._core.signals(*self._data(x, y), checked=True))
        if self._options["per_synapse"]:
            signals[:-1] = [None] * (len(signals) - 1)
        return signals

    def alignment(self, x: Any, y: Any) -> dict[str, float]:
        """Alignment diagnostics on one batch, without changing anything.

        ``angle_signal_h``: angle in degrees between this channel's ``B^h`` and BP's ``B^h``
        (with the derivative) from the same forward pass, both flattened over the batch (NaN when
        either is zero; absent for per-synapse layers); ``angle_feedback_h``: angle between
        ``feedback[h]`` and its forward counterpart (``(W^{h+1})^T``, or ``(W^L ... W^{h+1})^T`` for
        output-sourced feedback); ``norm_W_h`` and ``norm_F_h``: Frobenius norms. Layers are numbered
        as in the paper (hidden layers 1..L-1, weights 1..L).
        """
        xs, ys = self._data(x, y)
        if self._bp_probe is None:
            core_class = _core.Trainer32 if self.net.dtype == np.float32 else _core.Trainer64
            hidden = self.net.num_layers - 1
            self._bp_probe = core_class(self.net._core, {"algorithm": "bp", "derivative": [True] * hidden,
                                                         "threads": self._options["threads"]})
        record: dict[str, float] = {}
        channel = self._core.signals(xs, ys, checked=True)
        exact = self._bp_probe.signals(xs, ys, checked=True)
        if not self._options["per_synapse"]:
            for h in range(self.net.num_layers - 1):
                record[f"angle_signal_{h + 1}"] = _angle(channel[h], exact[h])
        for h in range(self._core.num_feedback):
            feedback = self._core.get_feedback(h)
            record[f"angle_feedback_{h + 1}"] = _angle(feedback, self._core.counterpart(h))
            record[f"norm_F_{h + 1}"] = float(np.linalg.norm(feedback))
        for h, w in enumerate(self.net.weights):
            record[f"norm_W_{h + 1}"] = float(np.linalg.norm(w))
        return record

    def evaluate(self, x: Any, y: Any) -> dict[str, float]:
        """Mean loss and accuracy over the given examples."""
        result = self._core.evaluate(*self._data(x, y), checked=True)
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
        diagnostics: bool = False,
        diagnostics_batch: int = 1000,
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
        diagnostics:
            Add alignment diagnostics to each epoch's record, measured after the epoch on the first
            `diagnostics_batch` training examples (see :meth:`alignment`); the update norm is that of
            the epoch's total change of each weight matrix. Costs one forward and two channel passes
            over the probe batch per epoch; no random stream advances, so results are unchanged.

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
        if diagnostics and int(diagnostics_batch) <= 0:
            raise ValueError(f"diagnostics_batch must be positive, got {diagnostics_batch}")
        probe = (x[: int(diagnostics_batch)], y[: int(diagnostics_batch)]) if diagnostics else None
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

                weights_before = self.net.weights if probe is not None else None
                running = self._core.train_epoch(x, y, report if bar is not None else None, 10, checked=True)
                lr = self._core.learning_rate
                record: dict[str, Any] = {"epoch": epoch}
                if not np.isfinite(running["loss"]):
                    raise TrainingDiverged(
                        f"training loss became {running['loss']} in epoch {epoch} "
                        f"(algorithm {self.algorithm}, lr {self.lr}); lower the learning rate",
                        history,
                    )
                if train_metrics == "full":
                    full = self._core.evaluate(x, y, checked=True)
                    record.update(train_loss=full["loss"], train_accuracy=full["accuracy"])
                else:
                    record.update(train_loss=running["loss"], train_accuracy=running["accuracy"])
                if eval_data is not None:
                    measured = self._core.evaluate(*eval_data, checked=True)
                    record.update(test_loss=measured["loss"], test_accuracy=measured["accuracy"])
                record.update(lr=lr, updates=self.updates, seconds=time.perf_counter() - started)
                if probe is not None:
                    record.update(self.alignment(*probe))
                    for h, (before, after) in enumerate(zip(weights_before, self.net.weights)):
                        record[f"norm_dW_{h + 1}"] = float(np.linalg.norm(after - before))
                history.append(record)
                if bar is not None:
                    bar.write(_format_record(record))
                if callback is not None:
                    callback(record)
        finally:
            if bar is not None:
                bar.close()
        return history


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    """Angle in degrees between two arrays seen as flat vectors (NaN when either is zero)."""
    u = np.asarray(a, dtype=np.float64).ravel()
    v = np.asarray(b, dtype=np.float64).ravel()
    norms = np.linalg.norm(u) * np.linalg.norm(v)
    if norms == 0:
        return float("nan")
    return float(np.degrees(np.arccos(np.clip(u @ v / norms, -1.0, 1.0))))


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
