"""The speed benchmark's bookkeeping (benchmarks/run.py and its modules): which implementations count as
computing the same math, and which take part in the ratios. No timing here."""

from __future__ import annotations

import math

import pytest

# benchmarks/ is on pytest's pythonpath (pyproject.toml); an installed copy of the tests without the
# repository skips these tests.


@pytest.fixture(scope="module")
def workloads():
    return pytest.importorskip("_workloads")


@pytest.fixture(scope="module")
def report():
    return pytest.importorskip("_report")


@pytest.fixture(scope="module")
def references():
    return pytest.importorskip("references")


def test_run_py_puts_its_modules_together(workloads, report):
    run = pytest.importorskip("run")
    assert run.disagreements is workloads.disagreements
    assert run.evaluate_targets is report.evaluate_targets


def _check(key, change, **diffs):
    return {"key": key, "max_weight_change": change, "max_abs_diff": diffs}


def test_disagreements_flag_large_and_non_finite_differences(workloads):
    checks = [
        _check("mnist/b128/bp", 1e-2, numpy=3e-8, torch=2e-5),  # torch: beyond 1e-3 of the change
        _check("wide/b128/bp", 1e-2, numpy=1.5e-8, **{"torch-compile": math.nan}),
        _check("wide/b128/srbp", 1e-2, numpy=math.inf),
    ]
    flagged = {(key, impl) for key, impl, _, _ in workloads.disagreements(checks)}
    assert flagged == {("mnist/b128/bp", "torch"), ("wide/b128/bp", "torch-compile"), ("wide/b128/srbp", "numpy")}
    assert workloads.disagreements([_check("mnist/b32/bp", 1e-2, numpy=1e-8)]) == []
    assert workloads.disagreements(None) == []


def _workload(batch, **medians):
    return {
        "net": "mnist",
        "batch": batch,
        "algorithm": "bp",
        "threads": 1,
        "impls": {impl: {"epoch_s_median": t} for impl, t in medians.items()},
    }


def test_targets_leave_out_implementations_that_disagree(report):
    workloads = [_workload(32, **{"rbp-native": 1.0, "numpy": 3.0, "torch": 2.5, "torch-compile": 0.5})]
    batch32 = next(t for t in report.evaluate_targets(workloads, set()) if "batch 32" in t["target"])
    assert batch32["measured"].startswith("0.50×") and not batch32["met"]  # torch.compile counts
    batch32 = next(t for t in report.evaluate_targets(workloads, {"torch-compile"}) if "batch 32" in t["target"])
    assert batch32["measured"].startswith("2.50×") and batch32["met"]  # it does not


def test_flops_per_example_counts_each_channel(workloads):
    sizes = [784, 100, 100, 10]
    forward = 784 * 100 + 100 * 100 + 100 * 10
    assert workloads.flops_per_example(sizes, "bp") == 2 * (2 * forward + 100 * 100 + 100 * 10)
    assert workloads.flops_per_example(sizes, "srbp") == 2 * (2 * forward + 2 * 100 * 10)
    assert workloads.flops_per_example(sizes, "rbp") == 2 * (2 * forward + 100 * 100 + 100 * 10)
    # sparse feedback counts its expected non-zeros; quantisation changes no count
    rbp_channel = 100 * 100 + 100 * 10
    assert workloads.flops_per_example(sizes, "rbp:density=0.1") == round(2 * (2 * forward + 0.1 * rbp_channel))
    assert workloads.flops_per_example(sizes, "srbp:density=0.5") == 2 * (2 * forward) + (100 * 10 + 100 * 10)
    assert workloads.flops_per_example(sizes, "srbp:quantize=4") == workloads.flops_per_example(sizes, "srbp")


def test_workload_algorithms_parse(workloads):
    assert workloads.workload_options("bp") == {"algorithm": "bp", "density": 1.0, "quantize_bits": None}
    assert workloads.workload_options("srbp:density=0.1") == {
        "algorithm": "srbp",
        "density": 0.1,
        "quantize_bits": None,
    }
    assert workloads.workload_options("srbp:quantize=4:density=0.5") == {
        "algorithm": "srbp",
        "density": 0.5,
        "quantize_bits": 4,
    }
    for bad in (
        "bp:density=0.1",
        "rbp:density=0",
        "rbp:density=1.5",
        "rbp:sparsity=0.1",
        "rbp:density=x",
        "sgd",
        "rbp:quantize=4",
        "srbp:quantize=1",
        "srbp:quantize=four",
    ):
        with pytest.raises(ValueError, match="unknown algorithm"):
            workloads.workload_options(bad)
    # Distinct names in the init file for every workload's feedback.
    keys = {
        workloads.feedback_key("mnist", spec, 0)
        for spec in ("rbp", "srbp", "rbp:density=0.1", "srbp:density=0.1", "srbp:density=0.01")
    }
    assert len(keys) == 5


def test_numpy_reference_quantises_signals_as_rbp_native_does(references):
    import numpy as np

    import rbp_native as rbp

    sizes, batch, bits = [20, 16, 12, 4], 8, 4
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(3 * batch, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], size=3 * batch)
    weights = {}
    for quantize_bits in (bits, None):
        net = rbp.MLP(sizes, seed=0)
        w0, b0 = net.weights, net.biases
        options = {"quantize": "signal", "quantize_bits": bits, "quantize_alpha": 0.125} if quantize_bits else {}
        trainer = rbp.Trainer(net, algorithm="srbp", lr=0.5, decay=0.0, batch_size=batch, seed=0, **options)
        ref = references.NumpyTrainer(
            w0, b0, trainer.feedback, "srbp", 0.5, 0.0, batch, quantize_bits=quantize_bits, quantize_alpha=0.125
        )
        for s in range(3):
            trainer.step(x[s * batch : (s + 1) * batch], y[s * batch : (s + 1) * batch])
            ref.step(x[s * batch : (s + 1) * batch], y[s * batch : (s + 1) * batch])
        for a, b in zip(net.weights, ref.weights()):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
        weights[quantize_bits] = net.weights
    assert not np.allclose(weights[bits][0], weights[None][0], rtol=0, atol=1e-4)  # the quantiser mattered
