"""The ``complexity`` experiment: the learning channel's cost per algorithm, without training.

For each variant: the multiply-accumulates per example the channel spends producing the hidden
layers' signals and the extra storage it needs (the feedback matrices), both from the paper's
section 3.1 formulas (eq. 14-15, extended to per-layer sources and sparse matrices by their expected
number of non-zeros) and as counted by the core (``Trainer.channel_macs``; the stored entries of
every feedback matrix, ``trainer._core.feedback_nonzeros(h)``). For 784-100-100-100-100-10:
BP/RBP 31,000 and SRBP 4,000 MACs.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._io import atomic_write_text
from .config import Experiment

FEEDBACK = ("rbp", "srbp", "arbp", "asrbp")


def analytic(sizes: Sequence[int], trainer: dict[str, Any]) -> dict[str, float | None]:
    """Section 3.1's counts for a dense network of widths `sizes` ``[N0, ..., NL]`` trained with the
    given trainer options: ``channel_macs`` (per example), ``storage`` (feedback entries besides W)
    and ``update_macs`` (extra per example: the adaptive algorithms' outer products). Sparse feedback
    counts its expected non-zeros. None where the formula does not apply (per-synapse errors)."""
    algorithm = trainer.get("algorithm", "bp")
    n = list(sizes)
    L = len(n) - 1  # weight layers; hidden layers are 1 .. L-1
    if trainer.get("per_synapse"):
        return {"channel_macs": None, "storage": None, "update_macs": None}
    if algorithm == "top":
        return {"channel_macs": 0, "storage": 0, "update_macs": 0}
    if algorithm in ("bp", "sbp"):
        macs: float = sum(n[h] * n[h + 1] for h in range(1, L))
        return {"channel_macs": macs, "storage": 0, "update_macs": 0}
    sources = trainer.get("sources")
    default = "above" if algorithm in ("rbp", "arbp") else "output"
    if sources is None:
        sources = [default] * (L - 1)
    elif isinstance(sources, str):
        sources = [sources] * (L - 1)
    total = 0.0
    for h in range(1, L):
        source = n[h + 1] if sources[h - 1] == "above" else n[L]
        if trainer.get("feedback_nonzeros") is not None:
            p = min(1.0, float(trainer["feedback_nonzeros"]) / source)
        else:
            p = float(trainer.get("feedback_density", 1.0))
        total += p * n[h] * source
    macs = int(total) if float(total).is_integer() else total
    update = macs if algorithm in ("arbp", "asrbp") else 0
    return {"channel_macs": macs, "storage": macs, "update_macs": update}


def counted(network: dict[str, Any], trainer: dict[str, Any], seed: int = 0) -> dict[str, int]:
    """What the core counts: channel MACs per example, stored feedback entries and forward MACs."""
    from ..network import MLP
    from ..trainer import Trainer

    net = MLP(**network, seed=seed)
    t = Trainer(net, **trainer, seed=seed, threads=1)
    stored = sum(int(t._core.feedback_nonzeros(h)) for h in range(t._core.num_feedback))
    return {
        "channel_macs": int(t.channel_macs),
        "feedback_entries": stored,
        "forward_macs": int(net._core.forward_macs),
    }


def table(experiment: Experiment) -> list[dict[str, Any]]:
    rows = []
    for variant in experiment.variants:
        network, trainer = experiment.split(variant)
        theory = analytic(network["sizes"], trainer)
        count = counted(network, trainer)
        rows.append(
            {
                "variant": variant.name,
                "label": variant.label,
                "algorithm": trainer.get("algorithm", "bp"),
                "sizes": "-".join(map(str, network["sizes"])),
                "analytic_macs": theory["channel_macs"],
                "channel_macs": count["channel_macs"],
                "analytic_storage": theory["storage"],
                "feedback_entries": count["feedback_entries"],
                "update_macs": theory["update_macs"],
                "forward_macs": count["forward_macs"],
            }
        )
    return rows


def _n(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        (
            "| Variant | Algorithm | Channel MACs / example: §3.1 | counted by the core | Extra storage: §3.1 "
            "| stored feedback entries (core) | Extra update MACs (§3.1) | Forward MACs |"
        ),
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['variant']}` | {r['label']} | {_n(r['analytic_macs'])} | {_n(r['channel_macs'])} | "
            f"{_n(r['analytic_storage'])} | {_n(r['feedback_entries'])} | {_n(r['update_macs'])} | "
            f"{_n(r['forward_macs'])} |"
        )
    return "\n".join(lines) + "\n"


def write_complexity(experiment: Experiment, directory: Path, info: dict[str, Any]) -> Path:
    """``complexity.csv``, ``complexity.md`` and ``report.md``; returns the report's path."""
    from .report import NotMeasured, _settings_lines, checks_markdown

    rows = table(experiment)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(directory / "complexity.csv", buffer.getvalue())
    text = markdown(rows)
    atomic_write_text(directory / "complexity.md", f"# {experiment.title}\n\n" + text)
    by_name = {r["variant"]: r for r in rows}

    def value_at(name: str, metric: str, epoch: int | None) -> float:
        value = by_name[name].get(metric)
        if value is None:
            raise NotMeasured(f"{metric} is not defined for {name!r}")
        return float(value)

    settings = [
        line
        for line in _settings_lines(experiment, info)
        if not line.startswith(("- Data", "- 1", "- 0")) and "epoch" not in line
    ]
    note = (
        "Sparse variants: §3.1 counts the expected non-zeros, p · N_h · N_source with p = n / N_source; "
        "the core counts the entries actually drawn (seed 0)."
    )
    parts = [
        f"# {experiment.title}",
        "",
        experiment.description.strip(),
        "",
        "## Settings",
        "",
        *settings,
        "",
        "## Learning-channel cost per example",
        "",
        text,
        note,
        "",
        "## Comparison with the paper",
        "",
        checks_markdown(experiment, value_at),
    ]
    report = "\n".join(parts).replace("\n\n\n", "\n\n")
    return atomic_write_text(directory / "report.md", report)
