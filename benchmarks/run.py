"""Training-speed benchmark of rbp-native against numpy and PyTorch (CPU), in one command.

    python benchmarks/run.py                 # full run (about half an hour on 2 cores)
    python benchmarks/run.py --quick         # a few workloads, one round (a few minutes)

The same training math (see benchmarks/references.py) is implemented three ways (rbp-native,
numpy float32, PyTorch eager, plus PyTorch through torch.compile when it works here) and timed in
the same run, on the same data, weights and thread count. Each implementation runs in its own
subprocess (thread pools set before import, peak RSS per implementation); rounds interleave the
implementations so that a noisy neighbour hurts all of them alike. Also measured: the machine's
single-precision GEMM peak (Eigen's kernels at rbp-native's instruction set, and numpy's BLAS), a
numerical agreement check, and a breakdown of rbp-native's step into forward, channel and update
(benchmarks/cpp/phases.cpp, built with CMake on the fly).

With --isa-cap avx2 every implementation is held to AVX2+FMA, as on a laptop CPU without AVX-512:
rbp-native's AVX2 variant, numpy's OpenBLAS with its Haswell kernels, PyTorch with its AVX2 kernels
and MKL and oneDNN capped at AVX2 (through their documented environment variables; the worker
records what each library reports), and the GEMM peak measured the same way.

Writes benchmarks/results/<machine>-<date>[-avx2].json and .md (see --out).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORKER = os.path.join(HERE, "_worker.py")
sys.path.insert(0, HERE)
from _worker import feedback_key, workload_options  # noqa: E402 (the workers' own reading of a workload)

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

# Environment that holds every implementation to AVX2+FMA (--isa-cap avx2).
AVX2_CAP_ENV = {
    "RBP_NATIVE_ISA": "avx2",  # rbp-native's AVX2 variant
    "OPENBLAS_CORETYPE": "Haswell",  # numpy's OpenBLAS: its AVX2 kernels
    "ATEN_CPU_CAPABILITY": "avx2",  # PyTorch's own vectorised kernels
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",  # PyTorch's GEMM (MKL)
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # PyTorch's oneDNN kernels
}
isa_cap: str | None = None  # set once by main() from --isa-cap

# Targets of the performance issue, checked at the end (on the thread count of the fastest run).
TARGETS_TEXT = [
    "batch 1 (MNIST net): >= 6x faster than PyTorch and >= 10x faster than numpy",
    "batch 32 and 128 (MNIST net): >= 2x faster than the faster of numpy and PyTorch",
    "wide net batch 128: >= 1.5x faster than the faster of numpy and PyTorch, and >= 80% of the measured GEMM peak",
]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# environment


def clean_env(threads: int, impl: str) -> dict[str, str]:
    env = dict(os.environ)
    # These slow numpy's OpenBLAS down on this machine; the benchmark runs without them.
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    # BLAS pools: only numpy uses numpy's BLAS; elsewhere one thread so that no idle pool spins.
    blas = str(threads) if impl in ("numpy", "numpy-gemm") else "1"
    env.update(OPENBLAS_NUM_THREADS=blas, MKL_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    if isa_cap == "avx2":
        env.update(AVX2_CAP_ENV)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [HERE, env.get("PYTHONPATH", "")] if p)
    return env


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    try:
        with open("/proc/meminfo") as f:
            info["memory_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        from rbp_native import _native

        info["cpu_features"] = sorted(_native.cpu_features())
    except ImportError:
        pass
    try:
        info["load_average_at_start"] = os.getloadavg()
    except OSError:
        pass
    return info


def machine_slug(info: dict[str, Any]) -> str:
    model = re.sub(r"\(R\)|\(TM\)|CPU|Processor|@.*", "", info["cpu"], flags=re.IGNORECASE)
    model = re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-")
    return f"{model}-{info['logical_cpus']}cpu"


def git_describe() -> dict[str, Any]:
    try:
        head = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return {"commit": head, "modified_files": len(dirty.splitlines()) if dirty else 0}
    except (OSError, subprocess.CalledProcessError):
        return {}


def versions() -> dict[str, Any]:
    out: dict[str, Any] = {"numpy": np.__version__}
    import rbp_native

    out["rbp_native"] = rbp_native.__version__
    out["rbp_native_isa"] = rbp_native.isa
    out["rbp_native_path"] = os.path.dirname(rbp_native.__file__)
    code = ("import torch, json; print(json.dumps([torch.__version__, torch.__config__.parallel_info(), "
            "torch.backends.cpu.get_cpu_capability()]))")
    try:
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False,
                             env=clean_env(1, "torch"))
        v, parallel, capability = json.loads(res.stdout)
        out["torch"] = v
        out["torch_parallel_info"] = parallel.strip().splitlines()[:8]
        out["torch_cpu_capability"] = capability
    except Exception:  # noqa: BLE001 - torch is optional
        out["torch"] = None
    return out


def numpy_blas() -> Any:
    code = ("import json, numpy\n"
            "try:\n from threadpoolctl import threadpool_info\n info = threadpool_info()\n"
            "except ImportError:\n info = None\n"
            "cfg = numpy.show_config(mode='dicts') if hasattr(numpy, 'show_config') else None\n"
            "try:\n deps = cfg['Build Dependencies']\nexcept Exception:\n deps = None\n"
            "print(json.dumps({'threadpoolctl': info, 'build_dependencies': deps}, default=str))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean_env(1, "numpy"),
                         check=False)
    try:
        return json.loads(res.stdout)
    except json.JSONDecodeError:
        return {"error": res.stderr[-2000:]}


# ----------------------------------------------------------------------------------------------
# data and initial weights


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
            return (np.ascontiguousarray(train.x[:examples], dtype=np.float32),
                    np.ascontiguousarray(train.y[:examples], dtype=np.int64),
                    f"MNIST training set, first {examples} examples")
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
    return [(c["key"], impl, diff, c["max_weight_change"]) for c in checks or []
            for impl, diff in c["max_abs_diff"].items() if not diff <= 1e-3 * c["max_weight_change"]]


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


# ----------------------------------------------------------------------------------------------
# subprocesses


def run_worker(cfg: dict[str, Any], impl: str, threads: int, timeout: float) -> dict[str, Any] | None:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(cfg, f)
        path = f.name
    try:
        res = subprocess.run([sys.executable, WORKER, path], capture_output=True, text=True,
                             env=clean_env(threads, impl), timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        log(f"  {impl} threads={threads}: timed out after {timeout:.0f}s")
        return None
    finally:
        os.unlink(path)
    if res.returncode != 0:
        log(f"  {impl} threads={threads} failed:\n{res.stderr[-3000:]}")
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])


def numpy_gemm_peak(threads: int, n: int, seconds: float) -> dict[str, Any]:
    code = f"""
import json, time, numpy as np
a = np.random.default_rng(0).random(({n}, {n}), dtype=np.float32); b = a.T.copy(); c = a @ b
rates = []; start = time.perf_counter()
while len(rates) < 3 or time.perf_counter() - start < {seconds}:
    t = time.perf_counter(); np.matmul(a, b, out=c); rates.append(2 * {n}**3 / (time.perf_counter() - t) / 1e9)
rates.sort(); print(json.dumps({{"n": {n}, "threads": {threads}, "repeats": len(rates), "gflops_best": rates[-1],
                                 "gflops_median": rates[len(rates) // 2]}}))
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=clean_env(threads, "numpy-gemm"), check=False)
    try:
        return json.loads(res.stdout)
    except json.JSONDecodeError:
        return {"error": res.stderr[-1000:]}


def build_native_benchmarks(isa: str, build_dir: str) -> dict[str, str]:
    """Configure and build rbp_gemm_peak_<isa> and rbp_phases_<isa>; returns their paths."""
    if isa not in ("sse2", "avx2", "avx512", "native", "baseline"):
        raise RuntimeError(f"no benchmark variant for isa {isa!r}")
    cmake = shutil.which("cmake")
    if not cmake:
        raise RuntimeError("cmake not found")
    args = [cmake, "-S", ROOT, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release", "-DRBP_NATIVE_BENCHMARKS=ON"]
    if shutil.which("ninja"):
        args += ["-G", "Ninja"] if not os.path.exists(os.path.join(build_dir, "CMakeCache.txt")) else []
    if isa == "native":
        args.append("-DRBP_NATIVE_MARCH_NATIVE=ON")
    elif isa != "baseline":
        args.append(f"-DRBP_NATIVE_ISAS={isa}")
    try:
        import pybind11

        args.append(f"-Dpybind11_DIR={pybind11.get_cmake_dir()}")
    except ImportError:
        pass
    res = subprocess.run(args, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError("cmake configure failed:\n" + res.stdout[-2000:] + res.stderr[-2000:])
    targets = [f"rbp_gemm_peak_{isa}", f"rbp_phases_{isa}"]
    jobs = str(os.cpu_count() or 2)
    res = subprocess.run([cmake, "--build", build_dir, "--parallel", jobs, "--target", *targets],
                         capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError("cmake build failed:\n" + res.stdout[-3000:] + res.stderr[-2000:])
    return {"gemm_peak": os.path.join(build_dir, targets[0]), "phases": os.path.join(build_dir, targets[1])}


def run_json(args: list[str], threads: int) -> dict[str, Any]:
    res = subprocess.run(args, capture_output=True, text=True, env=clean_env(threads, "native"), timeout=600,
                         check=False)
    if res.returncode != 0:
        return {"error": (res.stderr or res.stdout)[-1000:]}
    return json.loads(res.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------
# reporting


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


def fmt_s(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:.3g}"


def fmt_x(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}×"


def markdown(report: dict[str, Any]) -> str:
    lines: list[str] = []
    m = report["machine"]
    lines.append(f"# rbp-native training benchmark — {m['cpu']}, {m['logical_cpus']} CPUs, {report['date']}")
    lines.append("")
    lines.append(f"Command: `{report['command']}`  ")
    v = report["versions"]
    lines.append(f"rbp-native {v['rbp_native']} (instruction set **{v['rbp_native_isa']}**, "
                 f"git {report.get('git', {}).get('commit', '?')[:10]}, "
                 f"{report.get('git', {}).get('modified_files', '?')} modified files), numpy {v['numpy']}, "
                 f"torch {v.get('torch')} (CPU capability {v.get('torch_cpu_capability', '?')}); "
                 f"Python {m['python']}; {m['platform']}  ")
    if report.get("isa_cap"):
        lines.append(f"**Every implementation held to {report['isa_cap'].upper()}+FMA** (as on a CPU without "
                     "AVX-512): " + ", ".join(f"`{k}={v}`" for k, v in AVX2_CAP_ENV.items()) + ".  ")
    lines.append(f"Data: {report['data']}; times scaled to a {EPOCH}-example epoch; "
                 f"median of {report['settings']['samples']} epochs (min–max in brackets), "
                 f"{report['settings']['rounds']} interleaved rounds. Load average at start: "
                 f"{m.get('load_average_at_start')}.")
    blas = report.get("numpy_blas", {}).get("threadpoolctl") or []
    if blas:
        lines.append("numpy BLAS: " + "; ".join(f"{b.get('internal_api')} {b.get('version')} "
                                                 f"({b.get('architecture')}, {b.get('threading_layer')})"
                                                 for b in blas))
    lines.append("")
    lines.append("## GEMM peak (single precision, n×n, GFLOP/s, best of repeats)")
    lines.append("")
    lines.append("| threads | Eigen (rbp-native's kernels) | numpy BLAS | peak used |")
    lines.append("|---|---|---|---|")
    for t, p in sorted(report["gemm_peak"].items()):
        e = p.get("eigen", {}).get("gflops_best")
        n = p.get("numpy", {}).get("gflops_best")
        lines.append(f"| {t} | {fmt_s(e)} | {fmt_s(n)} | {fmt_s(p.get('peak'))} |")
    lines.append("")
    if report.get("check"):
        lines.append("## Numerical agreement (3 SGD steps from the same weights, float32)")
        lines.append("")
        lines.append("| workload | max |w| | max weight change | max |Δw| vs rbp-native |")
        lines.append("|---|---|---|---|")
        for c in report["check"]:
            diffs = ", ".join(f"{k} {v:.1e}" for k, v in c["max_abs_diff"].items())
            lines.append(f"| {c['key']} | {c['max_abs_weight']:.3f} | {c['max_weight_change']:.2e} | {diffs} |")
        disagree = [f"{key} ({impl})" for key, impl, _, _ in disagreements(report["check"])]
        lines.append("")
        lines.append("**The implementations disagree** beyond float32 rounding (more than 1e-3 of the weights' "
                     f"change): {', '.join(disagree)}. Their timings do not compare the same math, so an "
                     "implementation that disagrees anywhere is left out of every ratio."
                     if disagree else "All implementations agree to float32 rounding (every difference below 1e-3 "
                     "of the weights' change).")
        lines.append("")
    impls = report["settings"]["impls"]
    for threads in report["settings"]["threads"]:
        lines.append(f"## {threads} thread{'s' if threads > 1 else ''}: seconds per 60000-example epoch")
        lines.append("")
        head = "| net | batch | alg | " + " | ".join(impls) + \
               " | rbp samples/s | × numpy | × torch | × best other | rbp GFLOP/s | % of peak |"
        lines.append(head)
        lines.append("|" + "---|" * (head.count("|") - 1))
        for w in report["workloads"]:
            if w["threads"] != threads:
                continue
            cells = []
            for impl in impls:
                r = w["impls"].get(impl)
                cells.append("—" if not r else f"{r['epoch_s_median']:.3g} ({r['epoch_s_min']:.3g}–{r['epoch_s_max']:.3g})")
            rb = w["impls"].get("rbp-native") or {}
            rt = w["ratios"]
            lines.append(f"| {w['net']} | {w['batch']} | {w['algorithm']} | " + " | ".join(cells) +
                         f" | {rb.get('samples_per_s', 0):,.0f} | {fmt_x(rt.get('numpy'))} | "
                         f"{fmt_x(rt.get('torch_best'))} | {fmt_x(rt.get('best_other'))} | "
                         f"{fmt_s(rb.get('gflops'))} | {fmt_s(rb.get('pct_peak'))} |")
        lines.append("")
    lines.append("× torch uses the faster of eager PyTorch and torch.compile; × best other the fastest of numpy, "
                 "PyTorch eager and torch.compile. GFLOP/s counts 2 × the multiply-accumulates of the forward "
                 "pass, the channel and the weight update; % of peak is against the GEMM peak at the same thread "
                 "count.")
    lines.append("")
    thread_counts = sorted({w["threads"] for w in report["workloads"]})
    lines.append("## Thread scaling (median epoch seconds; in brackets the speed-up over one thread)")
    lines.append("")
    lines.append("| net | batch | alg | implementation | " + " | ".join(f"{t} thr." for t in thread_counts) + " |")
    lines.append("|---|---|---|---|" + "---|" * len(thread_counts))
    by_key: dict[tuple, dict[int, Any]] = {}
    for w in report["workloads"]:
        by_key.setdefault((w["net"], w["batch"], w["algorithm"]), {})[w["threads"]] = w
    for (net, batch, alg), per in by_key.items():
        for impl in impls:
            runs = {t: per.get(t, {}).get("impls", {}).get(impl) for t in thread_counts}
            if not any(runs.values()):
                continue
            one = runs.get(1)
            cells = []
            for t in thread_counts:
                r = runs[t]
                if not r:
                    cells.append("—")
                elif one and t != 1:
                    cells.append(f"{r['epoch_s_median']:.3g} ({one['epoch_s_median'] / r['epoch_s_median']:.2f}×)")
                else:
                    cells.append(f"{r['epoch_s_median']:.3g}")
            lines.append(f"| {net} | {batch} | {alg} | {impl} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("## Peak memory (VmHWM of each implementation's process, MiB, max over its workloads)")
    lines.append("")
    lines.append("| net | threads | " + " | ".join(impls) + " |")
    lines.append("|---|---|" + "---|" * len(impls))
    for key, row in sorted(report["rss_mib"].items()):
        net, threads = key.split("/")
        lines.append(f"| {net} | {threads} | " + " | ".join(fmt_s(row.get(i)) for i in impls) + " |")
    lines.append("")
    if report.get("phases"):
        lines.append("## Where rbp-native's step goes (µs per batch, benchmarks/cpp/phases.cpp)")
        lines.append("")
        lines.append("| net | batch | alg | threads | step | forward | channel | update | rest | epoch (per batch) "
                     "| GFLOP/s of forward+channel+update | % of peak |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for p in report["phases"]:
            u = p.get("us_per_batch")
            if not u:
                continue
            products_us = u["forward"] + u["channel"] + u["update"]
            sizes = report["settings"]["nets"].get(p["net"])
            gflops = (flops_per_example(sizes, p["algorithm"]) * p["batch"] / products_us / 1e3
                      if sizes and products_us > 0 else None)
            peak = report["gemm_peak"].get(str(p["threads"]), {}).get("peak")
            lines.append(f"| {p['net']} | {p['batch']} | {p['algorithm']} | {p['threads']} | {u['step']:.1f} | "
                         f"{u['forward']:.1f} | {u['channel']:.1f} | {u['update']:.1f} | {u['rest']:.1f} | "
                         f"{u['epoch']:.1f} | {fmt_s(gflops)} | {fmt_s(100 * gflops / peak if gflops and peak else None)} |")
        lines.append("")
        lines.append("The forward, channel and update phases are almost all matrix products (the forward phase also "
                     "applies the activation): their GFLOP/s is what the step's products reach in place, an upper "
                     "bound on what the whole step can reach with these kernels.")
        lines.append("")
    if report.get("targets"):
        lines.append("## Targets")
        lines.append("")
        lines.append("| target | measured | met |")
        lines.append("|---|---|---|")
        for t in report["targets"]:
            lines.append(f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |")
        lines.append("")
    if report.get("notes"):
        lines.append("## Notes")
        lines.append("")
        for n in report["notes"]:
            lines.append(f"- {n}")
        lines.append("")
    return "\n".join(lines)


def evaluate_targets(workloads: list[dict[str, Any]], excluded: set[str]) -> list[dict[str, Any]]:
    """The issue's bars against the measured medians; `excluded` implementations (whose math disagreed
    with rbp-native's) take no part."""
    out = []

    def best_threads(net: str, batch: int, alg: str) -> dict[str, Any] | None:
        cands = [w for w in workloads if w["net"] == net and w["batch"] == batch and w["algorithm"] == alg
                 and "rbp-native" in w["impls"]]
        return min(cands, key=lambda w: w["impls"]["rbp-native"]["epoch_s_median"]) if cands else None

    def fastest(net: str, batch: int, alg: str, impls: tuple[str, ...]) -> float | None:
        vals = [w["impls"][i]["epoch_s_median"] for w in workloads if w["net"] == net and w["batch"] == batch
                and w["algorithm"] == alg for i in impls if i in w["impls"] and i not in excluded]
        return min(vals) if vals else None

    def demand(w: dict[str, Any], other: float, bar: float) -> str:
        """What meeting `bar` × `other` would take: rbp-native's GFLOP/s and its share of the GEMM peak."""
        r = w["impls"]["rbp-native"]
        gflops, pct = r.get("gflops"), r.get("pct_peak")
        if not gflops or not pct:
            return ""
        needed = gflops * r["epoch_s_median"] * bar / other
        threads = w["threads"]
        return (f"; the bar needs {needed:.0f} GFLOP/s = {100 * needed / (100 * gflops / pct):.0f}% of the "
                f"{threads}-thread peak (rbp-native's best thread count here)")

    # Each implementation at its best thread count.
    for alg in ALGORITHMS:
        w = best_threads("mnist", 1, alg)
        if w:
            r = w["impls"]["rbp-native"]["epoch_s_median"]
            torch_t = fastest("mnist", 1, alg, ("torch", "torch-compile"))
            np_t = fastest("mnist", 1, alg, ("numpy",))
            if torch_t and np_t:
                out.append({"target": f"MNIST net batch 1 {alg}: ≥6× PyTorch, ≥10× numpy",
                            "measured": f"{torch_t / r:.1f}× PyTorch, {np_t / r:.1f}× numpy",
                            "met": torch_t / r >= 6 and np_t / r >= 10})
        for batch in (32, 128):
            w = best_threads("mnist", batch, alg)
            other = fastest("mnist", batch, alg, ("numpy", "torch", "torch-compile"))
            if w and other:
                r = w["impls"]["rbp-native"]["epoch_s_median"]
                out.append({"target": f"MNIST net batch {batch} {alg}: ≥2× the faster of numpy/PyTorch",
                            "measured": f"{other / r:.2f}×" + demand(w, other, 2.0), "met": other / r >= 2})
        w = best_threads("wide", 128, alg)
        other = fastest("wide", 128, alg, ("numpy", "torch", "torch-compile"))
        if w and other:
            r = w["impls"]["rbp-native"]
            pct = r.get("pct_peak")
            out.append({"target": f"wide net batch 128 {alg}: ≥1.5× the faster other, ≥80% of GEMM peak",
                        "measured": f"{other / r['epoch_s_median']:.2f}×, {pct:.0f}% of peak "
                                    f"({w['threads']} thread{'s' if w['threads'] > 1 else ''})"
                                    + demand(w, other, 1.5),
                        "met": other / r["epoch_s_median"] >= 1.5 and (pct or 0) >= 80})
    return out


# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a few workloads, one round")
    p.add_argument("--nets", default="mnist,wide")
    p.add_argument("--batches", default=None, help="batch sizes for every net (default: per net)")
    p.add_argument("--algorithms", default=",".join(ALGORITHMS),
                   help="at every batch: bp, rbp, srbp, or a variant (see --variants)")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help="channel variants (ALG:density=P sparse feedback, srbp:quantize=BITS quantised signals), "
                        "run at the batches of --variant-batches only ('' for none)")
    p.add_argument("--variant-batches", default=None,
                   help="batch sizes of the variants for every net (default: mnist "
                        f"{','.join(map(str, VARIANT_BATCHES['mnist']))}, wide {','.join(map(str, VARIANT_BATCHES['wide']))})")
    p.add_argument("--impls", default=None,
                   help=f"default {','.join(IMPLS)} (without torch-compile under --isa-cap: see the README)")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--examples", type=int, default=6000, help="examples per timed epoch, MNIST net")
    p.add_argument("--wide-examples", type=int, default=3000, help="examples per timed epoch, wide net")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (torch.compile runs once)")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs per workload and round")
    p.add_argument("--data", default="auto", choices=["auto", "mnist", "synthetic"])
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--decay", type=float, default=1e-6)
    p.add_argument("--build-dir", default=os.path.join(ROOT, "build", "bench"))
    p.add_argument("--no-native-bench", action="store_true", help="skip the C++ GEMM peak and phase breakdown")
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument("--machine", default=None, help="name used in the result file names")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per worker process")
    p.add_argument("--isa-cap", choices=["avx2"], default=None,
                   help="hold every implementation to AVX2+FMA (a CPU without AVX-512); results get an -avx2 suffix")
    args = p.parse_args(argv)
    global isa_cap
    isa_cap = args.isa_cap
    if isa_cap == "avx2":  # this process too: it reports rbp-native's variant and builds the C++ programs for it
        os.environ.update(AVX2_CAP_ENV)

    nets = [n for n in args.nets.split(",") if n]
    algorithms = [a for a in args.algorithms.split(",") if a]
    # torch 2.13's torch.compile miscompiles this training step under ATEN_CPU_CAPABILITY=avx2 (NaN
    # weights after three steps, caught by the agreement check), so a capped run leaves it out
    # unless asked for.
    impls = [i for i in (args.impls or ",".join(i for i in IMPLS if not (isa_cap and i == "torch-compile"))).split(",")
             if i]
    threads_list = [int(t) for t in args.threads.split(",") if t]
    batches = {n: ([int(b) for b in args.batches.split(",")] if args.batches else DEFAULT_BATCHES[n]) for n in nets}
    variants = [a for a in args.variants.split(",") if a]
    variant_batches = {n: ([int(b) for b in args.variant_batches.split(",")] if args.variant_batches
                           else VARIANT_BATCHES[n]) for n in nets}
    if args.quick:
        batches = {n: ([1, 128] if n == "mnist" else [128]) for n in nets}
        algorithms = [a for a in algorithms if a in ("bp", "srbp")] or algorithms
        variants = []
        args.rounds, args.epochs = 1, 3
    for spec in algorithms + variants:
        try:
            workload_options(spec)
        except ValueError as e:
            p.error(str(e))
    command = "python " + " ".join([os.path.relpath(__file__, os.getcwd())] + (argv if argv is not None else sys.argv[1:]))

    import rbp_native

    info = machine_info()
    report: dict[str, Any] = {
        "command": command,
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "machine": info,
        "git": git_describe(),
        "versions": versions(),
        "numpy_blas": numpy_blas(),
        "isa_cap": isa_cap,
        "notes": [],
    }
    if isa_cap and args.impls is None:
        report["notes"].append("torch.compile is left out under the instruction-set cap: torch 2.13's compiled step "
                               "gives NaN weights with ATEN_CPU_CAPABILITY=avx2 on this machine (the agreement "
                               "check catches it when asked for with --impls).")
    if report["versions"].get("torch") is None:
        impls = [i for i in impls if not i.startswith("torch")]
        report["notes"].append("PyTorch is not installed: its columns are skipped.")
    log(f"rbp-native {rbp_native.__version__} isa={rbp_native.isa}; impls {impls}; threads {threads_list}")

    max_examples = max(args.examples, args.wide_examples)
    x, y, data_desc = load_data(args.data, max_examples)
    report["data"] = data_desc
    tmp = tempfile.mkdtemp(prefix="rbp-bench-")
    data_path = os.path.join(tmp, "data.npz")
    init_path = os.path.join(tmp, "init.npz")
    np.savez(data_path, x=x, y=y)
    np.savez(init_path, **initial_weights(nets, algorithms + variants))

    workloads = []
    for net in nets:
        runs = [(batch, alg) for batch in batches[net] for alg in algorithms]
        runs += [(batch, alg) for batch in variant_batches[net] for alg in variants if (batch, alg) not in runs]
        for batch, alg in sorted(runs, key=lambda r: r[0]):
            workloads.append({"net": net, "batch": batch, "algorithm": alg,
                              "examples": args.examples if net == "mnist" else args.wide_examples,
                              "key": f"{net}/b{batch}/{alg}"})
    base_cfg = {"data": data_path, "init": init_path, "lr": args.lr, "decay": args.decay}

    # 1. numerical agreement
    check_impls = [i for i in ["rbp-native", "numpy", "torch", "torch-compile"] if i in impls]
    if "rbp-native" in check_impls and len(check_impls) > 1:
        log("numerical check")
        check_wl = [w for w in workloads if w["batch"] == max(batches[w["net"]])]
        res = run_worker({**base_cfg, "mode": "check", "impls": check_impls, "workloads": check_wl, "steps": 3},
                         "check", 1, args.timeout)
        report["check"] = res["check"] if res else None
        for key, impl, diff, change in disagreements(report["check"]):
            log(f"WARNING: {impl} disagrees with rbp-native on {key} by {diff:.1e} (weights changed by {change:.1e})")

    # 2. native benchmark programs
    programs: dict[str, str] = {}
    if not args.no_native_bench:
        log(f"building the C++ benchmark programs ({rbp_native.isa}) in {args.build_dir}")
        try:
            programs = build_native_benchmarks(rbp_native.isa, args.build_dir)
        except Exception as exc:  # noqa: BLE001
            report["notes"].append(f"C++ benchmark programs not built ({str(exc).splitlines()[0]}): no Eigen GEMM "
                                   "peak and no phase breakdown.")
            log(str(exc))

    # 3. timing rounds, interleaved
    samples: dict[tuple[str, int, str], list[float]] = {}
    rss: dict[str, dict[str, float]] = {}
    warmups: dict[str, float] = {}
    worker_info: dict[str, Any] = {}
    gemm: dict[int, dict[str, list[dict[str, Any]]]] = {t: {"eigen": [], "numpy": []} for t in threads_list}
    compile_done = False
    for rnd in range(args.rounds):
        for threads in threads_list:
            # the GEMM peak, measured in every round alongside the training runs
            gemm[threads]["numpy"].append(numpy_gemm_peak(threads, 2048, 1.0))
            if "gemm_peak" in programs:
                gemm[threads]["eigen"].append(run_json([programs["gemm_peak"], "2048", str(threads), "1.0"], threads))
            for net in nets:
                net_wl = [w for w in workloads if w["net"] == net]
                for impl in impls:
                    epochs = args.epochs
                    if impl == "torch-compile":
                        if rnd > 0 and compile_done:
                            continue
                        epochs = args.epochs * args.rounds  # compiled once, all samples in one process
                    log(f"round {rnd + 1}/{args.rounds}: {impl} {net} threads={threads}")
                    cfg = {**base_cfg, "impl": impl, "threads": threads, "workloads": net_wl,
                           "warmup": 1, "epochs": epochs}
                    res = run_worker(cfg, impl, threads, args.timeout)
                    if not res:
                        continue
                    worker_info[impl] = res["info"]
                    for r in res["results"]:
                        samples.setdefault((impl, threads, r["key"]), []).extend(r["times"])
                        if impl == "torch-compile":
                            warmups[f"{r['key']}/t{threads}"] = r["warmup_s"]
                    key = f"{net}/{threads}"
                    rss.setdefault(key, {})[impl] = max(rss.get(key, {}).get(impl, 0.0), res["maxrss_kb"] / 1024)
        compile_done = True
    report["worker_info"] = worker_info
    if isa_cap and worker_info.get("rbp-native", {}).get("isa", isa_cap) != isa_cap:
        report["notes"].append(f"rbp-native ran its {worker_info['rbp-native']['isa']} variant, not {isa_cap}.")
    if warmups:
        report["torch_compile_warmup_s"] = warmups

    # 4. GEMM peak
    peaks: dict[str, Any] = {}
    for threads in threads_list:
        entry: dict[str, Any] = {}
        for lib in ("eigen", "numpy"):
            runs = [g for g in gemm[threads][lib] if "gflops_best" in g]
            if runs:
                best = max(runs, key=lambda g: g["gflops_best"])
                entry[lib] = {**best, "rounds": [g["gflops_best"] for g in runs]}
        entry["peak"] = max([e["gflops_best"] for e in entry.values()] or [None]) if entry else None
        peaks[str(threads)] = entry
    report["gemm_peak"] = peaks

    # 5. summaries
    wrong_math = {impl for _, impl, _, _ in disagreements(report.get("check"))}
    out_wl = []
    for threads in threads_list:
        for w in workloads:
            sizes = NETS[w["net"]]
            flops = flops_per_example(sizes, w["algorithm"])
            entry = {"net": w["net"], "sizes": sizes, "batch": w["batch"], "algorithm": w["algorithm"],
                     "threads": threads, "examples_per_timed_epoch": w["examples"],
                     "flops_per_example": flops, "impls": {}, "ratios": {}}
            for impl in impls:
                ts = samples.get((impl, threads, w["key"]))
                if ts:
                    entry["impls"][impl] = summarize(ts, w["examples"], flops)
            rb = entry["impls"].get("rbp-native")
            peak = peaks.get(str(threads), {}).get("peak")
            if rb:
                if peak:
                    rb["pct_peak"] = 100.0 * rb["gflops"] / peak
                r = rb["epoch_s_median"]
                medians = {i: v["epoch_s_median"] for i, v in entry["impls"].items() if i not in wrong_math}
                get = medians.get
                torch_times = [t for t in (get("torch"), get("torch-compile")) if t]
                others = [t for t in (get("numpy"), get("torch"), get("torch-compile")) if t]
                entry["ratios"] = {
                    "numpy": get("numpy") / r if get("numpy") else None,
                    "torch": get("torch") / r if get("torch") else None,
                    "torch_compile": get("torch-compile") / r if get("torch-compile") else None,
                    "torch_best": min(torch_times) / r if torch_times else None,
                    "best_other": min(others) / r if others else None,
                }
            out_wl.append(entry)
    report["workloads"] = out_wl
    report["rss_mib"] = rss
    report["settings"] = {"impls": impls, "threads": threads_list, "rounds": args.rounds, "epochs": args.epochs,
                          "samples": args.rounds * args.epochs, "examples": args.examples,
                          "wide_examples": args.wide_examples, "lr": args.lr, "decay": args.decay,
                          "nets": {n: NETS[n] for n in nets}}

    if wrong_math:
        report["notes"].append(f"Left out of every ratio, as their weights disagree with rbp-native's in the "
                               f"agreement check: {', '.join(sorted(wrong_math))}.")

    # 6. phase breakdown
    if "phases" in programs:
        log("phase breakdown")
        phases = []
        for threads in threads_list:
            for w in workloads:
                res = run_json([programs["phases"], "-".join(map(str, NETS[w["net"]])), str(w["batch"]),
                                w["algorithm"], str(threads), "0.3"], threads)
                phases.append({"net": w["net"], "batch": w["batch"], "algorithm": w["algorithm"],
                               "threads": threads, **res})
        report["phases"] = phases

    report["targets"] = evaluate_targets(out_wl, wrong_math)
    report["notes"].append("Targets are checked with each implementation at its best thread count.")
    try:
        report["machine"]["load_average_at_end"] = os.getloadavg()
    except OSError:
        pass

    os.makedirs(args.out, exist_ok=True)
    slug = args.machine or machine_slug(info)
    stem = os.path.join(args.out, f"{slug}-{_dt.date.today().isoformat()}" + (f"-{isa_cap}" if isa_cap else ""))
    with open(stem + ".json", "w") as f:
        json.dump(report, f, indent=1)
    with open(stem + ".md", "w") as f:
        f.write(markdown(report))
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"wrote {stem}.json and {stem}.md")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
