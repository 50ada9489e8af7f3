"""Experiment configs: TOML files with ``[experiment]``, ``[defaults]``, ``[[variant]]`` and ``[[check]]``.

A config names an experiment, its data and training length, the options every run shares
(``[defaults]``: network and :class:`~rbp_native.Trainer` keyword arguments; the network an
:class:`~rbp_native.MLP` given by ``hidden``/``sizes`` or a :class:`~rbp_native.Sequential` given by
``layers``) and the variants that differ from them. A variant may carry ``sweep = { key = [v1, v2,
...] }``: it expands into one variant per value (several keys give their product). A run is a variant
times a seed; seed ``s`` drives both the network's seed and ``Trainer(seed=s)``. ``[[check]]`` tables
state the paper's claims in a form the report can test (see :mod:`rbp_native.experiments.report`).

Every key is checked: an unknown key raises :class:`ConfigError` naming the file, the table and
the key.
"""

from __future__ import annotations

import copy
import inspect
import itertools
import json
import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11 only
    import tomli as tomllib

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

KINDS = ("train", "complexity")
DATASETS = ("mnist", "fashion-mnist", "cifar10", "synthetic")
#: The shape ``(channels, height, width)`` of one example of each image data set: the default
#: ``input_shape`` of a ``layers`` network (the synthetic set has none: give ``input_shape``).
IMAGE_SHAPES: dict[str, tuple[int, int, int]] = {
    "mnist": (1, 28, 28),
    "fashion-mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
}
TRAIN_METRICS = ("full", "running")

#: Keys of ``[experiment]`` (and their meaning, for error messages and the docs).
EXPERIMENT_KEYS: dict[str, str] = {
    "name": "experiment name (the output folder)",
    "title": "one-line title for the report",
    "description": "what the experiment shows",
    "paper": "where the paper reports it",
    "kind": "'train' (default) or 'complexity' (no training)",
    "dataset": "mnist, fashion-mnist, cifar10 or synthetic",
    "epochs": "epochs per run",
    "seeds": "number of seeds (0 .. seeds-1)",
    "limit": "use only the first N training examples (cifar10: N taken from the classes in turn)",
    "test_limit": "use only the first N test examples (cifar10: likewise)",
    "train_metrics": "'full' (evaluate the whole training set each epoch) or 'running'",
    "diagnostics": "add the trainer's alignment diagnostics to every epoch's record (true/false)",
    "diagnostics_batch": "examples in the diagnostics probe batch (default 1000)",
    "synthetic": "table: train, test, features, classes, noise, seed of the synthetic data set",
}
SYNTHETIC_DEFAULTS: dict[str, Any] = {
    "train": 1000,
    "test": 200,
    "features": 784,
    "classes": 10,
    "noise": 0.3,
    "seed": 0,
}
#: Keys handed to :class:`~rbp_native.MLP` (``hidden`` is turned into ``sizes``), or, where ``layers`` is
#: given, to :class:`~rbp_native.Sequential` (``layers``, ``input_shape``, ``dtype``, ``init``, ``bias``).
NETWORK_KEYS = (
    "sizes",
    "hidden",
    "activation",
    "output",
    "dtype",
    "init",
    "bias",
    "connectivity",
    "layers",
    "input_shape",
)
#: The network keys that describe an MLP only: a ``layers`` network names each layer's activation.
MLP_ONLY_KEYS = ("sizes", "hidden", "activation", "output", "connectivity")
#: Keys of a ``[[variant]]`` that are not run options.
#: (``panel``: the small-multiples panel(s) of accuracy.png the variant is drawn in, a title or a list of
#: titles; default its sweep group's panel.)
VARIANT_META_KEYS = ("name", "label", "sweep", "reference", "description", "panel")
CHECK_KEYS = (
    "claim",
    "kind",
    "variant",
    "a",
    "b",
    "among",
    "group",
    "value",
    "low",
    "high",
    "margin",
    "tolerance",
    "metric",
    "epoch",
    "source",
    "values",
    "at",
    "construction",
    "experiment",
)
CHECK_KINDS = (
    "lowest",
    "highest",
    "ge",
    "close",
    "above",
    "below",
    "between",
    "monotone",
    "graceful",
    "alike",
    "reaches",
    "equals",
    "same_order",
)
CHECK_METRICS = (
    "test_accuracy",
    "train_accuracy",
    "test_loss",
    "train_loss",
    "channel_macs",
    "analytic_macs",
    "feedback_entries",
    "analytic_storage",
)  # the last four: complexity
#: Short names used in the names of swept variants (``srbp-n5``, ``bp-bits4``).
SWEEP_SHORT = {
    "feedback_nonzeros": "n",
    "feedback_density": "p",
    "quantize_bits": "bits",
    "channel_dropout": "drop",
    "quantize_alpha": "alpha",
    "feedback_mean": "mean",
    "feedback_lr_scale": "rho",
    "lr": "lr",
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class ConfigError(ValueError):
    """An experiment config is invalid; the message names the file and the key."""


def same_settings(stored: Any, current: Mapping[str, Any]) -> bool:
    """Whether a run's stored ``resolved`` settings equal the current ones. Top-level entries that are
    off (False or None) count as absent, so that a setting added later with its neutral value does not
    invalidate runs made before it existed."""
    return isinstance(stored, Mapping) and comparable(stored) == comparable(current)


def comparable(resolved: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resolved.items() if v is not None and v is not False}


def trainer_keys() -> tuple[str, ...]:
    """The keyword arguments of :class:`~rbp_native.Trainer` a config may set (all but the network,
    the seed and the thread count, which the runner chooses)."""
    from ..trainer import Trainer

    params = inspect.signature(Trainer.__init__).parameters
    return tuple(k for k in params if k not in ("self", "net", "seed", "threads"))


def option_keys() -> tuple[str, ...]:
    return NETWORK_KEYS + trainer_keys()


# ----------------------------------------------------------------------------------------------
# Data classes


@dataclass
class Variant:
    """One variant after sweep expansion: ``options`` are the merged network and trainer options."""

    name: str
    label: str
    options: dict[str, Any]
    group: str | None = None  # the [[variant]] name it was swept from
    sweep: dict[str, Any] = field(default_factory=dict)
    reference: str | None = None
    description: str = ""
    panels: list[str] = field(default_factory=list)  # panels of accuracy.png (none given: its group's)


@dataclass
class Run:
    """A variant trained with one seed."""

    experiment: Experiment
    variant: Variant
    seed: int

    @property
    def id(self) -> str:
        return f"{self.experiment.name}/{self.variant.name}/seed{self.seed}"

    @property
    def relpath(self) -> Path:
        return Path("runs") / self.variant.name / f"seed{self.seed}"

    def resolved(self) -> dict[str, Any]:
        """Everything that determines the run's numbers (not the thread count): stored in
        ``config.json`` and compared when resuming."""
        exp = self.experiment
        network, trainer = exp.split(self.variant)
        resolved = {
            "experiment": exp.name,
            "variant": self.variant.name,
            "seed": self.seed,
            "epochs": exp.epochs,
            "dataset": exp.dataset_spec(),
            "train_metrics": exp.train_metrics,
            "diagnostics": exp.diagnostics_batch if exp.diagnostics else False,  # probe size, or off
            "network": network,
            "trainer": trainer,
        }
        return json.loads(json.dumps(resolved))  # plain JSON types, as read back from disk


@dataclass
class Experiment:
    name: str
    title: str
    description: str
    kind: str
    dataset: str
    epochs: int
    seeds: int
    defaults: dict[str, Any]
    variants: list[Variant]
    checks: list[dict[str, Any]]
    source: str
    paper: str = ""
    limit: int | None = None
    test_limit: int | None = None
    train_metrics: str = "full"
    diagnostics: bool = False
    diagnostics_batch: int = 1000
    synthetic: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    nominal: dict[str, Any] = field(default_factory=dict)  # epochs, seeds, limit as the file gives them
    shared: dict[str, Any] = field(default_factory=dict)  # [defaults] with the forced overrides

    def shape(self) -> tuple[int, int]:
        """(input features, classes) of the data set."""
        if self.dataset == "synthetic":
            return int(self.synthetic["features"]), int(self.synthetic["classes"])
        return math.prod(IMAGE_SHAPES[self.dataset]), 10

    def image_shape(self) -> tuple[int, int, int] | None:
        """``(channels, height, width)`` of one example (None for the synthetic data set)."""
        return IMAGE_SHAPES.get(self.dataset)

    def split(self, variant: Variant) -> tuple[dict[str, Any], dict[str, Any]]:
        """The variant's network and trainer keyword arguments, resolved against the data set
        (see :func:`split_options`)."""
        return split_options(variant.options, self.shape(), self.source, variant.name, self.image_shape())

    def dataset_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"name": self.dataset, "limit": self.limit, "test_limit": self.test_limit}
        if self.dataset == "synthetic":
            spec["synthetic"] = dict(self.synthetic)
        if self.dataset == "cifar10":  # limits take from every class in turn (data.balanced_subset)
            spec["subset"] = "balanced"
        return spec

    def runs(self) -> list[Run]:
        """Every run, seed-major (seed 0 of every variant first), so that an interrupted sweep has
        a first look at every variant."""
        return [Run(self, variant, seed) for seed in range(self.seeds) for variant in self.variants]

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise KeyError(name)

    def groups(self) -> dict[str, list[Variant]]:
        """Swept variants by the [[variant]] they came from, in sweep order."""
        groups: dict[str, list[Variant]] = {}
        for variant in self.variants:
            if variant.group is not None:
                groups.setdefault(variant.group, []).append(variant)
        return groups

    def settings(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "dataset": self.dataset_spec(),
            "epochs": self.epochs,
            "seeds": self.seeds,
            "train_metrics": self.train_metrics,
            "diagnostics": self.diagnostics,
            "diagnostics_batch": self.diagnostics_batch,
            "defaults": self.defaults,
            "overrides": self.overrides,
            "source": self.source,
        }


# ----------------------------------------------------------------------------------------------
# Loading


def list_experiments() -> list[str]:
    """Names of the experiments shipped with the package."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def config_path(name_or_path: str | Path) -> Path:
    """The shipped config called `name_or_path`, or that path if it is a file."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} not found")
        return path
    shipped = CONFIG_DIR / f"{name_or_path}.toml"
    if not shipped.is_file():
        raise ConfigError(
            f"unknown experiment {str(name_or_path)!r}; shipped experiments: {', '.join(list_experiments())} "
            "(or give the path of a .toml config)"
        )
    return shipped


def parse_value(text: str) -> Any:
    """A ``--set`` value: a TOML value (``0.1``, ``[16, 16]``, ``true``, ``"x"``), else the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["key=value", ...]`` from the command line into a dict (values parsed as TOML)."""
    result: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        result[key] = parse_value(value.strip())
    return result


def load_experiment(
    name_or_path: str | Path,
    *,
    epochs: int | None = None,
    seeds: int | None = None,
    limit: int | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Experiment:
    """Read, check and expand a config (a shipped name such as ``"fig1"`` or a path).

    `epochs`, `seeds` and `limit` replace the config's values; `overrides` maps keys to values:
    ``[experiment]`` keys (``dataset``, ``test_limit``, ``synthetic.train``, ...) set the
    experiment, any other key (``hidden``, ``lr``, ...) is forced on every variant."""
    path = config_path(name_or_path)
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:  # TOML files are UTF-8 by definition
        raise ConfigError(f"{path}: not valid TOML: {error}") from error
    return parse_experiment(data, str(path), epochs=epochs, seeds=seeds, limit=limit, overrides=overrides)


def parse_experiment(
    data: Mapping[str, Any],
    source: str = "<config>",
    *,
    epochs: int | None = None,
    seeds: int | None = None,
    limit: int | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Experiment:
    """Build an :class:`Experiment` from parsed TOML (see :func:`load_experiment`)."""
    _check_keys(data, ("experiment", "defaults", "variant", "check"), source, "the top level")
    exp_table = dict(_table(data.get("experiment", {}), source, "[experiment]"))
    _check_keys(exp_table, tuple(EXPERIMENT_KEYS), source, "[experiment]")
    nominal = {
        "epochs": exp_table.get("epochs", 100),
        "seeds": exp_table.get("seeds", 1),
        "limit": exp_table.get("limit"),
    }
    options = option_keys()

    # Split the command-line overrides into experiment settings and forced run options.
    forced: dict[str, Any] = {}
    synthetic_override: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        if key.startswith("synthetic."):
            sub = key.split(".", 1)[1]
            if sub not in SYNTHETIC_DEFAULTS:
                raise ConfigError(
                    f"--set {key}: unknown synthetic key {sub!r}; allowed: {', '.join(SYNTHETIC_DEFAULTS)}"
                )
            synthetic_override[sub] = value
        elif key in EXPERIMENT_KEYS and key not in ("name", "synthetic"):
            exp_table[key] = value
        elif key in options:
            forced[key] = value
        else:
            raise ConfigError(
                f"--set {key}: unknown key; use an [experiment] key "
                f"({', '.join(k for k in EXPERIMENT_KEYS if k != 'name')}, "
                f"synthetic.KEY) or a run option ({', '.join(options)})"
            )
    if epochs is not None:
        exp_table["epochs"] = epochs
    if seeds is not None:
        exp_table["seeds"] = seeds
    if limit is not None:
        exp_table["limit"] = limit

    name = exp_table.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"{source}: [experiment] needs a name made of letters, digits, '.', '_', '+' or '-', got {name!r}"
        )
    kind = exp_table.get("kind", "train")
    if kind not in KINDS:
        raise ConfigError(f"{source}: [experiment] kind must be one of {', '.join(KINDS)}, got {kind!r}")
    dataset = str(exp_table.get("dataset", "mnist")).lower().replace("_", "-")
    dataset = {"fashionmnist": "fashion-mnist", "cifar-10": "cifar10"}.get(dataset, dataset)
    if dataset not in DATASETS:
        raise ConfigError(f"{source}: [experiment] dataset must be one of {', '.join(DATASETS)}, got {dataset!r}")
    epochs_value = _positive_int(
        exp_table.get("epochs", 100), source, "[experiment] epochs", allow_zero=kind != "train"
    )
    seeds_value = _positive_int(exp_table.get("seeds", 1), source, "[experiment] seeds")
    limit_value = exp_table.get("limit")
    if limit_value is not None:
        limit_value = _positive_int(limit_value, source, "[experiment] limit")
    test_limit = exp_table.get("test_limit")
    if test_limit is not None:
        test_limit = _positive_int(test_limit, source, "[experiment] test_limit")
    train_metrics = exp_table.get("train_metrics", "full")
    if train_metrics not in TRAIN_METRICS:
        raise ConfigError(
            f"{source}: [experiment] train_metrics must be one of {', '.join(TRAIN_METRICS)}, got {train_metrics!r}"
        )
    diagnostics = exp_table.get("diagnostics", False)
    if not isinstance(diagnostics, bool):
        raise ConfigError(f"{source}: [experiment] diagnostics must be true or false, got {diagnostics!r}")
    diagnostics_batch = _positive_int(
        exp_table.get("diagnostics_batch", 1000), source, "[experiment] diagnostics_batch"
    )
    synthetic = dict(SYNTHETIC_DEFAULTS)
    given = _table(exp_table.get("synthetic", {}), source, "[experiment.synthetic]")
    _check_keys(given, tuple(SYNTHETIC_DEFAULTS), source, "[experiment.synthetic]")
    synthetic.update(given)
    synthetic.update(synthetic_override)
    for key in ("train", "test", "features", "classes"):
        synthetic[key] = _positive_int(synthetic[key], source, f"synthetic.{key}")
    if synthetic["classes"] < 2:
        raise ConfigError(f"{source}: synthetic.classes must be at least 2")
    synthetic["seed"] = int(synthetic["seed"])
    synthetic["noise"] = float(synthetic["noise"])

    _one_network(forced, source, "--set")
    defaults = dict(_table(data.get("defaults", {}), source, "[defaults]"))
    _check_keys(defaults, options, source, "[defaults]")
    _one_network(defaults, source, "[defaults]")

    raw_variants = data.get("variant", [])
    if not isinstance(raw_variants, list) or not raw_variants:
        raise ConfigError(f"{source}: needs at least one [[variant]] table")
    variants: list[Variant] = []
    for index, raw in enumerate(raw_variants, start=1):
        where = f"[[variant]] #{index}"
        raw = dict(_table(raw, source, where))
        vname = raw.get("name")
        if isinstance(vname, str):
            where = f"[[variant]] #{index} ({vname!r})"
        _check_keys(raw, VARIANT_META_KEYS + options, source, where)
        if not isinstance(vname, str) or not vname:
            raise ConfigError(f"{source}: {where} needs a name")
        _one_network(raw, source, where)
        variants.extend(_expand_variant(raw, defaults, forced, source, where))
    seen: set[str] = set()
    for variant in variants:
        if not _NAME.match(variant.name):
            raise ConfigError(
                f"{source}: variant name {variant.name!r} may hold only letters, digits, "
                "'.', '_', '+' and '-' (it names a folder)"
            )
        if variant.name in seen:
            raise ConfigError(f"{source}: two variants are called {variant.name!r}")
        seen.add(variant.name)
    for variant in variants:
        if variant.reference is not None and variant.reference not in seen:
            raise ConfigError(
                f"{source}: variant {variant.name!r} has reference {variant.reference!r}, "
                "which is not a variant of this experiment"
            )

    checks = []
    raw_checks = data.get("check", [])
    if not isinstance(raw_checks, list):
        raise ConfigError(f"{source}: 'check' must be an array of tables ([[check]])")
    for index, raw in enumerate(raw_checks, start=1):
        raw = dict(_table(raw, source, f"[[check]] #{index}"))
        _check_keys(raw, CHECK_KEYS, source, f"[[check]] #{index}")
        checks.append(_check_check(raw, source, index))
        if raw.get("experiment") == name:
            raise ConfigError(f"{source}: [[check]] #{index}: a 'same_order' check compares with another experiment")

    experiment = Experiment(
        name=name,
        title=str(exp_table.get("title", name)),
        description=str(exp_table.get("description", "")),
        kind=kind,
        dataset=dataset,
        epochs=epochs_value,
        seeds=seeds_value,
        defaults=defaults,
        variants=variants,
        checks=checks,
        source=source,
        paper=str(exp_table.get("paper", "")),
        limit=limit_value,
        test_limit=test_limit,
        train_metrics=train_metrics,
        diagnostics=diagnostics,
        diagnostics_batch=diagnostics_batch,
        synthetic=synthetic,
        overrides=dict(overrides or {}),
        nominal=nominal,
        shared=_merge(defaults, {}, forced),
    )
    for variant in variants:  # sizes and layers must resolve against the data set
        network, _ = experiment.split(variant)
        if kind == "complexity" and "layers" in network:
            raise ConfigError(
                f"{source}: variant {variant.name!r}: the complexity counts are for MLPs (hidden/sizes), not 'layers'"
            )
    return experiment


def _one_network(table: Mapping[str, Any], source: str, where: str) -> None:
    given = [k for k in ("hidden", "sizes", "layers") if k in table]
    if len(given) > 1:
        raise ConfigError(f"{source}: {where} gives {' and '.join(repr(k) for k in given)}; give one")


def _expand_variant(
    raw: dict[str, Any], defaults: dict[str, Any], forced: dict[str, Any], source: str, where: str
) -> list[Variant]:
    name: str = raw["name"]
    label = str(raw.get("label", name))
    reference = raw.get("reference")
    if reference is not None and not isinstance(reference, str):
        raise ConfigError(f"{source}: {where}: reference must be a variant name")
    panel = raw.get("panel", [])
    panels = [panel] if isinstance(panel, str) else panel
    if not isinstance(panels, list) or not all(isinstance(p, str) and p for p in panels):
        raise ConfigError(f"{source}: {where}: panel must be a panel title or a list of titles, got {panel!r}")
    own = {k: v for k, v in raw.items() if k not in VARIANT_META_KEYS}
    sweep = raw.get("sweep")
    if sweep is None:
        options = _merge(defaults, own, forced)
        return [
            Variant(
                name=name,
                label=label,
                options=options,
                reference=reference,
                description=str(raw.get("description", "")),
                panels=list(panels),
            )
        ]
    sweep = _table(sweep, source, f"{where} sweep")
    allowed = option_keys()
    for key, values in sweep.items():
        if key not in allowed:
            raise ConfigError(f"{source}: {where}: unknown sweep key {key!r}; allowed: {', '.join(allowed)}")
        if key in NETWORK_KEYS:
            raise ConfigError(
                f"{source}: {where}: sweeping the network key {key!r} is not supported; write one variant per network"
            )
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{source}: {where}: sweep {key} must be a non-empty list of values")
        if key in own:
            raise ConfigError(f"{source}: {where}: {key!r} is both set and swept")
    keys = list(sweep)
    result = []
    for combo in itertools.product(*(sweep[k] for k in keys)):
        values = dict(zip(keys, combo))
        if "{" in name:
            vname = _format(name, values, source, where)
        else:
            vname = "-".join([name] + [f"{SWEEP_SHORT.get(k, k)}{_fmt(v)}" for k, v in values.items()])
        if "{" in label:
            vlabel = _format(label, values, source, where)
        else:
            vlabel = f"{label} ({', '.join(f'{SWEEP_SHORT.get(k, k)}={_fmt(v)}' for k, v in values.items())})"
        options = _merge(defaults, {**own, **values}, forced)
        result.append(
            Variant(
                name=vname,
                label=vlabel,
                options=options,
                group=_base_name(name),
                sweep=values,
                reference=reference,
                description=str(raw.get("description", "")),
                panels=list(panels),
            )
        )
    return result


def _base_name(name: str) -> str:
    return re.sub(r"\{[^}]*\}", "", name).strip("-_ ") or name


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _format(template: str, values: dict[str, Any], source: str, where: str) -> str:
    try:
        return template.format(**{k: _fmt(v) for k, v in values.items()})
    except (KeyError, IndexError, ValueError) as error:
        raise ConfigError(
            f"{source}: {where}: cannot fill {template!r} from the sweep keys {', '.join(values)}: {error}"
        ) from error


def _merge(defaults: dict[str, Any], own: dict[str, Any], forced: dict[str, Any]) -> dict[str, Any]:
    options = copy.deepcopy(defaults)
    for layer in (own, forced):
        _normalise_layers(options, layer)
        options.update(copy.deepcopy(layer))
    return options


def _normalise_layers(base: dict[str, Any], layer: Mapping[str, Any]) -> None:
    """``hidden``, ``sizes`` and ``layers`` describe the same thing, the network's layers: a later
    table of options (a variant over the defaults, ``--set`` over both) giving one drops the others.
    ``input_shape`` belongs to ``layers`` and goes with it; ``layers`` replaces the whole MLP
    description (activation, output and connectivity too: each layer table names its activation)."""
    if "hidden" in layer or "sizes" in layer:
        for key in ("sizes", "hidden", "layers", "input_shape"):
            if key not in layer:
                base.pop(key, None)
    if "layers" in layer:
        for key in MLP_ONLY_KEYS:
            if key not in layer:
                base.pop(key, None)


def split_options(
    options: Mapping[str, Any],
    shape: tuple[int, int],
    source: str,
    variant: str,
    image_shape: Sequence[int] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Network keyword arguments and trainer keyword arguments, resolved: an MLP's ``sizes`` from
    ``hidden``; a ``layers`` network's layer tables completed to their ``config()`` and its
    ``input_shape`` (default `image_shape`, the data set's); ``augment`` completed to its
    ``config()``. `shape` is the data set's (input features, classes)."""
    network = {k: v for k, v in options.items() if k in NETWORK_KEYS}
    trainer = {k: v for k, v in options.items() if k not in NETWORK_KEYS}
    where = f"{source}: variant {variant!r}"
    if "augment" in trainer:
        trainer["augment"] = _augment(trainer["augment"], where)
    if "layers" in network:
        return _resolve_layers(network, shape, where, image_shape), trainer
    if "input_shape" in network:
        raise ConfigError(f"{where}: input_shape applies to a 'layers' network; this one is an MLP (hidden/sizes)")
    inputs, classes = shape
    hidden = network.pop("hidden", None)
    if hidden is not None:
        if not isinstance(hidden, list) or not all(isinstance(n, int) and n > 0 for n in hidden):
            raise ConfigError(
                f"{source}: variant {variant!r}: hidden must be a list of positive widths, got {hidden!r}"
            )
        network["sizes"] = [inputs, *hidden, classes]
    elif "sizes" in network:
        sizes = network["sizes"]
        if not isinstance(sizes, list) or len(sizes) < 2:
            raise ConfigError(f"{source}: variant {variant!r}: sizes must be a list of widths, got {sizes!r}")
        if sizes[0] != inputs or sizes[-1] != classes:
            raise ConfigError(
                f"{source}: variant {variant!r}: sizes {sizes} do not fit the data set "
                f"({inputs} inputs, {classes} classes)"
            )
    else:
        raise ConfigError(f"{source}: variant {variant!r} sets neither 'hidden', 'sizes' nor 'layers'")
    return network, trainer


def _resolve_layers(
    network: dict[str, Any], shape: tuple[int, int], where: str, image_shape: Sequence[int] | None
) -> dict[str, Any]:
    """A ``layers`` network's keyword arguments for :class:`~rbp_native.Sequential`, checked against the
    data set: every layer table is one of :mod:`rbp_native.layers` (``type`` and its arguments, as its
    ``config()`` writes them), the input shape holds the data set's features and the last layer has
    one unit per class."""
    from .. import layers as layer_types

    mlp_keys = [k for k in MLP_ONLY_KEYS if k in network]
    if mlp_keys:
        raise ConfigError(
            f"{where}: {', '.join(repr(k) for k in mlp_keys)} describe(s) an MLP; a 'layers' network gives "
            "each layer its own activation (the last layer's is the output): remove it, or give hidden/sizes "
            "instead of layers"
        )
    tables = network["layers"]
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"{where}: layers must be a non-empty list of layer tables, got {tables!r}")
    resolved_layers = []
    for index, table in enumerate(tables):
        if not isinstance(table, Mapping):
            raise ConfigError(f'{where}: layers[{index}] must be a table such as {{type = "Dense", units = 10}}')
        try:
            resolved_layers.append(layer_types.from_config(dict(table)).config())
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{where}: layers[{index}] ({table.get('type', 'no type')}): {error}") from error
    inputs, classes = shape
    given = network.get("input_shape", image_shape)
    if given is None:
        raise ConfigError(
            f"{where}: a 'layers' network on this data set needs input_shape = [channels, height, width] "
            f"(or [features]) holding its {inputs} features"
        )
    if (
        not isinstance(given, (list, tuple))
        or len(given) not in (1, 3)
        or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in given)
    ):
        raise ConfigError(
            f"{where}: input_shape must be [channels, height, width] or [features] of positive integers, got {given!r}"
        )
    if math.prod(given) != inputs:
        raise ConfigError(f"{where}: input_shape {list(given)} holds {math.prod(given)} values, the data set {inputs}")
    last = resolved_layers[-1]
    if last["type"] == "Dense" and last["units"] != classes:
        raise ConfigError(f"{where}: the last layer has {last['units']} units, the data set {classes} classes")
    network["layers"] = resolved_layers
    network["input_shape"] = list(given)
    return network


def _augment(value: Any, where: str) -> dict[str, Any]:
    """``augment = {translate = 0.1, flip = true}`` checked and completed (:meth:`Augment.config`)."""
    from ..augment import Augment

    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: augment must be a table such as {{translate = 0.1, flip = true}}, got {value!r}")
    unknown = [k for k in value if k not in ("translate", "flip")]
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} in augment; allowed: translate, flip")
    try:
        return Augment(**value).config()
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where}: augment: {error}") from error


def build_network(network: Mapping[str, Any], seed: int) -> Any:
    """The network of resolved network options (:func:`split_options`): a
    :class:`~rbp_native.Sequential` where they give ``layers``, else an :class:`~rbp_native.MLP`."""
    from ..network import MLP, Sequential

    if "layers" in network:
        return Sequential(**network, seed=seed)
    return MLP(**network, seed=seed)


def _check_check(raw: dict[str, Any], source: str, index: int) -> dict[str, Any]:
    where = f"{source}: [[check]] #{index}"
    if not isinstance(raw.get("claim"), str):
        raise ConfigError(f"{where} needs a claim (text)")
    kind = raw.get("kind")
    if kind not in CHECK_KINDS:
        raise ConfigError(f"{where}: kind must be one of {', '.join(CHECK_KINDS)}, got {kind!r}")
    metric = raw.setdefault("metric", "test_accuracy")
    if metric not in CHECK_METRICS:
        raise ConfigError(f"{where}: metric must be one of {', '.join(CHECK_METRICS)}, got {metric!r}")
    needs = {
        "lowest": ("variant",),
        "highest": ("variant",),
        "ge": ("a", "b"),
        "close": ("a", "b", "tolerance"),
        "above": ("a", "value"),
        "below": ("a", "value"),
        "between": ("a", "low", "high"),
        "monotone": ("group",),
        "graceful": ("group",),
        "alike": ("group", "tolerance"),
        "reaches": ("group", "value", "at"),
        "equals": ("a", "value"),
        "same_order": ("experiment", "margin"),
    }[kind]
    for key in needs:
        if key not in raw:
            raise ConfigError(f"{where}: kind {kind!r} needs {', '.join(needs)}; {key!r} is missing")
    if "experiment" in raw and kind != "same_order":
        raise ConfigError(f"{where}: 'experiment' applies to 'same_order' checks, not {kind!r}")
    if kind == "same_order":
        if not (isinstance(raw["experiment"], str) and _NAME.match(raw["experiment"])):
            raise ConfigError(
                f"{where}: experiment must name another experiment's results folder, got {raw['experiment']!r}"
            )
        if "epoch" in raw:
            raise ConfigError(f"{where}: a 'same_order' check compares final values; it takes no epoch")
    if "construction" in raw:
        if not (isinstance(raw["construction"], str) and raw["construction"].strip()):
            raise ConfigError(f"{where}: construction must be the one-line reason the claim holds by construction")
        if kind not in ("close", "equals"):
            # What holds by construction is an identity (two runs the same, a count); a comparison with
            # other variants is a result even when one side is fixed by construction.
            raise ConfigError(f"{where}: construction applies to 'close' and 'equals' checks, not {kind!r}")
    return raw


def _table(value: Any, source: str, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{source}: {where} must be a table, got {type(value).__name__}")
    return value


def _check_keys(table: Mapping[str, Any], allowed: Sequence[str], source: str, where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{source}: unknown key {key!r} in {where}; allowed: {', '.join(allowed)}")


def _positive_int(value: Any, source: str, what: str, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1):
        raise ConfigError(
            f"{source}: {what} must be a {'non-negative' if allow_zero else 'positive'} integer, got {value!r}"
        )
    return value


def validate(experiment: Experiment) -> None:
    """Build every variant's network and trainer once (one thread) so that a bad option value fails
    now, naming the file and the variant, rather than in the middle of a sweep."""
    from ..trainer import Trainer

    for variant in experiment.variants:
        network, trainer = experiment.split(variant)
        try:
            net = build_network(network, seed=0)
            Trainer(net, **trainer, seed=0, threads=1)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{experiment.source}: variant {variant.name!r}: {error}") from error
