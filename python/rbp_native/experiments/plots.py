"""Figures in the style of the paper's Fig. 1: training accuracy (upper panel) and test accuracy
(lower panel) against the epoch, one curve per algorithm (the mean over seeds) with the ±1 standard
deviation shaded; and, for swept variants, the final test accuracy against the swept value.

matplotlib is imported only here and only through its object API with the Agg canvas (no pyplot,
no change of the global backend); every PNG is written to a temporary file and renamed into place.
"""

from __future__ import annotations

import io
import json
import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._io import atomic_write
from .aggregate import Aggregate
from .config import Experiment, Variant


def _figure(rows: int, width: float = 7.0, height: float = 4.0) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("figures need matplotlib: pip install 'rbp-native[theory]' (or matplotlib)") from error
    figure = Figure(figsize=(width, height * rows), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return atomic_write(path, lambda handle: handle.write(buffer.getvalue()))


def _legend(figure: Any, ax: Any, handles: Sequence[Any], labels: Sequence[str], ncol: int = 1) -> None:
    """The legend outside the axes, on the right (matplotlib >= 3.7), else inside the given axes."""
    try:
        figure.legend(handles, labels, fontsize=7, loc="outside right upper", ncol=ncol)
    except ValueError:  # matplotlib < 3.7 has no "outside" locations
        ax.legend(handles, labels, fontsize=7, ncol=ncol, loc="best")


def _colours(count: int) -> list[Any]:
    from matplotlib import colormaps

    if count <= 10:
        cmap = colormaps["tab10"]
        return [cmap(i) for i in range(count)]
    if count <= 20:
        cmap = colormaps["tab20"]
        return [cmap(i) for i in range(count)]
    cmap = colormaps["viridis"]
    return [cmap(i / max(1, count - 1)) for i in range(count)]


def _dashed(variant: Variant) -> bool:
    derivative = variant.options.get("derivative", True)
    return derivative is False or (isinstance(derivative, list) and not any(derivative))


def plot_accuracy(experiment: Experiment, aggregate: Aggregate, variants: Sequence[Variant], path: Path,
                  title: str | None = None) -> Path:
    """Two panels, train (upper) and test (lower) accuracy in % against the epoch."""
    from matplotlib.ticker import MaxNLocator

    figure = _figure(2, width=9.0)
    axes = figure.subplots(2, 1, sharex=True)
    axes[1].xaxis.set_major_locator(MaxNLocator(integer=True))
    # One colour per variant up to the derivative switch: a no-f' variant is its twin, dashed.
    keys = [json.dumps({k: v for k, v in variant.options.items() if k != "derivative"}, sort_keys=True)
            for variant in variants]
    palette = _colours(len(dict.fromkeys(keys)))
    index = {key: i for i, key in enumerate(dict.fromkeys(keys))}
    colours = [palette[index[key]] for key in keys]
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for entry in aggregate.summary:
        by_variant.setdefault(entry["variant"], []).append(entry)
    for colour, variant in zip(colours, variants):
        entries = by_variant.get(variant.name, [])
        if not entries:
            continue
        epochs = [e["epoch"] for e in entries]
        for ax, split in zip(axes, ("train", "test")):
            mean = [100 * e[f"{split}_accuracy_mean"] for e in entries]
            std = [100 * e[f"{split}_accuracy_std"] for e in entries]
            ax.plot(epochs, mean, color=colour, linestyle="--" if _dashed(variant) else "-",
                    marker="o" if len(epochs) <= 3 else None, linewidth=1.4, label=variant.label)
            if not all(math.isnan(s) for s in std):
                low = [m - (0 if math.isnan(s) else s) for m, s in zip(mean, std)]
                high = [m + (0 if math.isnan(s) else s) for m, s in zip(mean, std)]
                ax.fill_between(epochs, low, high, color=colour, alpha=0.18, linewidth=0)
    axes[0].set_ylabel("training accuracy (%)")
    axes[1].set_ylabel("test accuracy (%)")
    axes[1].set_xlabel("epoch")
    for ax in axes:
        ax.grid(True, alpha=0.3)
    seeds = f"mean of {experiment.seeds} seed{'s' if experiment.seeds != 1 else ''}"
    heading = f"{title or experiment.title} ({experiment.dataset}, {seeds}, ±1 s.d. shaded)"
    axes[0].set_title(textwrap.fill(heading, 80), fontsize=9)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        _legend(figure, axes[1], handles, labels, ncol=2 if len(labels) > 24 else 1)
    return _save(figure, path)


def plot_sweep(experiment: Experiment, aggregate: Aggregate, path: Path) -> Path:
    """Final test accuracy (mean ± s.d. over seeds) against the swept value, one line per swept
    [[variant]]; the group's reference variant (if any) as a dashed horizontal line."""
    groups = experiment.groups()
    finals = {row["variant"]: row for row in aggregate.final}
    figure = _figure(1, width=9.0, height=4.5)
    ax = figure.subplots()
    colours = _colours(len(groups))
    keys: list[str] = []
    drawn: set[str] = set()  # a reference shared by several groups gets one line, in its first group's colour
    for colour, (group, variants) in zip(colours, groups.items()):
        key = ", ".join(variants[0].sweep)
        keys.append(key)
        numeric = all(len(v.sweep) == 1 and isinstance(next(iter(v.sweep.values())), (int, float)) for v in variants)
        positions = [float(next(iter(v.sweep.values()))) if numeric else i for i, v in enumerate(variants)]
        means = [100 * finals[v.name]["test_accuracy_mean"] for v in variants]
        stds = [100 * finals[v.name]["test_accuracy_std"] for v in variants]
        stds = [0.0 if math.isnan(s) else s for s in stds]
        ax.errorbar(positions, means, yerr=stds, color=colour, marker="o", capsize=3, label=group)
        if not numeric:
            ax.set_xticks(positions, [", ".join(str(x) for x in v.sweep.values()) for v in variants])
        reference = variants[0].reference
        if reference and reference in finals and finals[reference]["n"] and reference not in drawn:
            drawn.add(reference)
            ax.axhline(100 * finals[reference]["test_accuracy_mean"], color=colour, linestyle="--", linewidth=1,
                       label=f"{reference} (reference)")
    ax.set_xlabel(" / ".join(dict.fromkeys(keys)))
    ax.set_ylabel("final test accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.set_title(textwrap.fill(f"{experiment.title}: final test accuracy (mean ± s.d. over seeds)", 80), fontsize=9)
    handles, labels = ax.get_legend_handles_labels()
    _legend(figure, ax, handles, labels)
    return _save(figure, path)


def write_figures(experiment: Experiment, directory: Path, aggregate: Aggregate) -> list[Path]:
    """``accuracy.png`` (every variant), and for swept experiments ``accuracy-<group>.png`` (the group
    and its reference) and ``sweep.png``."""
    paths = [plot_accuracy(experiment, aggregate, experiment.variants, directory / "accuracy.png")]
    groups = experiment.groups()
    for group, variants in groups.items():
        members = list(variants)
        reference = variants[0].reference
        if reference:
            members.append(experiment.variant(reference))
        paths.append(plot_accuracy(experiment, aggregate, members, directory / f"accuracy-{group}.png",
                                   title=f"{experiment.name}: {group}"))
    if groups:
        paths.append(plot_sweep(experiment, aggregate, directory / "sweep.png"))
    return paths
