"""``report.md``: settings, tables, figures and the paper's claims checked against the numbers.

Each ``[[check]]`` of a config states one claim of the paper and how to test it on the final (or a
given epoch's) mean over seeds of a metric (``test_accuracy`` by default):

- ``lowest`` / ``highest``: ``variant`` is at most / at least every other variant (or those in ``among``);
- ``ge``: ``a ≥ b + margin`` (``a`` and ``b`` variants or equal-length lists of variants, paired; one
  side may be a single variant);
- ``close``: ``|a − b| ≤ tolerance``;
- ``above`` / ``below``: ``a ≥ value`` / ``a ≤ value`` (every variant in ``a``);
- ``between``: ``low < a < high``;
- ``monotone``: along each swept ``group`` (a name or a list) the metric never falls by more than
  ``tolerance`` from one value to the next;
- ``equals``: ``a == value`` (used by the complexity table).

Accuracy margins, tolerances and values are fractions (0.01 = one percentage point). A variant
whose every seed diverged counts as the worst possible value (accuracy −∞, loss +∞); a variant that
is not in the experiment makes the check "not measured". Each check is reported as **true** or
**false** with the numbers it used.
"""

from __future__ import annotations

import math
import platform
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

from .._io import atomic_write_text
from .aggregate import Aggregate, collect, final_markdown, sweep_markdown, write_tables
from .config import CONFIG_DIR, Experiment
from .runner import parallelism

Value = Callable[[str], float]


class NotMeasured(Exception):
    pass


def _names(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _pair(a: Any, b: Any) -> list[tuple[str, str]]:
    left, right = _names(a), _names(b)
    if len(left) == 1 and len(right) > 1:
        left = left * len(right)
    if len(right) == 1 and len(left) > 1:
        right = right * len(left)
    if len(left) != len(right):
        raise NotMeasured(f"cannot pair {len(left)} variant(s) with {len(right)}")
    return list(zip(left, right))


def _show(metric: str, value: float) -> str:
    if math.isinf(value):
        return "diverged"
    if metric.endswith("accuracy"):
        return f"{100 * value:.2f}%"
    if metric.endswith("loss"):
        return f"{value:.4f}"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:g}"


def _amount(metric: str, value: float) -> str:
    if metric.endswith("accuracy"):
        return f"{100 * value:.2f} points"
    return f"{value:g}"


def evaluate_check(check: dict[str, Any], value: Value, groups: dict[str, list[str]],
                   variants: Sequence[str]) -> tuple[bool | None, str]:
    """``(holds, evidence)``; ``holds`` is None when the check cannot be measured."""
    metric = check.get("metric", "test_accuracy")
    kind = check["kind"]
    show: Callable[[float], str] = lambda v: _show(metric, v)
    try:
        if kind in ("lowest", "highest"):
            name = check["variant"]
            among = [v for v in _names(check.get("among", variants)) if v != name]
            mine = value(name)
            others = {v: value(v) for v in among}
            if not others:
                raise NotMeasured("no other variant to compare with")
            if kind == "lowest":
                rival = min(others, key=lambda v: others[v])
                holds = mine <= others[rival]
                return holds, f"`{name}` {show(mine)}; lowest of the others `{rival}` {show(others[rival])}"
            rival = max(others, key=lambda v: others[v])
            holds = mine >= others[rival]
            return holds, f"`{name}` {show(mine)}; highest of the others `{rival}` {show(others[rival])}"
        if kind in ("ge", "close"):
            parts, holds = [], True
            for a, b in _pair(check["a"], check["b"]):
                va, vb = value(a), value(b)
                if kind == "ge":
                    margin = float(check.get("margin", 0.0))
                    ok = va >= vb + margin
                    shown_a, shown_b = show(va), show(vb)
                    if shown_a == shown_b and metric.endswith("accuracy") and va != vb:
                        shown_a, shown_b = f"{100 * va:.3f}%", f"{100 * vb:.3f}%"  # a near tie: show the gap
                    parts.append(f"`{a}` {shown_a} {'≥' if ok else '<'} `{b}` {shown_b}"
                                 + (f" {'+' if margin >= 0 else '−'} {_amount(metric, abs(margin))}"
                                    if margin else ""))
                else:
                    tolerance = float(check["tolerance"])
                    gap = abs(va - vb)
                    ok = gap <= tolerance
                    shown = _amount(metric, gap) if math.isfinite(gap) else "∞"
                    parts.append(f"`{a}` {show(va)} vs `{b}` {show(vb)}: gap {shown}"
                                 f" {'≤' if ok else '>'} {_amount(metric, tolerance)}")
                holds = holds and ok
            return holds, "; ".join(parts)
        if kind in ("above", "below", "equals"):
            target = float(check["value"])
            parts, holds = [], True
            for a in _names(check["a"]):
                va = value(a)
                ok = va >= target if kind == "above" else va <= target if kind == "below" else va == target
                sign = {"above": ("≥", "<"), "below": ("≤", ">"), "equals": ("=", "≠")}[kind][0 if ok else 1]
                parts.append(f"`{a}` {show(va)} {sign} {show(target)}")
                holds = holds and ok
            return holds, "; ".join(parts)
        if kind == "between":
            parts, holds = [], True
            low, high = check["low"], check["high"]
            vl, vh = value(low), value(high)
            for a in _names(check["a"]):
                va = value(a)
                ok = vl < va < vh
                parts.append(f"`{low}` {show(vl)} {'<' if vl < va else '≥'} `{a}` {show(va)} "
                             f"{'<' if va < vh else '≥'} `{high}` {show(vh)}")
                holds = holds and ok
            return holds, "; ".join(parts)
        if kind == "monotone":
            tolerance = float(check.get("tolerance", 0.0))
            parts, holds = [], True
            for group in _names(check["group"]):
                if group not in groups:
                    raise NotMeasured(f"no swept group {group!r}")
                values = [value(v) for v in groups[group]]
                drops = [values[i] - values[i + 1] for i in range(len(values) - 1)]
                worst = max(drops, default=0.0)
                ok = worst <= tolerance
                parts.append(f"`{group}`: " + " → ".join(show(v) for v in values)
                             + f" (largest fall {_amount(metric, max(worst, 0.0)) if math.isfinite(worst) else '∞'})")
                holds = holds and ok
            return holds, "; ".join(parts) + (f"; tolerance {_amount(metric, tolerance)}" if tolerance else "")
    except NotMeasured as error:
        return None, f"not measured: {error}"
    raise ValueError(f"unknown check kind {kind!r}")  # pragma: no cover - validated when parsed


def checks_markdown(experiment: Experiment, value_at: Callable[[str, str, int | None], float]) -> str:
    """The "Comparison with the paper" checklist."""
    if not experiment.checks:
        return "No claims of the paper are checked for this experiment.\n"
    groups = {g: [v.name for v in vs] for g, vs in experiment.groups().items()}
    names = [v.name for v in experiment.variants]
    lines = []
    for check in experiment.checks:
        epoch = check.get("epoch")
        metric = check.get("metric", "test_accuracy")

        def value(name: str, metric: str = metric, epoch: Any = epoch) -> float:
            if name not in names:
                raise NotMeasured(f"variant {name!r} is not in this experiment")
            return value_at(name, metric, epoch)

        holds, evidence = evaluate_check(check, value, groups, names)
        mark = {True: "[x] **true**", False: "[ ] **false**", None: "[ ] **not measured**"}[holds]
        where = f" ({check['source']})" if check.get("source") else ""
        when = ""
        if epoch is not None and experiment.kind == "train":
            when = f" at epoch {min(int(epoch), experiment.epochs)}"
        what = metric.replace("_", " ")
        lines.append(f"- {mark}: {check['claim']}{where}. Measured ({what}{when}): {evidence}.")
    return "\n".join(lines) + "\n"


def _config_shown(source: str) -> str:
    """A shipped config by its place in the package (the same on every machine), any other by its path."""
    path = Path(source)
    if path.parent.resolve() == CONFIG_DIR.resolve():
        return f"`rbp_native/experiments/configs/{path.name}` (shipped with the package)"
    return f"`{source}`"


def _settings_lines(experiment: Experiment, info: dict[str, Any]) -> list[str]:
    dataset = experiment.dataset
    if experiment.dataset == "synthetic":
        s = experiment.synthetic
        dataset += (f" ({s['train']} train / {s['test']} test examples, {s['features']} features, "
                    f"{s['classes']} classes)")
    if experiment.limit:
        dataset += f", first {experiment.limit} training examples"
    if experiment.test_limit:
        dataset += f", first {experiment.test_limit} test examples"
    lines = [
        f"- Command: `{info.get('command', '(python API)')}`",
        (f"- rbp-native {info.get('version')}{' (' + str(info['isa']) + ' core)' if info.get('isa') else ''}, "
         f"Python {info.get('python', platform.python_version())}, "
         f"{info.get('cores', '?')} cores; {parallelism(info)}"),
        f"- Date: {info.get('date')}",
        f"- Config: {_config_shown(experiment.source)}",
        f"- Data: {dataset}",
        (f"- {experiment.epochs} epoch(s), {experiment.seeds} seed(s) (0 .. {experiment.seeds - 1}; seed s drives "
         f"`MLP(seed=s)` and `Trainer(seed=s)`), training metrics: {experiment.train_metrics}"
         + (f", diagnostics on ({experiment.diagnostics_batch} probe examples)" if experiment.diagnostics else "")),
        f"- Shared options: `{_options(experiment.shared)}`",
    ]
    if experiment.overrides:
        lines.append(f"- Overrides (`--set`): `{_options(experiment.overrides)}`")
    if "seconds" in info:
        lines.append(f"- This invocation: {info.get('trained', 0)} run(s) trained, {info.get('skipped', 0)} already "
                     f"complete, {info['seconds']:.0f} s")
    return lines


def _options(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in options.items())


def _variant_table(experiment: Experiment) -> str:
    lines = ["| Variant | Label | Options beyond the shared ones |", "|---|---|---|"]
    for variant in experiment.variants:
        own = {k: v for k, v in variant.options.items() if experiment.shared.get(k, object()) != v}
        lines.append(f"| `{variant.name}` | {variant.label} | `{_options(own)}` |")
    return "\n".join(lines) + "\n"


def _quick_note(experiment: Experiment) -> str:
    nominal = experiment.nominal
    changed = [f"{k} {getattr(experiment, k)} (config: {nominal[k]})" for k in ("epochs", "seeds", "limit")
               if nominal.get(k) != getattr(experiment, k)]
    if experiment.overrides:
        changed.append("overrides " + _options(experiment.overrides))
    if not changed:
        return ""
    return ("> These results use settings other than the experiment's own: " + "; ".join(changed)
            + ". The checks below describe these runs, not the full setting.\n\n")


def write_report(experiment: Experiment, directory: Path, info: dict[str, Any], aggregate: Aggregate,
                 figures: Sequence[Path], figure_note: str = "") -> Path:
    results = aggregate.results

    def value_at(name: str, metric: str, epoch: int | None) -> float:
        result = results[name]
        if not result.rows:
            if result.diverged:
                return -math.inf if metric.endswith("accuracy") else math.inf
            raise NotMeasured(f"variant {name!r} has no finished seed")
        return result.at(epoch if epoch is not None else 10**9, metric)

    parts = [f"# {experiment.title}", ""]
    if experiment.description:
        parts += [experiment.description.strip(), ""]
    if experiment.paper:
        parts += [f"Paper: {experiment.paper}", ""]
    parts += [_quick_note(experiment)]
    parts += ["## Settings", "", *_settings_lines(experiment, info), ""]
    parts += ["## Variants", "", _variant_table(experiment)]
    parts += ["## Final results", "",
              (f"After {experiment.epochs} epoch(s): mean ± sample standard deviation over the seeds that finished "
               "(also in `final.csv`; per-epoch means and standard deviations in `summary.csv`)."), "",
              final_markdown(aggregate.final)]
    sweep = sweep_markdown(experiment, aggregate)
    if sweep:
        parts += [sweep]
    diverged = [f"`{name}` seed(s) {', '.join(map(str, r.diverged))}" for name, r in results.items() if r.diverged]
    if diverged:
        parts += ["Diverged runs (the loss became NaN or infinite; left out of the means; in the checks a variant "
                  "counts as failed only when every seed diverged): " + "; ".join(diverged) + ".", ""]
    parts += ["## Figures", ""]
    if figures:
        for path in figures:
            parts += [f"![{path.stem}]({path.name})", ""]
    else:
        parts += [figure_note or "No figures.", ""]
    parts += ["## Comparison with the paper", "",
              "Each claim is tested on the mean over seeds; **true** or **false** is what these runs show.", "",
              _quick_note(experiment), checks_markdown(experiment, value_at)]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(parts)).rstrip("\n") + "\n"
    return atomic_write_text(directory / "report.md", text)


def write_outputs(experiment: Experiment, directory: str | Path, info: dict[str, Any],
                  figures: bool = True) -> Path:
    """Aggregate the run folders, write the tables, the figures and ``report.md``; returns the report."""
    directory = Path(directory)
    aggregate = collect(experiment, directory)
    write_tables(experiment, directory, aggregate)
    paths: list[Path] = []
    note = ""
    if figures:
        try:
            from .plots import write_figures

            paths = write_figures(experiment, directory, aggregate)
        except ImportError as error:
            note = f"No figures: {error}."
    return write_report(experiment, directory, info, aggregate, paths, note)
