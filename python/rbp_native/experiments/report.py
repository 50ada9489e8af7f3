"""``report.md``: settings, provenance, tables, figures and the paper's claims checked against the numbers.

Each ``[[check]]`` of a config states one claim of the paper and how to test it on the final (or a
given epoch's) mean over seeds of a metric (``test_accuracy`` by default):

- ``lowest`` / ``highest``: ``variant`` is at most / at least every other variant (or those in ``among``);
- ``ge``: ``a ≥ b + margin`` (``a`` and ``b`` variants or equal-length lists of variants, paired; one
  side may be a single variant);
- ``close``: ``|a − b| ≤ tolerance``;
- ``above`` / ``below``: ``a ≥ value`` / ``a ≤ value`` (every variant in ``a``);
- ``between``: ``low < a < high``;
- ``monotone``: along each swept ``group`` (a name or a list), in increasing order of the swept value,
  the metric never gets worse by more than ``tolerance`` from one value to the next;
- ``graceful``: along each swept ``group``, in decreasing order of the swept value (bits *removed*,
  say), the metric never gets worse by more than ``tolerance`` from one value to the next;
- ``alike``: the groups in ``group`` lose alike against their own ``reference`` variants: at every
  swept value (or those in ``values``) the losses differ by at most ``tolerance``;
- ``reaches``: along each swept ``group`` the metric is ≥ ``value`` at every swept value from ``at``
  upwards; the evidence names the values where it holds and the first, going down, where it fails;
- ``equals``: ``a == value`` (used by the complexity table);
- ``same_order``: every pair of variants (those in ``among``, default all) whose final values in
  another ``experiment``'s results (its ``final.csv``, see :func:`find_other_results`) differ by more than
  ``margin`` comes in the same order here: "results similar to those of that experiment", on its
  orderings rather than on its absolute numbers.

Accuracy margins, tolerances and values are fractions (0.01 = one percentage point). A variant
whose every seed diverged counts as the worst possible value (accuracy −∞, loss +∞); a variant that
is not in the experiment makes the check "not measured".

Verdicts: **true** or **false**; **tie** where a comparison without a tolerance (``lowest``,
``highest``, ``ge``, ``above``, ``below``, ``between``) is decided by less than one standard error of
the difference over the seeds (noise, not a result; with one seed there is no spread and no tie);
**holds by construction** where a ``close`` or ``equals`` check carries ``construction = "reason"``:
the identity follows from the algorithm's definition, so the runs confirm the implementation, not the
paper (and a failure points at the implementation); **not measured**.
"""

from __future__ import annotations

import json
import math
import platform
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .._io import atomic_write_text
from .aggregate import Aggregate, collect, final_markdown, sweep_markdown, write_tables
from .config import CONFIG_DIR, SWEEP_SHORT, Experiment
from .runner import parallelism

TRUE, FALSE, TIE, CONSTRUCTION, NOT_MEASURED = "true", "false", "tie", "holds by construction", "not measured"
#: Kinds whose verdict may be a tie: comparisons with no tolerance of their own.
TIE_KINDS = ("lowest", "highest", "ge", "above", "below", "between", "same_order")
#: Where the results of another experiment are looked for (see :func:`find_other_results`): the checkout's
#: committed results, when the package is imported from a source checkout (``python/rbp_native``).
_PACKAGE = Path(__file__).resolve().parent.parent
CHECKOUT_RESULTS = _PACKAGE.parent.parent / "docs" / "results" if _PACKAGE.parent.name == "python" else None


@dataclass(frozen=True)
class Stat:
    """A variant's metric over its seeds: mean, sample standard deviation (NaN for one seed), seeds."""

    mean: float
    std: float = math.nan
    n: int = 1

    @property
    def se(self) -> float:
        """Standard error of the mean; 0 where the spread is unknown (one seed) or meaningless."""
        if self.n > 1 and math.isfinite(self.std) and math.isfinite(self.mean):
            return self.std / math.sqrt(self.n)
        return 0.0


Value = Callable[[str], "Stat | float"]
#: ``other_results(experiment, metric)``: another experiment's final value of `metric` per variant, and a
#: description of where it was read; raises :class:`NotMeasured` when there are no such results.
OtherResults = Callable[[str, str], "tuple[dict[str, Stat], str]"]


class NotMeasured(Exception):
    pass


def _stat(value: Stat | float) -> Stat:
    return value if isinstance(value, Stat) else Stat(float(value))


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


def _better(metric: str) -> float:
    """+1 where a larger value is better (accuracies), −1 where smaller is (losses)."""
    return -1.0 if metric.endswith("loss") else 1.0


def _compare(diff: float, se: float) -> str:
    """The verdict on ``diff ≥ 0``: a tie when ``|diff|`` is within one standard error ``se`` (> 0)."""
    if se > 0 and math.isfinite(diff) and abs(diff) <= se:
        return TIE
    return TRUE if diff >= 0 else FALSE


def _combine(verdicts: Sequence[str]) -> str:
    if FALSE in verdicts:
        return FALSE
    return TIE if TIE in verdicts else TRUE


def _se_diff(a: Stat, b: Stat) -> float:
    return math.hypot(a.se, b.se)


def _tie_note(verdict: str, diff: float, se: float, metric: str) -> str:
    if verdict != TIE:
        return ""
    return f" (difference {_amount(metric, abs(diff))} within one standard error, {_amount(metric, se)}: tie)"


def _swept_value(value: Any) -> Any:
    return next(iter(value.values())) if isinstance(value, Mapping) and len(value) == 1 else value


def _ordered(group: str, groups: Mapping[str, list[str]], swept: Mapping[str, Any]) -> list[str]:
    """The group's variants in increasing order of their swept value (as listed where not numeric)."""
    if group not in groups:
        raise NotMeasured(f"no swept group {group!r}")
    members = list(groups[group])
    values = [_swept_value(swept.get(v)) for v in members]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        members = [m for _, m in sorted(zip(values, members), key=lambda pair: pair[0])]
    return members


def _key(value: Any) -> str:
    """A swept value as text, equal for equal numbers (4 and 4.0)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{float(value):g}"
    return str(value)


def _label(name: str, swept: Mapping[str, Any]) -> str:
    """``bits 4`` for a variant swept over ``quantize_bits = 4``; the variant's name where not swept."""
    sweep = swept.get(name)
    if isinstance(sweep, Mapping) and sweep:
        return ", ".join(f"{SWEEP_SHORT.get(k, k)} {_key(v)}" for k, v in sweep.items())
    return f"`{name}`" if sweep is None else _key(sweep)


def _at(name: str, swept: Mapping[str, Any]) -> str:
    return _key(_swept_value(swept.get(name)))


def evaluate_check(
    check: dict[str, Any],
    value: Value,
    groups: Mapping[str, list[str]],
    variants: Sequence[str],
    swept: Mapping[str, Any] | None = None,
    references: Mapping[str, str | None] | None = None,
    other_results: OtherResults | None = None,
) -> tuple[str | None, str]:
    """``(verdict, evidence)``: verdict ``"true"``, ``"false"``, ``"tie"`` or ``"holds by construction"``,
    or None when the check cannot be measured. `value` gives a variant's :class:`Stat` (or a plain
    number: no spread); `swept` maps a swept variant to its swept value(s) and `references` a group to
    its reference variant (for ``monotone``, ``graceful``, ``alike`` and ``reaches``); `other_results`
    gives another experiment's results (for ``same_order``; None: not measured)."""
    verdict, evidence = _evaluate(
        check, lambda name: _stat(value(name)), groups, variants, swept or {}, references or {}, other_results
    )
    reason = check.get("construction")
    if reason and verdict in (TRUE, TIE):
        return CONSTRUCTION, f"{evidence}. By construction: {reason}"
    if reason and verdict == FALSE:
        return FALSE, f"{evidence}. Expected by construction ({reason}): a failure points at the implementation"
    return verdict, evidence


def _evaluate(
    check: dict[str, Any],
    value: Callable[[str], Stat],
    groups: Mapping[str, list[str]],
    variants: Sequence[str],
    swept: Mapping[str, Any],
    references: Mapping[str, str | None],
    other_results: OtherResults | None = None,
) -> tuple[str | None, str]:
    metric = check.get("metric", "test_accuracy")
    kind = check["kind"]
    show: Callable[[float], str] = lambda v: _show(metric, v)
    sign = _better(metric)
    try:
        if kind in ("lowest", "highest"):
            name = check["variant"]
            among = [v for v in _names(check.get("among", variants)) if v != name]
            mine = value(name)
            others = {v: value(v) for v in among}
            if not others:
                raise NotMeasured("no other variant to compare with")
            pick = min if kind == "lowest" else max
            rival = pick(others, key=lambda v: others[v].mean)
            diff = (others[rival].mean - mine.mean) * (1 if kind == "lowest" else -1)
            se = _se_diff(mine, others[rival])
            verdict = _compare(diff, se)
            word = "lowest" if kind == "lowest" else "highest"
            return verdict, (
                f"`{name}` {show(mine.mean)}; {word} of the others `{rival}` {show(others[rival].mean)}"
                + _tie_note(verdict, diff, se, metric)
            )
        if kind in ("ge", "close"):
            parts, verdicts = [], []
            for a, b in _pair(check["a"], check["b"]):
                sa, sb = value(a), value(b)
                va, vb = sa.mean, sb.mean
                if kind == "ge":
                    margin = float(check.get("margin", 0.0))
                    diff = va - (vb + margin)
                    se = _se_diff(sa, sb)
                    verdict = _compare(diff, se)
                    shown_a, shown_b = show(va), show(vb)
                    if shown_a == shown_b and metric.endswith("accuracy") and va != vb:
                        shown_a, shown_b = f"{100 * va:.3f}%", f"{100 * vb:.3f}%"  # a near tie: show the gap
                    parts.append(
                        f"`{a}` {shown_a} {'≥' if diff >= 0 else '<'} `{b}` {shown_b}"
                        + (f" {'+' if margin >= 0 else '−'} {_amount(metric, abs(margin))}" if margin else "")
                        + _tie_note(verdict, diff, se, metric)
                    )
                else:
                    tolerance = float(check["tolerance"])
                    gap = abs(va - vb)
                    verdict = TRUE if gap <= tolerance else FALSE
                    shown = _amount(metric, gap) if math.isfinite(gap) else "∞"
                    parts.append(
                        f"`{a}` {show(va)} vs `{b}` {show(vb)}: gap {shown}"
                        f" {'≤' if verdict == TRUE else '>'} {_amount(metric, tolerance)}"
                    )
                verdicts.append(verdict)
            return _combine(verdicts), "; ".join(parts)
        if kind in ("above", "below", "equals"):
            target = float(check["value"])
            parts, verdicts = [], []
            for a in _names(check["a"]):
                sa = value(a)
                if kind == "equals":
                    verdict = TRUE if sa.mean == target else FALSE
                    parts.append(f"`{a}` {show(sa.mean)} {'=' if verdict == TRUE else '≠'} {show(target)}")
                else:
                    diff = sa.mean - target if kind == "above" else target - sa.mean
                    verdict = _compare(diff, sa.se)
                    mark = {"above": ("≥", "<"), "below": ("≤", ">")}[kind][0 if diff >= 0 else 1]
                    parts.append(
                        f"`{a}` {show(sa.mean)} {mark} {show(target)}" + _tie_note(verdict, diff, sa.se, metric)
                    )
                verdicts.append(verdict)
            return _combine(verdicts), "; ".join(parts)
        if kind == "between":
            parts, verdicts = [], []
            low, high = check["low"], check["high"]
            sl, sh = value(low), value(high)
            for a in _names(check["a"]):
                sa = value(a)
                below, above = sa.mean - sl.mean, sh.mean - sa.mean
                v_low, v_high = _compare(below, _se_diff(sa, sl)), _compare(above, _se_diff(sa, sh))
                verdicts += [v_low, v_high]
                ties = [name for name, v in ((low, v_low), (high, v_high)) if v == TIE]
                parts.append(
                    f"`{low}` {show(sl.mean)} {'<' if below > 0 else '≥'} `{a}` {show(sa.mean)} "
                    f"{'<' if above > 0 else '≥'} `{high}` {show(sh.mean)}"
                    + (f" (within one standard error of `{'` and `'.join(ties)}`: tie)" if ties else "")
                )
            return _combine(verdicts), "; ".join(parts)
        if kind in ("monotone", "graceful"):
            tolerance = float(check.get("tolerance", 0.0))
            parts, verdicts = [], []
            for group in _names(check["group"]):
                members = _ordered(group, groups, swept)
                if kind == "graceful":
                    members = members[::-1]  # from the most precise down
                values = [value(v).mean for v in members]
                worse = [sign * (values[i] - values[i + 1]) for i in range(len(values) - 1)]
                worst_at = max(range(len(worse)), key=lambda i: worse[i]) if worse else None
                worst = worse[worst_at] if worst_at is not None else 0.0
                verdict = TRUE if worst <= tolerance else FALSE
                verdicts.append(verdict)
                path = " → ".join(f"{_label(m, swept)}: {show(v)}" for m, v in zip(members, values))
                if worst_at is None or worst <= 0:
                    step = "never worse from one value to the next"
                else:
                    amount = _amount(metric, worst) if math.isfinite(worst) else "∞"
                    step = (
                        f"largest loss {amount}, from {_label(members[worst_at], swept)} to "
                        f"{_label(members[worst_at + 1], swept)}"
                    )
                order = "from the most precise down" if kind == "graceful" else "in increasing order"
                parts.append(f"`{group}` ({order}): {path} ({step})")
            return _combine(verdicts), "; ".join(parts) + (
                f"; tolerance {_amount(metric, tolerance)} per step" if tolerance else ""
            )
        if kind == "alike":
            tolerance = float(check["tolerance"])
            names = _names(check["group"])
            ordered = {g: _ordered(g, groups, swept) for g in names}
            refs = {}
            for g in names:
                ref = references.get(g)
                if not ref:
                    raise NotMeasured(f"group {g!r} has no reference variant")
                refs[g] = value(ref).mean
            keys = [_at(m, swept) for m in ordered[names[0]]]
            wanted = [_key(v) for v in _names_any(check.get("values"))]
            keys = [k for k in keys if not wanted or k in wanted]
            if wanted and len(keys) != len(wanted):
                raise NotMeasured(
                    f"swept values {', '.join(w for w in wanted if w not in keys)} are not in `{names[0]}`"
                )
            parts, failing = [], []
            for key in keys:
                losses = {}
                shown = key
                for g in names:
                    member = next((m for m in ordered[g] if _at(m, swept) == key), None)
                    if member is None:
                        raise NotMeasured(f"group {g!r} has no variant at {key}")
                    losses[g] = sign * (refs[g] - value(member).mean)
                    shown = _label(member, swept)
                spread = max(losses.values()) - min(losses.values())
                if not spread <= tolerance:
                    failing.append(shown)
                finite = {g: _amount(metric, x) if math.isfinite(x) else "∞" for g, x in losses.items()}
                parts.append(
                    f"{shown}: "
                    + ", ".join(f"`{g}` loses {finite[g]}" for g in names)
                    + f" (spread {_amount(metric, spread) if math.isfinite(spread) else '∞'})"
                )
            verdict = FALSE if failing else TRUE
            tail = (
                f"; alike (spread ≤ {_amount(metric, tolerance)}) at every value"
                if not failing
                else f"; spread > {_amount(metric, tolerance)} at {', '.join(failing)}"
            )
            return verdict, "losses against each group's own reference: " + "; ".join(parts) + tail
        if kind == "reaches":
            target = float(check["value"])
            at = check["at"]
            parts, verdicts, at_label = [], [], _key(at)
            for group in _names(check["group"]):
                members = _ordered(group, groups, swept)
                values = [value(v).mean for v in members]
                holds = [sign * (v - target) >= 0 for v in values]
                lowest = len(members)
                while lowest > 0 and holds[lowest - 1]:
                    lowest -= 1
                labels = [_label(m, swept) for m in members]
                position = next((i for i, m in enumerate(members) if _at(m, swept) == _key(at)), None)
                if position is None:
                    raise NotMeasured(f"`{group}` has no variant at {at}")
                at_label = labels[position]
                verdict = TRUE if lowest <= position else FALSE
                verdicts.append(verdict)
                if lowest == 0:
                    text = f"holds at every value ({labels[0]} upwards)"
                elif lowest == len(members):
                    text = f"fails already at {labels[-1]} ({show(values[-1])})"
                else:
                    text = (
                        f"holds from {labels[lowest]} upwards; first failure going down at {labels[lowest - 1]} "
                        f"({show(values[lowest - 1])})"
                    )
                parts.append(f"`{group}`: {text}")
            return _combine(verdicts), (
                f"{'≥' if sign > 0 else '≤'} {show(target)} needed from {at_label} up; " + "; ".join(parts)
            )
        if kind == "same_order":
            return _same_order(check, value, variants, metric, other_results)
    except NotMeasured as error:
        return None, f"not measured: {error}"
    raise ValueError(f"unknown check kind {kind!r}")  # pragma: no cover - validated when parsed


def _same_order(
    check: dict[str, Any],
    value: Callable[[str], Stat],
    variants: Sequence[str],
    metric: str,
    other_results: OtherResults | None,
) -> tuple[str | None, str]:
    """The ``same_order`` check (see the module docstring)."""
    other = str(check["experiment"])
    if other_results is None:
        raise NotMeasured(f"no results of {other} to compare with")
    theirs, where = other_results(other, metric)
    margin = float(check["margin"])
    sign = _better(metric)
    names = [v for v in _names(check.get("among", variants)) if v in theirs]
    if len(names) < 2:
        raise NotMeasured(f"{where} has fewer than two of the variants compared")
    pairs = []
    for i, u in enumerate(names):
        for v in names[i + 1 :]:
            gap = sign * (theirs[u].mean - theirs[v].mean)
            if abs(gap) > margin:
                pairs.append((u, v) if gap > 0 else (v, u))  # (better, worse) in the other experiment
    if not pairs:
        raise NotMeasured(f"{where} separates no pair of the variants by more than {_amount(metric, margin)}")
    show: Callable[[float], str] = lambda x: _show(metric, x)
    verdicts, exceptions = [], []
    for better, worse in pairs:
        mine_better, mine_worse = value(better), value(worse)
        diff = sign * (mine_better.mean - mine_worse.mean)
        se = _se_diff(mine_better, mine_worse)
        verdict = _compare(diff, se)
        verdicts.append(verdict)
        if verdict != TRUE:
            exceptions.append(
                f"`{better}` {show(mine_better.mean)} {'≥' if diff >= 0 else '<'} `{worse}` {show(mine_worse.mean)}"
                f" here, {show(theirs[better].mean)} vs {show(theirs[worse].mean)} there"
                + _tie_note(verdict, diff, se, metric)
            )
    held = verdicts.count(TRUE)
    text = (
        f"{len(pairs)} pair(s) of {len(names)} variants that {where} separates by more than "
        f"{_amount(metric, margin)}; {held} in the same order here"
    )
    if exceptions:
        text += "; not: " + "; ".join(exceptions)
    text += ". Here: " + ", ".join(f"`{n}` {show(value(n).mean)}" for n in names)
    text += "; there: " + ", ".join(f"`{n}` {show(theirs[n].mean)}" for n in names)
    return _combine(verdicts), text


def find_other_results(name: str, directory: Path | None) -> Path | None:
    """The results folder of experiment `name` whose ``final.csv`` a ``same_order`` check reads: beside
    `directory` (the same ``--out``), else in the checkout's ``docs/results``; None if neither has one."""
    places = [directory.parent / name] if directory is not None else []
    if CHECKOUT_RESULTS is not None:
        places.append(CHECKOUT_RESULTS / name)
    for place in places:
        if (place / "final.csv").is_file():
            return place
    return None


def other_results_beside(directory: Path | None) -> OtherResults:
    """The `other_results` of :func:`evaluate_check` for a report written to `directory`: the final values
    in the ``final.csv`` that :func:`find_other_results` finds."""
    from .aggregate import _read_table

    def results(name: str, metric: str) -> tuple[dict[str, Stat], str]:
        place = find_other_results(name, directory)
        if place is None:
            looked = [str(directory.parent / name)] if directory is not None else []
            if CHECKOUT_RESULTS is not None:
                looked.append(str(CHECKOUT_RESULTS / name))
            raise NotMeasured(
                f"no results of {name} (a final.csv) in {' or '.join(looked) or 'any known place'}: cannot be checked"
            )
        rows = _read_table(place / "final.csv")
        values: dict[str, Stat] = {}
        for row in rows:
            if row.get("n"):
                values[row["variant"]] = Stat(row[f"{metric}_mean"], row[f"{metric}_std"], int(row["n"]))
            elif row.get("diverged"):
                values[row["variant"]] = Stat(-math.inf if metric.endswith("accuracy") else math.inf)
        epochs = sorted({int(row["epochs"]) for row in rows if row.get("n")})
        seeds = sorted({int(row["n"]) for row in rows if row.get("n")})
        shown = ", ".join(str(e) for e in epochs) or "?"
        return values, f"{name} ({place / 'final.csv'}: {shown} epochs, {'/'.join(map(str, seeds)) or '?'} seeds)"

    return results


def _names_any(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


MARKS = {
    TRUE: "[x] **true**",
    FALSE: "[ ] **false**",
    TIE: "[ ] **tie**",
    CONSTRUCTION: "[x] **holds by construction**",
    None: "[ ] **not measured**",
}


def check_verdicts(
    experiment: Experiment,
    value_at: Callable[[str, str, int | None], Stat | float],
    other_results: OtherResults | None = None,
) -> list[tuple[dict[str, Any], str | None, str]]:
    """Every ``[[check]]`` with its verdict and evidence (see :func:`evaluate_check`)."""
    groups = {g: [v.name for v in vs] for g, vs in experiment.groups().items()}
    swept = {v.name: v.sweep for v in experiment.variants if v.sweep}
    references = {g: vs[0].reference for g, vs in experiment.groups().items()}
    names = [v.name for v in experiment.variants]
    results = []
    for check in experiment.checks:
        epoch = check.get("epoch")
        metric = check.get("metric", "test_accuracy")

        def value(name: str, metric: str = metric, epoch: Any = epoch) -> Stat | float:
            if name not in names:
                raise NotMeasured(f"variant {name!r} is not in this experiment")
            return value_at(name, metric, epoch)

        verdict, evidence = evaluate_check(check, value, groups, names, swept, references, other_results)
        results.append((check, verdict, evidence))
    return results


def checks_markdown(
    experiment: Experiment,
    value_at: Callable[[str, str, int | None], Stat | float],
    other_results: OtherResults | None = None,
) -> str:
    """The "Comparison with the paper" checklist, with a count of the verdicts first."""
    if not experiment.checks:
        return "No claims of the paper are checked for this experiment.\n"
    lines = []
    counts: dict[str | None, int] = {}
    for check, verdict, evidence in check_verdicts(experiment, value_at, other_results):
        counts[verdict] = counts.get(verdict, 0) + 1
        where = f" ({check['source']})" if check.get("source") else ""
        epoch = check.get("epoch")
        when = ""
        if epoch is not None and experiment.kind == "train":
            when = f" at epoch {min(int(epoch), experiment.epochs)}"
        what = check.get("metric", "test_accuracy").replace("_", " ")
        lines.append(f"- {MARKS[verdict]}: {check['claim']}{where}. Measured ({what}{when}): {evidence}.")
    order = (TRUE, FALSE, TIE, CONSTRUCTION, None)
    tally = ", ".join(f"{counts[v]} {v or NOT_MEASURED}" for v in order if counts.get(v))
    head = (
        f"Verdicts: {tally}"
        + (" (by construction: not counted as agreement with the paper)" if counts.get(CONSTRUCTION) else "")
        + "."
    )
    return head + "\n\n" + "\n".join(lines) + "\n"


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
        dataset += (
            f" ({s['train']} train / {s['test']} test examples, {s['features']} features, {s['classes']} classes)"
        )
    balanced = experiment.dataset_spec().get("subset") == "balanced"
    taken = " (from the classes in turn)" if balanced else ""
    if experiment.limit:
        dataset += f", {'' if balanced else 'first '}{experiment.limit} training examples{taken}"
    if experiment.test_limit:
        dataset += f", {'' if balanced else 'first '}{experiment.test_limit} test examples{taken}"
    if info.get("data_source"):
        dataset += f"; read from {info['data_source']}"
    from .runner import describe_source

    where = (
        describe_source(info["source"])
        if "source" in info
        else "commit not recorded (the invocation predates provenance records)"
    )
    network_class = "Sequential" if any("layers" in v.options for v in experiment.variants) else "MLP"
    lines = [
        f"- Command: `{info.get('command', '(python API)')}`",
        (
            f"- rbp-native {info.get('version')}{' (' + str(info['isa']) + ' core)' if info.get('isa') else ''}, "
            f"{where}, "
            f"Python {info.get('python', platform.python_version())}, "
            f"{info.get('cores', '?')} cores; {parallelism(info)}"
        ),
        f"- Date: {info.get('date')}",
        f"- Config: {_config_shown(experiment.source)}",
        f"- Data: {dataset}",
        (
            f"- {experiment.epochs} epoch(s), {experiment.seeds} seed(s) (0 .. {experiment.seeds - 1}; seed s drives "
            f"`{network_class}(seed=s)` and `Trainer(seed=s)`), training metrics: {experiment.train_metrics}"
            + (f", diagnostics on ({experiment.diagnostics_batch} probe examples)" if experiment.diagnostics else "")
        ),
        f"- Shared options: `{_options(experiment.shared)}`",
    ]
    if experiment.overrides:
        lines.append(f"- Overrides (`--set`): `{_options(experiment.overrides)}`")
    if "seconds" in info:
        lines.append(
            f"- This invocation: {info.get('trained', 0)} run(s) trained, {info.get('skipped', 0)} already "
            f"complete, {info['seconds']:.0f} s"
        )
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
    changed = [
        f"{k} {getattr(experiment, k)} (config: {nominal[k]})"
        for k in ("epochs", "seeds", "limit")
        if nominal.get(k) != getattr(experiment, k)
    ]
    if experiment.overrides:
        changed.append("overrides " + _options(experiment.overrides))
    if not changed:
        return ""
    return (
        "> These results use settings other than the experiment's own: "
        + "; ".join(changed)
        + ". The checks below describe these runs, not the full setting.\n\n"
    )


def _provenance_lines(aggregate: Aggregate) -> list[str]:
    """Where the runs' code came from: one commit, several (said in bold), or not known (tables only)."""
    lines = []
    sources = aggregate.sources
    if sources is None:
        lines.append(
            "- Runs: read back from `summary.csv` and `final.csv` (the run folders, which record each "
            "run's commit, are not here); see `experiment.json` for the invocation that trained them"
        )
    elif len(sources) == 1:
        where = next(iter(sources))
        lines.append(f"- Runs: all {sources[where]} from the same code: {where}")
    elif sources:
        lines.append(
            "- Runs: **made at different commits** (a mixed folder: compare the code of these commits "
            "before comparing the runs): "
            + "; ".join(f"{where}: {count} run(s)" for where, count in sorted(sources.items(), key=lambda kv: -kv[1]))
        )
    return lines


def _value_at(aggregate: Aggregate) -> Callable[[str, str, int | None], Stat]:
    finals = {row["variant"]: row for row in aggregate.final}

    def value_at(name: str, metric: str, epoch: int | None) -> Stat:
        row = finals[name]
        if not row["n"]:
            if row["diverged"]:
                return Stat(-math.inf if metric.endswith("accuracy") else math.inf)
            raise NotMeasured(f"variant {name!r} has no finished seed")
        mean, std, n = aggregate.stat(name, metric, epoch)
        return Stat(mean, std, n)

    return value_at


def write_report(
    experiment: Experiment,
    directory: Path,
    info: dict[str, Any],
    aggregate: Aggregate,
    figures: Sequence[Path],
    figure_note: str = "",
    rebuilt: dict[str, Any] | None = None,
) -> Path:
    """``report.md``. `rebuilt` (from :func:`rebuild_report`): the date and code of a report rewritten from
    the tables after the runs, said under the settings."""
    from .runner import describe_source

    parts = [f"# {experiment.title}", ""]
    if experiment.description:
        parts += [experiment.description.strip(), ""]
    if experiment.paper:
        parts += [f"Paper: {experiment.paper}", ""]
    parts += [_quick_note(experiment)]
    parts += ["## Settings", "", *_settings_lines(experiment, info), *_provenance_lines(aggregate)]
    if rebuilt:
        parts += [
            f"- This report: rebuilt on {rebuilt['date']} from the committed tables by rbp-native "
            f"{rebuilt['version']}, {describe_source(rebuilt['source'])} (new checks and figures; the "
            "numbers are the runs' own)"
        ]
    parts += [""]
    parts += ["## Variants", "", _variant_table(experiment)]
    parts += [
        "## Final results",
        "",
        (
            f"After {experiment.epochs} epoch(s): mean ± sample standard deviation over the seeds that finished "
            "(also in `final.csv`; per-epoch means and standard deviations in `summary.csv`)."
        ),
        "",
        final_markdown(aggregate.final),
    ]
    sweep = sweep_markdown(experiment, aggregate)
    if sweep:
        parts += [sweep]
    diverged = []
    for row in aggregate.final:
        if row["diverged"]:
            seeds = aggregate.results[row["variant"]].diverged if aggregate.results else None
            diverged.append(
                f"`{row['variant']}` "
                + (f"seed(s) {', '.join(map(str, seeds))}" if seeds else f"{row['diverged']} seed(s)")
            )
    if diverged:
        parts += [
            "Diverged runs (the loss became NaN or infinite; left out of the means; in the checks a variant "
            "counts as failed only when every seed diverged): " + "; ".join(diverged) + ".",
            "",
        ]
    parts += ["## Figures", ""]
    if figures:
        for path in figures:
            parts += [f"![{path.stem}]({path.name})", ""]
    else:
        parts += [figure_note or "No figures.", ""]
    parts += [
        "## Comparison with the paper",
        "",
        (
            "Each claim is tested on the mean over seeds: **true** or **false** is what these runs show; "
            "**tie** where a comparison is decided by less than one standard error of the difference "
            "(noise, not a result); **holds by construction** where the claim follows from the "
            "algorithm's definition (it confirms the implementation, not the paper)."
        ),
        "",
        _quick_note(experiment),
        checks_markdown(experiment, _value_at(aggregate), other_results_beside(directory)),
    ]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(parts)).rstrip("\n") + "\n"
    return atomic_write_text(directory / "report.md", text)


def rebuild_report(directory: str | Path, config: str | Path | None = None, figures: bool = True) -> Path:
    """Rewrite ``report.md`` (and the figures) of a results folder from its ``experiment.json``,
    ``summary.csv`` and ``final.csv`` alone, with the current checks: for folders such as docs/results
    whose per-run folders are not kept. `config` defaults to the shipped config named in
    ``experiment.json``; the epochs, seeds, limit and overrides recorded there are applied, so the
    variants must still resolve as they did (the tables must hold every one)."""
    from .. import __version__
    from .aggregate import from_tables
    from .config import load_experiment
    from .runner import now, source_revision

    directory = Path(directory)
    try:
        info = json.loads((directory / "experiment.json").read_text(encoding="utf-8"))
        settings = info["settings"]
        name = settings["name"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{directory / 'experiment.json'}: cannot be read: {error}") from error
    dataset = settings.get("dataset") or {}
    experiment = load_experiment(
        config or name,
        epochs=settings.get("epochs"),
        seeds=settings.get("seeds"),
        limit=dataset.get("limit"),
        overrides=settings.get("overrides") or None,
    )
    if experiment.kind != "train":
        raise ValueError(f"{directory}: {experiment.name} is a {experiment.kind} experiment; rerun it instead")
    aggregate = from_tables(experiment, directory)
    paths: list[Path] = []
    note = ""
    if figures:
        try:
            from .plots import write_figures

            paths = write_figures(experiment, directory, aggregate)
        except ImportError as error:
            note = f"No figures: {error}."
    rebuilt = {"date": now(), "version": __version__, "source": source_revision()}
    return write_report(experiment, directory, info, aggregate, paths, note, rebuilt=rebuilt)


def write_outputs(experiment: Experiment, directory: str | Path, info: dict[str, Any], figures: bool = True) -> Path:
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
