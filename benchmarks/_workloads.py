"""What the benchmark times: the networks, batches, algorithms and channel variants, the data and
initial weights every implementation starts from, the work per example, and the bookkeeping of
which implementations computed the same math."""

from __future__ import annotations

import os
import statistics
from typing import Any

import numpy as np

from _machine import ROOT, log
from _worker import feedback_key, workload_options  # the workers' own reading of a workload

NETS = {
    "mnist": [784, 100, 100, 100, 100, 10],
    "wide": [784, 1000, 1000, 1000, 10],
}
DEFAULT_BATCHES = {"mnist": [1, 32, 100, 128], "wide": [32, 128]}
ALGORITHMS = ["bp", "rbp", "srbp"]
# Channel variants: sparse feedback (each entry kept with probability P) and quantised signals, at the
# batches where the channel matters most.
VARIANTS = ["rbp:density=0.1", "srbp:density=0.1", "srbp:density=0.01", "srbp:quantize=4"]
VARIANT_BATCHES = {"mnist": [32, 128], "wide": [128]}
IMPLS = ["rbp-native", "numpy", "torch", "torch-compile"]
EPOCH = 60000  # times are scaled to a 60000-example epoch


def load_data(kind: str, examples: int) -> tuple[np.ndarray, np.ndarray, str]:
    if kind in ("auto", "mnist"):
        import rbp_native as rbp

        roots = [None, os.path.join(ROOT, "..", "shared", "data"), os.path.join(ROOT, "shared", "data")]
        for root in roots:
            try:
                train, _ = rbp.datasets.load("mnist", root=root)
            except Exception as exc:  # noqa: BLE001 - fall through to the next root / synthetic data
                log(f"MNIST not loaded from {root or 'the default root'}: {exc}")
                continue
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


def initial_weights(nets: list[str], algorithms: list[str]) -> dict[str, np.ndarray]:
    import rbp_native as rbp

    arrays: dict[str, np.ndarray] = {}
    for name in nets:
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


def disagreements(checks: list[dict[str, Any]] | None) -> list[tuple[str, str, float, float]]:
    """(workload, implementation, max |dw| vs rbp-native, max weight change) of every implementation
    whose weights differ from rbp-native's beyond float32 rounding (float32 rounding over three steps
    stays far below a thousandth of the weights' change) or are not finite."""
    return [
        (c["key"], impl, diff, c["max_weight_change"])
        for c in checks or []
        for impl, diff in c["max_abs_diff"].items()
        if not diff <= 1e-3 * c["max_weight_change"]
    ]


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


def summarize(times: list[float], examples: int, flops: int) -> dict[str, Any]:
    scale = EPOCH / examples
    scaled = [t * scale for t in times]
    med = statistics.median(scaled)
    return {
        "epoch_s_median": med,
        "epoch_s_min": min(scaled),
        "epoch_s_max": max(scaled),
        "repeats": len(scaled),
        "samples_per_s": EPOCH / med,
        "gflops": flops * EPOCH / med / 1e9,
        "epoch_s_all": scaled,
    }
