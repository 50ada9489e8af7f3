"""``rbp-native reproduce table1``: the paper's Table 1, our numbers, assembled from results folders.

The paper's Table 1 (end of section 4) lists the test accuracy of each learning algorithm on MNIST and
on CIFAR-10. Its numbers are not reproduced here; this module fills the same table with ours, read
from the ``final.csv`` of finished experiments in one results folder (``--out``): the MNIST column
from ``fig1`` (and ``fig2`` for the adaptive algorithms), the CIFAR-10 column from ``cifar10``. It
trains nothing: a cell whose experiment has no ``final.csv``, or whose ``final.csv`` lacks the
algorithm, is written as missing, with the reason below the table. An experiment whose results were
made with other settings than its config's (``--epochs``, ``--seeds``, ``--limit``, ``--set``) is
named in the notes, so that a quick look is never mistaken for the full table.

Writes ``OUT/table1/table1.md`` and ``OUT/table1/table1.csv``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._io import atomic_write_text
from .aggregate import _read_table, pct

NAME = "table1"

#: The rows: the algorithms of Fig. 1 and Fig. 2 (label, variant name in the experiments below).
ROWS: tuple[tuple[str, str], ...] = (
    ("BP", "bp"),
    ("BP (no f')", "bp-nof"),
    ("SBP", "sbp"),
    ("SBP (no f')", "sbp-nof"),
    ("RBP", "rbp"),
    ("RBP (no f')", "rbp-nof"),
    ("SRBP", "srbp"),
    ("SRBP (no f')", "srbp-nof"),
    ("ARBP", "arbp"),
    ("ASRBP", "asrbp"),
    ("Top-Layer-Only", "top"),
)

#: The columns: (key, title, experiments read in order; a row takes the first that has its variant).
COLUMNS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("mnist", "MNIST", ("fig1", "fig2")),
    ("cifar10", "CIFAR-10", ("cifar10",)),
)


@dataclass
class Source:
    """One experiment's results folder: its final rows by variant, or why it cannot be read."""

    name: str
    directory: Path
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    problem: str = ""  # why there are no rows ("" when there are)
    settings_note: str = ""  # how the results' settings differ from the config's ("" when they do not)


@dataclass
class Cell:
    status: str  # "ok", "diverged" or "missing"
    experiment: str = ""
    mean: float = math.nan
    std: float = math.nan
    seeds: int = 0
    diverged: int = 0
    epochs: int = 0


def read_source(out: Path, name: str) -> Source:
    """The results of experiment `name` in `out` (``out/<name>/final.csv``, checked as it is read)."""
    directory = out / name
    source = Source(name, directory)
    final = directory / "final.csv"
    if not final.is_file():
        source.problem = f"no {final} (run `rbp-native reproduce {name} --out {out}` first)"
        return source
    try:
        rows = _read_table(final)
        for row in rows:
            for key in ("variant", "n", "diverged", "epochs", "test_accuracy_mean", "test_accuracy_std"):
                if key not in row:
                    raise ValueError(f"{final}: column {key} is missing")
    except ValueError as error:
        source.problem = f"{final} cannot be read: {error}"
        return source
    source.rows = {row["variant"]: row for row in rows}
    source.settings_note = _settings_note(directory, name)
    return source


def _settings_note(directory: Path, name: str) -> str:
    """How the settings recorded in ``experiment.json`` differ from the shipped config's, or ""."""
    from .config import ConfigError, load_experiment

    try:
        settings = json.loads((directory / "experiment.json").read_text(encoding="utf-8"))["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"its settings cannot be told: {directory / 'experiment.json'} is missing or unreadable"
    try:
        config = load_experiment(name)
    except (ConfigError, OSError) as error:
        return f"no shipped config to compare its settings with ({error})"
    dataset = settings.get("dataset") or {}
    differences = [
        f"{key} {settings.get(key)} (config: {getattr(config, key)})"
        for key in ("epochs", "seeds")
        if settings.get(key) != getattr(config, key)
    ]
    for key in ("limit", "test_limit"):
        if dataset.get(key) is not None:
            differences.append(f"{key} {dataset[key]}")
    if settings.get("overrides"):
        differences.append("overrides " + ", ".join(f"{k}={v!r}" for k, v in settings["overrides"].items()))
    return "; ".join(differences)


def assemble(out: str | Path) -> tuple[list[dict[str, Cell]], dict[str, Source]]:
    """Per row of :data:`ROWS` a cell per column key, and the sources read."""
    out = Path(out)
    sources = {name: read_source(out, name) for _, _, names in COLUMNS for name in names}
    table = []
    for _, variant in ROWS:
        cells = {}
        for key, _, names in COLUMNS:
            cell = Cell("missing")
            for name in names:
                row = sources[name].rows.get(variant)
                if row is None:
                    continue
                if row["n"]:
                    cell = Cell(
                        "ok",
                        name,
                        row["test_accuracy_mean"],
                        row["test_accuracy_std"],
                        row["n"],
                        row["diverged"],
                        row["epochs"],
                    )
                elif row["diverged"]:
                    cell = Cell("diverged", name, diverged=row["diverged"])
                else:
                    continue
                break
            cells[key] = cell
        table.append(cells)
    return table, sources


def _cell_text(cell: Cell) -> str:
    if cell.status == "missing":
        return "missing"
    if cell.status == "diverged":
        return f"diverged ({cell.diverged} seed(s))"
    text = pct(cell.mean, cell.std)
    return text + (f" (+{cell.diverged} diverged)" if cell.diverged else "")


def markdown(table: list[dict[str, Cell]], sources: dict[str, Source], out: Path) -> str:
    lines = [
        "# Table 1: test accuracy (%) per learning algorithm",
        "",
        "Our numbers in the layout of the paper's Table 1 (the paper's own values are not reproduced here): "
        "mean ± sample standard deviation over seeds of the final test accuracy, read from the "
        f"`final.csv` of each experiment in `{out}`. Nothing is trained to make this table; a cell "
        "without results says **missing**.",
        "",
        "| Algorithm | " + " | ".join(title for _, title, _ in COLUMNS) + " |",
        "|---|" + "---:|" * len(COLUMNS),
    ]
    for (label, _), cells in zip(ROWS, table):
        lines.append(f"| {label} | " + " | ".join(_cell_text(cells[key]) for key, _, _ in COLUMNS) + " |")
    lines += ["", "## Sources", ""]
    for key, title, names in COLUMNS:
        used = [name for name in names if any(cells[key].experiment == name for cells in table)]
        for name in names:
            source = sources[name]
            if source.problem:
                lines.append(f"- {title}: `{name}`: missing: {source.problem}.")
                continue
            mine = [(label, cells[key]) for (label, _), cells in zip(ROWS, table) if cells[key].experiment == name]
            epochs = sorted({cell.epochs for _, cell in mine if cell.status == "ok"})
            seeds = sorted({cell.seeds for _, cell in mine if cell.status == "ok"})
            rows = [label for label, _ in mine]
            text = f"- {title}: `{name}` (`{source.directory / 'final.csv'}`)"
            if name in used:
                text += (
                    f": {', '.join(rows)}; {'/'.join(map(str, epochs)) or '–'} epochs, "
                    f"{'/'.join(map(str, seeds)) or '–'} seed(s)"
                )
            else:
                text += ": none of the table's algorithms"
            if source.settings_note:
                text += f". **Not the experiment's own settings**: {source.settings_note}"
            lines.append(text + ".")
        missing = [label for (label, _), cells in zip(ROWS, table) if cells[key].status == "missing"]
        if missing:
            lines.append(
                f"- {title}: missing rows: {', '.join(missing)} (in none of {', '.join(f'`{n}`' for n in names)})."
            )
    return "\n".join(lines) + "\n"


CSV_FIELDS = ("status", "experiment", "test_accuracy_mean", "test_accuracy_std", "seeds", "diverged", "epochs")


def csv_text(table: list[dict[str, Cell]]) -> str:
    columns = ["algorithm", "variant"] + [f"{key}_{f}" for key, _, _ in COLUMNS for f in CSV_FIELDS]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for (label, variant), cells in zip(ROWS, table):
        row: dict[str, Any] = {"algorithm": label, "variant": variant}
        for key, _, _ in COLUMNS:
            cell = cells[key]
            ok = cell.status == "ok"
            row.update(
                {
                    f"{key}_status": cell.status,
                    f"{key}_experiment": cell.experiment,
                    f"{key}_test_accuracy_mean": repr(cell.mean) if ok else "",
                    f"{key}_test_accuracy_std": repr(cell.std) if ok and math.isfinite(cell.std) else "",
                    f"{key}_seeds": cell.seeds if ok else "",
                    f"{key}_diverged": cell.diverged if cell.status != "missing" else "",
                    f"{key}_epochs": cell.epochs if ok else "",
                }
            )
        writer.writerow(row)
    return buffer.getvalue()


def write_table1(out: str | Path) -> tuple[Path, list[dict[str, Cell]]]:
    """Assemble Table 1 from the results in `out` and write ``out/table1/table1.md`` and ``.csv``;
    returns the Markdown file's path and the table."""
    out = Path(out)
    table, sources = assemble(out)
    directory = out / NAME
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(directory / "table1.csv", csv_text(table))
    path = atomic_write_text(directory / "table1.md", markdown(table, sources, out))
    return path, table


def describe_plan(out: str | Path) -> list[str]:
    """For ``--dry-run``: which results each column would read, and what is missing."""
    out = Path(out)
    table, sources = assemble(out)
    lines = []
    for key, title, names in COLUMNS:
        for name in names:
            source = sources[name]
            lines.append(
                f"{title:<9} {name:<8} " + (f"missing: {source.problem}" if source.problem else str(source.directory))
            )
        found = sum(cells[key].status != "missing" for cells in table)
        lines.append(f"{title:<9} {found} of {len(ROWS)} rows found")
    return lines
