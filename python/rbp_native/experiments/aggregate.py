"""Aggregation over seeds, read back from the run folders (never from memory).

Every history is checked as it is read: the required columns, one row per epoch numbered 1, 2, ...,
numbers that parse and are finite, accuracies in [0, 1], a final newline, and as many rows as
``done.json`` announces (and as the run's epochs, for a complete run). Anything else raises
ValueError naming the file; an unfinished run (no ``done.json``) is never merged.

Means are over seeds; standard deviations are the sample standard deviation (``ddof=1``) and NaN
for a single seed.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write_text
from .config import Experiment, same_settings

REQUIRED_COLUMNS = ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy")
METRICS = ("train_accuracy", "test_accuracy", "train_loss", "test_loss")


# ----------------------------------------------------------------------------------------------
# Reading


def read_history(path: str | Path, expected_epochs: int | None = None) -> list[dict[str, float]]:
    """The required columns of a ``history.csv``, checked (see the module docstring)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{path}: history file is missing") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot read the history: {error}") from error
    if not text.strip():
        raise ValueError(f"{path}: the history file is empty")
    if not text.endswith("\n"):
        raise ValueError(f"{path}: the history file is truncated (no newline after its last line)")
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ValueError(f"{path}: not a history file: column(s) {', '.join(missing)} missing from the header")
    index = {c: header.index(c) for c in REQUIRED_COLUMNS}
    rows: list[dict[str, float]] = []
    for line, fields in enumerate(reader, start=2):
        if len(fields) != len(header):
            raise ValueError(f"{path}, line {line}: {len(fields)} fields, the header has {len(header)}")
        row: dict[str, float] = {}
        for column, position in index.items():
            raw = fields[position]
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{path}, line {line}: {column} = {raw!r} is not a number") from None
            if not math.isfinite(value):
                raise ValueError(f"{path}, line {line}: {column} = {raw!r} is not finite")
            if column.endswith("accuracy") and not 0.0 <= value <= 1.0:
                raise ValueError(f"{path}, line {line}: {column} = {value} lies outside [0, 1]")
            row[column] = value
        if row["epoch"] != len(rows) + 1:
            raise ValueError(f"{path}, line {line}: epoch {row['epoch']:g}, expected {len(rows) + 1}")
        row["epoch"] = int(row["epoch"])
        rows.append(row)
    if expected_epochs is not None and len(rows) != expected_epochs:
        raise ValueError(f"{path}: {len(rows)} epoch row(s), expected {expected_epochs}")
    return rows


@dataclass
class RunResult:
    status: str  # "complete" or "diverged"
    rows: list[dict[str, float]]
    done: dict[str, Any]
    source: Any = None  # config.json's "source": the git commit the run was made at (None: not from a checkout)
    source_recorded: bool = True  # False for runs made before config.json recorded a source


def load_run(run_dir: str | Path, resolved: Mapping[str, Any] | None = None) -> RunResult:
    """A finished run's history, checked against its ``done.json`` (and `resolved`, when given)."""
    run_dir = Path(run_dir)
    done_file = run_dir / "done.json"
    if not done_file.exists():
        raise ValueError(f"{run_dir}: the run is incomplete (no done.json); run the experiment again to redo it")
    try:
        done = json.loads(done_file.read_text(encoding="utf-8"))
        status, epochs = done["status"], int(done["epochs"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{done_file}: not a valid done marker: {error}") from error
    if status not in ("complete", "diverged"):
        raise ValueError(f"{done_file}: unknown status {status!r}")
    source, recorded = None, True
    if resolved is not None:
        config_file = run_dir / "config.json"
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
            stored = config["resolved"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{config_file}: cannot be read: {error}") from error
        source, recorded = config.get("source"), "source" in config
        if not same_settings(stored, resolved):
            raise ValueError(f"{config_file}: the run was made with other settings than the current ones")
        if status == "complete" and epochs != int(resolved["epochs"]):
            raise ValueError(f"{done_file}: {epochs} epochs done, the run asks for {resolved['epochs']}")
    rows = read_history(run_dir / "history.csv", expected_epochs=epochs)
    return RunResult(status, rows, done, source, recorded)


# ----------------------------------------------------------------------------------------------
# Statistics


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (NaN std for one value; NaN, NaN for none)."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return math.nan, math.nan
    std = float(np.std(array, ddof=1)) if array.size > 1 else math.nan
    return float(np.mean(array)), std


def summarize(histories: Mapping[str, Sequence[Sequence[Mapping[str, float]]]]) -> list[dict[str, Any]]:
    """Per variant and epoch: ``n`` (seeds with that epoch) and ``<metric>_mean`` / ``<metric>_std`` for
    every metric. `histories` maps a variant to its seeds' rows."""
    summary = []
    for variant, seeds in histories.items():
        epochs = max((len(rows) for rows in seeds), default=0)
        for epoch in range(1, epochs + 1):
            rows = [r[epoch - 1] for r in seeds if len(r) >= epoch]
            entry: dict[str, Any] = {"variant": variant, "epoch": epoch, "n": len(rows)}
            for metric in METRICS:
                entry[f"{metric}_mean"], entry[f"{metric}_std"] = mean_std([r[metric] for r in rows])
            summary.append(entry)
    return summary


@dataclass
class VariantResult:
    name: str
    label: str
    seeds: list[int] = field(default_factory=list)  # complete seeds
    rows: list[list[dict[str, float]]] = field(default_factory=list)  # their histories
    diverged: list[int] = field(default_factory=list)

    def final(self) -> dict[str, Any]:
        """Final-epoch statistics over the complete seeds."""
        entry: dict[str, Any] = {
            "variant": self.name,
            "label": self.label,
            "n": len(self.rows),
            "diverged": len(self.diverged),
            "epochs": len(self.rows[0]) if self.rows else 0,
        }
        for metric in METRICS:
            entry[f"{metric}_mean"], entry[f"{metric}_std"] = mean_std([r[-1][metric] for r in self.rows if r])
        entry["test_error_mean"] = 100.0 * (1.0 - entry["test_accuracy_mean"])
        entry["test_error_std"] = 100.0 * entry["test_accuracy_std"]
        return entry

    def at(self, epoch: int, metric: str) -> float:
        """Mean of `metric` at `epoch` (1-based, clamped to the last) over the complete seeds."""
        values = [r[min(epoch, len(r)) - 1][metric] for r in self.rows if r]
        return mean_std(values)[0]


@dataclass
class Aggregate:
    results: dict[str, VariantResult]  # empty when read back from the tables (see from_tables)
    summary: list[dict[str, Any]]
    final: list[dict[str, Any]]
    #: Runs per source commit (runner.describe_source text); None when the run folders were not read.
    sources: dict[str, int] | None = None

    def stat(self, variant: str, metric: str, epoch: int | None = None) -> tuple[float, float, int]:
        """``(mean, std, seeds)`` of `metric` for `variant` at `epoch` (default and beyond: the last)."""
        entries = [e for e in self.summary if e["variant"] == variant]
        if not entries:
            raise KeyError(variant)
        entry = entries[-1] if epoch is None else entries[min(int(epoch), len(entries)) - 1]
        return entry[f"{metric}_mean"], entry[f"{metric}_std"], int(entry["n"])


def collect(experiment: Experiment, directory: str | Path) -> Aggregate:
    """Read every run of the experiment from ``directory`` and aggregate; ValueError for an
    incomplete, mismatched or corrupt run."""
    directory = Path(directory)
    from .runner import describe_source

    results = {v.name: VariantResult(v.name, v.label) for v in experiment.variants}
    sources: dict[str, int] = {}
    for run in experiment.runs():
        result = load_run(directory / run.relpath, run.resolved())
        where = describe_source(result.source) if result.source_recorded else "commit not recorded (an older run)"
        sources[where] = sources.get(where, 0) + 1
        target = results[run.variant.name]
        if result.status == "diverged":
            target.diverged.append(run.seed)
        else:
            target.seeds.append(run.seed)
            target.rows.append(result.rows)
    summary = summarize({name: r.rows for name, r in results.items()})
    labels = {v.name: v.label for v in experiment.variants}
    for entry in summary:
        entry["label"] = labels[entry["variant"]]
    final = [r.final() for r in results.values()]
    return Aggregate(results, summary, final, sources)


def _read_table(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"{path}: cannot be read: {error}") from error
    rows = []
    for line, raw in enumerate(csv.DictReader(io.StringIO(text)), start=2):
        row: dict[str, Any] = {}
        for key, value in raw.items():
            if key is None or value is None:
                raise ValueError(f"{path}, line {line}: the row does not match the header")
            if key in ("variant", "label"):
                row[key] = value
            elif key in ("epoch", "n", "diverged", "epochs"):
                try:
                    row[key] = int(value)
                except ValueError:
                    raise ValueError(f"{path}, line {line}: {key} = {value!r} is not an integer") from None
            else:
                try:
                    row[key] = float(value)
                except ValueError:
                    raise ValueError(f"{path}, line {line}: {key} = {value!r} is not a number") from None
        rows.append(row)
    return rows


def from_tables(experiment: Experiment, directory: str | Path) -> Aggregate:
    """The aggregate as written to ``summary.csv`` and ``final.csv``, for folders whose run folders are
    gone (docs/results commits only the tables): enough to rebuild the report and the figures. Every
    variant of `experiment` must be in both tables (ValueError naming the missing ones)."""
    directory = Path(directory)
    summary = _read_table(directory / "summary.csv")
    final_rows = {row["variant"]: row for row in _read_table(directory / "final.csv")}
    names = [v.name for v in experiment.variants]
    missing = [
        n for n in names if n not in final_rows or not any(e["variant"] == n for e in summary) and final_rows[n]["n"]
    ]
    if missing:
        raise ValueError(
            f"{directory}: the tables have no rows for variant(s) {', '.join(missing)} of {experiment.name}"
        )
    labels = {v.name: v.label for v in experiment.variants}
    for row in final_rows.values():
        if row["variant"] in labels:
            row["label"] = labels[row["variant"]]
    summary = [dict(e, label=labels[e["variant"]]) for e in summary if e["variant"] in labels]
    return Aggregate({}, summary, [final_rows[n] for n in names], None)


# ----------------------------------------------------------------------------------------------
# Writing tables


def _csv(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()


SUMMARY_COLUMNS = ["variant", "label", "epoch", "n"] + [f"{m}_{s}" for m in METRICS for s in ("mean", "std")]
FINAL_COLUMNS = [
    "variant",
    "label",
    "n",
    "diverged",
    "epochs",
    "test_accuracy_mean",
    "test_accuracy_std",
    "test_error_mean",
    "test_error_std",
    "train_accuracy_mean",
    "train_accuracy_std",
    "test_loss_mean",
    "test_loss_std",
    "train_loss_mean",
    "train_loss_std",
]


def pct(mean: float, std: float) -> str:
    """``97.12 ± 0.08`` (percent of a fraction); ``–`` for a missing value."""
    if math.isnan(mean):
        return "–"
    if math.isnan(std):
        return f"{100 * mean:.2f}"
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def final_markdown(final: list[dict[str, Any]]) -> str:
    lines = [
        "| Variant | Algorithm | Seeds | Test accuracy (%) | Test error (%) | Train accuracy (%) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in final:
        seeds = str(row["n"]) + (f" (+{row['diverged']} diverged)" if row["diverged"] else "")
        if row["n"] == 0:
            test = error = train = "diverged" if row["diverged"] else "–"
        else:
            test = pct(row["test_accuracy_mean"], row["test_accuracy_std"])
            error = f"{row['test_error_mean']:.2f}"
            train = pct(row["train_accuracy_mean"], row["train_accuracy_std"])
        lines.append(f"| `{row['variant']}` | {row['label']} | {seeds} | {test} | {error} | {train} |")
    return "\n".join(lines) + "\n"


def sweep_markdown(experiment: Experiment, aggregate: Aggregate) -> str:
    """Final test accuracy by swept value: one table per sweep key, one column per group."""
    groups = experiment.groups()
    if not groups:
        return ""
    by_key: dict[str, list[str]] = {}
    for group, variants in groups.items():
        key = ", ".join(variants[0].sweep)
        by_key.setdefault(key, []).append(group)
    parts = []
    finals = {row["variant"]: row for row in aggregate.final}
    for key, names in by_key.items():
        values: list[str] = []
        cells: dict[tuple[str, str], str] = {}
        for group in names:
            for variant in groups[group]:
                value = ", ".join(str(v) for v in variant.sweep.values())
                if value not in values:
                    values.append(value)
                row = finals[variant.name]
                cells[(group, value)] = (
                    pct(row["test_accuracy_mean"], row["test_accuracy_std"])
                    if row["n"]
                    else ("diverged" if row["diverged"] else "–")
                )
        lines = [
            f"Final test accuracy (%) by `{key}`:",
            "",
            "| " + key + " | " + " | ".join(f"`{g}`" for g in names) + " |",
            "|---:|" + "---:|" * len(names),
        ]
        for value in values:
            lines.append(f"| {value} | " + " | ".join(cells.get((g, value), "") for g in names) + " |")
        references = [groups[g][0].reference for g in names]
        if any(references):
            ref_cells = []
            for ref in references:
                ref_row = finals.get(ref) if ref else None
                ref_cells.append(
                    f"{pct(ref_row['test_accuracy_mean'], ref_row['test_accuracy_std'])} (`{ref}`)" if ref_row else ""
                )
            lines.append("| reference | " + " | ".join(ref_cells) + " |")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def write_tables(experiment: Experiment, directory: str | Path, aggregate: Aggregate) -> dict[str, Path]:
    """``summary.csv``, ``final.csv`` and ``final.md`` (atomically)."""
    directory = Path(directory)
    paths = {
        "summary": atomic_write_text(directory / "summary.csv", _csv(aggregate.summary, SUMMARY_COLUMNS)),
        "final_csv": atomic_write_text(directory / "final.csv", _csv(aggregate.final, FINAL_COLUMNS)),
    }
    text = f"# {experiment.title}: final results\n\n" + final_markdown(aggregate.final)
    sweep = sweep_markdown(experiment, aggregate)
    if sweep:
        text += "\n" + sweep
    paths["final_md"] = atomic_write_text(directory / "final.md", text)
    return paths
