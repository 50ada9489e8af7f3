"""Training-step time of an MLP whose first layer is sparse, against the dense network.

    python benchmarks/sparse_training.py [--sizes 784 1000 10] [--batch 100] [--threads 1]

Each round times one trainer.step (forward, channel, update) of every configuration in turn, so all
of them see the same machine; the best time of each is reported (other processes only add time).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import rbp_native as rbp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[784, 1000, 10])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--densities", type=float, nargs="+", default=[1.0, 0.5, 0.2, 0.1, 0.05, 0.01])
    parser.add_argument("--algorithms", nargs="+", default=["bp", "srbp"])
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(args.batch, args.sizes[0])).astype(np.float32)
    y = rng.integers(0, args.sizes[-1], size=args.batch)
    layers = len(args.sizes) - 1
    print(
        f"rbp_native {rbp.__version__} ({rbp.isa}), sizes {args.sizes}, batch {args.batch}, "
        f"threads {args.threads}, first layer sparse; best of {args.rounds} rounds, ms per step"
    )
    for algorithm in args.algorithms:
        trainers = []
        for p in args.densities:
            net = rbp.MLP(args.sizes, seed=0, connectivity=[p] + [1.0] * (layers - 1))
            trainers.append(rbp.Trainer(net, algorithm=algorithm, lr=1e-3, threads=args.threads))
        best = [float("inf")] * len(trainers)
        for _ in range(args.rounds):
            for i, trainer in enumerate(trainers):
                start = time.perf_counter()
                trainer.step(x, y)
                best[i] = min(best[i], time.perf_counter() - start)
        for p, t in zip(args.densities, best):
            print(f"  {algorithm:5s} density {p:<5g} {1e3 * t:8.3f} ms   speed-up {best[0] / t:5.2f}")


if __name__ == "__main__":
    main()
