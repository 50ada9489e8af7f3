"""Re-running the paper's MNIST study: declarative experiment configs, a resumable parallel runner,
aggregation over seeds, figures and a report.

>>> from rbp_native import experiments
>>> experiments.list_experiments()                        # doctest: +SKIP
['complexity', 'controls', 'deep', 'fig1', ...]
>>> exp = experiments.load_experiment("fig1", epochs=5, seeds=1)
>>> outcome = experiments.reproduce(exp, "results", jobs=2)  # doctest: +SKIP

The command line is ``rbp-native reproduce EXPERIMENT`` and ``rbp-native run CONFIG.toml``;
``docs/experiments.md`` describes the config format and the outputs.
"""

from __future__ import annotations

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
    "summarize",
    "threads_per_run",
]
