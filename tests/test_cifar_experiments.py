"""Convolutional networks in the experiment runner and the command line: ``layers``/``input_shape``/
``augment`` in configs, the shipped cifar10 experiment, runs and resume on synthetic CIFAR-shaped data,
the ``same_order`` check, ``reproduce table1`` and ``train --net``."""

from __future__ import annotations

import csv
import json
import math
import os
import textwrap
from pathlib import Path

import numpy as np
import pytest

import rbp_native as rbp
from rbp_native import cli
from rbp_native import experiments as ex
from rbp_native.experiments import aggregate, config, report, runner, table1

L = rbp.layers
CIFAR10_VARIANTS = [
    "bp",
    "bp-nof",
    "sbp",
    "sbp-nof",
    "rbp",
    "rbp-nof",
    "srbp",
    "srbp-nof",
    "arbp",
    "asrbp",
    "top",
]
# A small conv net on 3x8x8 synthetic images: conv -> pool -> dense -> softmax.
TINY_LAYERS = [
    {"type": "Conv2D", "filters": 3, "kernel_size": 3, "activation": "tanh"},
    {"type": "MaxPool2D", "pool_size": 3, "stride": 2, "padding": "same"},
    {"type": "Flatten"},
    {"type": "Dense", "units": 8},
    {"type": "Dense", "units": 10, "activation": "softmax"},
]
TINY_DATA = {"dataset": "synthetic", "synthetic.train": 48, "synthetic.test": 16, "synthetic.features": 192}


def tiny_cifar10(**extra) -> ex.Experiment:
    """The shipped cifar10 experiment with a tiny conv net on synthetic 3x8x8 images."""
    overrides = {**TINY_DATA, "layers": TINY_LAYERS, "input_shape": [3, 8, 8], "batch_size": 16}
    overrides.update(extra.pop("overrides", {}))
    return ex.load_experiment(
        "cifar10", epochs=extra.pop("epochs", 1), seeds=extra.pop("seeds", 1), overrides=overrides
    )


def go(experiment, out, **kwargs):
    kwargs.setdefault("figures", False)
    kwargs.setdefault("threads", 1)
    kwargs.setdefault("progress", False)
    kwargs.setdefault("write", lambda text: None)
    return ex.reproduce(experiment, out, **kwargs)


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def write_config(path: Path, body: str) -> Path:
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------- the shipped config


def test_cifar10_is_the_papers_section_4_3_setup():
    experiment = ex.load_experiment("cifar10")
    assert [v.name for v in experiment.variants] == CIFAR10_VARIANTS
    assert experiment.dataset == "cifar10" and experiment.shape() == (3072, 10)
    assert (experiment.epochs, experiment.seeds, experiment.train_metrics) == (100, 3, "running")
    # The network of docs/conv.md, written out here with the layer classes (not read from the config).
    paper_net = rbp.Sequential(
        [
            L.Conv2D(64, 5, stride=1, padding="same", activation="tanh"),
            L.MaxPool2D(3, stride=2, padding="same"),
            L.Conv2D(64, (5, 5), stride=1, padding="same", activation="tanh"),
            L.MaxPool2D(3, stride=2, padding="same"),
            L.Conv2D(64, 5, stride=1, padding="same", activation="tanh"),
            L.MaxPool2D(3, stride=2, padding="same"),
            L.Flatten(),
            L.Dense(1024, activation="tanh"),
            L.Dense(10, activation="softmax"),
        ],
        input_shape=(3, 32, 32),
    )
    runs = experiment.runs()
    assert len(runs) == 3 * len(CIFAR10_VARIANTS)
    for run in runs[: len(CIFAR10_VARIANTS)]:
        resolved = run.resolved()
        network = resolved["network"]
        assert network["layers"] == paper_net.config()["layers"]
        assert network["input_shape"] == [3, 32, 32] and network["init"] == "glorot_normal"
        trainer = dict(resolved["trainer"])
        algorithm, derivative = trainer.pop("algorithm"), trainer.pop("derivative", True)
        rho = trainer.pop("feedback_lr_scale", None)
        assert trainer == {
            "lr": 0.01,
            "decay": 1e-5,
            "momentum": 0.9,
            "batch_size": 128,
            "augment": {"translate": 0.1, "flip": True},
        }
        name = run.variant.name
        assert algorithm == name.removesuffix("-nof") and derivative is (not name.endswith("-nof"))
        assert rho == {"arbp": 0.1, "asrbp": 1.0}.get(name)
    net = config.build_network(runs[0].resolved()["network"], seed=0)
    assert net.sizes == [3072, 64 * 16 * 16, 64 * 8 * 8, 64 * 4 * 4, 1024, 10]  # 'same': 32 -> 16 -> 8 -> 4
    config.validate(experiment)  # every variant builds its network and trainer
    for check in experiment.checks:
        named = [check.get(k) for k in ("variant", "a", "b") if k in check]
        assert {n for item in named for n in ([item] if isinstance(item, str) else item)} <= set(CIFAR10_VARIANTS)
    same_order = [c for c in experiment.checks if c["kind"] == "same_order"]
    assert [(c["experiment"], c["margin"]) for c in same_order] == [("fig1", 0.02)]
    assert "paper-notes" not in config.config_path("cifar10").read_text(encoding="utf-8")


def test_layer_spellings_resolve_alike_and_the_mlp_configs_are_untouched():
    spelled = tiny_cifar10(overrides={"layers": [dict(TINY_LAYERS[0], kernel_size=[3, 3]), *TINY_LAYERS[1:]]})
    assert spelled.runs()[0].resolved() == tiny_cifar10().runs()[0].resolved()  # 3 and [3, 3] are one setting
    # A later table giving hidden replaces the layers (and their input_shape), and the other way round.
    mlp = ex.load_experiment("cifar10", overrides={**TINY_DATA, "hidden": [5]})
    assert mlp.runs()[0].resolved()["network"] == {"init": "glorot_normal", "sizes": [192, 5, 10]}
    conv = ex.load_experiment(
        "fig1", epochs=1, seeds=1, overrides={**TINY_DATA, "layers": TINY_LAYERS, "input_shape": [3, 8, 8]}
    )  # fig1's activation and output go with its hidden layers
    network = conv.runs()[0].resolved()["network"]
    assert network == {"layers": tiny_cifar10().runs()[0].resolved()["network"]["layers"], "input_shape": [3, 8, 8]}
    with pytest.raises(ex.ConfigError, match="--set gives 'hidden' and 'layers'; give one"):
        tiny_cifar10(overrides={"hidden": [5]})
    fig1 = ex.load_experiment("fig1").runs()[0].resolved()
    assert fig1["network"] == {"activation": "tanh", "output": "softmax", "sizes": [784, 100, 100, 100, 100, 10]}
    assert "augment" not in fig1["trainer"]


BASE = """
[experiment]
name = "conv"
dataset = "synthetic"
epochs = 1
synthetic = { train = 40, test = 20, features = 192, classes = 10 }

[defaults]
layers = [
  { type = "Conv2D", filters = 2, kernel_size = 3 },
  { type = "Dense", units = 10, activation = "softmax" },
]
input_shape = [3, 8, 8]
batch_size = 20
"""


@pytest.mark.parametrize(
    "body,message",
    [
        (
            BASE + '[[variant]]\nname = "a"\nhidden = [4]\ninput_shape = [192]\n',
            "variant 'a': input_shape applies to a 'layers' network",
        ),
        (BASE.replace("batch_size", "hidden = [3]\nbatch_size") + "[[variant]]\nname = 'a'\n", "'hidden' and 'layers'"),
        (BASE + '[[variant]]\nname = "a"\nactivation = "relu"\n', "'activation' describe(s) an MLP"),
        (BASE + '[[variant]]\nname = "a"\nconnectivity = 0.5\n', "'connectivity' describe(s) an MLP"),
        (BASE.replace('"Conv2D"', '"Conv3D"') + '[[variant]]\nname = "a"\n', "layers[0] (Conv3D): unknown layer type"),
        (
            BASE.replace("filters = 2", "filters = 0") + '[[variant]]\nname = "a"\n',
            "layers[0] (Conv2D): filters must be a positive integer",
        ),
        (
            BASE.replace("kernel_size = 3", "kernel_size = 3, dilation = 2") + '[[variant]]\nname = "a"\n',
            "layers[0] (Conv2D): ",
        ),
        (BASE.replace("units = 10", "units = 7") + '[[variant]]\nname = "a"\n', "the last layer has 7 units"),
        (
            BASE.replace("[3, 8, 8]", "[3, 8, 9]") + '[[variant]]\nname = "a"\n',
            "input_shape [3, 8, 9] holds 216 values, the data set 192",
        ),
        (
            BASE.replace("[3, 8, 8]", '"3x8x8"') + '[[variant]]\nname = "a"\n',
            "input_shape must be [channels, height, width]",
        ),
        (BASE.replace("input_shape = [3, 8, 8]\n", "") + '[[variant]]\nname = "a"\n', "needs input_shape"),
        (BASE.replace("layers = [", "layers = 3\nx = [") + '[[variant]]\nname = "a"\n', "unknown key 'x'"),
        (BASE + '[[variant]]\nname = "a"\nlayers = []\n', "layers must be a non-empty list"),
        (BASE + '[[variant]]\nname = "a"\nlayers = [3]\n', "layers[0] must be a table"),
        (
            BASE + '[[variant]]\nname = "a"\naugment = { shift = 0.1 }\n',
            "variant 'a': unknown key 'shift' in augment",
        ),
        (BASE + '[[variant]]\nname = "a"\naugment = { translate = 1.5 }\n', "variant 'a': augment: translate must"),
        (BASE + '[[variant]]\nname = "a"\naugment = true\n', "augment must be a table"),
        (
            BASE.replace("[experiment]", '[experiment]\nkind = "complexity"') + '[[variant]]\nname = "a"\n',
            "the complexity counts are for MLPs",
        ),
        (
            BASE + '[[variant]]\nname = "a"\n[[check]]\nclaim = "x"\nkind = "same_order"\nexperiment = "fig1"\n',
            "needs experiment, margin; 'margin' is missing",
        ),
        (
            BASE + '[[variant]]\nname = "a"\n[[check]]\nclaim = "x"\nkind = "same_order"\nexperiment = "conv"\n'
            "margin = 0.01\n",
            "compares with another experiment",
        ),
        (
            BASE + '[[variant]]\nname = "a"\n[[check]]\nclaim = "x"\nkind = "same_order"\nexperiment = "fig1"\n'
            "margin = 0.01\nepoch = 3\n",
            "takes no epoch",
        ),
        (
            BASE
            + '[[variant]]\nname = "a"\n[[check]]\nclaim = "x"\nkind = "ge"\na = "a"\nb = "a"\nexperiment = "fig1"\n',
            "'experiment' applies to 'same_order' checks",
        ),
    ],
)
def test_bad_conv_configs_give_clear_errors_naming_the_file_and_the_key(tmp_path, body, message):
    path = write_config(tmp_path / "bad.toml", body)
    with pytest.raises(ex.ConfigError) as error:
        config.validate(ex.load_experiment(path))
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_augmentation_of_a_flat_network_is_refused_naming_the_variant(tmp_path):
    body = """
    [experiment]
    name = "flat"
    dataset = "synthetic"
    synthetic = { train = 40, test = 20, features = 192, classes = 10 }

    [defaults]
    hidden = [4]

    [[variant]]
    name = "a"
    augment = { translate = 0.1 }
    """
    path = write_config(tmp_path / "flat.toml", body)
    with pytest.raises(ex.ConfigError) as error:
        config.validate(ex.load_experiment(path))
    assert str(path) in str(error.value) and "variant 'a'" in str(error.value) and "augment" in str(error.value)


# ---------------------------------------------------------------------------------------------- end to end


def test_a_conv_experiment_runs_end_to_end_and_resumes_an_interrupted_run(tmp_path):
    experiment = tiny_cifar10(epochs=3, overrides={"algorithm": "srbp"})
    experiment.variants = experiment.variants[:2]  # bp and bp-nof (forced to srbp): two runs suffice here
    # Uninterrupted reference.
    whole = go(experiment, tmp_path / "whole")
    assert len(whole.trained) == 2 and not whole.failed
    # The same runs, the first stopped after its first epoch (as Ctrl-C would, between epochs).
    out = tmp_path / "out"
    run = experiment.runs()[0]
    run_dir = out / "cifar10" / run.relpath

    def stop(record):
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.execute({"run_dir": str(run_dir), "resolved": run.resolved(), "threads": 1}, on_epoch=stop)
    assert (run_dir / "checkpoint.npz").is_file() and not (run_dir / "done.json").exists()
    assert [state for _, state, _ in runner.plan(experiment, out)] == ["incomplete", "missing"]
    resumed = go(experiment, out)
    assert sorted(resumed.trained) == ["cifar10/bp-nof/seed0", "cifar10/bp/seed0"]
    stored = json.loads((run_dir / "config.json").read_text())
    assert stored["resumed"]["epochs_done"] == 1
    assert stored["network_config"]["layers"] == run.resolved()["network"]["layers"]
    assert stored["trainer_config"]["augment"] == {"translate": 0.1, "flip": True}

    def numbers(directory):
        rows = read_csv(directory / "history.csv")
        return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]

    for each in experiment.runs():  # bit for bit what the uninterrupted runs give
        assert numbers(out / "cifar10" / each.relpath) == numbers(tmp_path / "whole" / "cifar10" / each.relpath)
    assert len(numbers(run_dir)) == 3
    report_text = (out / "cifar10" / "report.md").read_text()
    assert "`Sequential(seed=s)`" in report_text and "training metrics: running" in report_text
    again = go(experiment, out)
    assert not again.trained and len(again.skipped) == 2
    changed = tiny_cifar10(epochs=3, overrides={"algorithm": "srbp", "augment": {"translate": 0.2}})
    changed.variants = changed.variants[:2]
    with pytest.raises(ex.ConfigError, match="augment"):
        go(changed, out)  # another augmentation is another run: refused, not mixed in
    wider = tiny_cifar10(
        epochs=3, overrides={"algorithm": "srbp", "layers": [dict(TINY_LAYERS[0], filters=4), *TINY_LAYERS[1:]]}
    )
    wider.variants = wider.variants[:2]
    states = runner.plan(wider, out)
    assert [state for _, state, _ in states] == ["mismatch", "mismatch"] and "filters" in states[0][2]


def test_every_cifar10_variant_trains_a_tiny_conv_net(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "CHECKOUT_RESULTS", None)  # no committed MNIST results: the comparison says so
    experiment = tiny_cifar10()
    outcome = go(experiment, tmp_path, figures=True)
    assert len(outcome.trained) == len(CIFAR10_VARIANTS) and not outcome.failed
    directory = tmp_path / "cifar10"
    final = read_csv(directory / "final.csv")
    assert [row["variant"] for row in final] == CIFAR10_VARIANTS
    assert (directory / "accuracy.png").is_file()
    text = (directory / "report.md").read_text()
    for check in experiment.checks:
        assert check["claim"] in text
    # Only the comparison with MNIST is not measured, and it says why.
    assert text.count("**not measured**") == 1
    assert f"no results of fig1 (a final.csv) in {tmp_path / 'fig1'}: cannot be checked" in text


def test_the_mnist_comparison_reads_fig1_beside_the_results(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "CHECKOUT_RESULTS", None)
    experiment = tiny_cifar10()
    experiment.checks = [c for c in experiment.checks if c["kind"] == "same_order"]
    go(experiment, tmp_path)
    # Fabricated MNIST results beside cifar10/ for the best and the worst of the tiny runs.
    here = {row["variant"]: float(row["test_accuracy_mean"]) for row in read_csv(tmp_path / "cifar10" / "final.csv")}
    worst, best = min(here, key=here.get), max(here, key=here.get)
    assert here[best] > here[worst]  # one seed each: no spread, so no tie

    def verdict_line():
        report.rebuild_report(tmp_path / "cifar10", figures=False)
        lines = (tmp_path / "cifar10" / "report.md").read_text().splitlines()
        return next(line for line in lines if "The results are overall very similar" in line)

    write_final(tmp_path / "fig1", {worst: (0.99, 0.001, 5), best: (0.50, 0.001, 5)})  # the opposite order
    line = verdict_line()
    assert line.startswith("- [ ] **false**") and str(tmp_path / "fig1" / "final.csv") in line
    assert f"not: `{worst}`" in line and "1 pair(s) of 2 variants" in line
    write_final(tmp_path / "fig1", {worst: (0.50, 0.001, 5), best: (0.99, 0.001, 5)})  # the same order
    assert verdict_line().startswith("- [x] **true**")
    write_final(tmp_path / "fig1", {worst: (0.98, 0.001, 5), best: (0.99, 0.001, 5)})  # 1 point apart: no pair
    assert verdict_line().startswith("- [ ] **not measured**")


# ---------------------------------------------------------------------------------------------- same_order


def _stats(values):
    def value(name):
        if name not in values:
            raise report.NotMeasured(f"variant {name!r} is not in this experiment")
        return values[name]

    return value


def _results(values):
    def results(name, metric):
        if values is None:
            raise report.NotMeasured(f"no results of {name}")
        return values, f"{name} (fabricated)"

    return results


MNIST = {
    "bp": report.Stat(0.980, 0.001, 5),
    "rbp": report.Stat(0.971, 0.001, 5),  # within 2 points of bp: not a pair
    "rbp-nof": report.Stat(0.880, 0.010, 5),
    "top": report.Stat(0.856, 0.005, 5),
}
CHECK = {"kind": "same_order", "experiment": "fig1", "margin": 0.02}


def test_same_order_tests_the_pairs_the_other_experiment_separates():
    here = {
        "bp": report.Stat(0.75, 0.002, 3),
        "rbp": report.Stat(0.77, 0.002, 3),  # above bp, unlike MNIST: not a pair there, so not tested
        "rbp-nof": report.Stat(0.60, 0.002, 3),
        "top": report.Stat(0.50, 0.002, 3),
    }
    verdict, evidence = report.evaluate_check(CHECK, _stats(here), {}, list(here), other_results=_results(MNIST))
    assert verdict == "true"
    # bp/rbp > rbp-nof, bp/rbp > top and rbp-nof > top (2.4 points) on MNIST: 5 pairs
    assert evidence.startswith("5 pair(s) of 4 variants that fig1 (fabricated) separates by more than 2.00 points")
    reversed_ = dict(here, top=report.Stat(0.65, 0.002, 3))  # top above rbp-nof: reversed
    verdict, evidence = report.evaluate_check(CHECK, _stats(reversed_), {}, list(here), other_results=_results(MNIST))
    assert verdict == "false" and "not: `rbp-nof` 60.00% < `top` 65.00% here, 88.00% vs 85.60% there" in evidence
    noisy = dict(here, top=report.Stat(0.601, 0.01, 3))  # top 0.1 points above rbp-nof, noise of 0.8 points
    verdict, evidence = report.evaluate_check(CHECK, _stats(noisy), {}, list(here), other_results=_results(MNIST))
    assert verdict == "tie" and "within one standard error" in evidence
    # Nothing to compare: not measured, never true.
    close = {k: report.Stat(0.97 + i * 0.001, 0.001, 5) for i, k in enumerate(here)}
    assert report.evaluate_check(CHECK, _stats(here), {}, list(here), other_results=_results(close))[0] is None
    assert report.evaluate_check(CHECK, _stats(here), {}, list(here), other_results=_results(None))[0] is None
    assert report.evaluate_check(CHECK, _stats(here), {}, list(here))[0] is None
    only_one = {"bp": MNIST["bp"], "arbp": MNIST["top"]}
    assert report.evaluate_check(CHECK, _stats(here), {}, list(here), other_results=_results(only_one))[0] is None
    # `among` restricts the variants; losses count smaller as better.
    among = dict(CHECK, among=["bp", "top"])
    assert report.evaluate_check(among, _stats(reversed_), {}, list(here), other_results=_results(MNIST))[0] == "true"
    losses = {k: report.Stat(1 - v.mean, v.std, v.n) for k, v in here.items()}
    loss_check = dict(CHECK, metric="test_loss")
    assert (
        report.evaluate_check(
            loss_check,
            _stats(losses),
            {},
            list(here),
            other_results=_results({k: report.Stat(1 - v.mean, v.std, v.n) for k, v in MNIST.items()}),
        )[0]
        == "true"
    )


def write_final(directory: Path, rows: dict[str, tuple[float, float, int]], diverged=(), epochs=100, seeds=5):
    """A results folder as `reproduce` leaves it (final.csv, experiment.json), made up."""
    directory.mkdir(parents=True, exist_ok=True)
    table = []
    for name, (mean, std, n) in rows.items():
        table.append(
            {
                "variant": name,
                "label": name,
                "n": n,
                "diverged": 0,
                "epochs": epochs,
                "test_accuracy_mean": mean,
                "test_accuracy_std": std,
            }
        )
    for name in diverged:
        table.append(
            {
                "variant": name,
                "label": name,
                "n": 0,
                "diverged": 3,
                "epochs": 0,
                "test_accuracy_mean": math.nan,
                "test_accuracy_std": math.nan,
            }
        )
    for row in table:
        for metric in ("train_accuracy", "test_loss", "train_loss"):
            row[f"{metric}_mean"], row[f"{metric}_std"] = 0.5, 0.01
        row["test_error_mean"], row["test_error_std"] = 100 * (1 - row["test_accuracy_mean"]), 0.1
    (directory / "final.csv").write_text(aggregate._csv(table, aggregate.FINAL_COLUMNS), encoding="utf-8")
    settings = {"name": directory.name, "epochs": epochs, "seeds": seeds, "dataset": {"limit": None}, "overrides": {}}
    (directory / "experiment.json").write_text(json.dumps({"settings": settings}), encoding="utf-8")


def test_find_other_results_prefers_the_same_out_folder(tmp_path, monkeypatch):
    committed = tmp_path / "docs" / "results"
    monkeypatch.setattr(report, "CHECKOUT_RESULTS", committed)
    out = tmp_path / "out"
    assert report.find_other_results("fig1", out / "cifar10") is None
    write_final(committed / "fig1", {"bp": (0.9, 0.01, 5)})
    assert report.find_other_results("fig1", out / "cifar10") == committed / "fig1"
    write_final(out / "fig1", {"bp": (0.9, 0.01, 5)})
    assert report.find_other_results("fig1", out / "cifar10") == out / "fig1"


# ---------------------------------------------------------------------------------------------- table1

FIG1 = {
    "bp": (0.9797, 0.0012, 5),
    "bp-nof": (0.8901, 0.0051, 5),
    "sbp": (0.9797, 0.0008, 5),
    "sbp-nof": (0.8901, 0.0051, 5),
    "rbp": (0.9705, 0.0011, 5),
    "rbp-nof": (0.8795, 0.0124, 5),
    "srbp": (0.9729, 0.0005, 5),
    "srbp-nof": (0.8797, 0.0053, 5),
    "top": (0.8563, 0.0047, 5),
}


def test_table1_is_assembled_from_the_results_and_says_what_is_missing(tmp_path, capsys):
    out = tmp_path / "results"
    write_final(out / "fig1", FIG1)
    write_final(
        out / "cifar10",
        {"bp": (0.7512, 0.004, 3), "srbp": (0.7001, float("nan"), 1)},
        diverged=["top"],
        epochs=5,
        seeds=3,
    )
    assert cli.main(["reproduce", "table1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    text = (out / "table1" / "table1.md").read_text()
    assert text in printed
    lines = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert lines["BP"] == "| BP | 97.97 ± 0.12 | 75.12 ± 0.40 |"
    assert lines["SRBP"] == "| SRBP | 97.29 ± 0.05 | 70.01 |"  # one seed: no spread
    assert lines["Top-Layer-Only"] == "| Top-Layer-Only | 85.63 ± 0.47 | diverged (3 seed(s)) |"
    assert lines["ARBP"] == "| ARBP | missing | missing |"  # fig2 was not run: not invented
    assert lines["RBP (no f')"] == "| RBP (no f') | 87.95 ± 1.24 | missing |"
    assert f"no {out / 'fig2' / 'final.csv'}" in text
    assert "CIFAR-10: missing rows: BP (no f'), SBP, SBP (no f'), RBP, RBP (no f'), SRBP (no f'), ARBP, ASRBP" in text
    assert "**Not the experiment's own settings**: epochs 5 (config: 100)" in text
    rows = {row["variant"]: row for row in read_csv(out / "table1" / "table1.csv")}
    assert [row["algorithm"] for row in rows.values()] == [label for label, _ in table1.ROWS]
    assert float(rows["bp"]["mnist_test_accuracy_mean"]) == 0.9797 and rows["bp"]["mnist_experiment"] == "fig1"
    assert rows["srbp"]["cifar10_test_accuracy_std"] == "" and rows["srbp"]["cifar10_seeds"] == "1"
    assert rows["top"]["cifar10_status"] == "diverged" and rows["top"]["cifar10_test_accuracy_mean"] == ""
    assert rows["arbp"]["mnist_status"] == "missing" and rows["arbp"]["mnist_test_accuracy_mean"] == ""
    assert not (out / "fig2").exists() and not list(out.rglob("runs"))  # nothing was trained
    # fig2 arrives: its adaptive rows fill in; fig1 keeps the rows it has.
    write_final(out / "fig2", {"rbp": (0.5, 0.1, 5), "arbp": (0.9723, 0.0014, 5), "asrbp": (0.9742, 0.0011, 5)})
    _, table = table1.write_table1(out)
    cells = dict(zip((variant for _, variant in table1.ROWS), table))
    assert cells["arbp"]["mnist"].experiment == "fig2" and cells["arbp"]["mnist"].mean == 0.9723
    assert cells["rbp"]["mnist"].experiment == "fig1" and cells["rbp"]["mnist"].mean == 0.9705


def test_table1_command_line(tmp_path, capsys):
    out = tmp_path / "results"
    assert cli.main(["reproduce", "table1", "--out", str(out), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "MNIST     0 of 11 rows found" in printed and "CIFAR-10  0 of 11 rows found" in printed
    assert not out.exists()  # a dry run writes nothing
    assert cli.main(["reproduce", "table1", "--out", str(out), "--epochs", "5"]) == 2
    assert "--epochs do(es) not apply: table1 trains nothing" in capsys.readouterr().err
    assert cli.main(["reproduce", "table1", "--out", str(out)]) == 0
    assert "| BP | missing | missing |" in capsys.readouterr().out
    write_final(out / "fig1", {"bp": (0.98, 0.001, 5)})
    (out / "fig1" / "final.csv").write_text("variant,n\nbp,five\n")
    assert cli.main(["reproduce", "table1", "--out", str(out)]) == 0
    assert "fig1/final.csv cannot be read" in capsys.readouterr().out
    assert "table1" not in ex.list_experiments()  # the name is not an experiment's


# ---------------------------------------------------------------------------------------------- command line


def test_reproduce_cifar10_dry_run_lists_its_runs(tmp_path, capsys):
    assert cli.main(["reproduce", "cifar10", "--out", str(tmp_path), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "cifar10: 33 runs: 33 missing"
    assert lines[0] == f"missing    {tmp_path / 'cifar10' / 'runs' / 'bp' / 'seed0'}"
    assert len(lines) == 34
    assert cli.main(["reproduce", "cifar10", "--out", str(tmp_path), "--dry-run", "--seeds", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "cifar10: 11 runs: 11 missing"
    assert cli.main(["reproduce", "--list"]) == 0
    listing = capsys.readouterr().out
    assert "cifar10     §4.3" in listing and "11 variants x 3 seeds, 100 epochs" in listing and "table1" in listing


def write_tiny_cifar(root: Path, train: int = 40, test: int = 10) -> Path:
    """A CIFAR-10 copy in the official binary layout (cifar-10-batches-bin/) with random images."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)

    def records(n: int) -> bytes:
        labels = np.arange(n, dtype=np.uint8) % 10
        pixels = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        return np.concatenate([labels[:, None], pixels], axis=1).tobytes()

    for k in range(1, 6):
        (folder / f"data_batch_{k}.bin").write_bytes(records(train // 5))
    (folder / "test_batch.bin").write_bytes(records(test))
    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    (folder / "batches.meta.txt").write_text("\n".join(classes) + "\n")
    return root


@pytest.fixture
def tiny_cifar(tmp_path, monkeypatch):
    """A 40-image CIFAR-10 in tmp_path/data, RBP_NATIVE_DATA pointing at it; returns tmp_path."""
    write_tiny_cifar(tmp_path / "data")
    monkeypatch.setenv("RBP_NATIVE_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def test_run_trains_a_conv_config_on_cifar10_files(tiny_cifar, capsys):
    body = """
    [experiment]
    name = "mine"
    dataset = "cifar10"
    epochs = 1
    seeds = 1
    test_limit = 6

    [defaults]
    layers = [
      { type = "Conv2D", filters = 2, kernel_size = 5, stride = 2, padding = "valid" },
      { type = "MaxPool2D", pool_size = 3, stride = 2 },
      { type = "Dense", units = 10, activation = "softmax" },
    ]
    batch_size = 8
    augment = { translate = 0.1, flip = true }

    [[variant]]
    name = "srbp"
    algorithm = "srbp"
    """
    path = write_config(tiny_cifar / "mine.toml", body)
    out = tiny_cifar / "out"
    code = cli.main(["run", str(path), "--out", str(out), "--threads", "1", "--no-progress", "--limit", "24"])
    assert code == 0, capsys.readouterr().err
    stored = json.loads((out / "mine" / "runs" / "srbp" / "seed0" / "config.json").read_text())
    assert (stored["train_examples"], stored["test_examples"]) == (24, 6)
    assert stored["resolved"]["network"]["input_shape"] == [3, 32, 32]  # the data set's
    assert stored["resolved"]["dataset"] == {"name": "cifar10", "limit": 24, "test_limit": 6, "subset": "balanced"}
    source = str(tiny_cifar / "data" / "cifar-10-batches-bin") + " (official binary version)"
    assert stored["data_source"] == source
    assert json.loads((out / "mine" / "experiment.json").read_text())["data_source"] == source
    assert f"read from {source}" in (out / "mine" / "report.md").read_text()
    # Missing data, not downloaded: a clear error before anything trains.
    elsewhere = ["--out", str(tiny_cifar / "other"), "--no-download", "--data-root", str(tiny_cifar / "no")]
    assert cli.main(["run", str(path), *elsewhere]) == 2
    assert "cifar10 data not found" in capsys.readouterr().err


def test_train_builds_conv_nets(tiny_cifar, capsys):
    out = tiny_cifar / "run"
    common = ["train", "--dataset", "cifar10", "--epochs", "1", "--batch-size", "10", "--threads", "1", "--no-progress"]
    code = cli.main(
        [
            *common,
            "--net",
            json.dumps(TINY_LAYERS[:1] + TINY_LAYERS[3:]),
            "--algorithm",
            "rbp",
            "--translate",
            "0.1",
            "--flip",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    saved = json.loads((out / "config.json").read_text())
    assert saved["network_config"]["input_shape"] == [3, 32, 32]
    assert [layer["type"] for layer in saved["network_config"]["layers"]] == ["Conv2D", "Dense", "Dense"]
    assert saved["trainer_config"]["augment"] == {"translate": 0.1, "flip": True}
    net = rbp.Sequential.load(out / "model.npz")
    assert net.weights[0].shape == (3, 3, 3, 3)
    # The paper's network, as the cifar10 experiment defines it (built, not trained).
    paper = cli._network_options(
        cli.build_parser().parse_args(["train", "--dataset", "cifar10", "--net", "paper-cifar10"]), None
    )
    built = rbp.Sequential(**paper, seed=0).config()["layers"]
    assert built == ex.load_experiment("cifar10").runs()[0].resolved()["network"]["layers"]
    capsys.readouterr()
    for flags, message in [
        (["--net", "paper-cifar10", "--hidden", "5"], "--hidden describe(s) an MLP"),
        (["--net", "[{'type': 'Dense'}]"], "not JSON"),
        (["--net", '{"type": "Dense", "units": 10}'], "must be a JSON list of tables"),
        (["--net", '[{"type": "Dense", "units": 0, "activation": "softmax"}]'], "units must be a positive integer"),
        (["--translate", "0.1"], "augment"),  # an MLP has no image input to shift
    ]:
        assert cli.main([*common, *flags, "--out", str(tiny_cifar / "bad"), "--force"]) == 2, flags
        assert message in capsys.readouterr().err, flags


def test_cifar10_limits_take_from_every_class_in_turn():
    from rbp_native.experiments import data

    sorted_by_class = rbp.datasets.Dataset(
        x=np.arange(15, dtype=np.float32)[:, None], y=np.repeat([0, 1, 2], 5), name="t", classes=("a", "b", "c")
    )
    subset = data.balanced_subset(sorted_by_class, 7)
    assert subset.x[:, 0].tolist() == [0, 1, 2, 5, 6, 10, 11]  # ranks 0, 1 of every class, rank 2 of class 0
    assert data.first(sorted_by_class, 7).y.tolist() == [0] * 5 + [1] * 2
    assert data.balanced_subset(sorted_by_class, 15).x[:, 0].tolist() == list(range(15))
    assert ex.load_experiment("cifar10").dataset_spec()["subset"] == "balanced"
    assert "subset" not in ex.load_experiment("fig1").dataset_spec()  # MNIST: the first N, as before


def _real_cifar10() -> bool:
    from rbp_native import _cifar, datasets

    return bool(os.environ.get("RBP_NATIVE_DATA")) and _cifar.locate(datasets.data_root())[0] is not None


@pytest.mark.skipif(not _real_cifar10(), reason="needs a CIFAR-10 copy under $RBP_NATIVE_DATA")
def test_the_real_cifar10_copy_runs_a_tiny_conv_net(tmp_path):
    experiment = ex.load_experiment(
        "cifar10",
        epochs=1,
        seeds=1,
        limit=256,
        overrides={"test_limit": 256, "layers": [dict(TINY_LAYERS[0], stride=2), *TINY_LAYERS[1:]]},
    )
    experiment.variants = [experiment.variant("srbp")]
    outcome = go(experiment, tmp_path)
    assert not outcome.failed
    row = read_csv(tmp_path / "cifar10" / "final.csv")[0]
    assert 0.0 <= float(row["test_accuracy_mean"]) <= 1.0
    stored = json.loads((tmp_path / "cifar10" / "runs" / "srbp" / "seed0" / "config.json").read_text())
    assert (stored["train_examples"], stored["test_examples"]) == (256, 256)
    assert "data_source" in stored
    from rbp_native.experiments.data import load_data

    train, test = load_data(experiment.dataset_spec())
    for split in (train, test):  # 256 = 25 x 10 + 6: classes 0-5 once more
        assert np.bincount(split.y, minlength=10).tolist() == [26] * 6 + [25] * 4
