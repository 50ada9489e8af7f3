"""Training with a learning channel: mini-batch SGD whose epochs run entirely in the native core."""

from __future__ import annotations

import contextlib
import numbers
import os
import threading
import time
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ._arrays import as_flag, as_integer, as_real, as_targets
from ._compare import describe_differences
from ._native import _core
from .augment import Augment
from .history import History
from .network import MLP, Sequential

# The names each option accepts, from the core's tables (_core.choices(), one table per option);
# the core checks every option (names and values) when the trainer is built.
_CHOICES: dict[str, tuple[str, ...]] = _core.choices()
ALGORITHMS = _CHOICES["algorithm"]
FEEDBACK_ALGORITHMS = tuple(a for a in ALGORITHMS if a in ("rbp", "srbp", "arbp", "asrbp"))  # those with F^h
FEEDBACK_SCALES = _CHOICES["feedback_scale"]
FEEDBACK_DISTRIBUTIONS = _CHOICES["feedback_distribution"]
FEEDBACK_STORAGES = _CHOICES["feedback_storage"]
SOURCES = _CHOICES["sources"]
RESAMPLE_MODES = _CHOICES["resample"]
SIGNAL_TRANSFORMS = _CHOICES["signal_transform"]
TRANSFORM_TARGETS = _CHOICES["transform_target"]
QUANTIZE_MODES = _CHOICES["quantize"]
ROUNDINGS = _CHOICES["quantize_rounding"]
INJECTIONS = _CHOICES["injection"]
PRECISIONS = _CHOICES["precision"]
# More threads than this is a typo (OpenMP would try to start them all and abort when it cannot).
MAX_THREADS = 1024
#: Training examples in the probe batch of :meth:`Trainer.fit`'s diagnostics, by default.
DIAGNOSTICS_BATCH = 1000


class TrainingDiverged(FloatingPointError):
    """The training loss (or a weight) became NaN or infinite. ``history`` holds the epochs completed
    before; the trainer is left after the last update made from a finite loss."""

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
    """Trains an :class:`MLP` or a :class:`Sequential` with one of the paper's learning channels.

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
        Run seed; the feedback, shuffling, dropout, quantisation and augmentation streams are derived
        from it independently.
    threads:
        Threads of the native core; None uses all cores. Results are bit-identical for the same
        seed and thread count on the same kind of CPU (an AMD Zen 4 and other AVX-512 CPUs run some
        products on different kernels).
    augment:
        An :class:`Augment` (random translations with zero fill and horizontal flips) applied to
        every training batch of :meth:`fit`'s epochs, on the trainer's copy of the batch, from the
        ``"augment"`` stream of the seed; the network's input must be an image
        (``Sequential(..., input_shape=(C, H, W))``). :meth:`step`, :meth:`signals` and
        :meth:`evaluate` use their batches as given.
    injection:
        Where output-sourced feedback (srbp) enters a hidden layer followed by max-pooling:
        ``"pre_pool"`` (default; at ``S^h``, the convolution's output, ``feedback[h]`` of shape
        ``(C*H*W, n_L)``) or ``"post_pool"`` (at the pooled output, routed back through the pools'
        argmax). See docs/conv.md for every channel's conventions through conv and pooling layers.
    precision:
        ``"float32"`` (default) or ``"bf16"``: every matrix product and convolution of this trainer's
        calls (forward pass, channel, weight and kernel gradients; :meth:`fit`, :meth:`step`,
        :meth:`evaluate`, :meth:`signals`) rounds both operands to bfloat16 (round to nearest even,
        8 significant bits) and sums in float32; weights, biases, bias gradients, momentum and the
        elementwise work (activations, pooling) stay float32. Products with sparse-stored feedback
        stay float32. Needs a float32 network of dense and conv2d layers (no sparse layers). On
        oneDNN's bf16 matmul and convolutions where the build has oneDNN (on CPUs with AVX512-BF16
        or AMX about twice the float32 rate of the products; the paper's CIFAR-10 net trained
        1.5-1.9x faster on a Xeon with AMX: benchmarks/README.md), else the same rounding through
        the float32 kernels (no faster).
        ``Sequential.predict`` outside the trainer computes in float32.
    """

    def __init__(
        self,
        net: Sequential,
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
        injection: str = "pre_pool",
        augment: Augment | dict[str, Any] | None = None,
        precision: str = "float32",
    ) -> None:
        if not isinstance(net, Sequential):
            raise TypeError(f"net must be an rbp_native.MLP or Sequential, got {type(net).__name__}")
        hidden = net.num_layers - 1
        if isinstance(derivative, (bool, np.bool_)):
            flags = [bool(derivative)] * hidden
        else:
            if isinstance(derivative, (str, bytes)) or not hasattr(derivative, "__iter__"):
                raise TypeError(f"derivative must be True, False or one flag per hidden layer, got {derivative!r}")
            flags = [as_flag(d, "derivative (each flag)") for d in derivative]
        if isinstance(sources, str):
            sources = [sources] * hidden
        elif sources is not None:
            if isinstance(sources, bytes) or not hasattr(sources, "__iter__"):
                raise TypeError(f"sources must be 'above', 'output' or one of them per hidden layer, got {sources!r}")
            sources = list(sources)
        # Types are checked here, before any conversion: "0.1" or True must not reach the core as a
        # number (float() and bool() would reinterpret them). The core checks names, ranges and
        # combinations, once (resolved_trainer_spec), with messages naming the option.
        lr, decay, momentum, feedback_mean, feedback_lr_scale, channel_dropout, feedback_density = (
            as_real(value, name)
            for name, value in (
                ("lr", lr),
                ("decay", decay),
                ("momentum", momentum),
                ("feedback_mean", feedback_mean),
                ("feedback_lr_scale", feedback_lr_scale),
                ("channel_dropout", channel_dropout),
                ("feedback_density", feedback_density),
            )
        )
        if feedback_nonzeros is not None:
            feedback_nonzeros = as_real(feedback_nonzeros, "feedback_nonzeros")
        if quantize_alpha is not None:
            quantize_alpha = as_real(quantize_alpha, "quantize_alpha")
        if not isinstance(feedback_scale, str):
            if isinstance(feedback_scale, (bool, np.bool_)) or not isinstance(feedback_scale, numbers.Real):
                raise ValueError(
                    f"feedback_scale must be 'glorot', 'unit' or a positive number, got {feedback_scale!r}"
                )
            feedback_scale = float(feedback_scale)
        congruent, per_synapse, dropout_inverted = (
            as_flag(value, name)
            for name, value in (
                ("congruent", congruent),
                ("per_synapse", per_synapse),
                ("dropout_inverted", dropout_inverted),
            )
        )
        # Ranges are the core's to check (and the bindings' for seed and threads, whose Python values
        # the core's types cannot hold), except where a value would not even fit those types.
        batch_size = as_integer(batch_size, "batch_size", None, 2**63 - 1)
        seed = as_integer(seed, "seed", None, 2**64 - 1)
        if threads is not None:
            threads = as_integer(threads, "threads", None, MAX_THREADS)
        quantize_bits = as_integer(quantize_bits, "quantize_bits", None, 2**31 - 1)
        if isinstance(frozen_layers, (str, bytes)) or not hasattr(frozen_layers, "__iter__"):
            raise TypeError(
                f"frozen_layers must be a list of layer numbers (1..{net.num_layers}), got {frozen_layers!r}"
            )
        frozen = [as_integer(layer, "frozen_layers (each layer)") for layer in frozen_layers]
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
        if injection != "pre_pool":  # only then an option of the core (configs of dense runs stay as they were)
            self._options["injection"] = injection
        if augment is not None:  # likewise
            if isinstance(augment, dict):
                augment = Augment(**augment)
            if not isinstance(augment, Augment):
                raise TypeError(f"augment must be an rbp_native.Augment or None, got {augment!r}")
            self._options["augment"] = augment.config()
        if precision != "float32":  # likewise; the core checks the name and the network
            self._options["precision"] = precision
        core_class = _core.Trainer32 if net.dtype == np.float32 else _core.Trainer64
        self._core = core_class(net._core, self._options)
        self._options["quantize_alpha"] = self._core.quantize_alpha
        self._bp_probe: Any = None
        self._history: History | None = None
        # W^h at the start of the current epoch, kept while it runs when diagnostics measure its update.
        self._epoch_start_weights: list[np.ndarray] | None = None
        self._lock = threading.RLock()

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One call at a time: a second thread gets a clear error instead of corrupting the state."""
        if not self._lock.acquire(blocking=False):
            raise RuntimeError(
                "this Trainer is already in use by another thread; a trainer runs one call at a time "
                "(use one trainer per thread)"
            )
        try:
            yield
        finally:
            self._lock.release()

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
    def precision(self) -> str:
        """``"float32"`` or ``"bf16"``: the arithmetic of the dense products (see the class docstring)."""
        return self._options.get("precision", "float32")

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

    @property
    def history(self) -> History:
        """The records of every epoch this trainer has trained (or that the checkpoint it was loaded
        from had): :meth:`fit` appends to it unless given another History."""
        if self._history is None:
            self._history = History(config={"network": self.net.config(), "trainer": self.config()})
        return self._history

    @property
    def epoch_pending(self) -> bool:
        """True when an epoch was stopped part-way (interrupted, or checkpointed mid-epoch): the next
        :meth:`fit` continues it (same order, running metrics carried over) before starting another."""
        return bool(self._core.epoch_pending)

    # -- feedback ------------------------------------------------------------------------------
    @property
    def feedback(self) -> list[np.ndarray]:
        """Copies of the feedback matrices (``rbp``: ``(n_h, n_{h+1})``; ``srbp``: ``(n_h, n_L)``), with
        ``n_h`` where the signal enters layer h (docs/conv.md); under a convolution, rbp's feedback is
        a kernel of that convolution's shape ``(out_channels, in_channels, kh, kw)``."""
        return [self._feedback_shaped(h, self._core.get_feedback(h)) for h in range(self._core.num_feedback)]

    def _feedback_shaped(self, h: int, value: np.ndarray) -> np.ndarray:
        if self._core.feedback_kernel(h):
            return value.reshape(self.net._weight_shapes[h + 1])
        return value

    def set_feedback(self, feedback: Sequence[Any]) -> None:
        """Replace every feedback matrix (shapes must match; values must be finite)."""
        count = self._core.num_feedback
        if count == 0:
            raise ValueError(f"feedback: algorithm {self.algorithm!r} has no feedback matrices")
        if len(feedback) != count:
            raise ValueError(f"feedback: expected {count} feedback matrices, got {len(feedback)}")
        arrays = [self.net._parameter(f, f"feedback[{h}]") for h, f in enumerate(feedback)]
        current = self.feedback
        for h, (new, old) in enumerate(zip(arrays, current)):
            if new.shape != old.shape:
                raise ValueError(f"feedback[{h}] must have shape {old.shape}, got {new.shape}")
        for h, f in enumerate(arrays):
            self._core.set_feedback(h, f.reshape(f.shape[0], -1))

    # -- training ------------------------------------------------------------------------------
    def _data(self, x: Any, y: Any, argument: str = "") -> tuple[np.ndarray, np.ndarray]:
        """Checked copies of inputs and targets; errors name them as ``x``/``y``, or ``train.x`` and so
        on when they came in as the `argument` of :meth:`fit`."""
        prefix = f"{argument}." if argument else ""
        xs = self.net._as_inputs(x, f"{prefix}x")
        ys = as_targets(y, self.net.dtype, self.net.sizes[-1], xs.shape[0], f"{prefix}y")
        return xs, ys

    def step(self, x: Any, y: Any) -> float:
        """One SGD step on exactly this batch; returns the batch loss before the update.

        Raises :class:`TrainingDiverged` (and makes no update) when the loss is NaN or infinite."""
        with self._exclusive():
            loss = float(self._core.step(*self._data(x, y), checked=True))
        if not np.isfinite(loss):
            raise TrainingDiverged(
                f"training loss became {loss} at update {self.updates + 1}; no update was made "
                f"(algorithm {self.algorithm}, lr {self.lr}): lower the learning rate",
                self.history,
            )
        return loss

    def signals(self, x: Any, y: Any) -> list[np.ndarray]:
        """The postsynaptic signals ``B^1 ... B^L`` (each ``(batch, n_h)``; for a layer followed by
        max-pooling ``n_h`` is the size of its output before pooling, ``S^h``) for this batch, with
        ``B^L = T - O``; nothing is updated. Under ``"top"`` the hidden signals are zero; with
        ``per_synapse`` hidden layers have no per-neuron signal and their entries are None.

        No random stream advances: the dropout masks and rounding noise are those the next
        :meth:`step` will draw (when the feedback is not resampled)."""
        with self._exclusive():
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
        with self._exclusive():
            return self._alignment(*self._data(x, y))

    def _alignment(self, xs: np.ndarray, ys: np.ndarray) -> dict[str, float]:
        if self._bp_probe is None:
            core_class = _core.Trainer32 if self.net.dtype == np.float32 else _core.Trainer64
            hidden = self.net.num_layers - 1
            self._bp_probe = core_class(
                self.net._core, {"algorithm": "bp", "derivative": [True] * hidden, "threads": self._options["threads"]}
            )
        record: dict[str, float] = {}
        channel = self._core.signals(xs, ys, checked=True)
        exact = self._bp_probe.signals(xs, ys, checked=True)
        if not self._options["per_synapse"]:
            for h in range(self.net.num_layers - 1):
                record[f"angle_signal_{h + 1}"] = _angle(channel[h], exact[h])
        for h in range(self._core.num_feedback):
            feedback = self._core.get_feedback(h)
            # Through max-pooling output-sourced feedback has no fixed counterpart (the route depends
            # on the input): NaN.
            counterpart = self._core.counterpart(h) if self._core.has_counterpart(h) else None
            record[f"angle_feedback_{h + 1}"] = float("nan") if counterpart is None else _angle(feedback, counterpart)
            record[f"norm_F_{h + 1}"] = float(np.linalg.norm(feedback))
        for h, w in enumerate(self.net.weights):
            record[f"norm_W_{h + 1}"] = float(np.linalg.norm(w))
        return record

    def evaluate(self, x: Any, y: Any) -> dict[str, float]:
        """Mean loss and accuracy over the given examples."""
        with self._exclusive():
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
        diagnostics_batch: int = DIAGNOSTICS_BATCH,
        checkpoint: str | os.PathLike[str] | None = None,
        checkpoint_every: int | None = None,
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
            The History to append to; default :attr:`history`, the trainer's own (so a trainer
            loaded from a checkpoint continues its history and epoch numbering).
        diagnostics:
            Add alignment diagnostics to each epoch's record, measured after the epoch on the first
            `diagnostics_batch` training examples (see :meth:`alignment`); the update norm is that of
            the epoch's total change of each weight matrix. Costs one forward and two channel passes
            over the probe batch per epoch; no random stream advances, so results are unchanged.
        checkpoint:
            A file that :meth:`save` writes after every epoch, every `checkpoint_every` batches
            within an epoch, and when training is interrupted (KeyboardInterrupt, or any exception a
            signal handler raises); :meth:`load` or :meth:`restore` continue from it bit for bit.
        checkpoint_every:
            Batches between checkpoints within an epoch (None: only at the end of each epoch).

        An epoch left pending (see :attr:`epoch_pending`) is continued first and counts as the first
        of `epochs`. Ctrl-C stops training within a batch (or an evaluation chunk): the trainer stays
        at the last completed update, :attr:`history` holds the epochs recorded so far, and the
        KeyboardInterrupt propagates. Raises :class:`TrainingDiverged` (with ``.history``) when a
        batch's loss is NaN or infinite (that batch makes no update) or a weight is no longer finite.
        """
        if int(epochs) < 0:
            raise ValueError(f"epochs must be non-negative, got {epochs}")
        if train_metrics not in ("full", "running"):
            raise ValueError(f"train_metrics must be 'full' or 'running', got {train_metrics!r}")
        if diagnostics and int(diagnostics_batch) <= 0:
            raise ValueError(f"diagnostics_batch must be positive, got {diagnostics_batch}")
        if checkpoint_every is not None and int(checkpoint_every) <= 0:
            raise ValueError(f"checkpoint_every must be a positive number of batches, got {checkpoint_every}")
        if checkpoint_every is not None and checkpoint is None:
            raise ValueError("checkpoint_every needs a checkpoint file")
        with self._exclusive():
            x, y = self._data(*_split(train, "train"), "train")
            eval_data = self._data(*_split(eval, "eval"), "eval") if eval is not None else None
            if history is not None:
                self._history = history
            history = self.history
            probe = (x[: int(diagnostics_batch)], y[: int(diagnostics_batch)]) if diagnostics else None
            chunk = int(checkpoint_every) if checkpoint_every is not None else 0
            bar = _progress_bar(-(-x.shape[0] // self.batch_size)) if progress else None
            try:
                self._fit_epochs(
                    x, y, int(epochs), eval_data, bar, callback, train_metrics, history, probe, checkpoint, chunk
                )
            except BaseException as error:
                # Interrupted (Ctrl-C, SIGTERM turned into an exception, ...): keep what was done,
                # unless it is no longer finite (then the last good checkpoint stays).
                if checkpoint is not None and not isinstance(error, TrainingDiverged) and self._finite():
                    self.save(checkpoint)
                raise
            finally:
                if bar is not None:
                    bar.close()
        return history

    def _fit_epochs(
        self,
        x: np.ndarray,
        y: np.ndarray,
        epochs: int,
        eval_data: Any,
        bar: Any,
        callback: Callable[[dict[str, Any]], Any] | None,
        train_metrics: str,
        history: History,
        probe: Any,
        checkpoint: str | os.PathLike[str] | None,
        chunk: int,
    ) -> None:
        start_epoch = len(history)
        for epoch in range(start_epoch + 1, start_epoch + epochs + 1):
            started = time.perf_counter()
            finished = self._unrecorded_epoch(history)  # an epoch trained but not recorded (interrupted)
            if finished is None:
                self._train_one_epoch(
                    x, y, epoch, start_epoch + epochs, bar, history, checkpoint, chunk, probe is not None
                )
                finished = self._core.unrecorded_epoch
                assert finished is not None, "the core keeps the epoch it completed until acknowledged"
            record: dict[str, Any] = {"epoch": epoch}
            lr = self._core.learning_rate
            if not self._finite():
                raise TrainingDiverged(
                    f"a weight became NaN or infinite in epoch {epoch} "
                    f"(algorithm {self.algorithm}, lr {self.lr}); lower the learning rate",
                    history,
                )
            if train_metrics == "full":
                full = self._core.evaluate(x, y, checked=True)
                record.update(train_loss=full["loss"], train_accuracy=full["accuracy"])
            else:
                record.update(train_loss=finished["loss"], train_accuracy=finished["accuracy"])
            if eval_data is not None:
                measured = self._core.evaluate(*eval_data, checked=True)
                record.update(test_loss=measured["loss"], test_accuracy=measured["accuracy"])
            record.update(lr=lr, updates=self.updates, seconds=time.perf_counter() - started)
            if probe is not None:
                before = self._epoch_start_weights
                if before is None:
                    raise ValueError(
                        "diagnostics need the weights from the start of the epoch, which this trainer "
                        "did not keep (the epoch began without diagnostics)"
                    )
                record.update(self.alignment(*probe))
                for h, after in enumerate(self.net.weights):
                    record[f"norm_dW_{h + 1}"] = float(np.linalg.norm(after - before[h]))
            # The record and the acknowledgement can be separated by an interruption: the update count
            # in the record tells a later fit that the epoch is recorded after all (_unrecorded_epoch).
            history.append(record)
            self._core.acknowledge_epoch()
            self._epoch_start_weights = None
            if checkpoint is not None:
                self.save(checkpoint)  # the weights were checked above
            if bar is not None:
                bar.write(_format_record(record))
            if callback is not None:
                callback(record)

    def _unrecorded_epoch(self, history: History) -> dict[str, Any] | None:
        finished = self._core.unrecorded_epoch
        if finished is not None and history.records and history.records[-1].get("updates") == finished["updates"]:
            self._core.acknowledge_epoch()
            return None
        return finished

    def _train_one_epoch(
        self,
        x: np.ndarray,
        y: np.ndarray,
        epoch: int,
        last_epoch: int,
        bar: Any,
        history: History,
        checkpoint: str | os.PathLike[str] | None,
        chunk: int,
        diagnostics: bool,
    ) -> None:
        """The epoch's batches (continuing a pending epoch), in chunks of `chunk` batches with a
        checkpoint after each. Its running metrics stay in the core (``unrecorded_epoch``)."""
        if not self.epoch_pending:
            self._epoch_start_weights = self.net.weights if diagnostics else None
        elif diagnostics and self._epoch_start_weights is None:
            raise ValueError(
                "diagnostics need the weights from the start of the epoch, but this epoch was "
                "interrupted part-way without them: continue it without diagnostics, or discard it"
            )
        report = None
        if bar is not None:
            bar.reset(total=-(-x.shape[0] // self.batch_size))
            bar.set_description(f"epoch {epoch}/{last_epoch}")

            def report(done: int, total: int, loss: float) -> bool:
                bar.n = done
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                bar.refresh()
                return True

        while True:
            running = self._core.train_epoch(x, y, report, 10, chunk, checked=True)
            if running["diverged"]:
                raise TrainingDiverged(
                    f"training loss became {running['loss']} in epoch {epoch}, batch {running['batch'] + 1} of "
                    f"{running['batches']} (update {self.updates + 1}, which was not made; algorithm "
                    f"{self.algorithm}, lr {self.lr}): lower the learning rate",
                    history,
                )
            if running["completed"]:
                return
            if checkpoint is not None:
                if not self._finite():
                    raise TrainingDiverged(
                        f"a weight became NaN or infinite in epoch {epoch} by batch {running['batch']} of "
                        f"{running['batches']} (algorithm {self.algorithm}, lr {self.lr}); lower the learning rate",
                        history,
                    )
                self.save(checkpoint)

    def _finite(self) -> bool:
        return all(np.isfinite(w).all() for w in self.net.weights) and all(
            np.isfinite(b).all() for b in self.net.biases
        )

    # -- checkpoints ---------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the whole training state to `path` (``.npz``), atomically: network, feedback
        matrices, momentum velocities, every random stream, the update counter, an epoch in
        progress, the history, the options and the versions. :meth:`load` (a new trainer) or
        :meth:`restore` (this one) continue from it bit for bit."""
        from . import __version__
        from . import checkpoint as ckpt

        with self._exclusive():
            state = self._core.get_state()
            arrays: dict[str, np.ndarray] = {}
            for h, w in enumerate(self.net.weights):
                arrays[f"network/W{h + 1}"] = w
            for h, b in enumerate(self.net.biases):
                arrays[f"network/b{h + 1}"] = b
            for h, f in enumerate(self.feedback):
                arrays[f"feedback/{h}"] = f
            for name in (
                "shuffle_stream",
                "feedback_stream",
                "dropout_stream",
                "quantize_stream",
                "augment_stream",
                "epoch_order",
            ):
                arrays[f"state/{name}"] = state[name]
            for h, layer in enumerate(state["velocity"]):
                for p, v in enumerate(layer):
                    arrays[f"state/velocity/{h}/{p}"] = v
            for h, w in enumerate(self._epoch_start_weights or []):
                arrays[f"epoch_start/W{h + 1}"] = w
            meta = {
                "version": __version__,
                "network": self.net.config(),
                "trainer": self.config(),
                "state": {
                    "updates": int(state["updates"]),
                    "velocity_layers": [len(layer) for layer in state["velocity"]],
                    "epoch_next_batch": int(state["epoch_next_batch"]),
                    "epoch_loss": float(state["epoch_loss"]),
                    "epoch_correct": int(state["epoch_correct"]),
                    "epoch_seen": int(state["epoch_seen"]),
                    "unrecorded_epoch": state["unrecorded_epoch"],
                    "epoch_start_weights": self._epoch_start_weights is not None,
                },
                "history": {"config": self.history.config, "epochs": self.history.records},
            }
            ckpt.write(path, meta, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, threads: int | None = None) -> "Trainer":
        """A trainer (with its network) from a checkpoint written by :meth:`save`, ready to continue
        exactly where it stopped. `threads` defaults to the checkpoint's thread count (results are
        bit-identical for the same thread count)."""
        from . import checkpoint as ckpt

        meta, arrays = ckpt.read(path)
        try:
            config = meta["network"]
            net = Sequential(**config) if "layers" in config else MLP(**config)
            options = dict(meta["trainer"])
            if threads is not None:
                options["threads"] = threads
            trainer = cls(net, **options)
        except (TypeError, ValueError) as error:
            raise ckpt.CheckpointError(f"{path}: its network or trainer options are invalid: {error}") from error
        trainer._apply_checkpoint(path, meta, arrays)
        return trainer

    def restore(
        self,
        path: str | os.PathLike[str],
        *,
        force: bool = False,
        contents: tuple[dict[str, Any], dict[str, np.ndarray]] | None = None,
    ) -> None:
        """Continue from a checkpoint in this trainer. The checkpoint's network and trainer options
        must equal this trainer's (thread count included), else a ValueError lists the differences;
        ``force=True`` restores anyway where the shapes allow (results then differ from the
        uninterrupted run). `contents`: ``(meta, arrays)`` as :func:`rbp_native.checkpoint.read`
        returned them for `path`, when the caller has read the file already (it is not read again)."""
        from . import checkpoint as ckpt

        meta, arrays = contents if contents is not None else ckpt.read(path)
        if not force:
            differences = describe_differences(
                {"network": meta["network"], "trainer": meta["trainer"]},
                {"network": self.net.config(), "trainer": self.config()},
            )
            if differences:
                raise ValueError(
                    f"{path} was written with other options ({'; '.join(differences[:6])}); "
                    "use the same options, or force=True"
                )
        self._apply_checkpoint(path, meta, arrays)

    def _apply_checkpoint(
        self, path: str | os.PathLike[str], meta: dict[str, Any], arrays: dict[str, np.ndarray]
    ) -> None:
        """All of the checkpoint or nothing: a checkpoint found inconsistent half-way leaves the
        trainer as it was."""
        with self._exclusive():
            before = (
                self.net.weights,
                self.net.biases,
                self.feedback,
                self._core.get_state(),
                self._history,
                self._epoch_start_weights,
            )
            try:
                self._apply_checkpoint_parts(path, meta, arrays)
            except BaseException:
                weights, biases, feedback, state, history, start_weights = before
                self.net.set_weights(weights)
                if biases:
                    self.net.set_biases(biases)
                if feedback:
                    self.set_feedback(feedback)
                self._core.set_state(state)
                self._history, self._epoch_start_weights = history, start_weights
                raise

    def _apply_checkpoint_parts(
        self, path: str | os.PathLike[str], meta: dict[str, Any], arrays: dict[str, np.ndarray]
    ) -> None:
        from . import checkpoint as ckpt

        state_meta = meta["state"]
        try:
            layers = self.net.num_layers
            self.net.set_weights([ckpt.array(path, arrays, f"network/W{h + 1}") for h in range(layers)])
            if self.net.bias:
                self.net.set_biases([ckpt.array(path, arrays, f"network/b{h + 1}") for h in range(layers)])
            if self._core.num_feedback:
                self.set_feedback([ckpt.array(path, arrays, f"feedback/{h}") for h in range(self._core.num_feedback)])
            velocity = [
                [
                    ckpt.array(path, arrays, f"state/velocity/{h}/{p}").astype(self.net.dtype, copy=False)
                    for p in range(int(count))
                ]
                for h, count in enumerate(state_meta.get("velocity_layers", []))
            ]
            state: dict[str, Any] = {
                name: ckpt.array(path, arrays, f"state/{name}")
                for name in (
                    "shuffle_stream",
                    "feedback_stream",
                    "dropout_stream",
                    "quantize_stream",
                    "augment_stream",
                    "epoch_order",
                )
            }
            state.update(
                updates=int(state_meta["updates"]),
                velocity=velocity,
                epoch_next_batch=int(state_meta["epoch_next_batch"]),
                epoch_loss=ckpt.finite_float(path, state_meta["epoch_loss"], "epoch_loss"),
                epoch_correct=int(state_meta["epoch_correct"]),
                epoch_seen=int(state_meta["epoch_seen"]),
                unrecorded_epoch=state_meta.get("unrecorded_epoch"),
            )
            self._core.set_state(state)
            records = meta["history"].get("epochs")
            if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
                raise ValueError("its history is not a list of records")
            start_weights = (
                [ckpt.array(path, arrays, f"epoch_start/W{h + 1}") for h in range(layers)]
                if state_meta.get("epoch_start_weights")
                else None
            )
            history_config = meta["history"].get("config") or {}
            if not isinstance(history_config, dict):
                raise ValueError("its history's config is not a table")
            history = History(records, history_config)
        except ckpt.CheckpointError:
            raise
        except (KeyError, TypeError, ValueError, OverflowError) as error:  # OverflowError: int(inf)
            raise ckpt.CheckpointError(f"{path}: inconsistent checkpoint: {error}") from error
        self._history = history
        self._epoch_start_weights = start_weights

    def discard_epoch(self) -> None:
        """Forget an epoch left pending (:attr:`epoch_pending`): the next :meth:`fit` starts a new one."""
        with self._exclusive():
            self._core.discard_epoch()
            self._epoch_start_weights = None


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
