"""One benchmark process: times one implementation on a list of workloads (used by run.py).

    python benchmarks/_worker.py CONFIG.json

Runs in its own process so that thread counts are set before any library starts its thread pool,
libraries do not share a process (their OpenMP/BLAS pools would compete for the two cores), and
VmHWM is the peak memory of this implementation alone. Prints one JSON object on stdout.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def _rss_kb() -> int:
    """Peak resident set of this process in KiB. VmHWM, not ru_maxrss: Linux carries ru_maxrss
    over from the parent across fork and exec, so a child would report the parent's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


# The range of quantised signals (rbp-native's default for quantize="signal").
QUANTIZE_ALPHA = 0.125


def workload_options(spec: str) -> dict[str, Any]:
    """A workload's algorithm: "bp", "rbp" or "srbp", with channel options after colons (the syntax
    of benchmarks/cpp/phases.cpp): "density=P" for sparse feedback (rbp, srbp: each entry kept with
    probability P) and "quantize=BITS" for hidden signals quantised to BITS bits (srbp: nearest
    rounding, the default alpha 2^-3). Returns {"algorithm", "density", "quantize_bits" (None: off)}."""
    algorithm, *options = spec.split(":")
    out: dict[str, Any] = {"algorithm": algorithm, "density": 1.0, "quantize_bits": None}
    expected = (
        f"unknown algorithm {spec!r} (expected bp, rbp or srbp, then :density=P with 0 < P <= 1 "
        f"(rbp, srbp) or :quantize=BITS with 2 <= BITS <= 24 (srbp))"
    )
    if algorithm not in ("bp", "rbp", "srbp"):
        raise ValueError(expected)
    for option in options:
        key, _, value = option.partition("=")
        try:
            if key == "density" and algorithm != "bp" and 0.0 < float(value) <= 1.0:
                out["density"] = float(value)
                continue
            if key == "quantize" and algorithm == "srbp" and 2 <= int(value) <= 24:
                out["quantize_bits"] = int(value)
                continue
        except ValueError:
            pass
        raise ValueError(expected)
    return out


def feedback_key(net: str, spec: str, h: int) -> str:
    """Name of a workload's feedback matrix F^h in the init file."""
    return f"{net}_{spec.replace(':', '_').replace('=', '')}_F{h}"


# Agreement tolerances: the largest parameter difference from rbp-native after the check's steps, relative
# to the largest parameter change over them (benchmarks/README.md, "Agreement"). Float32 rounding over three
# steps of the MLPs stays far below a thousandth of the change. In the conv net a max-pool's winner is a
# discontinuous function of its inputs: where two candidates lie within float32 rounding of each other,
# implementations that sum in different orders pick different winners and send that signal elsewhere (one
# such flip in a batch of 128 moved a weight by 1% of its change), so the conv net's math is checked in
# float64, where no flip occurs, to a tolerance that any change of the math exceeds, and its float32 run
# only to the tolerance that tells a flip from a wrong computation.
TOLERANCE_MLP = 1e-3
TOLERANCE_CONV = {"float64": 1e-9, "float32": 0.1}


def _init(init: Any, net: str, algorithm: str) -> tuple[list, list, list]:
    count = int(init[f"{net}_layers"])
    weights = [init[f"{net}_W{h}"] for h in range(count)]
    biases = [init[f"{net}_b{h}"] for h in range(count)]
    feedback = []
    if workload_options(algorithm)["algorithm"] in ("rbp", "srbp"):
        feedback = [init[feedback_key(net, algorithm, h)] for h in range(count - 1)]
    return weights, biases, feedback


def make_trainer(
    impl: str, threads: int, wl: dict[str, Any], weights: list, biases: list, feedback: list, dtype: str = "float32"
) -> Any:
    """Implementation `impl` of workload `wl`'s trainer, from the given parameters."""
    if "conv_net" in wl:
        return make_conv_trainer(impl, threads, wl, weights, biases, feedback, dtype)
    if dtype != "float32":
        raise ValueError(f"the MLP workloads run in float32, not {dtype}")
    spec, batch, lr, decay = wl["algorithm"], int(wl["batch"]), float(wl["lr"]), float(wl["decay"])
    # Sparse feedback: rbp-native is told the density (so that it picks its storage, as a user's run
    # would) and takes the same matrices; the references multiply by them with their zeros, as a
    # numpy or PyTorch user with a masked feedback matrix would.
    options = workload_options(spec)
    algorithm, bits = options["algorithm"], options["quantize_bits"]
    if impl in ("rbp-native", "rbp-native-bf16"):
        import rbp_native as rbp

        sizes = [weights[0].shape[1]] + [w.shape[0] for w in weights]
        net = rbp.MLP(sizes, seed=0)
        net.set_weights(weights)
        net.set_biases(biases)
        quantize = (
            {} if bits is None else {"quantize": "signal", "quantize_bits": bits, "quantize_alpha": QUANTIZE_ALPHA}
        )
        trainer = rbp.Trainer(
            net,
            algorithm=algorithm,
            lr=lr,
            decay=decay,
            batch_size=batch,
            threads=threads,
            seed=0,
            feedback_density=options["density"],
            precision=precision_of(impl),
            **quantize,
        )
        if feedback:
            trainer.set_feedback(feedback)
        return trainer
    if impl == "numpy":
        from references import NumpyTrainer

        return NumpyTrainer(
            weights, biases, feedback, algorithm, lr, decay, batch, quantize_bits=bits, quantize_alpha=QUANTIZE_ALPHA
        )
    if impl in ("torch", "torch-compile"):
        from references import TorchTrainer

        return TorchTrainer(
            weights,
            biases,
            feedback,
            algorithm,
            lr,
            decay,
            batch,
            compile=impl == "torch-compile",
            quantize_bits=bits,
            quantize_alpha=QUANTIZE_ALPHA,
        )
    raise ValueError(impl)


def precision_of(impl: str) -> str:
    """The Trainer precision an rbp-native implementation of the harness runs with."""
    return "bf16" if impl == "rbp-native-bf16" else "float32"


def make_conv_trainer(
    impl: str, threads: int, wl: dict[str, Any], weights: list, biases: list, feedback: list, dtype: str
) -> Any:
    """The conv net's trainer (SGD with momentum), rbp-native through its public API."""
    from conv_references import ConvNet

    conv_net = ConvNet(**wl["conv_net"])
    algorithm, batch = wl["algorithm"], int(wl["batch"])
    lr, decay, momentum = float(wl["lr"]), float(wl["decay"]), float(wl["momentum"])
    if impl in ("rbp-native", "rbp-native-im2col", "rbp-native-bf16"):
        import rbp_native as rbp

        net = conv_net.sequential(seed=0, dtype=dtype)
        net.set_weights(weights)
        net.set_biases(biases)
        trainer = rbp.Trainer(
            net,
            algorithm=algorithm,
            lr=lr,
            decay=decay,
            momentum=momentum,
            batch_size=batch,
            threads=threads,
            seed=0,
            precision=precision_of(impl),
        )
        if feedback:
            trainer.set_feedback(feedback)
        return trainer
    if impl == "numpy":
        from conv_references import NumpyConvTrainer

        return NumpyConvTrainer(conv_net, weights, biases, feedback, algorithm, lr, decay, momentum, batch, dtype=dtype)
    if impl in ("torch", "torch-compile"):
        from conv_references import TorchConvTrainer

        return TorchConvTrainer(
            conv_net,
            weights,
            biases,
            feedback,
            algorithm,
            lr,
            decay,
            momentum,
            batch,
            dtype=dtype,
            compile=impl == "torch-compile",
        )
    raise ValueError(f"no {impl} implementation of the conv net")


def epoch_fn(impl: str, trainer: Any, x: np.ndarray, y: np.ndarray, conv: bool = False) -> Any:
    if impl.startswith("rbp-native") and conv:
        # Public API: one epoch of the timed subset (shuffle, gathering and steps in C++), without the
        # full-set metrics pass that fit makes by default.
        return lambda: trainer.fit((x, y), epochs=1, progress=False, train_metrics="running")
    if impl in ("rbp-native", "rbp-native-bf16"):
        core = trainer._core  # the whole epoch in C++, as Trainer.fit runs it, without metrics passes
        return lambda: core.train_epoch(x, y, None, 0)
    if impl.startswith("torch"):
        import torch

        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        return lambda: trainer.epoch(xt, yt)
    return lambda: trainer.epoch(x, y)


def setup_threads(impl: str, threads: int) -> dict[str, Any]:
    info: dict[str, Any] = {}
    if impl.startswith("torch"):
        import torch

        torch.set_num_threads(threads)
        info["torch_threads"] = torch.get_num_threads()
        info["torch"] = torch.__version__
        info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    if impl == "numpy":
        try:
            from threadpoolctl import threadpool_info, threadpool_limits

            threadpool_limits(threads)
            info["blas"] = [
                {
                    k: p.get(k)
                    for k in ("internal_api", "version", "num_threads", "architecture", "threading_layer", "filepath")
                }
                for p in threadpool_info()
            ]
        except ImportError:
            info["blas"] = "threadpoolctl not installed"
    if impl.startswith("rbp-native"):
        import rbp_native
        from rbp_native._native import _core

        info["rbp_native"] = rbp_native.__version__
        info["isa"] = rbp_native.isa
        if impl == "rbp-native-im2col":
            _core._set_conv_implementation("eigen")
        info["conv_implementation"] = (
            "onednn" if _core._conv_implementation() == "auto" and _core._onednn_available() else "eigen"
        )
    return info


class _Data:
    """The workloads' data files, each read once: indexing an NpzFile reads the whole array again, and
    the copies a process has freed still count in its peak RSS (glibc keeps them), which would
    measure the harness."""

    def __init__(self, paths: dict[str, str]) -> None:
        self.paths = paths
        self.loaded: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def rows(self, net: str, count: int) -> tuple[np.ndarray, np.ndarray]:
        """The first `count` examples of net's data: views, no copies."""
        path = self.paths[net]
        if path not in self.loaded:
            with np.load(path) as data:
                self.loaded[path] = data["x"], data["y"]
        x, y = self.loaded[path]
        if x.shape[0] < count:
            raise ValueError(f"{path} holds {x.shape[0]} examples, the workload needs {count}")
        return np.ascontiguousarray(x[:count]), np.ascontiguousarray(y[:count])


def run_timing(cfg: dict[str, Any]) -> dict[str, Any]:
    impl, threads = cfg["impl"], int(cfg["threads"])
    info = setup_threads(impl, threads)
    data = _Data(cfg["data"])
    init = np.load(cfg["init"])
    results = []
    for wl in cfg["workloads"]:
        x, y = data.rows(wl["net"], int(wl["examples"]))
        weights, biases, feedback = _init(init, wl["net"], wl["algorithm"])
        trainer = make_trainer(impl, threads, wl, weights, biases, feedback)
        run = epoch_fn(impl, trainer, x, y, conv="conv_net" in wl)
        started = time.perf_counter()
        for _ in range(int(cfg["warmup"])):
            run()
        warmup_s = time.perf_counter() - started
        times = []
        for _ in range(int(cfg["epochs"])):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
        results.append({"key": wl["key"], "times": times, "warmup_s": warmup_s, "maxrss_kb": _rss_kb()})
        del trainer, run
    return {"impl": impl, "threads": threads, "info": info, "results": results, "maxrss_kb": _rss_kb()}


def _parameters(impl: str, trainer: Any) -> list[np.ndarray]:
    """Weights, then biases."""
    if impl == "rbp-native":
        return trainer.net.weights + trainer.net.biases
    return trainer.weights() + trainer.biases()


def check_steps(
    impls: list[str], wl: dict[str, Any], init: Any, x: np.ndarray, y: np.ndarray, steps: int, dtype: str
) -> dict[str, Any]:
    """`steps` SGD steps of every implementation on the same batches from the same parameters (one
    thread); the largest parameter difference of each from rbp-native's (the first of `impls`)."""
    batch = int(wl["batch"])
    weights, biases, feedback = _init(init, wl["net"], wl["algorithm"])
    x = x.astype(dtype)
    final: dict[str, list[np.ndarray]] = {}
    losses: dict[str, list[float]] = {}
    for impl in impls:
        trainer = make_trainer(impl, 1, wl, weights, biases, feedback, dtype)
        losses[impl] = []
        for s in range(steps):
            xb, yb = x[s * batch : (s + 1) * batch], y[s * batch : (s + 1) * batch]
            if impl == "rbp-native":
                losses[impl].append(float(trainer.step(xb, yb)) * batch)
                continue
            if impl.startswith("torch"):
                import torch

                loss, _ = trainer.step(torch.from_numpy(xb), torch.from_numpy(yb))
            else:
                loss, _ = trainer.step(xb, yb)
            losses[impl].append(float(loss))
        final[impl] = _parameters(impl, trainer)
    ref = final["rbp-native"]
    row = {
        "key": wl["key"],
        "dtype": dtype,
        "steps": steps,
        "tolerance": TOLERANCE_CONV[dtype] if "conv_net" in wl else TOLERANCE_MLP,
        "max_abs_weight": max(float(np.max(np.abs(p))) for p in ref),
        "max_weight_change": max(float(np.max(np.abs(a - b))) for a, b in zip(ref, weights + biases)),
        "losses": losses,
        "max_abs_diff": {},
    }
    for impl, params in final.items():
        if impl != "rbp-native":
            row["max_abs_diff"][impl] = max(float(np.max(np.abs(a - b))) for a, b in zip(ref, params))
    return row


def run_check(cfg: dict[str, Any]) -> dict[str, Any]:
    """A few SGD steps from the same parameters on the same batches; the largest differences. The conv
    net is checked in float64 and float32 (see TOLERANCE_CONV)."""
    data = _Data(cfg["data"])
    init = np.load(cfg["init"])
    steps = int(cfg.get("steps", 3))
    out = []
    for wl in cfg["workloads"]:
        x, y = data.rows(wl["net"], int(wl["batch"]) * steps)
        conv = "conv_net" in wl
        impls = list(cfg["impls"])
        if impls[0] != "rbp-native":
            raise ValueError(f"the check compares with rbp-native, which must come first: {impls}")
        for dtype in ("float64", "float32") if conv else ("float32",):
            out.append(check_steps(impls, wl, init, x, y, steps, dtype))
    return {"check": out}


def main() -> None:
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    result = run_check(cfg) if cfg.get("mode") == "check" else run_timing(cfg)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
