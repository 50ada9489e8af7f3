"""The experiment runner: shipped configs, tiny end-to-end runs on synthetic data, resume, aggregation,
corrupt files, config mismatches, determinism across --jobs, and the command line."""

from __future__ import annotations

import csv
import json
import math
import os
import textwrap
from pathlib import Path

import numpy as np
import pytest

from rbp_native import checkpoint, cli
from rbp_native import experiments as ex
from rbp_native import trainer as trainer_module
from rbp_native.experiments import aggregate, complexity, config, report, runner

SHIPPED = {
    "fig1": ["bp", "bp-nof", "sbp", "sbp-nof", "rbp", "rbp-nof", "srbp", "srbp-nof", "top"],
    "fig2": ["rbp", "arbp", "srbp", "asrbp"],
    "fig3": ["srbp"] + [f"sparse-srbp-p{p}" for p in ("0", "0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1")],
    "fig4": ["rbp"] + [f"sparse-rbp-p{p}" for p in ("0", "0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1")],
    "controls": [
        "rbp",
        "srbp",
        "top",
        "rbp-resample-zero-mean",
        "rbp-resample-sign",
        "srbp-mean-gaussian",
        "srbp-mean-uniform",
        "srbp-freeze-2",
        "srbp-freeze-1to2",
        "srbp-freeze-3",
        "srbp-freeze-1to3",
        "srbp-sign",
        "srbp-magnitude",
        "srbp-per-synapse",
        "srbp-linear",
        "top-linear",
        "srbp-logistic",
        "top-logistic",
        "srbp-relu",
        "top-relu",
        "srbp-relu-lr0.01",
        "top-relu-lr0.01",
    ],
    "fig7": ["bp", "rbp", "srbp"]
    + [f"{a}-q-bits{b}" for a in ("bp", "rbp", "srbp") for b in (1, 2, 3, 4, 6, 8, 10, 12, 16)]
    + [f"{a}-qm-bits{b}" for a in ("bp", "rbp", "srbp") for b in (2, 4, 6, 8, 10)],
    "fig8": ["bp", "rbp", "srbp"] + [f"{a}-q-bits{b}" for a in ("bp", "rbp", "srbp") for b in (1, 2, 3, 4, 6, 8, 12)],
    "fig9": ["bp", "rbp", "srbp"]
    + [f"{a}-drop-drop{p}" for a in ("bp", "rbp", "srbp") for p in (0.1, 0.25, 0.5, 0.75, 0.9)],
    "deep": ["bp", "rbp", "srbp", "top"],
    "complexity": ["bp", "sbp", "rbp", "srbp", "arbp", "asrbp", "top", "sparse-rbp-n10", "sparse-srbp-n2"],
    "scale": [
        "bp",
        "top",
        "rbp",
        "rbp-unit",
        "srbp",
        "srbp-unit",
        "rbp-nof",
        "rbp-nof-unit",
        "srbp-nof",
        "srbp-nof-unit",
        "rbp-resample-zero-mean",
        "rbp-resample-zero-mean-unit",
        "top-relu",
        "srbp-relu",
        "srbp-relu-unit",
    ]
    + [f"{a}-q-unit-bits{b}" for a in ("rbp", "srbp") for b in (1, 2, 4, 8, 10, 16)]
    + [f"sparse-rbp-glorot-p{p}" for p in ("0.01", "0.02", "0.05", "0.1", "0.2", "0.5")],
    "variants": [
        "rbp",
        "srbp",
        "top",
        "rbp-unit",
        "srbp-unit",
        "rbp-congruent",
        "srbp-congruent",
        "rbp-sign",
        "srbp-sign",
        "rbp-bernoulli",
        "srbp-bernoulli",
        "rbp-mean-gaussian",
        "rbp-mean-uniform",
    ]
    + [
        f"{a}-sparse-{d}{r}-p{p}"
        for a in ("rbp", "srbp")
        for d in ("sign", "gaussian")
        for p in ("0.1", "0.5")
        for r in ("", "-rescaled")
    ]
    + [f"{a}-{u}" for u in ("linear", "logistic", "relu", "relu-lr0.01") for a in ("rbp", "top")]
    + [f"srbp-freeze-{h}" for h in ("1", "2", "3", "4", "1to2", "1to3", "1to4")],
    "cifar10": ["bp", "bp-nof", "sbp", "sbp-nof", "rbp", "rbp-nof", "srbp", "srbp-nof", "arbp", "asrbp", "top"],
}
# cifar10 (a conv net on CIFAR-10) has its own tests in test_cifar_experiments.py; these are the MLP ones.
MNIST_SHIPPED = sorted(name for name in SHIPPED if name != "cifar10")
PAPER = {
    "hidden": [100, 100, 100, 100],
    "activation": "tanh",
    "output": "softmax",
    "lr": 0.1,
    "momentum": 0.0,
    "batch_size": 100,
}


def tiny(name: str, **extra):
    """The experiment on a small synthetic data set: 1 epoch, 1 seed, narrow layers (same depth)."""
    depth = 10 if name == "deep" else 4
    overrides = {"dataset": "synthetic", "synthetic.train": 200, "synthetic.test": 50, "hidden": [8] * depth}
    overrides.update(extra.pop("overrides", {}))
    return ex.load_experiment(
        name, epochs=extra.pop("epochs", 1), seeds=extra.pop("seeds", 1), overrides=overrides, **extra
    )


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def go(experiment, out, **kwargs):
    kwargs.setdefault("figures", False)
    kwargs.setdefault("threads", 1)
    kwargs.setdefault("progress", False)
    kwargs.setdefault("write", lambda text: None)
    return ex.reproduce(experiment, out, **kwargs)


# ---------------------------------------------------------------------------------------------- configs


def test_every_shipped_experiment_is_listed():
    assert sorted(SHIPPED) == ex.list_experiments()


@pytest.mark.parametrize("name", MNIST_SHIPPED)
def test_shipped_config_parses_and_expands_to_the_intended_runs(name):
    experiment = ex.load_experiment(name)
    assert experiment.name == name
    assert [v.name for v in experiment.variants] == SHIPPED[name]
    assert experiment.dataset == "mnist"
    if experiment.kind == "train":
        assert (experiment.epochs, experiment.seeds) == (100, 5)
        runs = experiment.runs()
        assert len(runs) == 5 * len(SHIPPED[name])
        assert [r.seed for r in runs[: len(SHIPPED[name])]] == [0] * len(SHIPPED[name])  # seed-major
        assert len({r.relpath for r in runs}) == len(runs)
        config.validate(experiment)  # every variant builds a network and a trainer
    for variant in experiment.variants:
        options = variant.options
        if name == "deep":
            assert len(options["hidden"]) >= 10
        else:
            assert options["hidden"] == PAPER["hidden"]
        for key in ("activation", "output", "lr", "momentum", "batch_size"):
            off_paper = (key == "activation" and name in ("controls", "scale", "variants")) or (
                key == "lr" and variant.name.endswith("-lr0.01")
            )
            if experiment.kind == "train" and not off_paper:
                assert options[key] == PAPER[key], (name, variant.name, key)
        if experiment.kind == "train":
            assert options["decay"] == (0.0 if name == "fig8" else 1e-6)
    for check in experiment.checks:  # every check names variants of its experiment
        named = [check.get(k) for k in ("variant", "a", "b", "low", "high") if k in check]
        named += list(check.get("among", []))
        flat = [n for item in named for n in ([item] if isinstance(item, str) else item)]
        assert set(flat) <= set(SHIPPED[name]), (name, check["claim"])
        groups = check.get("group", [])
        assert set([groups] if isinstance(groups, str) else groups) <= set(experiment.groups()), check["claim"]
    # The paper is cited by its own sections and figures, never by notes outside the repository.
    assert "paper-notes" not in ex.config.config_path(name).read_text(encoding="utf-8")


def test_sweeps_carry_the_papers_settings():
    fig7 = ex.load_experiment("fig7")
    quantised = [v for v in fig7.variants if v.group]
    assert {v.options["quantize"] for v in quantised} == {"signal"}
    paper_scale = [v for v in quantised if v.group in ("bp-q", "rbp-q", "srbp-q")]
    batch_mean_scale = [v for v in quantised if v.group in ("bp-qm", "rbp-qm", "srbp-qm")]
    assert len(paper_scale) + len(batch_mean_scale) == len(quantised)
    assert {v.options["quantize_alpha"] for v in paper_scale} == {2**-3}
    # alpha = 2^-3 on the batch-mean error e / batch_size is alpha = 2^-3 x batch_size on e
    assert {v.options["quantize_alpha"] for v in batch_mean_scale} == {2**-3 * PAPER["batch_size"]}
    assert [v.options["quantize_bits"] for v in fig7.groups()["bp-q"]] == [1, 2, 3, 4, 6, 8, 10, 12, 16]
    fig8 = ex.load_experiment("fig8")
    assert {v.options["quantize_alpha"] for v in fig8.variants if v.group} == {2**-6}
    assert {v.options["quantize"] for v in fig8.variants if v.group} == {"update"}
    fig3 = ex.load_experiment("fig3")
    densities = [v.options["feedback_density"] for v in fig3.groups()["sparse-srbp"]]
    assert densities[0] == 0.0 and densities[-1] == 1.0  # the extremes are included
    assert {v.options["feedback_distribution"] for v in fig3.groups()["sparse-srbp"]} == {"ones"}
    fig1 = ex.load_experiment("fig1")
    assert fig1.variant("srbp-nof").options["derivative"] is False
    assert fig1.variant("srbp-nof").label == "SRBP (no f')"
    run = fig1.runs()[7]
    resolved = run.resolved()
    assert resolved["network"]["sizes"] == [784, 100, 100, 100, 100, 10]
    assert resolved["trainer"] == {
        "lr": 0.1,
        "decay": 1e-6,
        "momentum": 0.0,
        "batch_size": 100,
        "algorithm": "srbp",
        "derivative": False,
    }


def write_config(path: Path, body: str) -> Path:
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


BASE = """
[experiment]
name = "mine"
dataset = "synthetic"
epochs = 1
seeds = 2
synthetic = { train = 120, test = 40, features = 12, classes = 3 }

[defaults]
hidden = [6, 5]
batch_size = 20
"""


def test_sweep_expansion_names_labels_and_products(tmp_path):
    path = write_config(
        tmp_path / "mine.toml",
        BASE
        + """
    [[variant]]
    name = "srbp"
    algorithm = "srbp"
    sweep = { channel_dropout = [0.0, 0.5] }

    [[variant]]
    name = "q-{quantize_bits}-{quantize_alpha}"
    label = "Q {quantize_bits} bits"
    algorithm = "bp"
    quantize = "signal"
    sweep = { quantize_bits = [2, 4], quantize_alpha = [0.5, 1.0] }
    """,
    )
    experiment = ex.load_experiment(path)
    names = [v.name for v in experiment.variants]
    assert names == ["srbp-drop0", "srbp-drop0.5", "q-2-0.5", "q-2-1", "q-4-0.5", "q-4-1"]
    assert experiment.variant("srbp-drop0.5").label == "srbp (drop=0.5)"
    assert experiment.variant("q-4-1").label == "Q 4 bits"
    assert experiment.variant("q-4-1").options["quantize_alpha"] == 1.0
    assert list(experiment.groups()) == ["srbp", "q"]
    assert len(experiment.runs()) == 12


@pytest.mark.parametrize(
    "body,message",
    [
        (BASE + '[[variant]]\nname = "a"\nalgoritm = "bp"\n', "unknown key 'algoritm' in [[variant]] #1 ('a')"),
        (
            BASE.replace("epochs = 1", "epochs = 1\nepoch = 3") + '[[variant]]\nname = "a"\n',
            "unknown key 'epoch' in [experiment]",
        ),
        (
            BASE.replace("batch_size", "batchsize") + '[[variant]]\nname = "a"\n',
            "unknown key 'batchsize' in [defaults]",
        ),
        (
            BASE + '[[variant]]\nname = "a"\n[[check]]\nclaim = "x"\nkind = "ge"\na = "a"\nc = "a"\n',
            "unknown key 'c' in [[check]] #1",
        ),
        (BASE + '[[variant]]\nname = "a"\n[[check]]\nclaim = "x"\nkind = "ge"\na = "a"\n', "needs a, b"),
        (BASE + '[[variant]]\nname = "a"\nsweep = { lr = 0.1 }\n', "must be a non-empty list"),
        (BASE + '[[variant]]\nname = "a"\n[[variant]]\nname = "a"\n', "two variants are called 'a'"),
        (BASE + '[[variant]]\nname = "a b"\n', "may hold only"),
        (
            BASE.replace("hidden = [6, 5]", "sizes = [10, 6, 3]") + '[[variant]]\nname = "a"\n',
            "do not fit the data set",
        ),
        (BASE + "[[variant]]\nname = 'a'\nreference = 'b'\n", "reference 'b'"),
        (BASE + "[[variant]]\nname = 'a'\nlr = -1.0\n", "variant 'a': lr must be positive"),
        ("[experiment\n", "not valid TOML"),
    ],
)
def test_bad_configs_give_clear_errors_naming_the_file(tmp_path, body, message):
    path = write_config(tmp_path / "bad.toml", body)
    with pytest.raises(ex.ConfigError) as error:
        experiment = ex.load_experiment(path)
        config.validate(experiment)
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_overrides_set_experiment_keys_and_force_run_options():
    assert ex.parse_overrides(["lr=0.05", "hidden=[3, 4]", "activation=relu", 'dataset="synthetic"']) == {
        "lr": 0.05,
        "hidden": [3, 4],
        "activation": "relu",
        "dataset": "synthetic",
    }
    experiment = tiny("fig1", overrides={"lr": 0.05, "test_limit": 20})
    assert {v.options["lr"] for v in experiment.variants} == {0.05}
    assert experiment.test_limit == 20 and experiment.dataset == "synthetic"
    assert experiment.nominal["epochs"] == 100
    with pytest.raises(ex.ConfigError, match="--set colour: unknown key"):
        ex.load_experiment("fig1", overrides={"colour": 1})
    with pytest.raises(ex.ConfigError, match="KEY=VALUE"):
        ex.parse_overrides(["lr"])
    with pytest.raises(ex.ConfigError, match="unknown experiment 'fig99'"):
        ex.load_experiment("fig99")


# ---------------------------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("name", MNIST_SHIPPED)
def test_tiny_version_of_every_experiment_runs_end_to_end(tmp_path, name):
    experiment = tiny(name) if name != "complexity" else ex.load_experiment(name)  # complexity trains nothing
    outcome = go(experiment, tmp_path, figures=True)
    assert not outcome.failed
    directory = tmp_path / name
    report_text = (directory / "report.md").read_text()
    assert "## Comparison with the paper" in report_text
    for check in experiment.checks:
        assert check["claim"] in report_text
    assert "**not measured**" not in report_text  # every check names variants, groups and values that exist
    if experiment.kind == "complexity":
        table = (directory / "complexity.md").read_text()
        assert "| `bp` | BP | 31,000 | 31,000 |" in table
        assert "| `srbp` | SRBP | 4,000 | 4,000 |" in table
        assert "**false**" not in report_text and "**true**" in report_text
        return
    assert len(outcome.trained) == len(experiment.variants)
    for name_ in ("summary.csv", "final.csv", "final.md", "accuracy.png", "experiment.json"):
        assert (directory / name_).is_file(), name_
    if experiment.groups():
        assert (directory / "sweep.png").is_file()
        for group in experiment.groups():
            assert (directory / f"accuracy-{group}.png").is_file()
    assert "These results use settings other than the experiment's own" in report_text
    final = read_csv(directory / "final.csv")
    assert [row["variant"] for row in final] == [v.name for v in experiment.variants]
    run_dir = directory / "runs" / experiment.variants[0].name / "seed0"
    stored = json.loads((run_dir / "config.json").read_text())
    assert stored["resolved"] == experiment.runs()[0].resolved()
    assert stored["threads"] == 1 and "version" in stored
    assert json.loads((run_dir / "done.json").read_text())["status"] in ("complete", "diverged")
    assert not list(directory.rglob("*.tmp"))  # atomic writes leave no temporary files


def test_complexity_formulas_for_the_papers_network():
    sizes = [784, 100, 100, 100, 100, 10]
    assert complexity.analytic(sizes, {"algorithm": "bp"})["channel_macs"] == 31000
    assert complexity.analytic(sizes, {"algorithm": "rbp"}) == {
        "channel_macs": 31000,
        "storage": 31000,
        "update_macs": 0,
    }
    assert complexity.analytic(sizes, {"algorithm": "srbp"}) == {
        "channel_macs": 4000,
        "storage": 4000,
        "update_macs": 0,
    }
    assert complexity.analytic(sizes, {"algorithm": "asrbp"})["update_macs"] == 4000
    assert complexity.analytic(sizes, {"algorithm": "top"})["channel_macs"] == 0
    assert complexity.analytic(sizes, {"algorithm": "srbp", "feedback_density": 0.25})["channel_macs"] == 1000
    mixed = {"algorithm": "rbp", "sources": ["output", "output", "above", "above"]}
    assert complexity.analytic(sizes, mixed)["channel_macs"] == 1000 + 1000 + 10000 + 1000
    network = {"sizes": sizes}
    assert complexity.counted(network, mixed)["channel_macs"] == 13000


# ---------------------------------------------------------------------------------------------- resume


def small(tmp_path, **overrides) -> ex.Experiment:
    path = write_config(
        tmp_path / "small.toml",
        BASE
        + """
    [[variant]]
    name = "bp"
    algorithm = "bp"

    [[variant]]
    name = "srbp"
    algorithm = "srbp"

    [[check]]
    claim = "SRBP is within 100 points of BP"
    kind = "close"
    a = "srbp"
    b = "bp"
    tolerance = 1.0
    """,
    )
    return ex.load_experiment(path, epochs=overrides.pop("epochs", 2), overrides=overrides)


def stamps(directory: Path) -> dict[str, int]:
    return {str(p.relative_to(directory)): p.stat().st_mtime_ns for p in sorted(directory.rglob("done.json"))}


def test_resume_skips_complete_runs_and_redoes_unfinished_ones(tmp_path):
    experiment = small(tmp_path)
    first = go(experiment, tmp_path / "out")
    assert len(first.trained) == 4 and not first.skipped
    directory = tmp_path / "out" / "mine"
    before = stamps(directory)
    interrupted = directory / "runs" / "srbp" / "seed1"
    # An interrupted run: config and one epoch on disk, no done marker.
    (interrupted / "done.json").unlink()
    lines = (interrupted / "history.csv").read_text().splitlines(keepends=True)
    (interrupted / "history.csv").write_text("".join(lines[:2]))
    assert [s for _, s, _ in runner.plan(experiment, tmp_path / "out")] == ["complete"] * 3 + ["incomplete"]
    with pytest.raises(ValueError, match="incomplete"):
        aggregate.collect(experiment, directory)  # never merged
    second = go(experiment, tmp_path / "out")
    assert second.trained == ["mine/srbp/seed1"]
    assert sorted(second.skipped) == ["mine/bp/seed0", "mine/bp/seed1", "mine/srbp/seed0"]
    after = stamps(directory)
    changed = [k for k in before if before[k] != after[k]]
    assert changed == ["runs/srbp/seed1/done.json"]
    assert len(aggregate.read_history(interrupted / "history.csv")) == 2
    third = go(experiment, tmp_path / "out")
    assert not third.trained and len(third.skipped) == 4
    # More seeds later: the finished ones are reused.
    more = ex.load_experiment(experiment.source, epochs=2, seeds=3)
    fourth = go(more, tmp_path / "out")
    assert sorted(fourth.trained) == ["mine/bp/seed2", "mine/srbp/seed2"]


def test_changed_settings_are_refused_unless_forced(tmp_path):
    out = tmp_path / "out"
    go(small(tmp_path), out)
    changed = small(tmp_path, lr=0.05)
    with pytest.raises(ex.ConfigError) as error:
        go(changed, out)
    message = str(error.value)
    assert "trainer.lr: stored 0.1, now 0.05" in message or "trainer.lr: not stored, now 0.05" in message
    assert "--force" in message and str(out / "mine") in message
    with pytest.raises(ex.ConfigError, match="epochs: stored 2, now 1"):
        go(small(tmp_path, epochs=1), out)  # fewer epochs: finished runs cannot be shortened
    forced = go(changed, out, force=True)
    assert len(forced.trained) == 4
    stored = json.loads((out / "mine" / "runs" / "bp" / "seed0" / "config.json").read_text())
    assert stored["resolved"]["trainer"]["lr"] == 0.05


def test_more_epochs_continue_finished_runs_from_their_checkpoints(tmp_path):
    go(small(tmp_path, epochs=1), tmp_path / "short")
    longer = small(tmp_path, epochs=3)
    assert {state for _, state, _ in runner.plan(longer, tmp_path / "short")} == {"extend"}
    extended = go(longer, tmp_path / "short")
    assert len(extended.trained) == 4
    go(longer, tmp_path / "whole")  # the same runs trained for 3 epochs from the start
    for run in longer.runs():
        a, b = tmp_path / "short" / "mine" / run.relpath, tmp_path / "whole" / "mine" / run.relpath
        rows = [aggregate.read_history(d / "history.csv") for d in (a, b)]
        assert len(rows[0]) == 3
        for got, want in zip(*rows):
            assert {k: v for k, v in got.items() if k != "seconds"} == {k: v for k, v in want.items() if k != "seconds"}
        (_, arrays_a), (_, arrays_b) = checkpoint.read(a / "checkpoint.npz"), checkpoint.read(b / "checkpoint.npz")
        # Everything: weights, biases, feedback, momentum, the random streams' states.
        assert sorted(arrays_a) == sorted(arrays_b) and "network/W1" in arrays_b
        for key in arrays_b:
            np.testing.assert_array_equal(arrays_a[key], arrays_b[key], err_msg=f"{run.relpath}: {key}")
    # Without its checkpoint a finished run cannot be extended: refused, not retrained from scratch.
    (tmp_path / "short" / "mine" / longer.runs()[0].relpath / "checkpoint.npz").unlink()
    with pytest.raises(ex.ConfigError, match="no checkpoint.npz to continue from"):
        go(small(tmp_path, epochs=4), tmp_path / "short")


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda text: text.replace("\n2,", "\nabc,", 1), "epoch = 'abc' is not a number"),
        (lambda text: text[:-5], "truncated"),
        (lambda text: "".join(text.splitlines(keepends=True)[:2]), "1 epoch row(s), expected 2"),
        (lambda text: text.replace("train_accuracy", "train_acc", 1), "train_accuracy missing"),
        (lambda text: "", "empty"),
        (lambda text: text + "3,1,2\n", "3 fields, the header has"),
    ],
)
def test_corrupt_histories_give_a_clear_error_never_a_merge(tmp_path, damage, message):
    experiment = small(tmp_path)
    out = tmp_path / "out"
    go(experiment, out)
    history = out / "mine" / "runs" / "bp" / "seed1" / "history.csv"
    history.write_text(damage(history.read_text()))
    with pytest.raises(ValueError) as error:
        aggregate.collect(experiment, out / "mine")
    assert str(history) in str(error.value) and message in str(error.value)
    with pytest.raises(ex.ConfigError, match="cannot be read"):
        go(experiment, out)
    redone = go(experiment, out, force=True)
    assert redone.trained == ["mine/bp/seed1"]
    aggregate.collect(experiment, out / "mine")


def test_a_corrupt_done_marker_is_reported(tmp_path):
    experiment = small(tmp_path)
    go(experiment, tmp_path)
    done = tmp_path / "mine" / "runs" / "srbp" / "seed0" / "done.json"
    done.write_text("{")
    with pytest.raises(ValueError, match="not a valid done marker"):
        aggregate.collect(experiment, tmp_path / "mine")


def test_a_run_continues_from_its_checkpoint_read_once_or_sets_aside_one_it_cannot_use(tmp_path, monkeypatch, capsys):
    def task(run_dir: Path, experiment: ex.Experiment, threads: int = 1) -> dict:
        return {"run_dir": str(run_dir), "resolved": experiment.runs()[1].resolved(), "threads": threads}  # srbp

    def epochs(run_dir: Path) -> list[dict]:
        records = json.loads((run_dir / "history.json").read_text())["epochs"]
        return [{k: v for k, v in r.items() if k != "seconds"} for r in records]

    one, two = small(tmp_path, epochs=1), small(tmp_path, epochs=2)
    runner.execute(task(tmp_path / "straight", two))
    parts = tmp_path / "parts"
    runner.execute(task(parts, one))
    reads, comparisons = [], []
    read, compare = checkpoint.read, runner.describe_differences
    monkeypatch.setattr(checkpoint, "read", lambda path: reads.append(path) or read(path))
    monkeypatch.setattr(runner, "describe_differences", lambda *a: comparisons.append(a) or compare(*a))
    monkeypatch.setattr(trainer_module, "describe_differences", lambda *a: comparisons.append(a) or compare(*a))
    assert runner.execute(task(parts, two))["resumed_after_epoch"] == 1
    assert len(reads) == 1 and len(comparisons) == 1
    assert epochs(parts) == epochs(tmp_path / "straight")
    # Another thread count continues (the thread count is not part of a run's identity).
    other_threads = tmp_path / "threads"
    runner.execute(task(other_threads, one))
    assert runner.execute(task(other_threads, two, threads=2))["resumed_after_epoch"] == 1
    # A checkpoint of other settings, or one that cannot be read, is set aside: the run starts over.
    capsys.readouterr()
    assert "resumed_after_epoch" not in runner.execute(task(parts, small(tmp_path, epochs=2, lr=0.05)))
    assert "checkpoint not used (it was written with other settings (trainer.lr: stored 0.1, now 0.05))" in (
        capsys.readouterr().err
    )
    assert (parts / "checkpoint.npz.unreadable").exists() and len(epochs(parts)) == 2
    (parts / "checkpoint.npz").write_bytes(b"not a checkpoint")
    assert "resumed_after_epoch" not in runner.execute(task(parts, two))
    assert "is not a readable checkpoint" in capsys.readouterr().err
    assert epochs(parts) == epochs(tmp_path / "straight")
    assert (parts / "checkpoint.npz.unreadable").read_bytes() == b"not a checkpoint"


# ---------------------------------------------------------------------------------------------- aggregation


def test_summary_statistics_on_hand_made_histories():
    def rows(*accs):
        return [
            {"epoch": i + 1, "train_accuracy": a, "test_accuracy": a / 2, "train_loss": 1 - a, "test_loss": 2 * a}
            for i, a in enumerate(accs)
        ]

    summary = ex.summarize({"x": [rows(0.5, 0.6), rows(0.7, 0.8), rows(0.9)], "y": [rows(0.25)]})
    first, second, only = summary
    assert (first["variant"], first["epoch"], first["n"]) == ("x", 1, 3)
    assert first["train_accuracy_mean"] == pytest.approx(0.7, abs=1e-15)
    assert first["train_accuracy_std"] == pytest.approx(0.2, abs=1e-15)  # sample s.d. of 0.5, 0.7, 0.9
    assert first["test_accuracy_mean"] == pytest.approx(0.35, abs=1e-15)
    assert first["test_loss_std"] == pytest.approx(0.4, abs=1e-15)
    assert (second["epoch"], second["n"]) == (2, 2)
    assert second["train_accuracy_mean"] == pytest.approx(0.7, abs=1e-15)
    assert second["train_accuracy_std"] == pytest.approx(math.sqrt(0.02), abs=1e-15)
    assert only["variant"] == "y" and only["n"] == 1 and math.isnan(only["train_accuracy_std"])
    assert ex.mean_std([]) == pytest.approx((math.nan, math.nan), nan_ok=True)


def test_aggregation_reads_the_run_folders(tmp_path):
    """Hand-written run folders (not produced by the runner) aggregate to the exact means and s.d."""
    experiment = small(tmp_path)
    directory = tmp_path / "mine"
    accuracy = {("bp", 0): 0.6, ("bp", 1): 0.8, ("srbp", 0): 0.5, ("srbp", 1): 0.5}
    for run in experiment.runs():
        run_dir = directory / run.relpath
        run_dir.mkdir(parents=True)
        (run_dir / "config.json").write_text(json.dumps({"resolved": run.resolved()}))
        a = accuracy[(run.variant.name, run.seed)]
        (run_dir / "history.csv").write_text(
            "epoch,train_loss,train_accuracy,test_loss,test_accuracy,lr\n"
            f"1,1.0,{a - 0.1},1.5,{a - 0.2},0.1\n2,0.5,{a},0.75,{a - 0.1},0.1\n"
        )
        (run_dir / "done.json").write_text(json.dumps({"status": "complete", "epochs": 2}))
    result = aggregate.collect(experiment, directory)
    final = {row["variant"]: row for row in result.final}
    assert final["bp"]["n"] == 2
    assert final["bp"]["train_accuracy_mean"] == pytest.approx(0.7)
    assert final["bp"]["train_accuracy_std"] == pytest.approx(math.sqrt(0.02))
    assert final["bp"]["test_accuracy_mean"] == pytest.approx(0.6)
    assert final["bp"]["test_error_mean"] == pytest.approx(40.0)
    assert final["srbp"]["test_accuracy_std"] == 0.0
    aggregate.write_tables(experiment, directory, result)
    assert "| `bp` | bp | 2 | 60.00 ± 14.14 | 40.00 | 70.00 ± 14.14 |" in (directory / "final.md").read_text()
    summary = read_csv(directory / "summary.csv")
    assert [(r["variant"], r["epoch"], r["n"]) for r in summary] == [
        ("bp", "1", "2"),
        ("bp", "2", "2"),
        ("srbp", "1", "2"),
        ("srbp", "2", "2"),
    ]
    assert float(summary[0]["test_accuracy_mean"]) == pytest.approx(0.5)


def test_checks_are_evaluated_plainly():
    values = {"a": 0.9, "b": 0.8, "c": 0.5, "d": -math.inf}

    def value(name):
        if name not in values:
            raise report.NotMeasured(f"variant {name!r} is not in this experiment")
        return values[name]

    def check(**kw):
        return report.evaluate_check(kw, value, {"g": ["c", "b", "a"], "h": ["a", "c"]}, list(values))[0]

    assert check(kind="lowest", variant="d") == "true"
    assert check(kind="lowest", variant="c", among=["a", "b", "c"]) == "true"
    assert check(kind="highest", variant="b") == "false"
    assert check(kind="ge", a="a", b="b", margin=0.05) == "true"
    assert check(kind="ge", a="a", b="b", margin=0.15) == "false"
    assert check(kind="ge", a=["a", "b"], b="c") == "true"
    assert check(kind="close", a="a", b="b", tolerance=0.1 + 1e-12) == "true"
    assert check(kind="close", a="a", b="c", tolerance=0.1) == "false"
    assert check(kind="between", a="b", low="c", high="a") == "true"
    assert check(kind="between", a="a", low="c", high="b") == "false"
    assert check(kind="above", a=["a", "b"], value=0.8) == "true"
    assert check(kind="below", a="c", value=0.4) == "false"
    assert check(kind="monotone", group="g") == "true"
    assert check(kind="monotone", group="h") == "false"
    assert check(kind="monotone", group="h", tolerance=0.5) == "true"
    assert check(kind="ge", a="zzz", b="a") is None
    assert check(kind="monotone", group="nope") is None


def test_a_near_tie_is_shown_with_the_digits_that_decide_it():
    values = {"bp": 0.97970, "sbp": 0.97966}
    holds, evidence = report.evaluate_check({"kind": "ge", "a": "sbp", "b": "bp"}, values.__getitem__, {}, list(values))
    assert holds == "false"
    assert evidence == "`sbp` 97.966% < `bp` 97.970%"


def test_flattened_history_columns():
    record = {"epoch": 1, "angle": [10.0, 20.0], "norms": {"W": [1.0, 2.0]}, "lr": 0.1}
    assert runner.flatten(record) == {
        "epoch": 1,
        "angle_1": 10.0,
        "angle_2": 20.0,
        "norms.W_1": 1.0,
        "norms.W_2": 2.0,
        "lr": 0.1,
    }


def test_a_diverging_run_is_recorded_and_reported(tmp_path):
    path = write_config(
        tmp_path / "boom.toml",
        BASE.replace('name = "mine"', 'name = "boom"')
        + """
    output = "linear"
    lr = 1e30

    [[variant]]
    name = "bp"
    algorithm = "bp"
    panel = "every run diverged"

    [[variant]]
    name = "top"
    algorithm = "top"
    lr = 0.01

    [[check]]
    claim = "bp is lowest"
    kind = "lowest"
    variant = "bp"
    """,
    )
    experiment = ex.load_experiment(path, seeds=1)
    outcome = go(experiment, tmp_path, figures=True)  # a panel with nothing to draw: no legend, no warning
    assert (tmp_path / "boom" / "final.png").is_file()
    assert outcome.diverged == ["boom/bp/seed0"]
    done = json.loads((tmp_path / "boom" / "runs" / "bp" / "seed0" / "done.json").read_text())
    assert done["status"] == "diverged"
    final_md = (tmp_path / "boom" / "final.md").read_text()
    assert "| `bp` | bp | 0 (+1 diverged) | diverged |" in final_md
    text = (tmp_path / "boom" / "report.md").read_text()
    assert "Diverged runs" in text and "[x] **true**: bp is lowest" in text
    assert not go(experiment, tmp_path).trained  # a diverged run is finished: not redone


# ---------------------------------------------------------------------------------------------- parallel, CLI


def histories(directory: Path) -> dict[str, list[dict[str, str]]]:
    result = {}
    for path in sorted(directory.rglob("history.csv")):
        rows = read_csv(path)
        for row in rows:
            row.pop("seconds")
        result[str(path.relative_to(directory))] = rows
    return result


def test_jobs_2_gives_the_same_numbers_as_jobs_1(tmp_path):
    experiment = small(tmp_path)
    go(experiment, tmp_path / "one", jobs=1)
    two = go(experiment, tmp_path / "two", jobs=2)
    assert len(two.trained) == 4 and not two.failed
    one_h, two_h = histories(tmp_path / "one"), histories(tmp_path / "two")
    assert len(one_h) == 4 and one_h == two_h
    assert (tmp_path / "one" / "mine" / "summary.csv").read_text() == (
        tmp_path / "two" / "mine" / "summary.csv"
    ).read_text()


def test_threads_follow_the_number_of_jobs():
    cores = runner.cores()
    assert ex.threads_per_run(1) == cores
    assert ex.threads_per_run(2) == max(1, cores // 2)
    assert ex.threads_per_run(10**6) == 1
    assert ex.threads_per_run(4, threads=3) == 3


def test_command_line(tmp_path, capsys):
    common = [
        "--out",
        str(tmp_path),
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--threads",
        "1",
        "--no-progress",
        "--set",
        "dataset=synthetic",
        "--set",
        "synthetic.train=100",
        "--set",
        "synthetic.test=30",
        "--set",
        "hidden=[6,6,6,6]",
    ]
    assert cli.main(["reproduce", "fig2", *common, "--dry-run"]) == 0
    assert "4 runs: 4 missing" in capsys.readouterr().out
    assert cli.main(["reproduce", "fig2", *common]) == 0
    out = capsys.readouterr().out
    assert "| `asrbp` | ASRBP (rho = 1) | 1 |" in out and "report:" in out
    assert cli.main(["reproduce", "fig2", *common, "--dry-run"]) == 0
    assert "4 runs: 4 complete" in capsys.readouterr().out
    assert cli.main(["reproduce", "fig2", *common, "--set", "lr=0.2"]) == 2
    assert "--force" in capsys.readouterr().err
    assert cli.main(["reproduce", "--list"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in SHIPPED)
    assert cli.main(["reproduce", "complexity", "--out", str(tmp_path)]) == 0
    assert "31,000" in capsys.readouterr().out
    config_file = write_config(tmp_path / "mine.toml", BASE + '[[variant]]\nname = "bp"\nalgorithm = "bp"\n')
    assert (
        cli.main(["run", str(config_file), "--out", str(tmp_path), "--threads", "1", "--no-progress", "--limit", "50"])
        == 0
    )
    stored = json.loads((tmp_path / "mine" / "runs" / "bp" / "seed1" / "config.json").read_text())
    assert stored["train_examples"] == 50 and stored["resolved"]["dataset"]["limit"] == 50
    assert cli.main(["run", str(tmp_path / "missing.toml")]) == 2
    assert "not found" in capsys.readouterr().err
    assert cli.main(["reproduce", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown experiment 'nope'" in capsys.readouterr().err


def test_configs_ship_inside_the_package():
    assert ex.CONFIG_DIR.parent == Path(ex.__file__).parent
    assert {p.stem for p in ex.CONFIG_DIR.glob("*.toml")} == set(SHIPPED)
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert "exclude" not in pyproject.split("[tool.scikit-build]")[1].split("\n[")[0]
    assert os.path.isdir(ex.CONFIG_DIR)


def test_diagnostics_columns_are_written_when_on(tmp_path):
    experiment = small(tmp_path, diagnostics=True, diagnostics_batch=30)
    assert experiment.runs()[0].resolved()["diagnostics"] == 30
    go(experiment, tmp_path)
    rows = read_csv(tmp_path / "mine" / "runs" / "srbp" / "seed0" / "history.csv")
    assert len(rows) == 2
    assert {"angle_signal_1", "angle_feedback_1", "norm_W_1", "norm_dW_1"} <= set(rows[0])
    assert 0.0 <= float(rows[1]["angle_signal_1"]) <= 180.0
    plain = small(tmp_path)
    with pytest.raises(ex.ConfigError, match="diagnostics: stored 30, now not set"):
        go(plain, tmp_path)


# The runs of these experiments as committed at d74e108 (the configs the 100-epoch x 5-seed sweeps were
# started from): the runner keys every run by Run.resolved() and refuses runs whose settings changed, so
# editing any of them would orphan hours of training. Variants may be added; these must not change.
# Digest: sha256 of json.dumps([run.resolved() for the listed variants' runs, in run order], sort_keys=True).
PINNED_RUNS = {
    "fig3": (45, "b751f7986a55b6f2b8e42dcf16d65b2d107cc60862db986653bd0653592acf94"),
    "fig4": (45, "637f046218a16a5b9b31c79bfb4a78f5476aa318690acec8145c006fd9c08487"),
    "controls": (110, "c5d751e1267914b1f0be1c01b291b4959269a302146c44f2dae137154708b381"),
    "fig7": (225, "a2f99288b827c32b9d99da78dbb34e52829744f40e7581403dd0acff0c9d8ef3"),
    "fig8": (120, "1cd1d677b0256c7c96bb77c40a54bfd57492024d49b5f7253f4b743f8d232641"),
    "fig9": (90, "4e5f14fe681024a1c9cbe5811625998ab0025d49be1d97e84fa1348177a84985"),
    "fig1": (45, "56e90b1a744e9137e2e8f4f7acd43878e129cb11f047bcd0a8ab9348e48a484c"),
    "fig2": (20, "115d43c396407fde39bacb1f243e2eed161cbc3876486ca1ff69db6c7b5d6a8f"),
    "deep": (20, "23056335275d01facb7f945760d84db93c218b3fa8e33d2a343b4a6d4c94da35"),
}
PINNED_VARIANTS = {
    "fig1": ["bp", "bp-nof", "sbp", "sbp-nof", "rbp", "rbp-nof", "srbp", "srbp-nof", "top"],
    "fig2": ["rbp", "arbp", "srbp", "asrbp"],
    "fig3": ["srbp"] + [f"sparse-srbp-p{p}" for p in ("0", "0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1")],
    "fig4": ["rbp"] + [f"sparse-rbp-p{p}" for p in ("0", "0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1")],
    "controls": [
        "rbp",
        "srbp",
        "top",
        "rbp-resample-zero-mean",
        "rbp-resample-sign",
        "srbp-mean-gaussian",
        "srbp-mean-uniform",
        "srbp-freeze-2",
        "srbp-freeze-1to2",
        "srbp-freeze-3",
        "srbp-freeze-1to3",
        "srbp-sign",
        "srbp-magnitude",
        "srbp-per-synapse",
        "srbp-linear",
        "top-linear",
        "srbp-logistic",
        "top-logistic",
        "srbp-relu",
        "top-relu",
        "srbp-relu-lr0.01",
        "top-relu-lr0.01",
    ],
    "fig7": ["bp", "rbp", "srbp"]
    + [f"{a}-q-bits{b}" for a in ("bp", "rbp", "srbp") for b in (1, 2, 3, 4, 6, 8, 10, 12, 16)]
    + [f"{a}-qm-bits{b}" for a in ("bp", "rbp", "srbp") for b in (2, 4, 6, 8, 10)],
    "fig8": ["bp", "rbp", "srbp"] + [f"{a}-q-bits{b}" for a in ("bp", "rbp", "srbp") for b in (1, 2, 3, 4, 6, 8, 12)],
    "fig9": ["bp", "rbp", "srbp"]
    + [f"{a}-drop-drop{p}" for a in ("bp", "rbp", "srbp") for p in (0.1, 0.25, 0.5, 0.75, 0.9)],
    "deep": ["bp", "rbp", "srbp", "top"],
}


@pytest.mark.parametrize("name", sorted(PINNED_RUNS))
def test_the_runs_of_the_full_sweeps_keep_their_settings(name):
    import hashlib

    experiment = ex.load_experiment(name)
    pinned = set(PINNED_VARIANTS[name])
    assert pinned <= {v.name for v in experiment.variants}
    runs = [run.resolved() for run in experiment.runs() if run.variant.name in pinned]
    count, digest = PINNED_RUNS[name]
    assert len(runs) == count
    assert hashlib.sha256(json.dumps(runs, sort_keys=True).encode()).hexdigest() == digest


# ------------------------------------------------------------------------------------------- checks that mean something


def _stats(values):
    """A `value` function over Stats; a bare float means one seed (no spread)."""

    def value(name):
        if name not in values:
            raise report.NotMeasured(f"variant {name!r} is not in this experiment")
        return values[name]

    return value


BITS = {f"q-bits{b}": {"quantize_bits": b} for b in (2, 4, 6, 8, 10)}


def test_graceful_flags_accuracy_lost_as_bits_are_removed():
    # A fig7-like curve, 82.9 -> 96.8 from 2 to 10 bits: removing bits 8 -> 6 loses 6.85 points.
    curve = dict(zip(BITS, (0.8289, 0.8289, 0.8956, 0.9641, 0.9678)))
    groups = {"q": list(reversed(BITS))}  # listed out of order: the check sorts by the swept value
    verdict, evidence = report.evaluate_check(
        {"kind": "graceful", "group": "q", "tolerance": 0.01}, _stats(curve), groups, list(curve), swept=BITS
    )
    assert verdict == "false"
    assert "largest loss 6.85 points, from bits 8 to bits 6" in evidence
    assert evidence.index("bits 10: 96.78%") < evidence.index("bits 2: 82.89%")  # from the most precise down
    # The old reading (falls as bits are *added*) saw nothing wrong with the same curve.
    assert (
        report.evaluate_check(
            {"kind": "monotone", "group": "q", "tolerance": 0.01}, _stats(curve), groups, list(curve), swept=BITS
        )[0]
        == "true"
    )
    flat = dict(zip(BITS, (0.960, 0.962, 0.965, 0.964, 0.966)))
    verdict, evidence = report.evaluate_check(
        {"kind": "graceful", "group": "q", "tolerance": 0.01}, _stats(flat), groups, list(flat), swept=BITS
    )
    assert verdict == "true" and "largest loss 0.30 points, from bits 6 to bits 4" in evidence


def test_a_difference_within_one_standard_error_is_a_tie():
    S = report.Stat
    # Fig. 1's SBP against BP: 0.008 points apart, spreads 0.08-0.12 over 5 seeds.
    tied = {"sbp": S(0.97966, 0.0008, 5), "bp": S(0.97974, 0.0012, 5)}
    verdict, evidence = report.evaluate_check({"kind": "ge", "a": "sbp", "b": "bp"}, _stats(tied), {}, list(tied))
    assert verdict == "tie"
    assert "within one standard error, 0.06 points: tie" in evidence
    # The same means with no spread known (one seed) are decided strictly, as is a gap beyond the error.
    one_seed = {"sbp": S(0.97966), "bp": S(0.97974)}
    assert (
        report.evaluate_check({"kind": "ge", "a": "sbp", "b": "bp"}, _stats(one_seed), {}, ["sbp", "bp"])[0] == "false"
    )
    apart = {"sbp": S(0.9770, 0.0008, 5), "bp": S(0.9797, 0.0012, 5)}
    assert report.evaluate_check({"kind": "ge", "a": "sbp", "b": "bp"}, _stats(apart), {}, ["sbp", "bp"])[0] == "false"
    assert report.evaluate_check({"kind": "ge", "a": "bp", "b": "sbp"}, _stats(apart), {}, ["sbp", "bp"])[0] == "true"
    # A margin moves the bar the tie is judged against.
    assert (
        report.evaluate_check(
            {"kind": "ge", "a": "sbp", "b": "bp", "margin": -0.0027}, _stats(apart), {}, ["sbp", "bp"]
        )[0]
        == "tie"
    )
    # Thresholds, extremes and betweenness tie the same way; one false among pairs makes the check false.
    near = {"a": S(0.8995, 0.002, 4), "b": S(0.95, 0.001, 4), "c": S(0.9004, 0.002, 4)}
    value = _stats(near)
    assert report.evaluate_check({"kind": "above", "a": "a", "value": 0.90}, value, {}, list(near))[0] == "tie"
    assert report.evaluate_check({"kind": "lowest", "variant": "a"}, value, {}, list(near))[0] == "tie"
    assert (
        report.evaluate_check({"kind": "between", "a": "c", "low": "a", "high": "b"}, value, {}, list(near))[0] == "tie"
    )
    assert report.evaluate_check({"kind": "ge", "a": ["b", "a"], "b": ["a", "b"]}, value, {}, list(near))[0] == "false"
    # A tolerance is the claim's own bar: close is never a tie.
    assert (
        report.evaluate_check({"kind": "close", "a": "a", "b": "c", "tolerance": 0.0001}, value, {}, list(near))[0]
        == "false"
    )


def test_a_claim_that_holds_by_construction_is_not_counted_as_agreement():
    values = {"srbp-mean": 0.9692, "srbp": 0.9692, "top": 0.8289}
    check = {
        "kind": "close",
        "a": "srbp-mean",
        "b": "srbp",
        "tolerance": 0.005,
        "construction": "the mean times the error sum is zero",
    }
    verdict, evidence = report.evaluate_check(check, _stats(values), {}, list(values))
    assert verdict == "holds by construction"
    assert evidence.endswith("By construction: the mean times the error sum is zero")
    # Should the runs contradict the construction, that is a failure pointing at the code.
    verdict, evidence = report.evaluate_check(dict(check, b="top"), _stats(values), {}, list(values))
    assert verdict == "false" and "a failure points at the implementation" in evidence


def test_alike_compares_each_groups_loss_against_its_own_float_run():
    swept = {f"{g}-bits{b}": {"quantize_bits": b} for g in ("bp", "rbp") for b in (1, 4)}
    groups = {"bp": ["bp-bits1", "bp-bits4"], "rbp": ["rbp-bits1", "rbp-bits4"]}
    # Absolute accuracies differ by 2.7 points at 4 bits, but each loses about the same against its float run.
    values = {
        "bp-float": 0.9740,
        "rbp-float": 0.9700,
        "bp-bits4": 0.9696,
        "rbp-bits4": 0.9429,
        "bp-bits1": 0.9690,
        "rbp-bits1": 0.8160,
    }
    values["rbp-float"] = 0.9429 + (0.9740 - 0.9696) + 0.001  # rbp loses 0.54 points at 4 bits, bp 0.44
    check = {"kind": "alike", "group": ["bp", "rbp"], "tolerance": 0.02}
    refs = {"bp": "bp-float", "rbp": "rbp-float"}
    verdict, evidence = report.evaluate_check(check, _stats(values), groups, list(values), swept, refs)
    assert verdict == "false"
    assert "bits 4: `bp` loses 0.44 points, `rbp` loses 0.54 points (spread 0.10 points)" in evidence
    assert evidence.endswith("spread > 2.00 points at bits 1")
    verdict, _ = report.evaluate_check(dict(check, values=[4]), _stats(values), groups, list(values), swept, refs)
    assert verdict == "true"
    assert report.evaluate_check(check, _stats(values), groups, list(values), swept, {})[0] is None  # no reference


def test_reaches_names_where_a_threshold_holds_and_first_fails():
    swept = {f"g-bits{b}": {"quantize_bits": b} for b in (1, 2, 3, 4, 8)}
    groups = {"g": list(swept)}
    values = dict(zip(swept, (0.816, 0.893, 0.921, 0.943, 0.95)))
    check = {"kind": "reaches", "group": "g", "value": 0.90, "at": 4}
    verdict, evidence = report.evaluate_check(check, _stats(values), groups, list(values), swept)
    assert verdict == "true"
    assert "holds from bits 3 upwards; first failure going down at bits 2 (89.30%)" in evidence
    verdict, _ = report.evaluate_check(dict(check, at=2), _stats(values), groups, list(values), swept)
    assert verdict == "false"
    values["g-bits8"] = 0.85  # a failure above `at` is a failure too
    verdict, evidence = report.evaluate_check(check, _stats(values), groups, list(values), swept)
    assert verdict == "false" and "fails already at bits 8" in evidence


def test_new_check_kinds_are_validated_when_parsed(tmp_path):
    body = (
        BASE
        + """
    [[variant]]
    name = "q"
    algorithm = "bp"
    sweep = { lr = [0.1, 0.2] }

    [[check]]
    claim = "x"
    kind = "reaches"
    group = "q"
    value = 0.5
    """
    )
    with pytest.raises(ex.ConfigError, match="kind 'reaches' needs group, value, at; 'at' is missing"):
        ex.load_experiment(write_config(tmp_path / "a.toml", body))
    with pytest.raises(ex.ConfigError, match="construction must be the one-line reason"):
        ex.load_experiment(write_config(tmp_path / "b.toml", body + 'at = 0.1\nconstruction = ""\n'))
    with pytest.raises(ex.ConfigError, match="construction applies to 'close' and 'equals' checks, not 'reaches'"):
        ex.load_experiment(write_config(tmp_path / "c.toml", body + 'at = 0.1\nconstruction = "x"\n'))


# --------------------------------------------------------------------------------- provenance, rebuilt reports, figures


def test_source_revision_is_the_checkouts_commit_or_none():
    import subprocess

    source = runner.source_revision()
    package = Path(runner.__file__).resolve().parent.parent
    tracked = (
        subprocess.run(
            ["git", "-C", str(package), "ls-files", "--error-unmatch", "__init__.py"], capture_output=True
        ).returncode
        == 0
    )
    if not tracked:  # an installed wheel: no commit to claim
        assert source is None
        return
    head = subprocess.run(["git", "-C", str(package), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert source["commit"] == head.strip() and isinstance(source["dirty"], bool)
    assert runner.describe_source(source).startswith(f"git {head.strip()[:12]}")
    assert runner.describe_source(None) == "not from a git checkout (no commit recorded)"


def test_provenance_is_written_and_a_mixed_commit_folder_is_said(tmp_path):
    experiment = tiny("fig2", seeds=2)
    go(experiment, tmp_path)
    directory = tmp_path / "fig2"
    source = runner.source_revision()
    assert json.loads((directory / "experiment.json").read_text())["source"] == source
    config_file = directory / "runs" / "srbp" / "seed1" / "config.json"
    assert json.loads(config_file.read_text())["source"] == source
    text = (directory / "report.md").read_text()
    assert f"- Runs: all {len(experiment.runs())} from the same code: {runner.describe_source(source)}" in text
    assert f", {runner.describe_source(source)}, Python " in text  # the invocation's own code
    stored = json.loads(config_file.read_text())
    stored["source"] = {"commit": "0123456789abcdef0123456789abcdef01234567", "dirty": True}
    config_file.write_text(json.dumps(stored))
    go(experiment, tmp_path)  # nothing to train: the report is rewritten from the run folders
    text = (directory / "report.md").read_text()
    assert "**made at different commits**" in text
    assert "git 0123456789ab with uncommitted changes: 1 run(s)" in text
    del stored["source"]  # a run made before runs recorded their commit
    config_file.write_text(json.dumps(stored))
    go(experiment, tmp_path)
    assert "commit not recorded (an older run): 1 run(s)" in (directory / "report.md").read_text()


def test_a_report_rebuilt_from_the_tables_checks_the_same_numbers(tmp_path):
    experiment = tiny("fig1", seeds=2)
    go(experiment, tmp_path, figures=True)
    original = tmp_path / "fig1"
    copy = tmp_path / "committed" / "fig1"
    copy.mkdir(parents=True)
    for name in ("experiment.json", "summary.csv", "final.csv"):  # what docs/results keeps
        (copy / name).write_bytes((original / name).read_bytes())
    report.rebuild_report(copy)
    rebuilt, fresh = (copy / "report.md").read_text(), (original / "report.md").read_text()

    def checks(text):
        return [line for line in text.splitlines() if line.startswith("- [")]

    assert checks(rebuilt) == checks(fresh) and len(checks(fresh)) == len(experiment.checks)
    assert "read back from `summary.csv` and `final.csv`" in rebuilt and "- This report: rebuilt on" in rebuilt
    assert (copy / "accuracy.png").is_file()
    (copy / "final.csv").write_text("variant,label,n\nbp,BP,2\n")
    with pytest.raises(ValueError, match="no rows for variant"):
        report.rebuild_report(copy, figures=False)


def test_crowded_experiments_are_drawn_as_small_multiples(tmp_path):
    from rbp_native.experiments import plots

    controls = ex.load_experiment("controls")
    layout = plots.panels(controls)
    assert len(layout) == 6 and all(len(members) <= 8 for members in layout.values())
    assert [v.name for v in layout["(4) frozen layers"]][0] == "srbp"  # the baseline drawn beside the variants
    assert {v.name for vs in layout.values() for v in vs} == {v.name for v in controls.variants}
    fig7 = ex.load_experiment("fig7")
    layout = plots.panels(fig7)
    assert list(layout) == ["bp-q", "rbp-q", "srbp-q", "bp-qm", "rbp-qm", "srbp-qm"]
    assert [v.name for v in layout["rbp-qm"]][-1] == "rbp"  # each group with its float reference
    experiment = tiny("controls")
    outcome = go(experiment, tmp_path, figures=True)
    assert (tmp_path / "controls" / "final.png").is_file()
    assert "![final](final.png)" in outcome.report.read_text()


def test_sparse_feedback_rescaled_to_the_dense_variance():
    """variants.toml writes 1/sqrt(p) as a number: at the unit scale it restores the dense variance exactly."""
    experiment = ex.load_experiment("variants")
    for variant in experiment.variants:
        options = variant.options
        if "sparse" not in variant.name:
            continue
        p = options["feedback_density"]
        scale = options["feedback_scale"]
        if "rescaled" in variant.name:
            assert scale == pytest.approx(1 / math.sqrt(p), rel=1e-15) and p * scale**2 == pytest.approx(1.0)
        else:
            assert scale == "unit"
    scale = ex.load_experiment("scale")
    assert {v.options.get("feedback_scale", "glorot") for v in scale.groups()["rbp-q-unit"]} == {"unit"}
    assert scale.variant("rbp-q-unit-bits4").reference == "rbp-unit"
