"""Re-running the paper's MNIST and CIFAR-10 studies: declarative experiment configs (MLPs or conv nets), a
resumable parallel runner, aggregation over seeds, figures and a report; :mod:`.table1` assembles the
paper's Table 1 from finished results.

>>> from rbp_native import experiments
>>> experiments.list_experiments()                        # doctest: +SKIP
['cifar10', 'complexity', 'controls', 'deep', 'fig1', ...]
>>> exp = experiments.load_experiment("fig1", epochs=5, seeds=1)
>>> outcome = experiments.reproduce(exp, "results", jobs=2)  # doctest: +SKIP
>>> outcome = experiments.run("fig1", backend="ray", address="auto")  # doctest: +SKIP

The command line is ``rbp-native reproduce EXPERIMENT`` (and ``reproduce table1``) and ``rbp-native run CONFIG.toml``;
``docs/experiments.md`` describes the config format and the outputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .aggregate import collect, load_run, mean_std, read_history, summarize
from .config import (
    CONFIG_DIR,
    ConfigError,
    Experiment,
    Run,
    Variant,
    list_experiments,
    load_experiment,
    parse_experiment,
    parse_overrides,
)
from .runner import Outcome, execute, plan, reproduce, threads_per_run


def run(
    experiment: Experiment | str | Path,
    out: str | Path = "results",
    *,
    epochs: int | None = None,
    seeds: int | None = None,
    limit: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    backend: str = "local",
    address: str | None = None,
    **options: Any,
) -> Outcome:
    """What ``rbp-native reproduce NAME`` and ``rbp-native run CONFIG.toml`` do: `experiment` is a shipped
    experiment's name, a config file or a loaded :class:`Experiment` (then `epochs`, `seeds`, `limit` and
    `overrides`, which apply when loading, must be left out). `backend` ``"ray"`` trains the runs on Ray
    (`address` ``"auto"`` or ``"HOST:PORT"`` for an existing cluster, none for a Ray instance on this
    machine); `options` are :func:`reproduce`'s (``jobs``, ``threads``, ``force``, ...)."""
    if not isinstance(experiment, Experiment):
        experiment = load_experiment(experiment, epochs=epochs, seeds=seeds, limit=limit, overrides=overrides)
    elif (epochs, seeds, limit, overrides) != (None, None, None, None):
        raise ValueError(
            "epochs, seeds, limit and overrides apply when loading an experiment by name or path; "
            "pass them to load_experiment for an Experiment"
        )
    return reproduce(experiment, out, backend=backend, address=address, **options)


__all__ = [
    "CONFIG_DIR",
    "ConfigError",
    "Experiment",
    "Outcome",
    "Run",
    "Variant",
    "collect",
    "execute",
    "list_experiments",
    "load_experiment",
    "load_run",
    "mean_std",
    "parse_experiment",
    "parse_overrides",
    "plan",
    "read_history",
    "reproduce",
    "run",
    "summarize",
    "threads_per_run",
]
