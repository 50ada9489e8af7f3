"""One-thread and two-thread trainers alternating in one process: does the second thread pay?

    python benchmarks/threads_ab.py                        # MNIST net, batch 128, bp, 10 rounds
    python benchmarks/threads_ab.py --batch 32 --algorithm srbp --rounds 20

Both trainers start from the same weights and train whole epochs (the C++ loop that Trainer.fit runs)
on MNIST's first --examples training images (from RBP_NATIVE_DATA), one epoch each per round, in turns,
so that both see the same machine state; the first round warms up and is dropped. Prints one JSON line
with the median epoch of each and the median of the per-round ratios two ÷ one (< 1: two threads are
faster). On the 2-vCPU AMD EPYC of benchmarks/README.md this ratio was 0.84 in some spells and 1.19-1.28
in others at batch 128 ("Two threads at batch 128"): run it a few times, minutes apart.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

import rbp_native as rbp


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--net", default="784-100-100-100-100-10")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--algorithm", default="bp")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--examples", type=int, default=6000)
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.net.split("-")]
    if sizes[0] != 784 or sizes[-1] != 10:
        raise SystemExit("--net must take MNIST's 784 inputs to 10 classes")
    if args.rounds < 1 or args.examples < args.batch:
        raise SystemExit("--rounds must be at least 1 and --examples at least --batch")
    train, _ = rbp.datasets.load("mnist")
    x = np.ascontiguousarray(train.x[: args.examples], dtype=np.float32)
    y = np.ascontiguousarray(train.y[: args.examples], dtype=np.int64)
    trainers = {
        threads: rbp.Trainer(
            rbp.MLP(sizes, seed=0), algorithm=args.algorithm, lr=0.01, batch_size=args.batch, threads=threads, seed=0
        )._core  # the whole epoch in C++, as Trainer.fit runs it
        for threads in (1, 2)
    }
    times: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.rounds + 1):
        for threads, core in trainers.items():
            start = time.perf_counter()
            core.train_epoch(x, y, None, 0)
            times[threads].append(time.perf_counter() - start)
    one, two = times[1][1:], times[2][1:]
    print(
        json.dumps(
            {
                "isa": rbp.isa,
                "net": args.net,
                "batch": args.batch,
                "algorithm": args.algorithm,
                "examples": args.examples,
                "one_thread_s": statistics.median(one),
                "two_threads_s": statistics.median(two),
                "two_over_one": statistics.median(b / a for a, b in zip(one, two)),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
