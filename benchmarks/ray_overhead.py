"""What the Ray backend costs per run, against the local one, on this machine.

Trains the same small synthetic experiment (one variant x N seeds, one short epoch each, one thread per
run) with the local backend (--jobs processes) and the Ray backend (a local Ray instance with --jobs
CPUs, started once per measurement and timed apart), each into a fresh folder, for N = --runs and
N = 2 x --runs. The difference between the two sizes, divided by --runs, is what one more run costs;
the rest is a fixed cost per sweep (starting the processes). Needs the ``ray`` extra.

    python benchmarks/ray_overhead.py                 # 100 and 200 runs, 2 CPUs, fastest of 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from rbp_native import experiments as ex


def experiment(runs: int) -> ex.Experiment:
    return ex.parse_experiment(
        {
            "experiment": {
                "name": "overhead",
                "dataset": "synthetic",
                "epochs": 1,
                "seeds": runs,
                "synthetic": {"train": 2000, "test": 200, "features": 50, "classes": 5},
            },
            "defaults": {"hidden": [20, 20], "batch_size": 50},
            "variant": [{"name": "srbp", "algorithm": "srbp"}],
        },
        "ray_overhead.py",
    )


def timed(exp: ex.Experiment, out: Path, **options) -> float:
    started = time.perf_counter()
    outcome = ex.reproduce(exp, out, threads=1, progress=False, figures=False, write=lambda text: None, **options)
    seconds = time.perf_counter() - started
    assert len(outcome.trained) == len(exp.runs()) and not outcome.failed, outcome
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100, help="runs in the smaller sweep (default 100)")
    parser.add_argument("--jobs", type=int, default=2, help="local processes and Ray CPUs (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="measurements of each; the fastest is kept")
    args = parser.parse_args()
    import ray

    sizes = (args.runs, 2 * args.runs)
    local, on_ray = f"local, --jobs {args.jobs}", f"ray, {args.jobs} CPUs"
    best: dict[tuple[str, int], float] = {}
    ray_start = float("inf")

    def keep(key: tuple[str, int], seconds: float) -> None:
        best[key] = min(best.get(key, seconds), seconds)

    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for runs in sizes:
                keep((local, runs), timed(experiment(runs), Path(tmp) / f"local-{runs}-{repeat}", jobs=args.jobs))
                started = time.perf_counter()
                ray.init("local", num_cpus=args.jobs, include_dashboard=False, logging_level="warning")
                ray_start = min(ray_start, time.perf_counter() - started)
                try:
                    keep((on_ray, runs), timed(experiment(runs), Path(tmp) / f"ray-{runs}-{repeat}", backend="ray"))
                finally:
                    ray.shutdown()
    print(f"fastest of {args.repeats}, wall seconds (Ray's start, {ray_start:.1f} s, not included):\n")
    print(f"| Backend | {sizes[0]} runs | {sizes[1]} runs | per extra run | fixed per sweep |")
    print("|---|---:|---:|---:|---:|")
    marginal = {}
    for label in (local, on_ray):
        small, large = best[(label, sizes[0])], best[(label, sizes[1])]
        marginal[label] = (large - small) / args.runs
        print(
            f"| {label} | {small:.2f} s | {large:.2f} s | {1000 * marginal[label]:.0f} ms | "
            f"{small - args.runs * marginal[label]:.2f} s |"
        )
    print(f"\nRay against the local pool: {1000 * (marginal[on_ray] - marginal[local]):+.0f} ms per run")


if __name__ == "__main__":
    main()
