"""``rbp-native reproduce EXPERIMENT`` and ``rbp-native run CONFIG.toml``."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from .._cli_common import add_data_arguments

TABLE1 = "table1"  # not an experiment: assembled from the results of others (see table1.py)


def _describe_experiments() -> str:
    from .config import ConfigError, list_experiments, load_experiment

    lines = ["experiments:"]
    for name in list_experiments():
        try:
            exp = load_experiment(name)
            runs = (
                "no training"
                if exp.kind != "train"
                else (f"{len(exp.variants)} variants x {exp.seeds} seeds, {exp.epochs} epochs")
            )
            lines.append(f"  {name:<11} {exp.title} ({runs})")
        except (ConfigError, OSError) as error:  # pragma: no cover - a broken shipped config
            lines.append(f"  {name:<11} (cannot be read: {error})")
    lines.append(f"  {TABLE1:<11} Table 1: test accuracy per algorithm, MNIST and CIFAR-10, from the results in --out")
    lines.append(f"  {'':<11} (fig1, fig2, cifar10; trains nothing, writes OUT/table1/table1.md and .csv)")
    return "\n".join(lines)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (default: the config's)")
    p.add_argument("--seeds", type=int, default=None, help="seeds 0 .. K-1 (default: the config's)")
    p.add_argument("--out", default="results", help="output folder; the experiment writes to OUT/<name>/")
    p.add_argument("--jobs", type=int, default=1, help="runs trained in parallel, one process each")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="native threads per run (default: max(1, cores // jobs); 1 with --backend ray, where it is "
        "also the CPUs each run asks Ray for); results are bit-identical "
        "for the same thread count",
    )
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        help="use only the first N training examples (quick looks; cifar10: N taken from the classes in turn)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting: an [experiment] key (dataset, test_limit, synthetic.train, ...) or "
        "a run option forced on every variant (hidden=[50,50], lr=0.05, ...); VALUE is TOML, "
        "bare words are strings; repeatable",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="retrain runs made with other settings (or whose files are corrupt) instead of refusing",
    )
    p.add_argument("--dry-run", action="store_true", help="list the runs and their state; train nothing")
    add_data_arguments(p)
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="where the runs train: 'local' (default) this machine, --jobs processes; 'ray' one Ray task "
        "per run with --threads CPUs (default 1), needs pip install 'rbp-native[ray]'",
    )
    p.add_argument(
        "--address",
        default=None,
        help="with --backend ray: the cluster to use ('auto': the one this machine has joined, or "
        "HOST:PORT); without it a Ray instance is started on this machine for the sweep. On several "
        "machines --out must be shared storage at the same path on every node",
    )


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Add ``reproduce`` and ``run`` to the ``rbp-native`` command line."""
    p = sub.add_parser(
        "reproduce",
        help="re-run one of the paper's experiments (MNIST, CIFAR-10): runs, tables, figures and a report",
        description="Train every run of a shipped experiment (variants x seeds) that is not already complete "
        "in OUT/<experiment>/, in --jobs processes (or as Ray tasks: --backend ray), then write summary.csv, "
        "final.md/.csv, accuracy.png "
        "and report.md. An interrupted sweep resumes where it stopped. Quick look: --epochs 5 --seeds 1. "
        "'table1' trains nothing: it assembles the paper's Table 1 from the experiments' results in --out.",
        epilog=_describe_experiments() + "\n  all         every experiment above, one after the other, then table1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("experiment", nargs="?", help="experiment name (see the list below), 'table1' or 'all'")
    p.add_argument("--list", action="store_true", help="list the experiments and exit")
    _common(p)
    p.set_defaults(handler=_reproduce)

    q = sub.add_parser(
        "run",
        help="run an experiment from your own TOML config (the format of the shipped ones)",
        description="Like 'reproduce', for a config file of your own; see docs/experiments.md for the format "
        "(the shipped configs are in rbp_native/experiments/configs/).",
    )
    q.add_argument("config", help="path of a .toml experiment config")
    _common(q)
    q.set_defaults(handler=_run)


def _reproduce(args: argparse.Namespace) -> int:
    from .config import list_experiments

    if args.list or not args.experiment:
        print(_describe_experiments())
        if not args.list:
            print("\nrbp-native reproduce: give an experiment name", file=sys.stderr)
            return 2
        return 0
    names = list_experiments() if args.experiment == "all" else [args.experiment]
    if args.experiment.endswith(".toml"):
        print("rbp-native reproduce: for a config file use 'rbp-native run CONFIG.toml'", file=sys.stderr)
        return 2
    if args.experiment == TABLE1:
        return _table1(args)
    status = 0
    for name in names:
        status = max(status, _one(name, args))
    if args.experiment == "all":
        status = max(status, _table1(args))
    return status


def _table1(args: argparse.Namespace) -> int:
    """Assemble Table 1 from OUT (trains nothing, so the training options do not apply)."""
    from .table1 import describe_plan, write_table1

    if args.experiment == TABLE1:
        given = [
            flag
            for flag, value in (
                ("--epochs", args.epochs),
                ("--seeds", args.seeds),
                ("--limit", args.limit),
                ("--set", args.overrides),
                ("--force", args.force),
            )
            if value
        ]
        if given:
            print(
                f"rbp-native reproduce table1: {', '.join(given)} do(es) not apply: table1 trains nothing, "
                "it reads the results in --out",
                file=sys.stderr,
            )
            return 2
    if args.dry_run:
        print("\n".join(describe_plan(args.out)))
        return 0
    path, _ = write_table1(args.out)
    print(path.read_text(encoding="utf-8"))
    print(f"table: {path} (and {path.with_suffix('.csv').name})")
    return 0


def _run(args: argparse.Namespace) -> int:
    if not Path(args.config).is_file():
        raise FileNotFoundError(f"config file {args.config} not found")
    return _one(args.config, args)


def _one(name: str, args: argparse.Namespace) -> int:
    from .config import load_experiment, parse_overrides
    from .runner import plan, reproduce

    experiment = load_experiment(
        name, epochs=args.epochs, seeds=args.seeds, limit=args.limit, overrides=parse_overrides(args.overrides)
    )
    if args.dry_run:
        if experiment.kind != "train":
            print(f"{experiment.name}: {experiment.kind} experiment, no runs to train")
            return 0
        states = plan(experiment, args.out)
        for run, state, detail in states:
            print(f"{state:<10} {Path(args.out) / experiment.name / run.relpath}" + (f"  ({detail})" if detail else ""))
        counts: dict[str, int] = {}
        for _, state, _ in states:
            counts[state] = counts.get(state, 0) + 1
        print(f"{experiment.name}: {len(states)} runs: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
        return 0
    command = "rbp-native " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else None
    outcome = reproduce(
        experiment,
        args.out,
        jobs=args.jobs,
        threads=args.threads,
        force=args.force,
        progress=args.progress,
        data_root=args.data_root,
        download=args.download,
        command=command,
        backend=args.backend,
        address=args.address,
    )
    if outcome.failed:
        print(
            f"rbp-native: {len(outcome.failed)} run(s) of {experiment.name} failed; no report written "
            "(run the same command again to retry them):",
            file=sys.stderr,
        )
        for run_id, message in outcome.failed:
            print(f"  {run_id}: {message}", file=sys.stderr)
        return 1
    assert outcome.report is not None
    table = outcome.directory / ("complexity.md" if experiment.kind == "complexity" else "final.md")
    print(table.read_text(encoding="utf-8"))
    if outcome.diverged:
        print(f"{len(outcome.diverged)} run(s) diverged: {', '.join(outcome.diverged)}")
    print(f"report: {outcome.report} ({outcome.seconds:.0f} s)")
    return 0
