"""``rbp-native theory [SYSTEM] [--seed N] [--plot DIR] [--list]``.

Integrates each of the paper's ODE systems, applies its theorem, and prints one table row
per check: system | theorem | prediction | integrated | difference | verdict.
Exit status 0 when every verdict is OK, 1 otherwise, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any, TextIO

import numpy as np

from .systems import REGISTRY, Check, make_systems

__all__ = ["add_arguments", "format_table", "run", "run_checks"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``theory`` command's arguments to ``parser``."""
    parser.add_argument(
        "system", nargs="?", default=None, metavar="SYSTEM", help="system to check (default: all); see --list"
    )
    parser.add_argument("--list", action="store_true", help="list the systems and exit")
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="draw random parameters and initial states from this seed (default: the fixed default parameters)",
    )
    parser.add_argument(
        "--plot", metavar="DIR", default=None, help="also write the figures (PNG) into DIR (needs matplotlib)"
    )
    parser.add_argument("--params", action="store_true", help="print each system's parameters before its rows")


def run_checks(
    names: list[str] | None = None, seed: int | None = None, params_out: TextIO | None = None
) -> list[Check]:
    """All check rows for the given catalogue entries (default: all)."""
    names = list(REGISTRY) if names is None else names
    rows: list[Check] = []
    for i, name in enumerate(names):
        rng = None if seed is None else np.random.default_rng([seed, i])
        for system in make_systems(name, rng):
            if params_out is not None:
                print(f"# {name}: {system!r}", file=params_out)
            rows.extend(system.checks())
    return rows


def _fmt(v: Any, width: int = 44) -> str:
    if isinstance(v, str):
        s = v
    elif isinstance(v, (bool, np.bool_)):
        s = str(bool(v))
    elif isinstance(v, (int, np.integer)):
        s = str(int(v))
    elif isinstance(v, (float, np.floating)):
        s = f"{float(v):.7g}" if math.isfinite(v) else str(float(v))
    elif isinstance(v, tuple):
        s = "(" + ", ".join(_fmt(x, width) for x in v) + ")"
    else:
        a = np.asarray(v, dtype=float).ravel()
        s = "[" + ", ".join(f"{x:.5g}" for x in a) + "]"
    return s if len(s) <= width else s[: width - 3] + "..."


def format_table(rows: list[Check]) -> str:
    header = ("system", "theorem", "prediction", "integrated", "difference", "verdict")
    body = [
        (
            r.system,
            r.name,
            _fmt(r.prediction),
            _fmt(r.integrated),
            f"{r.difference:.2e}" if math.isfinite(r.difference) else str(r.difference),
            r.verdict,
        )
        for r in rows
    ]
    widths = [max(len(header[j]), *(len(b[j]) for b in body)) if body else len(header[j]) for j in range(len(header))]
    widths[1] = min(widths[1], 60)

    def line(cells) -> str:
        return " | ".join(str(c)[:w].ljust(w) for c, w in zip(cells, widths)).rstrip()

    out = [line(header), "-+-".join("-" * w for w in widths)]
    out.extend(line(b) for b in body)
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    """Run the ``theory`` command; returns the exit status."""
    out = sys.stdout
    if getattr(args, "list", False):
        width = max(len(n) for n in REGISTRY)
        for name, (desc, _, _) in REGISTRY.items():
            print(f"{name.ljust(width)}  {desc}", file=out)
        return 0
    system = getattr(args, "system", None)
    if system is not None and system not in REGISTRY:
        print(f"unknown system {system!r}; known: {', '.join(REGISTRY)}", file=sys.stderr)
        return 2
    names = None if system is None else [system]
    seed = getattr(args, "seed", None)
    rows = run_checks(names, seed, params_out=out if getattr(args, "params", False) else None)
    print(format_table(rows), file=out)
    n_bad = sum(not r.ok for r in rows)
    print(
        f"\n{len(rows) - n_bad}/{len(rows)} checks OK" + ("" if seed is None else f" (random parameters, seed {seed})"),
        file=out,
    )
    plot_dir = getattr(args, "plot", None)
    if plot_dir:
        from .plots import plot_all

        for path in plot_all(plot_dir, names=names):
            print(f"wrote {path}", file=out)
    return 0 if n_bad == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rbp_native.theory", description=__doc__.split("\n\n")[1])
    add_arguments(parser)
    return run(parser.parse_args(argv))
