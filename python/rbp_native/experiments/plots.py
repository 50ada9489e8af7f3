"""Figures in the style of the paper's Fig. 1: training accuracy (upper panel) and test accuracy
(lower panel) against the epoch, one curve per algorithm (the mean over seeds) with the ±1 standard
deviation shaded; for experiments with many variants small multiples (one panel per group of
variants) and a bar chart of the final accuracies instead; and, for swept variants, the final test
accuracy against the swept value. Legends stand beside the axes, never over the data.

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
    """The legend outside the axes, on the right, where it never covers data."""
    try:
        figure.legend(handles, labels, fontsize=7, loc="outside right upper", ncol=ncol)
    except ValueError:  # matplotlib < 3.7 has no "outside" locations: beside the given axes
        ax.legend(
            handles, labels, fontsize=7, ncol=ncol, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0
        )


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


def plot_accuracy(
    experiment: Experiment, aggregate: Aggregate, variants: Sequence[Variant], path: Path, title: str | None = None
) -> Path:
    """Two panels, train (upper) and test (lower) accuracy in % against the epoch."""
    from matplotlib.ticker import MaxNLocator

    figure = _figure(2, width=9.0)
    axes = figure.subplots(2, 1, sharex=True)
    axes[1].xaxis.set_major_locator(MaxNLocator(integer=True))
    # One colour per variant up to the derivative switch: a no-f' variant is its twin, dashed.
    keys = [
        json.dumps({k: v for k, v in variant.options.items() if k != "derivative"}, sort_keys=True)
        for variant in variants
    ]
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
            ax.plot(
                epochs,
                mean,
                color=colour,
                linestyle="--" if _dashed(variant) else "-",
                marker="o" if len(epochs) <= 3 else None,
                linewidth=1.4,
                label=variant.label,
            )
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
            ax.axhline(
                100 * finals[reference]["test_accuracy_mean"],
                color=colour,
                linestyle="--",
                linewidth=1,
                label=f"{reference} (reference)",
            )
    ax.set_xlabel(" / ".join(dict.fromkeys(keys)))
    ax.set_ylabel("final test accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.set_title(textwrap.fill(f"{experiment.title}: final test accuracy (mean ± s.d. over seeds)", 80), fontsize=9)
    handles, labels = ax.get_legend_handles_labels()
    _legend(figure, ax, handles, labels)
    return _save(figure, path)


#: Above this many variants one plot of every curve is unreadable: small multiples instead.
MAX_CURVES = 10


def panels(experiment: Experiment) -> dict[str, list[Variant]]:
    """The small multiples of ``accuracy.png``: a variant goes to the panels its config names, else to
    its sweep group's (with the group's reference), else to a shared panel of the unswept variants."""
    result: dict[str, list[Variant]] = {}
    references = {v.reference for v in experiment.variants if v.group and v.reference}
    for variant in experiment.variants:
        titles = variant.panels or ([variant.group] if variant.group else [])
        if not titles and variant.name in references:
            continue  # drawn with the groups it is the reference of
        for title in titles or ["variants without a sweep"]:
            result.setdefault(title, []).append(variant)
    for group, members in experiment.groups().items():
        reference = members[0].reference
        if reference and not members[0].panels and group in result:
            ref = experiment.variant(reference)
            if ref not in result[group]:
                result[group].append(ref)
    return result


def plot_panels(experiment: Experiment, aggregate: Aggregate, path: Path) -> Path:
    """Test accuracy against the epoch, one panel per group of variants (:func:`panels`), each with its
    own legend beside it; a reference variant is drawn black and dashed."""
    from matplotlib.ticker import MaxNLocator

    layout = panels(experiment)
    figure = _figure(len(layout), width=11.0, height=2.7)
    axes = figure.subplots(len(layout), 1, sharex=True, squeeze=False)[:, 0]
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for entry in aggregate.summary:
        by_variant.setdefault(entry["variant"], []).append(entry)
    references = {v.reference for v in experiment.variants if v.reference}
    for ax, (title, variants) in zip(axes, layout.items()):
        colours = iter(_colours(sum(1 for v in variants if v.name not in references) or 1))
        for variant in variants:
            entries = by_variant.get(variant.name, [])
            if not entries:
                continue
            is_reference = variant.name in references and variant.group is None
            colour = "black" if is_reference else next(colours)
            epochs = [e["epoch"] for e in entries]
            mean = [100 * e["test_accuracy_mean"] for e in entries]
            std = [0.0 if math.isnan(e["test_accuracy_std"]) else 100 * e["test_accuracy_std"] for e in entries]
            ax.plot(
                epochs,
                mean,
                color=colour,
                linestyle="--" if is_reference or _dashed(variant) else "-",
                marker="o" if len(epochs) <= 3 else None,
                linewidth=1.3,
                label=variant.label,
            )
            if any(std):
                ax.fill_between(
                    epochs,
                    [m - s for m, s in zip(mean, std)],
                    [m + s for m, s in zip(mean, std)],
                    color=colour,
                    alpha=0.15,
                    linewidth=0,
                )
        ax.set_title(title, fontsize=8, loc="left")
        ax.set_ylabel("test acc. (%)", fontsize=8)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=7)
        if ax.get_legend_handles_labels()[0]:  # a panel whose every run diverged has nothing to label
            # One column: a two-column legend beside one panel would narrow every panel of the shared x axis.
            ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    axes[-1].set_xlabel("epoch")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    seeds = f"mean of {experiment.seeds} seed{'s' if experiment.seeds != 1 else ''}"
    figure.suptitle(
        textwrap.fill(f"{experiment.title} ({experiment.dataset}, {seeds}, ±1 s.d. shaded)", 100), fontsize=9
    )
    return _save(figure, path)


def plot_final(experiment: Experiment, aggregate: Aggregate, path: Path) -> Path:
    """Final test accuracy (mean ± s.d. over seeds) of every variant as horizontal bars, in config
    order, coloured by panel; a variant whose every seed diverged is marked, not drawn."""
    finals = {row["variant"]: row for row in aggregate.final}
    layout = panels(experiment)
    colour_of: dict[str, Any] = {}
    for colour, variants in zip(_colours(len(layout)), layout.values()):
        for variant in variants:
            colour_of.setdefault(variant.name, colour)
    variants = experiment.variants
    figure = _figure(1, width=9.0, height=max(2.5, 0.22 * len(variants) + 1.0))
    ax = figure.subplots()
    positions = list(range(len(variants)))[::-1]
    for y, variant in zip(positions, variants):
        row = finals[variant.name]
        if not row["n"]:
            ax.text(
                0.5,
                y,
                "diverged" if row["diverged"] else "no runs",
                va="center",
                fontsize=7,
                transform=ax.get_yaxis_transform(),
            )
            continue
        std = 0.0 if math.isnan(row["test_accuracy_std"]) else 100 * row["test_accuracy_std"]
        ax.barh(
            y,
            100 * row["test_accuracy_mean"],
            xerr=std,
            color=colour_of.get(variant.name, "grey"),
            capsize=2,
            height=0.7,
        )
    ax.set_yticks(positions, [v.label for v in variants], fontsize=7)
    ax.set_xlabel("final test accuracy (%)")
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(textwrap.fill(f"{experiment.title}: final test accuracy (mean ± s.d. over seeds)", 90), fontsize=9)
    return _save(figure, path)


def write_figures(experiment: Experiment, directory: Path, aggregate: Aggregate) -> list[Path]:
    """``accuracy.png``: train and test accuracy of every variant, or, above :data:`MAX_CURVES` variants
    or where the config names panels, small multiples of test accuracy (:func:`plot_panels`) and
    ``final.png`` (final accuracy of every variant); for swept experiments also ``accuracy-<group>.png``
    (the group and its reference, train and test) and ``sweep.png``."""
    crowded = len(experiment.variants) > MAX_CURVES or any(v.panels for v in experiment.variants)
    if crowded:
        paths = [
            plot_panels(experiment, aggregate, directory / "accuracy.png"),
            plot_final(experiment, aggregate, directory / "final.png"),
        ]
    else:
        paths = [plot_accuracy(experiment, aggregate, experiment.variants, directory / "accuracy.png")]
    groups = experiment.groups()
    for group, variants in groups.items():
        members = list(variants)
        reference = variants[0].reference
        if reference:
            members.append(experiment.variant(reference))
        paths.append(
            plot_accuracy(
                experiment, aggregate, members, directory / f"accuracy-{group}.png", title=f"{experiment.name}: {group}"
            )
        )
    if groups:
        paths.append(plot_sweep(experiment, aggregate, directory / "sweep.png"))
    return paths
