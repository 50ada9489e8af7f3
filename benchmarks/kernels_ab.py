"""Whole training epochs under two settings of the products, alternating in one process.

    python benchmarks/kernels_ab.py                       # MNIST and wide net, batch 32 and 128, bp
    RBP_NATIVE_ISA=avx2 python benchmarks/kernels_ab.py   # the AVX2 variant's kernels and rule
    python benchmarks/kernels_ab.py --nets 784-100-10 --batches 64 --algorithm srbp --rounds 20
    python benchmarks/kernels_ab.py --split 1e6 --threads 2   # split threshold 4M vs 1M MACs/thread
    python benchmarks/kernels_ab.py --elementwise-split 1e18  # elementwise work split vs never split
    python benchmarks/kernels_ab.py --bf16-reuse              # precision="bf16": rounded weights reused or not
    python benchmarks/kernels_ab.py --sparse-inputs --mnist   # first layer on the non-zeros, or not
    python benchmarks/kernels_ab.py --gemm-profile            # AVX-512 selection rule: Zen 4's or generic
    python benchmarks/kernels_ab.py --gemm-blocking           # Eigen's blocking: whole depth or Eigen's own
    python benchmarks/kernels_ab.py --thread-counts --mnist --nets 784-100-100-100-100-10 --batches 128
                                                              # one thread against two

By default each round trains one epoch with the selection rule of cpp/src/gemm.cpp ("where-faster")
and one with Eigen's kernels only ("never"), one thread. With --split MACS it trains one epoch with
the default threshold of cpp/include/rbp/parallel.hpp (a product is split between threads only when
each gets 4M multiply-accumulates) and one with MACS instead, at --threads threads. With
--elementwise-split N the same for the elementwise work's threshold (f and f', the bias rows, f' times
the channel's signal: split when each thread gets 32768 values; N = 1e18 never splits). With
--bf16-reuse the trainer runs with precision="bf16", reusing each step's rounded weights and the fixed
feedback's rounded copies (the default) and rounding every operand at every product. With
--sparse-inputs the first layer runs on the input's non-zeros where the trainer chooses to (the
default: inputs at most 30% non-zero, as MNIST; gemm.hpp's sparse products) and never. With
--gemm-profile the AVX-512 selection rule follows the AMD Zen 4's measurements and the generic (Xeon)
ones (gemm.hpp's GemmProfile), whichever CPU runs it. With --gemm-blocking Eigen's packed kernel keeps
a depth it would split whole and blocks it as Eigen does (gemm.hpp's GemmBlocking), whichever CPU runs it. With
--thread-counts two trainers from the same weights, one on one thread and one on two (does the second
thread pay? On the 2-vCPU AMD EPYC of benchmarks/README.md the answer came in spells of minutes at
batch 128, "Two threads at batch 128": run it a few times, minutes apart). The two settings
alternate, so that both see the same machine state; prints one JSON line per workload with the
median epoch of each and the median of the per-round ratios (> 1: the first setting, the default, or one
thread, is faster).
Synthetic data by default; --mnist trains the 784-input nets on MNIST's first training examples
(from RBP_NATIVE_DATA): about 19% of the pixels non-zero, so that the first layer runs on the
non-zeros (and without that, skips the blank 16-pixel blocks).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Callable

import numpy as np

import rbp_native as rbp
from rbp_native import _core


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nets", default="784-100-100-100-100-10,784-1000-1000-1000-10")
    p.add_argument("--batches", default="32,128")
    p.add_argument("--algorithm", default="bp")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument(
        "--examples",
        type=int,
        default=0,
        help="examples per epoch (default: 6000 for nets of up to 100 units, 1200 above)",
    )
    p.add_argument("--mnist", action="store_true", help="MNIST's training images instead of random inputs")
    p.add_argument("--split", type=float, default=0.0, help="compare this split threshold with the default")
    p.add_argument(
        "--elementwise-split",
        type=float,
        default=0.0,
        help="compare this elementwise split threshold (values per thread) with the default",
    )
    p.add_argument(
        "--bf16-reuse", action="store_true", help='precision="bf16" with and without reusing rounded operands'
    )
    p.add_argument(
        "--sparse-inputs", action="store_true", help="first layer on the input's non-zeros where it suits, or never"
    )
    p.add_argument(
        "--gemm-profile", action="store_true", help="AVX-512 selection rule of a Zen 4 against the generic one"
    )
    p.add_argument(
        "--gemm-blocking",
        action="store_true",
        help="Eigen's packed kernel with the whole depth against Eigen's blocking",
    )
    p.add_argument("--thread-counts", action="store_true", help="one thread against two (two trainers)")
    p.add_argument("--threads", type=int, default=0, help="thread budget (default: 1, or 2 with a --*split)")
    args = p.parse_args(argv)
    if args.thread_counts and (
        args.threads or args.split or args.elementwise_split or args.bf16_reuse or args.sparse_inputs
    ):
        raise SystemExit(
            "--thread-counts compares one thread with two: no --threads, --*split, --bf16-reuse or --sparse-inputs"
        )
    if args.gemm_profile and rbp.isa != "avx512":
        raise SystemExit(f"--gemm-profile compares the AVX-512 variant's rules; this is the {rbp.isa} variant")
    threads = args.threads or (2 if args.split or args.elementwise_split else 1)
    default_split = _core._set_min_macs_per_thread(1.0e6)  # the setters return the threshold in force
    _core._set_min_macs_per_thread(default_split)
    default_elementwise = _core._set_min_elements_per_thread(1)
    _core._set_min_elements_per_thread(default_elementwise)
    # Each setting: the thread count of its trainer, and what to set before its epoch.
    settings: dict[str, tuple[int, Callable[[], object]]]
    if args.thread_counts:
        settings = {"1-thread": (1, lambda: None), "2-threads": (2, lambda: None)}
    elif args.gemm_profile:
        settings = {
            "zen4": (threads, lambda: _core._set_gemm_profile("zen4")),
            "generic": (threads, lambda: _core._set_gemm_profile("generic")),
        }
    elif args.gemm_blocking:
        settings = {
            "whole-depth": (threads, lambda: _core._set_gemm_blocking("whole-depth")),
            "eigen": (threads, lambda: _core._set_gemm_blocking("eigen")),
        }
    elif args.sparse_inputs:
        settings = {
            "sparse": (threads, lambda: _core._set_sparse_products(True)),
            "no-sparse": (threads, lambda: _core._set_sparse_products(False)),
        }
    elif args.bf16_reuse:
        settings = {
            "reuse": (threads, lambda: _core._set_bf16_operand_reuse(True)),
            "no-reuse": (threads, lambda: _core._set_bf16_operand_reuse(False)),
        }
    elif args.elementwise_split:
        elements = int(min(args.elementwise_split, 2.0**62))
        settings = {
            "default": (threads, lambda: _core._set_min_elements_per_thread(default_elementwise)),
            f"elementwise-split-{args.elementwise_split:g}": (
                threads,
                lambda: _core._set_min_elements_per_thread(elements),
            ),
        }
    elif args.split:
        settings = {
            "default": (threads, lambda: _core._set_min_macs_per_thread(default_split)),
            f"split-{args.split:g}": (threads, lambda: _core._set_min_macs_per_thread(args.split)),
        }
    else:
        settings = {
            "where-faster": (threads, lambda: _core._set_unpacked_gemm("where-faster")),
            "never": (threads, lambda: _core._set_unpacked_gemm("never")),
        }

    def restore() -> None:
        _core._set_unpacked_gemm("where-faster")
        _core._set_min_macs_per_thread(default_split)
        _core._set_min_elements_per_thread(default_elementwise)
        _core._set_bf16_operand_reuse(True)
        _core._set_sparse_products(True)
        _core._set_gemm_profile("detect")
        _core._set_gemm_blocking("detect")

    if not (
        args.split
        or args.elementwise_split
        or args.bf16_reuse
        or args.thread_counts
        or args.sparse_inputs
        or args.gemm_blocking
    ) and (not _core._unpacked_gemm_available()):
        raise SystemExit(f"the {rbp.isa} variant has no unpacked kernels")
    for net_text in args.nets.split(","):
        sizes = [int(s) for s in net_text.split("-")]
        examples = args.examples or (6000 if max(sizes[1:-1], default=0) <= 100 else 1200)
        rng = np.random.default_rng(0)
        if args.mnist and sizes[0] == 784 and sizes[-1] == 10:
            train, _ = rbp.datasets.load("mnist")
            x = np.ascontiguousarray(train.x[:examples], dtype=np.float32)
            y = np.ascontiguousarray(train.y[:examples], dtype=np.int64)
        else:
            x = rng.random((examples, sizes[0]), dtype=np.float32)
            y = rng.integers(0, sizes[-1], examples).astype(np.int64)
        for batch in (int(b) for b in args.batches.split(",")):
            cores = {
                count: rbp.Trainer(
                    rbp.MLP(sizes, seed=0),
                    algorithm=args.algorithm,
                    lr=0.01,
                    batch_size=batch,
                    threads=count,
                    seed=0,
                    precision="bf16" if args.bf16_reuse else "float32",
                )._core  # the whole epoch in C++, as Trainer.fit runs it
                for count in {count for count, _ in settings.values()}
            }
            times: dict[str, list[float]] = {name: [] for name in settings}
            try:
                for _ in range(args.rounds + 1):  # the first round warms up and is dropped
                    for name, samples in times.items():
                        count, prepare = settings[name]
                        prepare()
                        start = time.perf_counter()
                        cores[count].train_epoch(x, y, None, 0)
                        samples.append(time.perf_counter() - start)
            finally:
                restore()
            (first, a), (second, b) = ((name, samples[1:]) for name, samples in times.items())
            print(
                json.dumps(
                    {
                        "isa": rbp.isa,
                        "net": net_text,
                        "batch": batch,
                        "algorithm": args.algorithm,
                        "threads": "1 and 2" if args.thread_counts else threads,
                        "precision": "bf16" if args.bf16_reuse else "float32",
                        "examples": examples,
                        "data": "mnist" if args.mnist and sizes[0] == 784 and sizes[-1] == 10 else "random",
                        f"{first}_s": statistics.median(a),
                        f"{second}_s": statistics.median(b),
                        "speedup": statistics.median(t_b / t_a for t_a, t_b in zip(a, b)),
                    }
                ),
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
