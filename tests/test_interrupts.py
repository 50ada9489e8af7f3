"""Ctrl-C and SIGTERM on the command line, and exact resume of `train` and of the experiment runner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import processes
import rbp_native as rbp
from idx_files import write_set
from rbp_native.cli import main


@pytest.fixture()
def mnist_like(tmp_path, monkeypatch):
    """MNIST-shaped IDX files; an epoch of the `SLOW` net at batch 1 takes about two seconds."""
    rng = np.random.default_rng(0)
    raw = {
        "train-images": rng.integers(0, 256, size=(8000, 784), dtype=np.uint8),
        "train-labels": rng.integers(0, 10, size=8000).astype(np.uint8),
        "test-images": rng.integers(0, 256, size=(200, 784), dtype=np.uint8),
        "test-labels": rng.integers(0, 10, size=200).astype(np.uint8),
    }
    write_set(tmp_path / "data" / "mnist", raw)
    monkeypatch.setenv("RBP_NATIVE_DATA", str(tmp_path / "data"))
    return tmp_path


def history_without_timings(out: Path) -> list[dict]:
    records = json.loads((out / "history.json").read_text())["epochs"]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def assert_same_run(a: Path, b: Path) -> None:
    assert history_without_timings(a) == history_without_timings(b)
    with np.load(a / "model.npz", allow_pickle=False) as x, np.load(b / "model.npz", allow_pickle=False) as y:
        assert sorted(x.files) == sorted(y.files)
        for name in x.files:
            np.testing.assert_array_equal(x[name], y[name])


TRAIN = [
    "train",
    "--algorithm",
    "srbp",
    "--hidden",
    "32",
    "16",
    "--momentum",
    "0.5",
    "--channel-dropout",
    "0.1",
    "--threads",
    "1",
    "--no-progress",
]


def test_train_resumes_at_epoch_boundaries_and_refuses_other_options(mnist_like, capsys):
    straight, parts = mnist_like / "straight", mnist_like / "parts"
    assert main([*TRAIN, "--batch-size", "50", "--epochs", "3", "--out", str(straight)]) == 0
    assert main([*TRAIN, "--batch-size", "50", "--epochs", "1", "--out", str(parts)]) == 0
    # Without --resume an existing run is not overwritten.
    assert main([*TRAIN, "--batch-size", "50", "--epochs", "3", "--out", str(parts)]) == 2
    assert "--resume" in capsys.readouterr().err
    # Other options refuse to resume...
    assert main([*TRAIN, "--batch-size", "50", "--epochs", "3", "--lr", "0.05", "--out", str(parts), "--resume"]) == 2
    assert "trainer.lr: stored 0.1, now 0.05" in capsys.readouterr().err
    # ...the same options continue exactly.
    assert (
        main(
            [*TRAIN, "--batch-size", "50", "--epochs", "2", "--checkpoint-every", "7", "--out", str(parts), "--resume"]
        )
        == 0
    )
    assert main([*TRAIN, "--batch-size", "50", "--epochs", "3", "--out", str(parts), "--resume"]) == 0
    assert "1 of 3 epochs to train" in capsys.readouterr().out
    assert_same_run(straight, parts)
    # Resuming a finished run trains nothing and keeps the result.
    assert main([*TRAIN, "--batch-size", "50", "--epochs", "3", "--out", str(parts), "--resume"]) == 0
    assert_same_run(straight, parts)


def run_cli(args, env, sigint_ignored=False):
    """The CLI in a new process; `sigint_ignored` starts it as a non-interactive shell starts a
    background job (`rbp-native ... &` in a script): with SIGINT ignored, which its children inherit
    (tests/processes.py)."""
    return subprocess.Popen(
        [sys.executable, "-m", "rbp_native", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=processes.sigint_ignored if sigint_ignored else processes.sigint_default,
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_train_stops_within_a_second_and_resumes_exactly(mnist_like, sig):
    env = dict(os.environ)
    straight, parts = mnist_like / "straight", mnist_like / "parts"
    common = [*TRAIN, "--hidden", "256", "128", "--batch-size", "1", "--epochs", "2"]
    process = run_cli([*common, "--out", str(parts)], env)
    assert process.stdout.readline().startswith("rbp-native:")  # data loaded, training starts
    time.sleep(0.5)
    sent = time.perf_counter()
    process.send_signal(sig)
    _, err = process.communicate(timeout=30)
    elapsed = time.perf_counter() - sent
    assert process.returncode == 130, err
    assert elapsed < 1.0, f"stopped {elapsed:.2f} s after the signal"
    assert "continue with the same command and --resume" in err
    trainer = rbp.Trainer.load(parts / "checkpoint.npz")
    assert trainer.updates > 0
    assert main([*common, "--out", str(parts), "--resume"]) == 0
    assert main([*common, "--out", str(straight)]) == 0
    assert_same_run(straight, parts)


CONFIG = """
[experiment]
name = "long"
dataset = "synthetic"
epochs = 3
seeds = 1
train_metrics = "running"
synthetic = {{ train = {train}, test = 100, features = 64, classes = 4 }}

[defaults]
hidden = [256, 256]
batch_size = 1
momentum = 0.5

[[variant]]
name = "srbp"
algorithm = "srbp"

[[variant]]
name = "rbp"
algorithm = "rbp"
"""


def finished_histories(directory: Path) -> dict[str, list]:
    result = {}
    for path in sorted(directory.rglob("history.json")):
        records = json.loads(path.read_text())["epochs"]
        result[str(path.relative_to(directory))] = [{k: v for k, v in r.items() if k != "seconds"} for r in records]
    return result


@pytest.mark.parametrize(
    "jobs,sig,sigint_ignored", [(1, signal.SIGINT, False), (2, signal.SIGTERM, False), (2, signal.SIGTERM, True)]
)
def test_reproduce_stops_promptly_and_continues_runs_from_their_checkpoints(tmp_path, jobs, sig, sigint_ignored):
    """Also for a driver started with SIGINT ignored (a background job of a script), stopped by `kill`:
    its workers still take the SIGINT by which it stops them."""
    config = tmp_path / "long.toml"
    config.write_text(textwrap.dedent(CONFIG.format(train=12000)))
    env = dict(os.environ)
    common = ["run", str(config), "--jobs", str(jobs), "--threads", "1", "--no-progress"]
    process = run_cli([*common, "--out", str(tmp_path / "parts")], env, sigint_ignored)
    runs = tmp_path / "parts" / "long" / "runs"
    deadline = time.monotonic() + 60
    while not list(runs.rglob("history.json")) and time.monotonic() < deadline:  # an epoch done somewhere
        time.sleep(0.05)
    time.sleep(0.3)
    sent = time.perf_counter()
    process.send_signal(sig)  # to the driver alone: it must stop its workers itself
    _, err = process.communicate(timeout=60)
    elapsed = time.perf_counter() - sent
    assert process.returncode == 130, err
    assert elapsed < 2.0, f"stopped {elapsed:.2f} s after the signal"
    checkpoints = list(runs.rglob("checkpoint.npz"))
    assert checkpoints and len(list(runs.rglob("done.json"))) < 2
    finished = subprocess.run(
        [sys.executable, "-m", "rbp_native", *common, "--out", str(tmp_path / "parts")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stderr
    straight = subprocess.run(
        [sys.executable, "-m", "rbp_native", *common, "--out", str(tmp_path / "straight")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert straight.returncode == 0, straight.stderr
    a = finished_histories(tmp_path / "straight" / "long" / "runs")
    b = finished_histories(tmp_path / "parts" / "long" / "runs")
    assert len(a) == 2 and a == b
