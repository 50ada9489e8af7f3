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


def test_each_implementation_goes_first_in_turn():
    run = pytest.importorskip("run")
    impls = ["rbp-native", "numpy", "torch", "torch-compile"]
    orders = [run.round_order(impls, rnd) for rnd in range(len(impls) + 1)]
    assert all(sorted(order) == sorted(impls) for order in orders)
    assert [order[0] for order in orders] == impls + impls[:1]
    assert orders[1] == ["numpy", "torch", "torch-compile", "rbp-native"]
    assert run.round_order([], 3) == []


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


# The conv net (benchmarks/conv_references.py): a tiny version of the paper's network, small enough that
# the whole check takes a second. Its pools still pad one row and column at the bottom/right (8 -> 4 -> 2).
TINY_CONV = "filters=4,dense=16,side=8,blocks=2"


@pytest.fixture(scope="module")
def conv_references():
    return pytest.importorskip("conv_references")


def test_conv_net_geometry_and_work_are_rbp_natives(conv_references):
    import rbp_native as rbp

    same_padding, ConvNet = conv_references.same_padding, conv_references.ConvNet
    assert same_padding(32, 3, 2) == (16, 0, 1)  # TensorFlow's "same": the odd row at the bottom
    assert same_padding(32, 5, 1) == (32, 2, 2)
    assert same_padding(1, 3, 2) == (1, 1, 1)
    paper = ConvNet()
    assert [st["pooled"] for st in paper.conv_stages()] == [16, 8, 4] and paper.flat_size == 1024
    net = paper.sequential(seed=0)
    assert net.sizes == [3072, 64 * 16 * 16, 64 * 8 * 8, 64 * 4 * 4, 1024, 10]
    convs = [64 * 32 * 32 * 3 * 25, 64 * 16 * 16 * 64 * 25, 64 * 8 * 8 * 64 * 25]
    forward = sum(convs) + 1024 * 1024 + 10 * 1024
    for algorithm in ("bp", "rbp", "srbp"):
        macs = paper.macs_per_example(algorithm)
        assert macs["forward"] == macs["backward_weights"] == forward
        # the channel's count is rbp-native's own
        assert macs["channel"] == rbp.Trainer(net, algorithm=algorithm, threads=1).channel_macs
    assert paper.macs_per_example("bp")["channel"] == convs[1] + convs[2] + 1024 * 1024 + 10 * 1024
    assert paper.flops_per_example("srbp") == 2 * (2 * forward + (64 * (32**2 + 16**2 + 8**2) + 1024) * 10)
    assert ConvNet.parse("paper") == paper
    assert ConvNet.parse(TINY_CONV) == ConvNet(filters=4, dense=16, side=8, blocks=2)
    for bad in ("filter=4", "filters=0", "filters=x", "filters", "kernel=4"):
        with pytest.raises(ValueError, match="conv net"):
            ConvNet.parse(bad)


def test_conv_arguments_are_checked():
    run = pytest.importorskip("run")
    for bad in (["--nets", "mnist,cifar"], ["--conv-net", "filters=0"], ["--conv-examples", "0"]):
        with pytest.raises(SystemExit):
            run.parse_arguments(bad)
    args, settings = run.parse_arguments(["--nets", "conv", "--variant-batches", "32"])
    assert settings.batches == {"conv": [128]} and settings.variant_batches == {"conv": []}
    assert [w["key"] for w in run.make_workloads(args, settings)] == ["conv/b128/bp", "conv/b128/rbp", "conv/b128/srbp"]


def _conv_check(tmp_path, impls, algorithms="bp,rbp,srbp"):
    """The harness's agreement check of the tiny conv net, in this process (so that a test can break a
    reference): run.py's arguments, inputs and workloads, the worker's check."""
    run = pytest.importorskip("run")
    worker = pytest.importorskip("_worker")
    argv = ["--nets", "conv", "--conv-net", TINY_CONV, "--batches", "8", "--algorithms", algorithms]
    args, settings = run.parse_arguments([*argv, "--data", "synthetic", "--conv-examples", "24"])
    base_cfg = run.write_inputs(str(tmp_path), {"notes": []}, args, settings)
    workloads = run.make_workloads(args, settings)
    return worker.run_check({**base_cfg, "impls": impls, "workloads": workloads, "steps": 3})["check"]


# torch.compile's first use imports torch.utils.mkldnn, which warns about its own use of torch.jit.
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_conv_references_agree_with_rbp_native(tmp_path, workloads, conv_references):
    impls = ["rbp-native", "numpy"]
    try:
        import torch  # noqa: F401

        impls += ["torch", "torch-compile"]  # the same step, eager and through torch.compile
    except ImportError:
        pass
    checks = _conv_check(tmp_path, impls)
    assert [(c["key"], c["dtype"]) for c in checks] == [
        (f"conv/b8/{alg}", dtype) for alg in ("bp", "rbp", "srbp") for dtype in ("float64", "float32")
    ]
    assert workloads.disagreements(checks) == []
    for c in checks:
        assert set(c["max_abs_diff"]) == set(impls) - {"rbp-native"}
        assert c["max_weight_change"] > 1e-3  # the steps moved the parameters
        if c["dtype"] == "float64":  # far inside the tolerance: rounding only
            assert max(c["max_abs_diff"].values()) < 1e-12 * c["max_weight_change"]


def _pad_pools_top_left(monkeypatch, conv_references):
    """Break the references' "same" padding: the odd row and column at the top/left. PyTorch's own
    padding=1 (one row and column on every side) does that to a 3x3 stride-2 pool on an even side: the
    same output size, every window shifted by one."""
    same_padding = conv_references.same_padding

    def top_left(size, kernel, stride):
        out, before, after = same_padding(size, kernel, stride)
        return out, after, before

    monkeypatch.setattr(conv_references, "same_padding", top_left)


def test_conv_agreement_check_flags_a_numpy_reference_that_pools_the_wrong_windows(
    tmp_path, monkeypatch, workloads, conv_references
):
    _pad_pools_top_left(monkeypatch, conv_references)
    checks = _conv_check(tmp_path, ["rbp-native", "numpy"])
    flagged = {(key, impl) for key, impl, _, _ in workloads.disagreements(checks)}
    assert flagged == {
        (f"conv/b8/{alg}{suffix}", "numpy") for alg in ("bp", "rbp", "srbp") for suffix in (" (float64)", "")
    }


@pytest.mark.parametrize("mistake", ["pool padding at the top/left", "no momentum", "no learning-rate decay"])
def test_conv_agreement_check_flags_a_wrong_torch_reference(tmp_path, monkeypatch, workloads, conv_references, mistake):
    pytest.importorskip("torch")
    trainer_class = conv_references.TorchConvTrainer
    if mistake == "pool padding at the top/left":
        _pad_pools_top_left(monkeypatch, conv_references)
    else:
        original_init = trainer_class.__init__

        def wrong_init(self, *args, **kwargs):
            original_init(self, *args, **kwargs)
            setattr(self, "momentum" if mistake == "no momentum" else "decay", 0.0)

        monkeypatch.setattr(trainer_class, "__init__", wrong_init)
    checks = _conv_check(tmp_path, ["rbp-native", "torch"])
    flagged = {(key, impl) for key, impl, _, _ in workloads.disagreements(checks)}
    in_float64 = {(f"conv/b8/{alg} (float64)", "torch") for alg in ("bp", "rbp", "srbp")}
    if mistake == "no learning-rate decay":
        # 1 / (1 + 1e-5 t): a change of 2e-5 of the steps, far beyond float64 rounding, within float32's tolerance
        assert flagged == in_float64
    else:
        assert in_float64 <= flagged


@pytest.mark.slow  # about ten seconds: subprocesses for the check, each implementation and the peaks
def test_conv_workload_runs_through_the_harness(tmp_path):
    """run.py end to end on the tiny conv net: the results file has the timings, ratios, GFLOP/s and
    the agreement check."""
    import json

    run = pytest.importorskip("run")
    impls = "rbp-native,numpy"
    try:
        import torch  # noqa: F401

        impls += ",torch"
    except ImportError:
        pass
    argv = ["--nets", "conv", "--conv-net", TINY_CONV, "--batches", "8", "--conv-examples", "24"]
    argv += ["--impls", impls, "--threads", "1", "--rounds", "1", "--epochs", "1", "--data", "synthetic"]
    assert run.main([*argv, "--no-native-bench", "--out", str(tmp_path), "--machine", "test"]) == 0
    (results,) = tmp_path.glob("test-*.json")
    report = json.loads(results.read_text())
    assert [w["algorithm"] for w in report["workloads"]] == ["bp", "rbp", "srbp"]
    for w in report["workloads"]:
        assert w["net"] == "conv" and w["epoch_examples"] == 50000 and w["examples_per_timed_epoch"] == 24
        assert set(w["impls"]) == set(impls.split(","))
        native = w["impls"]["rbp-native"]
        assert native["step_s_median"] > 0 and native["gflops"] > 0
        assert w["ratios"]["numpy"] > 0
        # one timed epoch of 24 images, three steps of 8, scaled to 50000 images
        assert native["epoch_s_all"] == [native["epoch_s_median"]]
        assert native["step_s_median"] == pytest.approx(native["epoch_s_median"] * 24 / 50000 / 3)
    assert len(report["check"]) == 6 and all(not c.get("error") for c in report["check"])
    assert "conv net, seconds per 50000-image epoch" in results.with_suffix(".md").read_text()
