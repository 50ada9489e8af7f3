"""Checkpoints and exact resume, interruption, divergence and thread safety of the trainer."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import zipfile

import numpy as np
import pytest

import processes
import rbp_native as rbp
from rbp_native import checkpoint as ckpt


def data(rows=157, features=20, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((rows, features), dtype=np.float32)
    y = rng.integers(0, classes, rows).astype(np.int64)
    return x, y


def without_timings(history):
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history.records]


def assert_same_training_state(a: rbp.Trainer, b: rbp.Trainer) -> None:
    for u, v in zip(a.net.weights, b.net.weights):
        np.testing.assert_array_equal(u, v)
    for u, v in zip(a.net.biases, b.net.biases):
        np.testing.assert_array_equal(u, v)
    for u, v in zip(a.feedback, b.feedback):
        np.testing.assert_array_equal(u, v)
    assert a.updates == b.updates
    assert without_timings(a.history) == without_timings(b.history)


CASES = {
    "bp": dict(algorithm="bp"),
    "bp-momentum": dict(algorithm="bp", momentum=0.9),
    "rbp-momentum-dropout": dict(algorithm="rbp", momentum=0.5, channel_dropout=0.3),
    "srbp-quantize-stochastic": dict(
        algorithm="srbp", quantize="signal", quantize_bits=4, quantize_rounding="stochastic"
    ),
    "srbp-update-quantize": dict(algorithm="srbp", quantize="update", quantize_rounding="stochastic", momentum=0.5),
    "asrbp-momentum": dict(algorithm="asrbp", momentum=0.9),
    "arbp": dict(algorithm="arbp"),
    "rbp-sparse-resampled": dict(
        algorithm="rbp", feedback_density=0.2, feedback_storage="sparse", resample="zero_mean"
    ),
    "srbp-sign-concordant": dict(algorithm="srbp", resample="sign_concordant"),
    "srbp-per-synapse": dict(algorithm="srbp", per_synapse=True, momentum=0.5),
    "sbp-nof-transform": dict(algorithm="sbp", derivative=False, signal_transform="sign"),
    "top": dict(algorithm="top", momentum=0.3),
}


def make(options, *, dtype="float32", connectivity=None, sizes=(20, 16, 12, 4)):
    net = rbp.MLP(list(sizes), dtype=dtype, seed=1, connectivity=connectivity)
    return rbp.Trainer(net, batch_size=10, seed=3, lr=0.05, **options)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("every", [None, 7])
def test_resume_is_bit_identical(tmp_path, name, every):
    x, y = data()
    test = data(40, seed=1)
    straight = make(CASES[name])
    straight.fit((x, y), epochs=3, eval=test, progress=False)

    first = make(CASES[name])
    path = tmp_path / "run.npz"
    first.fit((x, y), epochs=1, eval=test, progress=False, checkpoint=path, checkpoint_every=every)
    # Stop part-way through epoch 2, as an interruption between batches does.
    first._core.train_epoch(x, y, None, 10, 5)
    assert first.epoch_pending
    first.save(path)
    del first

    resumed = rbp.Trainer.load(path)
    assert resumed.epoch_pending and len(resumed.history) == 1
    resumed.fit((x, y), epochs=2, eval=test, progress=False, checkpoint=path, checkpoint_every=every)
    assert_same_training_state(straight, resumed)
    assert not resumed.epoch_pending
    again = rbp.Trainer.load(path)  # the final checkpoint holds the final state
    assert_same_training_state(straight, again)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_resume_with_sparse_connectivity_and_diagnostics(tmp_path, dtype):
    x, y = data()
    options = dict(algorithm="srbp", momentum=0.5)
    straight = make(options, dtype=dtype, connectivity=0.5)
    straight.fit((x, y), epochs=2, progress=False, diagnostics=True, diagnostics_batch=30)
    first = make(options, dtype=dtype, connectivity=0.5)
    path = tmp_path / "c.npz"
    first.fit(
        (x, y), epochs=1, progress=False, diagnostics=True, diagnostics_batch=30, checkpoint=path, checkpoint_every=4
    )
    resumed = rbp.Trainer.load(path)
    resumed.fit((x, y), epochs=1, progress=False, diagnostics=True, diagnostics_batch=30)
    assert_same_training_state(straight, resumed)
    assert "norm_dW_1" in resumed.history[-1]


class InterruptOnce:
    """Stands in for the core and raises KeyboardInterrupt at the n-th call of `method` (as Ctrl-C
    during that call does), delegating everything else."""

    def __init__(self, core, method, at=1):
        self._core, self._method, self._left = core, method, at

    def __getattr__(self, name):
        attribute = getattr(self._core, name)
        if name != self._method:
            return attribute
        if not callable(attribute):  # a property: the n-th read raises
            self._left -= 1
            if self._left == 0:
                raise KeyboardInterrupt
            return attribute

        def wrapped(*args, **kwargs):
            self._left -= 1
            if self._left == 0:
                raise KeyboardInterrupt
            return attribute(*args, **kwargs)

        return wrapped


@pytest.mark.parametrize(
    "method,at",
    [
        ("evaluate", 2),
        ("train_epoch", 2),
        ("train_epoch", 3),
        ("unrecorded_epoch", 4),  # just after the core finished epoch 2, before Python saw it
        ("acknowledge_epoch", 2),  # epoch 2 recorded in the history, not yet acknowledged to the core
    ],
)
def test_interrupted_fit_checkpoints_and_resumes_exactly(tmp_path, method, at):
    x, y = data()
    test = data(40, seed=1)
    options = dict(algorithm="rbp", momentum=0.9)
    straight = make(options)
    straight.fit((x, y), epochs=3, eval=test, progress=False)
    first = make(options)
    real = first._core
    first._core = InterruptOnce(real, method, at)
    path = tmp_path / "c.npz"
    with pytest.raises(KeyboardInterrupt):
        first.fit((x, y), epochs=3, eval=test, progress=False, checkpoint=path, checkpoint_every=6)
    first._core = real
    resumed = rbp.Trainer.load(path)
    resumed.fit((x, y), epochs=3 - len(resumed.history), eval=test, progress=False)
    assert_same_training_state(straight, resumed)


def test_restore_refuses_other_options_unless_forced(tmp_path):
    x, y = data()
    trainer = make(dict(algorithm="srbp"))
    trainer.fit((x, y), epochs=1, progress=False)
    path = tmp_path / "c.npz"
    trainer.save(path)
    other = rbp.Trainer(rbp.MLP([20, 16, 12, 4], seed=1), algorithm="srbp", batch_size=10, seed=3, lr=0.1)
    with pytest.raises(ValueError, match=r"trainer\.lr: stored 0\.05, now 0\.1"):
        other.restore(path)
    other.restore(path, force=True)
    np.testing.assert_array_equal(other.net.weights[0], trainer.net.weights[0])
    wrong = rbp.Trainer(rbp.MLP([20, 8, 4], seed=1), algorithm="srbp", batch_size=10, seed=3, lr=0.05)
    with pytest.raises(ValueError, match="sizes"):
        wrong.restore(path)
    with pytest.raises(ckpt.CheckpointError, match="inconsistent checkpoint.*shape"):
        wrong.restore(path, force=True)


def test_pending_epoch_with_other_data_and_discard():
    x, y = data()
    trainer = make(dict(algorithm="bp"))
    trainer._core.train_epoch(x, y, None, 10, 3)
    assert trainer.epoch_pending
    with pytest.raises(ValueError, match="unfinished epoch over 157 examples is pending"):
        trainer.fit(data(100), epochs=1, progress=False)
    trainer.discard_epoch()
    assert not trainer.epoch_pending
    trainer.fit(data(100), epochs=1, progress=False)


def saved(tmp_path, **options):
    x, y = data()
    trainer = make(dict(algorithm="srbp", momentum=0.5, **options))
    trainer.fit((x, y), epochs=1, progress=False)
    path = tmp_path / "good.npz"
    trainer.save(path)
    return path


def rewrite(path, target, change):
    with np.load(path, allow_pickle=False) as f:
        members = {k: f[k] for k in f.files}
    change(members)
    np.savez(target, **members)
    return target


def written(target, content):
    target.write_bytes(content)
    return target


def flipped(content):
    """The file with one byte changed inside the first array's data (the zip's CRC catches it)."""
    data = bytearray(content)
    data[len(data) // 3] ^= 0xFF
    return bytes(data)


def set_meta(**fields):
    def change(members):
        meta = json.loads(str(members["meta"]))
        for key, value in fields.items():
            if value is None:
                meta.pop(key, None)
            else:
                meta[key] = value
        members["meta"] = np.array(json.dumps(meta))

    return change


def set_state(**fields):
    def change(members):
        meta = json.loads(str(members["meta"]))
        meta["state"].update(fields)
        members["meta"] = np.array(json.dumps(meta))

    return change


@pytest.mark.parametrize(
    "make_bad,message",
    [
        (lambda p, t: written(t, p.read_bytes()[: len(p.read_bytes()) // 2]), "not a readable checkpoint"),
        (lambda p, t: written(t, b"not a zip file at all"), "not a readable checkpoint"),
        (lambda p, t: written(t, b""), "not a readable checkpoint"),
        (lambda p, t: written(t, flipped(p.read_bytes())), "not a readable checkpoint"),
        (lambda p, t: rewrite(p, t, lambda m: m.pop("meta")), "not an rbp-native checkpoint"),
        (lambda p, t: rewrite(p, t, set_meta(format="something-else")), "not an rbp-native checkpoint"),
        (lambda p, t: rewrite(p, t, set_meta(format_version=99)), "newer rbp-native"),
        (lambda p, t: rewrite(p, t, set_meta(format_version="1")), "invalid format version"),
        (lambda p, t: rewrite(p, t, set_meta(state=None)), "'state' section is missing"),
        (lambda p, t: rewrite(p, t, lambda m: m.__setitem__("meta", np.array("{nope"))), "not valid JSON"),
        (lambda p, t: rewrite(p, t, lambda m: m.pop("network/W2")), "no 'network/W2' array"),
        (lambda p, t: rewrite(p, t, lambda m: m.pop("state/velocity/1/0")), "no 'state/velocity/1/0' array"),
        (
            lambda p, t: rewrite(p, t, lambda m: m.__setitem__("network/W1", np.zeros((3, 3), np.float32))),
            "weights\\[0\\] must have shape",
        ),
        (
            lambda p, t: rewrite(p, t, lambda m: m.__setitem__("network/W1", np.full((16, 20), np.nan, np.float32))),
            "NaN or infinity",
        ),
        (
            lambda p, t: rewrite(p, t, lambda m: m.__setitem__("state/shuffle_stream", np.zeros(6, np.uint64))),
            "all zeros",
        ),
        (
            lambda p, t: rewrite(p, t, lambda m: m.__setitem__("state/shuffle_stream", np.ones(3, np.uint64))),
            "6 unsigned 64-bit words",
        ),
        (
            lambda p, t: rewrite(p, t, lambda m: m.__setitem__("state/epoch_order", np.array([0, 0, 1]))),
            "not a permutation",
        ),
        (lambda p, t: rewrite(p, t, set_state(updates=-4)), "non-negative"),
        (lambda p, t: rewrite(p, t, set_state(epoch_seen=5)), "without a pending epoch"),
        (
            lambda p, t: rewrite(p, t, lambda m: m.__setitem__("state/velocity/0/0", np.zeros((2, 2), np.float32))),
            "velocity 0 of layer 1 must have shape",
        ),
        (lambda p, t: rewrite(p, t, lambda m: m.__setitem__("feedback/0", np.array(["x"]))), "feedback"),
        (
            lambda p, t: rewrite(p, t, lambda m: m.__setitem__("extra", np.array([object()], dtype=object))),
            "not a readable checkpoint",
        ),
    ],
)
def test_bad_checkpoints_raise_clear_errors_naming_the_file(tmp_path, make_bad, message):
    good = saved(tmp_path)
    bad = make_bad(good, tmp_path / "bad.npz")
    with pytest.raises((ckpt.CheckpointError, ValueError, TypeError)) as info:
        rbp.Trainer.load(bad)
    assert re.search(message, str(info.value)), str(info.value)
    if isinstance(info.value, ckpt.CheckpointError):
        assert str(bad) in str(info.value)


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        rbp.Trainer.load(tmp_path / "absent.npz")


def test_nothing_is_unpickled(tmp_path):
    good = saved(tmp_path)
    with zipfile.ZipFile(good) as archive:
        for name in archive.namelist():
            assert name.endswith(".npy")
            header = archive.read(name)[:128]
            assert b"'O'" not in header and b"|O" not in header, name  # no object arrays


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    x, y = data()
    trainer = make(dict(algorithm="bp"))
    path = tmp_path / "c.npz"
    trainer.fit((x, y), epochs=1, progress=False, checkpoint=path)
    before = path.read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # a second Ctrl-C while the checkpoint is being written

    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        trainer.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]  # no temporary file left


# -- divergence ---------------------------------------------------------------------------------


def diverging():
    x, y = data()
    x = x * 1e4
    targets = np.eye(4, dtype=np.float32)[y] * 1e6
    trainer = rbp.Trainer(rbp.MLP([20, 16, 4], activation="relu", output="linear", seed=0), lr=0.9, batch_size=10)
    return trainer, x, targets


def test_divergence_names_epoch_and_batch_and_makes_no_update(tmp_path):
    trainer, x, targets = diverging()
    path = tmp_path / "c.npz"
    with pytest.raises(rbp.TrainingDiverged, match=r"in epoch 1,? b[a-z]* ?batch \d+ of 16") as info:
        trainer.fit((x, targets), epochs=3, progress=False, checkpoint=path, checkpoint_every=1)
    assert isinstance(info.value.history, rbp.History)
    message = str(info.value)
    batch = int(re.search(r"batch (\d+)", message).group(1))
    if "loss became" in message:  # the diverging batch made no update; every batch before it did
        assert "which was not made" in message and trainer.updates == batch - 1
    # The last good checkpoint stays: finite, from before the divergence.
    resumed = rbp.Trainer.load(path)
    assert 0 < resumed.updates <= trainer.updates
    assert all(np.isfinite(w).all() for w in resumed.net.weights)
    # Without checkpoints the loss check stops it at the first non-finite loss.
    trainer, x, targets = diverging()
    with pytest.raises(
        rbp.TrainingDiverged,
        match=r"loss became (nan|inf).* in epoch 1, batch (\d+) of 16 \(update"
        r" \2, which was not made",
    ):
        trainer.fit((x, targets), epochs=3, progress=False)


def test_step_with_a_non_finite_loss_raises_and_changes_nothing():
    trainer, x, targets = diverging()
    with pytest.raises(rbp.TrainingDiverged, match="no update was made"):
        for _ in range(50):
            before = trainer.net.weights
            trainer.step(x[:10], targets[:10])
    for a, b in zip(before, trainer.net.weights):
        np.testing.assert_array_equal(a, b)


# -- thread safety ------------------------------------------------------------------------------


def test_two_trainers_in_two_threads_match_sequential_training():
    x, y = data(2000, features=64)

    def trainer(threads):
        return rbp.Trainer(
            rbp.MLP([64, 256, 256, 4], seed=2), algorithm="srbp", batch_size=256, threads=threads, seed=5
        )

    sequential = [trainer(1), trainer(2)]
    for t in sequential:
        t.fit((x, y), epochs=2, progress=False)
    concurrent = [trainer(1), trainer(2)]
    workers = [
        threading.Thread(target=t.fit, args=((x, y),), kwargs=dict(epochs=2, progress=False)) for t in concurrent
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for a, b in zip(sequential, concurrent):
        for u, v in zip(a.net.weights, b.net.weights):
            np.testing.assert_array_equal(u, v)


def test_one_trainer_used_from_two_threads_raises():
    x, y = data(500)
    trainer = make(dict(algorithm="bp"))
    errors = []

    def meanwhile(*_):
        # Runs inside the epoch, on the training thread, while the core holds the trainer.
        def attempt():
            try:
                trainer._core.step(x[:10], y[:10])
            except RuntimeError as error:
                errors.append(("core", str(error)))
            try:
                trainer.step(x[:10], y[:10])
            except RuntimeError as error:
                errors.append(("python", str(error)))

        other = threading.Thread(target=attempt)
        other.start()
        other.join()
        return True

    trainer._core.train_epoch(x, y, meanwhile, 5)

    def record_callback(record):
        other = threading.Thread(target=lambda: errors.append(("fit", _error(lambda: trainer.evaluate(x, y)))))
        other.start()
        other.join()

    trainer.fit((x, y), epochs=1, progress=False, callback=record_callback)
    kinds = {kind for kind, _ in errors}
    assert kinds == {"core", "python", "fit"}, errors
    assert all(
        "already running a call in another thread" in m or "already in use by another thread" in m for _, m in errors
    ), errors


def _error(call):
    try:
        call()
    except RuntimeError as error:
        return str(error)
    return "no error"


# -- interruption -------------------------------------------------------------------------------


SCRIPT = textwrap.dedent("""
    import sys, time
    import numpy as np
    import rbp_native as rbp
    rng = np.random.default_rng(0)
    x = rng.random((200_000, 64), dtype=np.float32)
    y = rng.integers(0, 10, 200_000)
    trainer = rbp.Trainer(rbp.MLP([64, 256, 256, 10], seed=0), batch_size=int(sys.argv[1]), threads=int(sys.argv[2]))
    print("ready", flush=True)
    try:
        trainer.fit((x, y), epochs=5, progress=sys.argv[3] == "bar", eval=(x[:5000], y[:5000]),
                    checkpoint=sys.argv[4])
    except KeyboardInterrupt:
        print("stopped", time.perf_counter(), trainer.updates, flush=True)
""")


@pytest.mark.parametrize("batch,threads,mode", [(100, 1, "quiet"), (32, 2, "bar")])
@pytest.mark.parametrize("sig", [signal.SIGINT])
def test_sigint_stops_fit_within_a_second(tmp_path, batch, threads, mode, sig):
    script = tmp_path / "fit.py"
    script.write_text(SCRIPT)
    path = tmp_path / "c.npz"
    process = subprocess.Popen(
        [sys.executable, str(script), str(batch), str(threads), mode, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=processes.sigint_default,
    )
    assert process.stdout.readline().strip() == "ready"
    time.sleep(0.5)  # inside the first epoch (2000 batches of 100) or its evaluation, depending on the load
    sent = time.perf_counter()
    process.send_signal(sig)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    stopped, at, updates = out.split()
    assert stopped == "stopped"
    assert float(at) - sent < 1.0, f"took {float(at) - sent:.2f} s"
    resumed = rbp.Trainer.load(path)
    assert resumed.updates == int(updates) > 0


def conv_net():
    return rbp.Sequential(
        [
            rbp.layers.Conv2D(4, 3, padding="same", activation="tanh"),
            rbp.layers.MaxPool2D(3, stride=2, padding="same"),
            rbp.layers.Conv2D(4, 3, padding="valid", activation="tanh"),
            rbp.layers.Flatten(),
            rbp.layers.Dense(10, activation="tanh"),
            rbp.layers.Dense(3, activation="softmax"),
        ],
        input_shape=(2, 8, 8),
        dtype="float64",
        seed=4,
    )


@pytest.mark.parametrize(
    "options",
    [
        dict(algorithm="bp", momentum=0.9),
        dict(algorithm="rbp", momentum=0.5, channel_dropout=0.2),  # feedback kernels under the convolutions
        dict(algorithm="asrbp"),
        dict(algorithm="srbp", injection="post_pool", quantize="signal", quantize_rounding="stochastic"),
    ],
)
def test_conv_resume_is_bit_identical(tmp_path, options):
    rng = np.random.default_rng(2)
    x = rng.random((60, 2, 8, 8))
    y = rng.integers(0, 3, 60)
    straight = rbp.Trainer(conv_net(), batch_size=8, seed=1, lr=0.05, **options)
    straight.fit((x, y), epochs=2, progress=False)
    first = rbp.Trainer(conv_net(), batch_size=8, seed=1, lr=0.05, **options)
    path = tmp_path / "c.npz"
    first._core.train_epoch(x.reshape(60, -1), y, None, 10, 3)
    first.save(path)
    resumed = rbp.Trainer.load(path)
    assert isinstance(resumed.net, rbp.Sequential) and resumed.net.config() == first.net.config()
    resumed.fit((x, y), epochs=2, progress=False)
    assert_same_training_state(straight, resumed)


def test_a_checkpoint_found_inconsistent_half_way_leaves_the_trainer_as_it_was(tmp_path):
    good = saved(tmp_path)
    # Valid weights and feedback, then a state the core refuses: restore must undo the first parts.
    bad = rewrite(good, tmp_path / "bad.npz", lambda m: m.__setitem__("state/epoch_order", np.array([0, 0, 1])))
    x, y = data()
    trainer = make(dict(algorithm="srbp", momentum=0.5))
    trainer.fit((x, y), epochs=2, progress=False)
    before = (trainer.net.weights, trainer.feedback, trainer._core.get_state(), without_timings(trainer.history))
    with pytest.raises(ckpt.CheckpointError, match="not a permutation"):
        trainer.restore(bad)
    after = (trainer.net.weights, trainer.feedback, trainer._core.get_state(), without_timings(trainer.history))
    for a, b in zip(before[0] + before[1], after[0] + after[1]):
        np.testing.assert_array_equal(a, b)
    assert before[2]["updates"] == after[2]["updates"] and before[3] == after[3]
    np.testing.assert_array_equal(before[2]["shuffle_stream"], after[2]["shuffle_stream"])
