"""The float32 convolutions on each implementation this build has (oneDNN where built, the portable
im2col + GEMM path always): every geometry and every channel against the float64 numpy oracle
(tests/conv_reference.py) at float32 round-off, the two implementations against each other on the
paper's layer sizes, and reproducibility for the same seed and thread count."""

from __future__ import annotations

import os
import platform
import sys

import numpy as np
import pytest

import conv_reference as ref
import rbp_native as rbp
from rbp_native._native import _core
from test_conv import ARCHITECTURES, CHANNELS, _batch, _net, check_signals_and_step

L = rbp.layers
ONEDNN = _core._onednn_available()

RTOL, ATOL = 2e-4, 2e-6  # float32 against the float64 oracle on these small nets


@pytest.mark.usefixtures("conv_implementation")
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("kernel", [(3, 3), (2, 4), (1, 1), (5, 5)])
def test_every_geometry_matches_oracle(kernel, stride, padding, bias):
    # A convolution above a convolution: the upper one's forward, transposed (backward-data) and
    # weight-gradient convolutions are all on the path the oracle checks.
    net = rbp.Sequential(
        [
            L.Conv2D(3, 3, padding="same"),
            L.Conv2D(4, kernel, stride=stride, padding=padding),
            L.Flatten(),
            L.Dense(3, activation="softmax"),
        ],
        input_shape=(2, 9, 8),
        dtype="float32",
        seed=5,
        bias=bias,
    )
    if bias:
        rng = np.random.default_rng(1)
        net.set_biases([rng.normal(size=b.shape) * 0.1 for b in net.biases])
    x, y = _batch(net, n=6)
    check_signals_and_step(net, x, y, "bp", RTOL, ATOL)


@pytest.mark.usefixtures("conv_implementation")
@pytest.mark.parametrize("derivative", [True, False])
@pytest.mark.parametrize("algorithm,options", CHANNELS)
@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_channel_matches_oracle(name, algorithm, options, derivative):
    net = _net(name, dtype="float32")
    x, y = _batch(net)
    check_signals_and_step(net, x, y, algorithm, RTOL, ATOL, derivative=derivative, **options)


@pytest.mark.usefixtures("conv_implementation")
def test_forward_of_the_paper_layers_matches_oracle():
    # The CIFAR-10 net's layer sizes (3x32x32 and 64x16x16 inputs, 64 filters 5x5, same padding).
    rng = np.random.default_rng(0)
    for shape in [(3, 32, 32), (64, 16, 16)]:
        net = rbp.Sequential(
            [L.Conv2D(64, 5, padding="same", activation="linear")], input_shape=shape, dtype="float32", seed=2
        )
        net.set_biases([rng.normal(size=64).astype(np.float32) * 0.1])
        x = rng.normal(size=(3, *shape)).astype(np.float32)
        want = ref.conv_forward(x.astype(np.float64), net.weights[0].astype(np.float64), net.biases[0], 1, "same")
        np.testing.assert_allclose(net.forward(x), want.reshape(3, -1), rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not ONEDNN, reason="this build has no oneDNN")
def test_partial_batches_and_evaluation_chunks_match_the_portable_path():
    # Batches of 16 with a last one of 8, then inference on 1100 examples (the core evaluates in
    # chunks of 1024, then 76): every batch size gets its own primitives; both implementations agree.
    def run(implementation):
        _core._set_conv_implementation(implementation)
        try:
            return train()
        finally:
            _core._set_conv_implementation("auto")

    def train():
        net = _net("paper_like", dtype="float32", seed=1)
        x, y = _batch(net, n=40, seed=2)
        trainer = rbp.Trainer(net, algorithm="rbp", lr=0.05, momentum=0.9, batch_size=16, seed=3, threads=2)
        trainer.fit((x, y), epochs=2, progress=False)
        big, _ = _batch(net, n=1100, seed=4)
        return net.weights, net.forward(big)

    weights_a, probs_a = run("eigen")
    weights_b, probs_b = run("onednn")
    for a, b in zip(weights_a, weights_b):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(probs_a, probs_b, rtol=1e-4, atol=1e-5)


@pytest.mark.usefixtures("conv_implementation")
@pytest.mark.parametrize("threads", [1, 2])
def test_same_seed_and_threads_give_identical_weights(threads):
    def run():
        net = _net("paper_like", dtype="float32", seed=1)
        x, y = _batch(net, n=48, seed=2)
        trainer = rbp.Trainer(net, algorithm="bp", lr=0.05, momentum=0.9, batch_size=16, seed=3, threads=threads)
        trainer.fit((x, y), epochs=2, progress=False)
        return net.weights + net.biases

    for a, b in zip(run(), run()):
        np.testing.assert_array_equal(a, b)


def test_implementation_names_are_checked():
    with pytest.raises(ValueError, match="'auto', 'eigen' or 'onednn'"):
        _core._set_conv_implementation("mkl")
    if not ONEDNN:
        with pytest.raises(ValueError, match="no oneDNN"):
            _core._set_conv_implementation("onednn")
    assert _core._conv_implementation() == "auto"


@pytest.mark.skipif(
    os.environ.get("RBP_NATIVE_EXPECT_ONEDNN") != "1", reason="only where the build must have oneDNN (CI)"
)
def test_the_build_has_onednn_where_ci_expects_it():
    assert sys.platform == "linux" and platform.machine() == "x86_64"
    assert _core._onednn_available()


# Run in a fresh interpreter: whether oneDNN is loaded is a property of the whole process.
_PLUGIN_SCRIPT = """
import numpy as np
import rbp_native as rbp
from rbp_native._native import _core

def onednn_loaded():
    with open("/proc/self/maps") as maps:
        return any("libdnnl" in line for line in maps)

L = rbp.layers
rng = np.random.default_rng(0)
x = rng.normal(size=(8, 20)).astype(np.float32)
y = rng.integers(0, 3, size=8)
mlp = rbp.MLP([20, 6, 3], dtype="float32", seed=1)
rbp.Trainer(mlp, algorithm="rbp", batch_size=4, seed=2).fit((x, y), epochs=1, progress=False)
print("mlp", onednn_loaded())
conv = rbp.Sequential([L.Conv2D(2, 3, padding="same"), L.Flatten(), L.Dense(3, activation="softmax")],
                      input_shape=(1, 4, 5), dtype="float32", seed=1)
print("conv built", onednn_loaded())
images = x.reshape(8, 1, 4, 5)
for setting in ("eigen", "auto"):
    _core._set_conv_implementation(setting)
    try:
        conv.forward(images)
        print("conv", setting, onednn_loaded())
    except RuntimeError as error:
        print("conv", setting, "error:", error)
for setting in ("portable", "auto"):
    _core._set_bf16_implementation(setting)
    weights = [w.copy() for w in mlp.weights]
    try:
        rbp.Trainer(mlp, algorithm="rbp", batch_size=4, seed=2, precision="bf16").fit((x, y), epochs=1, progress=False)
        print("bf16", setting, onednn_loaded())
    except RuntimeError as error:
        unchanged = all(np.array_equal(a, b) for a, b in zip(weights, mlp.weights))
        print("bf16", setting, "unchanged" if unchanged else "changed", "error:", error)
"""


def _run_plugin_script(env_extra=None):
    import subprocess

    env = dict(os.environ, **(env_extra or {}))
    done = subprocess.run([sys.executable, "-c", _PLUGIN_SCRIPT], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.skipif(not ONEDNN or sys.platform != "linux", reason="needs the oneDNN plugin and /proc")
def test_onednn_is_loaded_only_when_first_used():
    lines = _run_plugin_script()
    assert lines == [
        "mlp False",
        "conv built False",
        "conv eigen False",
        "conv auto True",
        "bf16 portable True",
        "bf16 auto True",
    ]


@pytest.mark.skipif(not ONEDNN or sys.platform != "linux", reason="needs the oneDNN plugin")
def test_a_missing_onednn_runtime_is_a_clear_error_at_first_use(tmp_path):
    # A libdnnl.so.3 that is not a library, found first: LD_LIBRARY_PATH comes before the plugin's RUNPATH
    # (CMakeLists.txt links it with --enable-new-dtags; an old-style RPATH would come first).
    (tmp_path / "libdnnl.so.3").write_bytes(b"not a shared object")
    lines = _run_plugin_script({"LD_LIBRARY_PATH": str(tmp_path)})
    assert lines[:3] == ["mlp False", "conv built False", "conv eigen False"]
    for line, what in [(lines[3], "conv auto error: "), (lines[5], "bf16 auto unchanged error: ")]:
        assert line.startswith(what), line
        assert "could not open its oneDNN plugin" in line and "libdnnl.so.3" in line
        assert "pip install onednn-cpu-gomp==2023.2.0" in line
    assert lines[4] == "bf16 portable False"
