"""What the benchmark times: the networks (the MLPs and the CIFAR-10 conv net), batches, algorithms and
channel variants, the data and initial weights every implementation starts from, the work per example,
and the bookkeeping of which implementations computed the same math."""

from __future__ import annotations

import os
import statistics
from typing import Any

import numpy as np

from _machine import ROOT, log
from _worker import feedback_key, workload_options  # the workers' own reading of a workload
from conv_references import ConvNet

NETS = {
    "mnist": [784, 100, 100, 100, 100, 10],
    "wide": [784, 1000, 1000, 1000, 10],
}
# The paper's CIFAR-10 network (conv_references.ConvNet; --conv-net changes its sizes), trained with
# momentum; rbp-native's, numpy's and PyTorch's steps of it (no torch.compile, no channel variants).
CONV = "conv"
NET_NAMES = [*NETS, CONV]
DEFAULT_BATCHES = {"mnist": [1, 32, 100, 128], "wide": [32, 128], CONV: [128]}
ALGORITHMS = ["bp", "rbp", "srbp"]
# Channel variants: sparse feedback (each entry kept with probability P) and quantised signals, at the
# batches where the channel matters most.
VARIANTS = ["rbp:density=0.1", "srbp:density=0.1", "srbp:density=0.01", "srbp:quantize=4"]
VARIANT_BATCHES = {"mnist": [32, 128], "wide": [128], CONV: []}
# rbp-native-im2col: rbp-native with its float32 convolutions on the portable im2col + GEMM path instead of
# oneDNN (conv net only; the measurement behind using oneDNN where the build has it).
# rbp-native-bf16: rbp-native with Trainer(precision="bf16") (other arithmetic, so not in the agreement
# check or the ratios; opt-in with --impls).
IMPLS = ["rbp-native", "rbp-native-im2col", "numpy", "torch", "torch-compile"]
OPT_IN_IMPLS = ["rbp-native-bf16"]
CONV_IMPLS = ["rbp-native", "rbp-native-im2col", "rbp-native-bf16", "numpy", "torch", "torch-compile"]
CONV_ONLY_IMPLS = ["rbp-native-im2col"]
EPOCH = 60000  # MLP times are scaled to a 60000-example epoch (MNIST's training set)
CONV_EPOCH = 50000  # conv net times to a 50000-example epoch (CIFAR-10's)


def _training_set(name: str, label: str) -> Any:
    """Data set `name`'s training split from RBP_NATIVE_DATA (the default root) or a shared/data folder
    beside or above the repository, the first that loads; None (each failure logged) when none does."""
    import rbp_native as rbp

    for root in [None, os.path.join(ROOT, "..", "shared", "data"), os.path.join(ROOT, "shared", "data")]:
        try:
            train, _ = rbp.datasets.load(name, root=root)
            return train
        except Exception as exc:  # noqa: BLE001 - fall through to the next root / synthetic data
            log(f"{label} not loaded from {root or 'the default root'}: {exc}")
    return None


def load_data(kind: str, examples: int) -> tuple[np.ndarray, np.ndarray, str]:
    if kind in ("auto", "mnist"):
        train = _training_set("mnist", "MNIST")
        if train is not None:
            return (
                np.ascontiguousarray(train.x[:examples], dtype=np.float32),
                np.ascontiguousarray(train.y[:examples], dtype=np.int64),
                f"MNIST training set, first {examples} examples",
            )
        if kind == "mnist":
            raise SystemExit("MNIST not found (set RBP_NATIVE_DATA)")
    rng = np.random.default_rng(0)
    x = rng.random((examples, 784), dtype=np.float32)
    y = rng.integers(0, 10, examples).astype(np.int64)
    return x, y, f"synthetic uniform [0,1) inputs, random labels, {examples} examples"


def load_conv_data(kind: str, examples: int, conv_net: ConvNet) -> tuple[np.ndarray, np.ndarray, str]:
    """CIFAR-10's first `examples` training images (pixels / 255, as the cifar10 experiment trains on them;
    flattened in C, H, W order) where found, else standard-normal images with random labels (kind
    "synthetic", nothing found, or a net whose input is not CIFAR-10's: a smaller one from --conv-net)."""
    shape = (conv_net.channels, conv_net.side, conv_net.side)
    if kind != "synthetic" and shape == (3, 32, 32) and conv_net.classes == 10:
        train = _training_set("cifar10", "CIFAR-10")
        if train is not None:
            if train.x.shape[0] < examples:
                raise SystemExit(f"CIFAR-10's training set has {train.x.shape[0]} images, {examples} asked for")
            return (
                np.ascontiguousarray(train.x[:examples].reshape(examples, -1), dtype=np.float32),
                np.ascontiguousarray(train.y[:examples], dtype=np.int64),
                f"CIFAR-10 training set (pixels / 255), first {examples} images",
            )
    rng = np.random.default_rng(0)
    x = rng.standard_normal((examples, conv_net.input_size), dtype=np.float32)
    y = rng.integers(0, conv_net.classes, examples).astype(np.int64)
    return x, y, f"synthetic standard-normal {'x'.join(map(str, shape))} images, random labels, {examples} examples"


def initial_weights(nets: list[str], algorithms: list[str], conv_net: ConvNet | None = None) -> dict[str, np.ndarray]:
    """Every net's weights and biases (seed 0) and each algorithm's feedback (rbp-native's draw, seed 0),
    named for the init file; the conv net (`conv_net`) with the plain algorithms only."""
    import rbp_native as rbp

    arrays: dict[str, np.ndarray] = {}
    for name in nets:
        if name == CONV:
            arrays.update(conv_initial_weights(conv_net or ConvNet(), [a for a in algorithms if a in ALGORITHMS]))
            continue
        sizes = NETS[name]
        net = rbp.MLP(sizes, seed=0)
        arrays[f"{name}_layers"] = np.array(len(sizes) - 1)
        for h, (w, b) in enumerate(zip(net.weights, net.biases)):
            arrays[f"{name}_W{h}"] = w
            arrays[f"{name}_b{h}"] = b
        for spec in algorithms:
            options = workload_options(spec)
            if options["algorithm"] == "bp":
                continue
            trainer = rbp.Trainer(net, algorithm=options["algorithm"], seed=0, feedback_density=options["density"])
            for h, f in enumerate(trainer.feedback):
                arrays[feedback_key(name, spec, h)] = f
    return arrays


def conv_initial_weights(conv_net: ConvNet, algorithms: list[str]) -> dict[str, np.ndarray]:
    import rbp_native as rbp

    net = conv_net.sequential(seed=0)
    arrays: dict[str, np.ndarray] = {f"{CONV}_layers": np.array(net.num_layers)}
    for h, (w, b) in enumerate(zip(net.weights, net.biases)):
        arrays[f"{CONV}_W{h}"] = w
        arrays[f"{CONV}_b{h}"] = b
    for algorithm in algorithms:
        if algorithm == "bp":
            continue
        trainer = rbp.Trainer(net, algorithm=algorithm, seed=0, threads=1)
        for h, f in enumerate(trainer.feedback):
            arrays[feedback_key(CONV, algorithm, h)] = f
    return arrays


def disagreements(checks: list[dict[str, Any]] | None) -> list[tuple[str, str, float, float]]:
    """(workload, implementation, max |dw| vs rbp-native, max weight change) of every implementation
    whose weights and biases differ from rbp-native's by more than the check's tolerance (relative to the
    largest change; 1e-3 where the check does not say: float32 rounding over three steps of the MLPs stays
    far below it; _worker.TOLERANCE_CONV for the conv net) or are not finite."""
    out = []
    for c in checks or []:
        key = c["key"] if c.get("dtype", "float32") == "float32" else f"{c['key']} ({c['dtype']})"
        change = c["max_weight_change"]
        out += [
            (key, impl, diff, change)
            for impl, diff in c["max_abs_diff"].items()
            if not diff <= c.get("tolerance", 1e-3) * change
        ]
    return out


def flops_per_example(sizes: list[int], spec: str) -> int:
    """2 x multiply-accumulates of the forward pass, the channel and the weight update; sparse
    feedback counts its expected non-zeros only (the paper's channel cost)."""
    options = workload_options(spec)
    algorithm, density = options["algorithm"], options["density"]
    forward = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    hidden = sizes[1:-1]
    if algorithm == "srbp":
        channel = sum(n * sizes[-1] for n in hidden)
    else:  # bp and rbp: layer h+1 to layer h
        channel = sum(a * b for a, b in zip(sizes[1:-1], sizes[2:]))
    return round(2 * (2 * forward + density * channel))


def summarize(
    times: list[float], examples: int, flops: int, epoch: int = EPOCH, batch: int | None = None
) -> dict[str, Any]:
    """Timed epochs of `examples` examples, scaled to `epoch` examples; with `batch`, also the median
    time of one step (the timed epochs' steps all full when `batch` divides `examples`)."""
    scale = epoch / examples
    scaled = [t * scale for t in times]
    med = statistics.median(scaled)
    out = {
        "epoch_s_median": med,
        "epoch_s_min": min(scaled),
        "epoch_s_max": max(scaled),
        "repeats": len(scaled),
        "samples_per_s": epoch / med,
        "gflops": flops * epoch / med / 1e9,
        "epoch_s_all": scaled,
    }
    if batch:
        out["step_s_median"] = statistics.median(times) / -(-examples // batch)
    return out
