"""Whole training epochs of two builds of rbp-native, alternating in separate processes.

For changes that cannot be switched at run time (kernels_ab.py alternates settings in one process).
The other build is installed beside this environment's, e.g. from a checkout of another commit:

    pip install --no-build-isolation --no-deps --target /tmp/base-pkg . -Ccmake.define.RBP_NATIVE_ISAS=avx512
    python benchmarks/builds_ab.py --other /tmp/base-pkg --batch 32 --threads 1 --rounds 3
    python benchmarks/builds_ab.py --other /tmp/base-pkg --net 784-1000-1000-1000-10 --batch 128 --examples 6000

Each round runs the other build, then this environment's, each in a fresh process that loads MNIST
(from RBP_NATIVE_DATA), trains one warm-up epoch and then --epochs timed ones with ``train_epoch`` as
benchmarks/run.py times it, and prints the median. One line per round: both medians and other ÷ this
(> 1: this environment's build is faster). Stop other work on the machine first.
"""

from __future__ import annotations

import argparse
import json
import os
import site
import statistics
import subprocess
import sys
import time


def child(args: argparse.Namespace) -> None:
    import numpy as np

    import rbp_native as rbp

    train, _ = rbp.datasets.load("mnist")
    n = args.examples or train.x.shape[0]
    x = np.ascontiguousarray(train.x[:n], dtype=np.float32)
    y = np.ascontiguousarray(train.y[:n], dtype=np.int64)
    sizes = [int(s) for s in args.net.split("-")]
    trainer = rbp.Trainer(
        rbp.MLP(sizes, seed=1), algorithm=args.algorithm, lr=0.01, batch_size=args.batch, seed=2, threads=args.threads
    )
    core = trainer._core  # the whole epoch in C++, as benchmarks/run.py times it
    core.train_epoch(x, y, None, 0)
    times = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        core.train_epoch(x, y, None, 0)
        times.append(time.perf_counter() - start)
    print(json.dumps({"median": statistics.median(times), "module": rbp.__file__}))


def run(args: argparse.Namespace, other: str | None) -> dict:
    command = [sys.executable]
    env = dict(os.environ)
    if other is not None:
        # -S: no site-packages .pth files, so that an editable install here cannot shadow the other build.
        command.append("-S")
        env["PYTHONPATH"] = os.pathsep.join([other, *site.getsitepackages()])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in [os.path.join(sys.prefix, "lib"), env.get("LD_LIBRARY_PATH", "")] if p
        )
    command += [__file__, "--child"] + [
        f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k not in ("child", "other", "rounds")
    ]
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    inside = os.path.realpath(result["module"]).startswith(os.path.realpath(other)) if other else None
    if other is not None and not inside:
        raise SystemExit(f"the other build's process imported {result['module']}, not the build in {other}")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--other", help="directory of the other build (pip install --target)")
    p.add_argument("--net", default="784-100-100-100-100-10")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--algorithm", default="bp")
    p.add_argument("--epochs", type=int, default=5, help="timed epochs per process (after one warm-up)")
    p.add_argument("--examples", type=int, default=0, help="MNIST's first N training images (0: all 60,000)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    if not args.other:
        p.error("--other is required")
    for _ in range(args.rounds):
        a = run(args, args.other)["median"]
        b = run(args, None)["median"]
        print(f"other {a:.4f} s, this {b:.4f} s, other/this {a / b:.3f}", flush=True)


if __name__ == "__main__":
    main()
