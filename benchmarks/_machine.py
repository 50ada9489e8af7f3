"""The benchmark's machine: its description (CPU, memory, versions, BLAS), the environment each
implementation runs in (thread pools, the --isa-cap instruction-set cap), subprocess helpers and
the single-precision GEMM peak (numpy's BLAS here, Eigen's through the C++ programs built on the fly) and
PyTorch's convolution peak (for the conv net)."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORKER = os.path.join(HERE, "_worker.py")

# Environment that holds every implementation to AVX2+FMA (--isa-cap avx2).
AVX2_CAP_ENV = {
    "RBP_NATIVE_ISA": "avx2",  # rbp-native's AVX2 variant
    "OPENBLAS_CORETYPE": "Haswell",  # numpy's OpenBLAS: its AVX2 kernels
    "ATEN_CPU_CAPABILITY": "avx2",  # PyTorch's own vectorised kernels
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",  # PyTorch's GEMM (MKL)
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # PyTorch's oneDNN kernels
}

isa_cap: str | None = None  # set once by run.main() from --isa-cap (set_isa_cap)


def set_isa_cap(cap: str | None) -> None:
    """Hold every implementation started from now on (and this process) to ``cap``."""
    global isa_cap
    isa_cap = cap
    if cap == "avx2":  # this process too: it reports rbp-native's variant and builds the C++ programs for it
        os.environ.update(AVX2_CAP_ENV)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


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
        head = subprocess.run(
            ["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return {"commit": head, "modified_files": len(dirty.splitlines()) if dirty else 0}
    except (OSError, subprocess.CalledProcessError):
        return {}


def versions() -> dict[str, Any]:
    out: dict[str, Any] = {"numpy": np.__version__}
    import rbp_native

    out["rbp_native"] = rbp_native.__version__
    out["rbp_native_isa"] = rbp_native.isa
    out["rbp_native_path"] = os.path.dirname(rbp_native.__file__)
    code = (
        "import torch, json; print(json.dumps([torch.__version__, torch.__config__.parallel_info(), "
        "torch.backends.cpu.get_cpu_capability()]))"
    )
    try:
        res = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=clean_env(1, "torch"),
        )
        v, parallel, capability = json.loads(res.stdout)
        out["torch"] = v
        out["torch_parallel_info"] = parallel.strip().splitlines()[:8]
        out["torch_cpu_capability"] = capability
    except Exception:  # noqa: BLE001 - torch is optional
        out["torch"] = None
    return out


def python_json(code: str, threads: int, impl: str, error_chars: int = 1000) -> Any:
    """What Python `code` prints as JSON, run in a fresh interpreter with `impl`'s environment at
    `threads` threads (clean_env); {"error": the end of its stderr} when it prints none."""
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=clean_env(threads, impl), check=False
    )
    try:
        return json.loads(res.stdout)
    except json.JSONDecodeError:
        return {"error": res.stderr[-error_chars:]}


def numpy_blas() -> Any:
    code = (
        "import json, numpy\n"
        "try:\n from threadpoolctl import threadpool_info\n info = threadpool_info()\n"
        "except ImportError:\n info = None\n"
        "cfg = numpy.show_config(mode='dicts') if hasattr(numpy, 'show_config') else None\n"
        "try:\n deps = cfg['Build Dependencies']\nexcept Exception:\n deps = None\n"
        "print(json.dumps({'threadpoolctl': info, 'build_dependencies': deps}, default=str))\n"
    )
    return python_json(code, 1, "numpy", error_chars=2000)


def run_worker(cfg: dict[str, Any], impl: str, threads: int, timeout: float) -> dict[str, Any] | None:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(cfg, f)
        path = f.name
    try:
        res = subprocess.run(
            [sys.executable, WORKER, path],
            capture_output=True,
            text=True,
            env=clean_env(threads, impl),
            timeout=timeout,
            check=False,
        )
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
    return python_json(code, threads, "numpy-gemm")


def torch_conv_peak(threads: int, seconds: float, batch: int = 128) -> dict[str, Any]:
    """PyTorch's speed on one convolution of the conv net's largest block, 64x16x16 -> 64 channels, 5x5,
    "same" padding, forward only (what its CPU backend runs fastest), best of repeats in GFLOP/s: the
    peak that the conv net's "% of conv peak" uses."""
    flops = 2 * batch * 64 * 16 * 16 * 64 * 5 * 5
    code = f"""
import json, time, torch
torch.set_num_threads({threads})
g = torch.Generator().manual_seed(0)
x = torch.randn(({batch}, 64, 16, 16), generator=g); k = torch.randn((64, 64, 5, 5), generator=g)
with torch.no_grad():
    conv = lambda: torch.nn.functional.conv2d(x, k, padding=2)
    conv()
    rates = []; start = time.perf_counter()
    while len(rates) < 3 or time.perf_counter() - start < {seconds}:
        t = time.perf_counter(); conv(); rates.append({flops} / (time.perf_counter() - t) / 1e9)
rates.sort(); print(json.dumps({{"shape": "{batch}x64x16x16 -> 64, 5x5, padding 2", "threads": {threads},
    "repeats": len(rates), "gflops_best": rates[-1], "gflops_median": rates[len(rates) // 2]}}))
"""
    return python_json(code, threads, "torch")


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
    res = subprocess.run(
        [cmake, "--build", build_dir, "--parallel", jobs, "--target", *targets],
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode != 0:
        raise RuntimeError("cmake build failed:\n" + res.stdout[-3000:] + res.stderr[-2000:])
    return {"gemm_peak": os.path.join(build_dir, targets[0]), "phases": os.path.join(build_dir, targets[1])}


def run_json(args: list[str], threads: int) -> dict[str, Any]:
    res = subprocess.run(
        args, capture_output=True, text=True, env=clean_env(threads, "native"), timeout=600, check=False
    )
    if res.returncode != 0:
        return {"error": (res.stderr or res.stdout)[-1000:]}
    return json.loads(res.stdout.strip().splitlines()[-1])
