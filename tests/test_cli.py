"""The `rbp-native train` command and the alignment diagnostics."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

import rbp_native as rbp
from rbp_native import checkpoint
from rbp_native.cli import main


def test_train_writes_history_config_and_model(tiny_mnist, capsys):
    out = tiny_mnist / "run"
    code = main(
        [
            "train",
            "--algorithm",
            "srbp",
            "--epochs",
            "2",
            "--hidden",
            "16",
            "8",
            "--batch-size",
            "20",
            "--channel-dropout",
            "0.2",
            "--quantize",
            "signal",
            "--quantize-bits",
            "6",
            "--diagnostics",
            "--threads",
            "1",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    with open(out / "history.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"angle_signal_1", "angle_feedback_2", "norm_dW_3"} <= set(rows[0])
    config = json.loads((out / "config.json").read_text())  # the layout of a sweep's run folder
    assert config["trainer_config"]["channel_dropout"] == 0.2 and config["trainer_config"]["quantize_bits"] == 6
    assert config["network_config"]["sizes"] == [784, 16, 8, 10]
    assert config["resolved"]["dataset"] == {"name": "mnist"} and config["resolved"]["epochs"] == 2
    assert config["threads"] == 1 and "version" in config and "source" in config
    assert json.loads((out / "done.json").read_text())["status"] == "complete"
    net = rbp.MLP.load(out / "model.npz")
    assert net.sizes == [784, 16, 8, 10]
    printed = capsys.readouterr().out
    assert "final: test accuracy" in printed


def test_train_resume_refuses_other_options_untouched_and_forced_reads_the_checkpoint_once(
    tiny_mnist, monkeypatch, capsys
):
    out = tiny_mnist / "run"
    common = ["train", "--hidden", "8", "--batch-size", "40", "--threads", "1", "--no-progress", "--out", str(out)]
    assert main([*common, "--epochs", "1"]) == 0
    shutil.copytree(tiny_mnist / "data" / "mnist", tiny_mnist / "data" / "fashion-mnist")
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    for flags, difference in [
        (["--threads", "2"], "trainer.threads: stored 1, now 2"),  # bit for bit needs the same thread count
        (["--dataset", "fashion-mnist"], "dataset.name: stored 'mnist', now 'fashion-mnist'"),
        (["--momentum", "0.5"], "trainer.momentum: stored 0.0, now 0.5"),
    ]:
        capsys.readouterr()
        assert main([*common, "--epochs", "2", "--resume", *flags]) == 2
        assert difference in capsys.readouterr().err
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before  # done.json included
    reads = []
    read = checkpoint.read
    monkeypatch.setattr(checkpoint, "read", lambda path: reads.append(path) or read(path))
    assert main([*common, "--epochs", "2", "--resume", "--force", "--lr", "0.05"]) == 0
    assert reads == [out / "checkpoint.npz"]
    assert "resuming" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["resolved"]["trainer"]["lr"] == 0.05 and config["resumed"]["epochs_done"] == 1
    assert [r["epoch"] for r in json.loads((out / "history.json").read_text())["epochs"]] == [1, 2]


def test_train_reports_bad_options_without_a_traceback(tiny_mnist, capsys):
    assert (
        main(
            [
                "train",
                "--algorithm",
                "bp",
                "--feedback-density",
                "0.5",
                "--epochs",
                "1",
                "--out",
                str(tiny_mnist / "bad"),
            ]
        )
        == 2
    )
    assert "feedback algorithms" in capsys.readouterr().err


def test_train_reports_missing_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RBP_NATIVE_DATA", str(tmp_path / "nothing"))
    monkeypatch.setattr("rbp_native.datasets.SYSTEM_DIRS", {"mnist": (), "fashion-mnist": ()})
    assert main(["train", "--no-download", "--epochs", "1", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "error: mnist data not found" in err and "--no-download" in err


@pytest.mark.parametrize("flags,download", [([], True), (["--download"], True), (["--no-download"], False)])
def test_train_downloads_missing_data_unless_told_not_to(tmp_path, monkeypatch, capsys, flags, download):
    calls = []

    def load(name, root=None, download=False, **layout):
        calls.append(download)
        raise rbp.datasets.DownloadError("offline")

    monkeypatch.setattr(rbp.datasets, "load", load)
    assert main(["train", *flags, "--out", str(tmp_path / "r")]) == 2
    assert calls == [download]
    assert "rbp-native: error: offline" in capsys.readouterr().err  # a clear message, no traceback


def test_train_help_shows_no_default_for_on_off_flags(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--no-derivative", "--no-progress", "--congruent", "--no-download"):
        assert flag in text
        after = text[text.index(flag + " ") :]
        next_option = after.index(" --", len(flag))
        assert "default: True" not in after[:next_option] and "default: False" not in after[:next_option]
    assert "--hidden N [N ...] hidden layer widths (default: [100, 100, 100, 100])" in text


def test_alignment_angles():
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(50, 6))
    y = rng.integers(0, 3, 50)
    net = rbp.MLP([6, 5, 4, 3], dtype="float64", seed=2)
    bp = rbp.Trainer(net, algorithm="bp").alignment(x, y)
    assert bp["angle_signal_1"] == pytest.approx(0, abs=1e-5) and bp["angle_signal_2"] == pytest.approx(0, abs=1e-5)
    assert "angle_feedback_1" not in bp
    rbp_trainer = rbp.Trainer(net, algorithm="rbp")
    rbp_trainer.set_feedback([w.T for w in net.weights[1:]])
    aligned = rbp_trainer.alignment(x, y)
    assert aligned["angle_feedback_1"] == pytest.approx(0, abs=1e-5)
    assert aligned["angle_signal_1"] == pytest.approx(0, abs=1e-5)
    rbp_trainer.set_feedback([-w.T for w in net.weights[1:]])
    flipped = rbp_trainer.alignment(x, y)
    assert flipped["angle_feedback_2"] == pytest.approx(180, abs=1e-5)
    assert flipped["norm_W_1"] == pytest.approx(np.linalg.norm(net.weights[0]))
    top = rbp.Trainer(net, algorithm="top").alignment(x, y)
    assert np.isnan(top["angle_signal_1"])


def test_diagnostics_do_not_change_training():
    rng = np.random.default_rng(2)
    x = rng.uniform(size=(200, 6)).astype(np.float32)
    y = rng.integers(0, 3, 200)
    weights = []
    for diagnostics in (False, True):
        net = rbp.MLP([6, 5, 3], seed=1)
        trainer = rbp.Trainer(net, algorithm="srbp", channel_dropout=0.3, seed=1, batch_size=20, threads=1)
        history = trainer.fit((x, y), epochs=2, progress=False, diagnostics=diagnostics, diagnostics_batch=50)
        weights.append(net.weights[0])
        assert ("angle_signal_1" in history[-1]) == diagnostics
    np.testing.assert_array_equal(weights[0], weights[1])
