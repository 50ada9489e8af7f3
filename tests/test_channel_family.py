"""Every learning-channel option of docs/channels.md: the native core against the numpy oracle."""

from __future__ import annotations

import numpy as np
import pytest

import rbp_native as rbp
import reference as ref

SIZES = [6, 5, 4, 3]
FEEDBACK = ("rbp", "srbp", "arbp", "asrbp")


def batch(k=0, n=9, sizes=SIZES):
    rng = np.random.default_rng(100 + k)
    return rng.uniform(-1, 1, size=(n, sizes[0])), rng.integers(0, sizes[-1], size=n)


def trainer_for(algorithm, sizes=SIZES, seed=3, activation="tanh", **options):
    net = rbp.MLP(sizes, activation=activation, dtype="float64", seed=seed)
    net.set_biases([np.random.default_rng(seed + h).normal(0, 0.1, n) for h, n in enumerate(sizes[1:])])
    return rbp.Trainer(net, algorithm=algorithm, seed=seed, batch_size=9, **options)


ORACLE_KEYS = (
    "sources",
    "derivative",
    "signal_transform",
    "transform_target",
    "quantize",
    "quantize_bits",
    "quantize_alpha",
    "quantize_rounding",
    "feedback_lr_scale",
    "frozen_layers",
    "dropout_inverted",
)


def compare_steps(
    algorithm, steps=3, lr=0.2, decay=0.01, momentum=0.0, sizes=SIZES, activation="tanh", rtol=1e-11, **options
):
    """Runs `steps` native steps and the oracle side by side; returns the trainer."""
    trainer = trainer_for(
        algorithm, sizes=sizes, activation=activation, lr=lr, decay=decay, momentum=momentum, **options
    )
    state = ref.initial_state(trainer.net.weights, trainer.net.biases)
    oracle_options = {k: v for k, v in trainer.config().items() if k in ORACLE_KEYS}
    if oracle_options.get("quantize") is None:
        for k in ("quantize", "quantize_bits", "quantize_alpha", "quantize_rounding"):
            oracle_options.pop(k, None)
    if trainer.config()["sources"] is None:
        oracle_options.pop("sources", None)
    feedback = trainer.feedback
    for k in range(steps):
        x, y = batch(k, sizes=sizes)
        native_loss = trainer.step(x, y)
        extra = {}
        if trainer.config()["channel_dropout"] > 0:
            extra["dropout_masks"] = [(m != 0).astype(float) for m in trainer._core.dropout_masks()]
            extra["dropout_p"] = trainer.config()["channel_dropout"]
        if trainer.config()["resample"]:
            feedback = trainer.feedback  # the matrices this step used
        if trainer.config()["per_synapse"]:
            tensors = [trainer._core.synapse_feedback(h) for h in range(len(sizes) - 2)]
            extra["per_synapse_tensors"] = [t[0] for t in tensors]
            extra["per_synapse_bias"] = [t[1] for t in tensors]
            feedback = []
        state, oracle_loss, info = ref.channel_step(
            state,
            x,
            y,
            algorithm,
            feedback,
            activation=activation,
            lr=lr,
            decay=decay,
            momentum=momentum,
            **oracle_options,
            **extra,
        )
        assert native_loss == pytest.approx(oracle_loss, rel=1e-12)
        feedback = info["feedback"]
        for h, (w_native, w_oracle) in enumerate(zip(trainer.net.weights, state["weights"])):
            np.testing.assert_allclose(w_native, w_oracle, rtol=rtol, atol=1e-13, err_msg=f"W^{h + 1} step {k}")
        for h, (b_native, b_oracle) in enumerate(zip(trainer.net.biases, state["biases"])):
            np.testing.assert_allclose(b_native, b_oracle, rtol=rtol, atol=1e-13, err_msg=f"b^{h + 1} step {k}")
        if algorithm in ("arbp", "asrbp"):
            for f_native, f_oracle in zip(trainer.feedback, feedback):
                np.testing.assert_allclose(f_native, f_oracle, rtol=rtol, atol=1e-13)
    return trainer


# -- algorithms and sources --------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", rbp.ALGORITHMS)
@pytest.mark.parametrize("momentum", [0.0, 0.7])
def test_every_algorithm_matches_the_oracle(algorithm, momentum):
    compare_steps(algorithm, momentum=momentum)


@pytest.mark.parametrize("algorithm", ["arbp", "asrbp"])
def test_adaptive_feedback_rate_scale(algorithm):
    compare_steps(algorithm, feedback_lr_scale=0.1)


def test_arbp_keeps_feedback_minus_transposed_weights_constant():
    trainer = trainer_for("arbp", lr=0.3, decay=0.0)
    gap = [f - w.T for f, w in zip(trainer.feedback, trainer.net.weights[1:])]
    for k in range(5):
        trainer.step(*batch(k))
    after = [f - w.T for f, w in zip(trainer.feedback, trainer.net.weights[1:])]
    for g0, g1 in zip(gap, after):
        np.testing.assert_allclose(g1, g0, atol=1e-12)
    assert not np.allclose(trainer.feedback[0], trainer_for("arbp").feedback[0])


@pytest.mark.parametrize("sources", [["output", "above"], ["above", "output"], "above", "output"])
@pytest.mark.parametrize("algorithm", FEEDBACK)
def test_per_layer_sources(algorithm, sources):
    trainer = compare_steps(algorithm, sources=sources)
    expected = [sources] * 2 if isinstance(sources, str) else sources
    assert trainer.sources == expected
    for h, f in enumerate(trainer.feedback):
        n_source = SIZES[h + 2] if expected[h] == "above" else SIZES[-1]
        assert f.shape == (SIZES[h + 1], n_source)


def test_all_above_sources_is_rbp_and_all_output_is_srbp():
    x, y = batch()
    for algorithm, sources in (("rbp", "output"), ("srbp", "above")):
        mixed = trainer_for(algorithm, sources=sources)
        plain = trainer_for("srbp" if sources == "output" else "rbp")
        mixed.set_feedback(plain.feedback)
        for a, b in zip(mixed.signals(x, y), plain.signals(x, y)):
            np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-16)


# -- feedback draws ----------------------------------------------------------------------------

BIG = [50, 400, 300, 10]


@pytest.mark.parametrize(
    "distribution,values",
    [("gaussian", None), ("uniform", None), ("sign", {-1.0, 1.0}), ("bernoulli", {0.0, 1.0}), ("ones", {1.0})],
)
@pytest.mark.parametrize("mean", [0.0, 0.5])
def test_feedback_distributions(distribution, values, mean):
    trainer = trainer_for(
        "rbp", sizes=BIG, feedback_distribution=distribution, feedback_scale="unit", feedback_mean=mean
    )
    f = trainer.feedback[0]
    z = f - mean
    if values is not None:
        assert set(np.unique(np.round(z, 12))) == values
    if distribution in ("gaussian", "uniform"):
        assert z.mean() == pytest.approx(0, abs=0.02)
        assert z.std() == pytest.approx(1, rel=0.02)
        if distribution == "uniform":
            assert np.abs(z).max() <= np.sqrt(3) + 1e-12
            assert np.abs(z).max() > 1.7
    if distribution in ("sign", "bernoulli"):
        assert z.mean() == pytest.approx(0 if distribution == "sign" else 0.5, abs=0.02)


def test_numeric_feedback_scale():
    f = trainer_for("srbp", sizes=BIG, feedback_scale=0.25).feedback[0]
    assert f.std() == pytest.approx(0.25, rel=0.03)


@pytest.mark.parametrize("algorithm", ["rbp", "srbp"])
def test_sparse_density_and_nonzeros(algorithm):
    sizes = BIG
    for density in (0.01, 0.3, 0.5):
        trainer = trainer_for(algorithm, sizes=sizes, feedback_density=density)
        # "auto" storage: CSR up to the measured crossover with the dense kernels (30%), from
        # sources of at least 32 units
        for h, f in enumerate(trainer.feedback):
            assert trainer._core.feedback_sparse(h) == (density <= 0.3 and f.shape[1] >= 32)
            assert (f != 0).mean() == pytest.approx(density, rel=0.2, abs=0.003)
        assert trainer.channel_macs == sum(int((f != 0).sum()) for f in trainer.feedback)
        forced = trainer_for(algorithm, sizes=sizes, feedback_density=density, feedback_storage="sparse")
        assert all(forced._core.feedback_sparse(h) for h in range(len(forced.feedback)))
        assert forced.channel_macs == sum(int((f != 0).sum()) for f in forced.feedback)
    n_source = sizes[2] if algorithm == "rbp" else sizes[-1]
    paper = {"feedback_distribution": "ones", "feedback_scale": "unit"}  # the paper's Bernoulli {0,1}
    none = trainer_for(algorithm, sizes=sizes, feedback_nonzeros=0, **paper)
    assert all(np.all(f == 0) for f in none.feedback)
    assert none.channel_macs == 0
    full = trainer_for(algorithm, sizes=sizes, feedback_nonzeros=n_source, **paper)
    assert np.all(full.feedback[0] == 1)
    five = trainer_for(algorithm, sizes=sizes, feedback_nonzeros=5, **paper)
    assert set(np.unique(five.feedback[0])) == {0.0, 1.0}
    assert (five.feedback[0] != 0).sum(axis=1).mean() == pytest.approx(5, rel=0.15)


@pytest.mark.parametrize("algorithm", FEEDBACK[:2])
def test_sparse_storage_gives_the_dense_numbers(algorithm):
    dense = trainer_for(algorithm, feedback_density=0.5, feedback_storage="dense")
    sparse = trainer_for(algorithm, feedback_density=0.5, feedback_storage="sparse")
    for fd, fs in zip(dense.feedback, sparse.feedback):
        np.testing.assert_array_equal(fd, fs)
    full_sparse = trainer_for(algorithm, feedback_storage="sparse")
    full_dense = trainer_for(algorithm)
    np.testing.assert_array_equal(full_sparse.feedback[0], full_dense.feedback[0])
    for k in range(3):
        x, y = batch(k)
        for a, b in ((dense, sparse), (full_dense, full_sparse)):
            assert a.step(x, y) == pytest.approx(b.step(x, y), rel=1e-13)
    for a, b in ((dense, sparse), (full_dense, full_sparse)):
        for wa, wb in zip(a.net.weights, b.net.weights):
            np.testing.assert_allclose(wa, wb, rtol=1e-12, atol=1e-15)
    compare_steps(algorithm, feedback_density=0.5)


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 2e-5)])
@pytest.mark.parametrize("n", [1, 7, 16, 33, 100])
def test_sparse_feedback_product_at_ragged_sizes(dtype, tol, n):
    # Widths and batches that are not whole SIMD tiles (16 floats with AVX-512, 8 with AVX2): the
    # sparse product's transposes take their scalar edges.
    sizes = [20, 37, 50, 17, 10]
    rng = np.random.default_rng(n)
    x, y = rng.uniform(-1, 1, size=(n, sizes[0])), rng.integers(0, sizes[-1], size=n)
    signals = {}
    for storage in ("dense", "sparse"):
        net = rbp.MLP(sizes, dtype=dtype, seed=5)
        trainer = rbp.Trainer(net, algorithm="rbp", seed=5, feedback_density=0.3, feedback_storage=storage)
        assert all(trainer._core.feedback_sparse(h) == (storage == "sparse") for h in range(3))
        signals[storage] = trainer.signals(x.astype(dtype), y)
    for d, s in zip(signals["dense"], signals["sparse"]):
        assert s.dtype == np.dtype(dtype)
        np.testing.assert_allclose(s, d, rtol=tol, atol=tol)


@pytest.mark.parametrize("threads", [1, 2])
def test_wide_sparse_feedback_matches_numpy_on_any_thread_count(threads):
    # 100 x 1000 x 1000 x 0.1 = 10M multiply-adds: the sparse product is split between two threads.
    sizes = [30, 1000, 1000, 10]
    rng = np.random.default_rng(1)
    x, y = rng.uniform(-1, 1, size=(100, 30)).astype(np.float32), rng.integers(0, 10, size=100)
    net = rbp.MLP(sizes, dtype="float32", seed=2)
    trainer = rbp.Trainer(net, algorithm="rbp", seed=2, feedback_density=0.1, threads=threads)
    assert trainer._core.feedback_sparse(0) and not trainer._core.feedback_sparse(1)
    native = trainer.signals(x, y)
    as64 = [[a.astype(np.float64) for a in arrays] for arrays in (net.weights, net.biases, trainer.feedback)]
    oracle = ref.channel_signals(*as64[:2], x.astype(np.float64), y, "rbp", as64[2])["B"]
    for h, (a, b) in enumerate(zip(native, oracle)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max(), err_msg=f"B^{h + 1}")


@pytest.mark.parametrize("algorithm", FEEDBACK)
def test_congruent_feedback_takes_the_counterpart_signs(algorithm):
    trainer = trainer_for(algorithm, sizes=[8, 7, 6, 5, 3], congruent=True)
    weights = trainer.net.weights
    for h, f in enumerate(trainer.feedback):
        c = ref.counterpart(weights, h + 1, trainer.sources[h])
        np.testing.assert_allclose(trainer._core.counterpart(h), c, rtol=1e-13)
        assert np.all(np.where(c < 0, -1, 1) == np.sign(f))


def test_resampling_zero_mean_changes_feedback_every_step_and_only_then():
    trainer = trainer_for("srbp", resample="zero_mean")
    x, y = batch()
    seen = [trainer.feedback[0]]
    trainer.signals(x, y)
    np.testing.assert_array_equal(trainer.feedback[0], seen[0])
    for k in range(3):
        trainer.step(*batch(k))
        assert not any(np.array_equal(trainer.feedback[0], f) for f in seen)
        seen.append(trainer.feedback[0])
    compare_steps("srbp", resample="zero_mean")
    compare_steps("rbp", resample="zero_mean")


@pytest.mark.parametrize("algorithm", ["rbp", "srbp"])
def test_sign_concordant_resampling_follows_the_current_weights(algorithm):
    trainer = trainer_for(algorithm, resample="sign_concordant")
    for k in range(3):
        weights = trainer.net.weights
        trainer.step(*batch(k))
        for h, f in enumerate(trainer.feedback):
            c = ref.counterpart(weights, h + 1, trainer.sources[h])
            assert np.all(np.where(c < 0, -1, 1) == np.sign(f))
    compare_steps(algorithm, resample="sign_concordant")


# -- per-synapse, transforms, dropout, frozen layers ----------------------------------------------


@pytest.mark.parametrize("derivative", [True, False])
def test_per_synapse_random_error(derivative):
    trainer = compare_steps("srbp", per_synapse=True, derivative=derivative, momentum=0.5)
    tensor, bias = trainer._core.synapse_feedback(0)
    assert tensor.shape == (SIZES[1], SIZES[0], SIZES[-1])
    assert bias.shape == (SIZES[1], SIZES[-1])
    assert trainer.feedback == []
    signals = trainer.signals(*batch())
    assert signals[0] is None and signals[1] is None and signals[2].shape == (9, 3)
    with pytest.raises(ValueError, match="per_synapse"):
        trainer_for("rbp", per_synapse=True)


@pytest.mark.parametrize("algorithm", ["bp", "rbp", "srbp", "sbp"])
@pytest.mark.parametrize("transform", ["sign", "magnitude"])
@pytest.mark.parametrize("target", ["signal", "update"])
def test_sign_and_magnitude_transforms(algorithm, transform, target):
    trainer = compare_steps(algorithm, signal_transform=transform, transform_target=target)
    if target == "signal":
        signals = trainer.signals(*batch())
        hidden = np.concatenate([s.ravel() for s in signals[:-1]])
        allowed = {-1.0, 0.0, 1.0} if transform == "sign" else None
        if allowed:
            assert set(np.unique(hidden)) <= allowed
        else:
            assert hidden.min() >= 0


@pytest.mark.parametrize("algorithm", ["bp", "sbp", "rbp", "srbp", "arbp", "asrbp"])
@pytest.mark.parametrize("inverted", [False, True])
def test_channel_dropout_matches_the_oracle_with_the_same_masks(algorithm, inverted):
    trainer = compare_steps(algorithm, channel_dropout=0.3, dropout_inverted=inverted)
    masks = trainer._core.dropout_masks()
    keep = 1 / 0.7 if inverted else 1.0
    for mask in masks:
        assert set(np.unique(mask)) <= {0.0, keep}
    big = trainer_for("srbp", sizes=BIG, channel_dropout=0.3)
    rng = np.random.default_rng(0)
    big.step(rng.uniform(size=(200, BIG[0])), rng.integers(0, 10, 200))
    assert (big._core.dropout_masks()[0] == 0).mean() == pytest.approx(0.3, abs=0.02)


def test_zero_dropout_equals_none_and_signals_preview_the_next_step():
    x, y = batch()
    a = trainer_for("rbp")
    b = trainer_for("rbp", channel_dropout=0.0)
    c = trainer_for("rbp", channel_dropout=0.5)
    preview = c.signals(x, y)
    for s, t in zip(a.signals(x, y), b.signals(x, y)):
        np.testing.assert_array_equal(s, t)
    # signals() draws from a copy of the streams: the next step uses the same masks.
    c.step(x, y)
    masks = c._core.dropout_masks()
    assert any(np.any(m == 0) for m in masks)
    again = trainer_for("rbp", channel_dropout=0.5)
    np.testing.assert_array_equal(again.signals(x, y)[0], preview[0])


@pytest.mark.parametrize("frozen", [[1], [2], [1, 2], [3]])
def test_frozen_layers(frozen):
    trainer = trainer_for("srbp")
    before = trainer.net.weights
    trainer.step(*batch())
    trainer2 = compare_steps("srbp", frozen_layers=frozen, momentum=0.3)
    after = trainer2.net.weights
    for layer in range(1, 4):
        changed = not np.array_equal(before[layer - 1], after[layer - 1])
        assert changed == (layer not in frozen)
    with pytest.raises(ValueError, match="frozen layer 4"):
        trainer_for("srbp", frozen_layers=[4])


# -- low-bit channels ----------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["bp", "rbp", "srbp", "sbp"])
@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_quantised_error_signals(algorithm, bits):
    trainer = compare_steps(algorithm, quantize="signal", quantize_bits=bits, derivative=False)
    alpha = 2.0**-3
    assert trainer.config()["quantize_alpha"] == alpha
    step = alpha * 2.0 ** (1 - bits)
    for s in trainer.signals(*batch())[:-1]:
        k = s / step
        np.testing.assert_allclose(k, np.round(k), atol=1e-9)
        assert np.abs(s).max() <= alpha + 1e-15


@pytest.mark.parametrize("algorithm", ["bp", "rbp", "srbp"])
@pytest.mark.parametrize("bits", [2, 6, 10])
def test_quantised_weight_updates(algorithm, bits):
    compare_steps(algorithm, quantize="update", quantize_bits=bits, decay=0.0, lr=0.1, momentum=0.0)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_nearest_signal_quantisation_rounds_ties_to_even_and_clips(dtype):
    # Linear output with zero output weights: O = 0, e = T (one-hot), so srbp's J^1 = e F^T is the
    # label's column of F, set to exact ties of the grid (and values beyond alpha). 40 hidden units:
    # whole SIMD packets as well as a scalar tail.
    bits, alpha = 4, 0.5
    delta = alpha * 2.0 ** (1 - bits)
    ties = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 9.0, -9.0, 3.25, -3.75])
    rounded = np.array([0.0, 2.0, 2.0, -0.0, -2.0, -2.0, 8.0, -8.0, 3.0, -4.0])
    hidden = 40
    column = np.resize(ties, hidden) * delta
    net = rbp.MLP([3, hidden, 2], output="linear", dtype=dtype, seed=1)
    net.set_weights([net.weights[0], np.zeros((2, hidden))])
    trainer = rbp.Trainer(
        net, algorithm="srbp", derivative=False, quantize="signal", quantize_bits=bits, quantize_alpha=alpha
    )
    trainer.set_feedback([np.stack([column, -column], axis=1)])
    x = np.zeros((2, 3), dtype=dtype)
    b1 = trainer.signals(x, np.array([0, 1]))[0]
    expected = np.resize(rounded, hidden) * delta
    np.testing.assert_array_equal(b1, np.stack([expected, -expected]))  # Q(-x) = -Q(x)


def test_update_quantisation_with_stochastic_rounding_is_on_the_grid_and_unbiased():
    # lr 0.01 keeps every per-example update |lr * e * O| < alpha = 2^-6, so nothing is clipped.
    options = dict(quantize="update", quantize_bits=4, quantize_rounding="stochastic", lr=0.01, decay=0.0)
    step = 2.0**-6 * 2.0 ** (1 - 4)
    x, y = batch()
    plain = trainer_for("srbp", lr=0.01, decay=0.0)
    start = plain.net.weights[-1]
    plain.step(x, y)
    exact = plain.net.weights[-1] - start
    deltas = []
    for seed in range(300):
        # Same network each time; the trainer seed changes the quantize stream.
        net = trainer_for("srbp").net
        trainer = rbp.Trainer(net, algorithm="srbp", seed=seed, batch_size=9, **options)
        trainer.step(x, y)
        deltas.append(net.weights[-1] - start)
        k = deltas[-1] * 9 / step  # a mean of 9 grid values is a multiple of step / 9
        np.testing.assert_allclose(k, np.round(k), atol=1e-6)
    assert len({d.tobytes() for d in deltas}) > 1
    np.testing.assert_allclose(np.mean(deltas, axis=0), exact, atol=5 * step / np.sqrt(300 * 9))


def test_stochastic_signal_quantisation_is_on_the_grid():
    trainer = trainer_for("srbp", quantize="signal", quantize_bits=3, quantize_rounding="stochastic", derivative=False)
    step = 2.0**-3 * 2.0 ** (1 - 3)
    for s in trainer.signals(*batch())[:-1]:
        np.testing.assert_allclose(s / step, np.round(s / step), atol=1e-9)


@pytest.mark.parametrize("mode", ["signal", "update"])
def test_many_bits_reproduce_the_unquantised_run(mode):
    plain = trainer_for("srbp", lr=0.1)
    quantised = trainer_for("srbp", lr=0.1, quantize=mode, quantize_bits=60, quantize_alpha=2.0**10)
    for k in range(3):
        x, y = batch(k)
        plain.step(x, y)
        quantised.step(x, y)
    for a, b in zip(plain.net.weights, quantised.net.weights):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


# -- determinism and bad combinations -----------------------------------------------------------


def test_determinism_with_every_option_on():
    def train(seed):
        rng = np.random.default_rng(5)
        x = rng.uniform(size=(300, 6)).astype(np.float32)
        y = rng.integers(0, 3, 300)
        net = rbp.MLP(SIZES, seed=seed)
        trainer = rbp.Trainer(
            net,
            algorithm="rbp",
            seed=seed,
            batch_size=32,
            momentum=0.5,
            sources=["output", "above"],
            feedback_distribution="uniform",
            feedback_density=0.6,
            congruent=True,
            resample="sign_concordant",
            channel_dropout=0.2,
            dropout_inverted=True,
            signal_transform="sign",
            quantize="signal",
            quantize_bits=5,
            quantize_rounding="stochastic",
            frozen_layers=[2],
            threads=1,
        )
        trainer.fit((x, y), epochs=2, progress=False)
        return net.weights

    for a, b in zip(train(1), train(1)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(train(1)[0], train(2)[0])


@pytest.mark.parametrize(
    "options,match",
    [
        ({"algorithm": "bp", "feedback_density": 0.5}, "feedback algorithms"),
        ({"algorithm": "bp", "sources": "above"}, "sources apply only"),
        ({"algorithm": "srbp", "sources": ["above"]}, "one entry per hidden layer"),
        ({"algorithm": "srbp", "feedback_density": 1.5}, "density"),
        ({"algorithm": "srbp", "feedback_density": 0.5, "feedback_nonzeros": 3}, "not both"),
        ({"algorithm": "srbp", "feedback_nonzeros": -1}, "nonzeros"),
        ({"algorithm": "srbp", "feedback_distribution": "cauchy"}, "feedback_distribution"),
        ({"algorithm": "srbp", "resample": "always"}, "resample"),
        ({"algorithm": "arbp", "resample": "zero_mean"}, "adaptive"),
        ({"algorithm": "arbp", "feedback_storage": "sparse"}, "dense feedback storage"),
        ({"algorithm": "srbp", "channel_dropout": 1.0}, "channel_dropout"),
        ({"algorithm": "srbp", "quantize": "weights"}, "quantize"),
        ({"algorithm": "srbp", "quantize": "signal", "quantize_bits": 0}, "quantize_bits"),
        ({"algorithm": "srbp", "quantize": "signal", "quantize_alpha": -1.0}, "quantize_alpha"),
        ({"algorithm": "srbp", "signal_transform": "square"}, "signal_transform"),
        ({"algorithm": "srbp", "per_synapse": True, "channel_dropout": 0.1}, "per_synapse"),
        (
            {"algorithm": "srbp", "quantize": "update", "signal_transform": "sign", "transform_target": "update"},
            "quantised updates",
        ),
        ({"algorithm": "srbp", "feedback_scale": -1.0}, "feedback_scale"),
    ],
)
def test_impossible_channel_options(options, match):
    net = rbp.MLP(SIZES)
    with pytest.raises(ValueError, match=match):
        rbp.Trainer(net, **options)
