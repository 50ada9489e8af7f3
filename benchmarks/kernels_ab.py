"""Whole training epochs with the unpacked product kernels against Eigen's alone, in one process.

    python benchmarks/kernels_ab.py                       # MNIST and wide net, batch 32 and 128, bp
    RBP_NATIVE_ISA=avx2 python benchmarks/kernels_ab.py   # the AVX2 variant's kernels and rule
    python benchmarks/kernels_ab.py --nets 784-100-10 --batches 64 --algorithm srbp --rounds 20

Each round trains one epoch with the selection rule of cpp/src/gemm.cpp ("where-faster") and one
with Eigen's kernels only ("never"), alternating, so that both see the same machine state; prints
one JSON line per workload with the median epoch of each and the median of the per-round ratios
(> 1: the rule's kernels are faster). Synthetic data (the speed does not depend on the values), one
thread.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

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
    args = p.parse_args(argv)
    if not _core._unpacked_gemm_available():
        raise SystemExit(f"the {rbp.isa} variant has no unpacked kernels")
    for net_text in args.nets.split(","):
        sizes = [int(s) for s in net_text.split("-")]
        examples = args.examples or (6000 if max(sizes[1:-1], default=0) <= 100 else 1200)
        rng = np.random.default_rng(0)
        x = rng.random((examples, sizes[0]), dtype=np.float32)
        y = rng.integers(0, sizes[-1], examples).astype(np.int64)
        for batch in (int(b) for b in args.batches.split(",")):
            trainer = rbp.Trainer(
                rbp.MLP(sizes, seed=0), algorithm=args.algorithm, lr=0.01, batch_size=batch, threads=1, seed=0
            )
            core = trainer._core  # the whole epoch in C++, as Trainer.fit runs it
            times: dict[str, list[float]] = {"where-faster": [], "never": []}
            try:
                for _ in range(args.rounds + 1):  # the first round warms up and is dropped
                    for mode, samples in times.items():
                        _core._set_unpacked_gemm(mode)
                        start = time.perf_counter()
                        core.train_epoch(x, y, None, 0)
                        samples.append(time.perf_counter() - start)
            finally:
                _core._set_unpacked_gemm("where-faster")
            rule, eigen = times["where-faster"][1:], times["never"][1:]
            print(
                json.dumps(
                    {
                        "isa": rbp.isa,
                        "net": net_text,
                        "batch": batch,
                        "algorithm": args.algorithm,
                        "examples": examples,
                        "rule_s": statistics.median(rule),
                        "eigen_only_s": statistics.median(eigen),
                        "speedup": statistics.median(e / r for e, r in zip(eigen, rule)),
                    }
                ),
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
