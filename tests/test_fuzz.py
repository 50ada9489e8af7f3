"""Property-based tests of bad input: every public call either works, with the result it gives for
the same data in canonical form, or raises a clear Python exception that names the offending
argument or file; never another exception type, a crash or a hang.

The number of examples comes from the hypothesis profile (tests/conftest.py): "ci" by default,
``HYPOTHESIS_PROFILE=long`` for thousands of examples per property.
"""

from __future__ import annotations

import copy
import gzip
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import rbp_native as rbp
from idx_files import BASES, encode, make_raw, write_set
from rbp_native import checkpoint as ckpt
from rbp_native.datasets import DatasetError
from rbp_native.experiments import config as experiment_config
from rbp_native.trainer import FEEDBACK_ALGORITHMS, TrainingDiverged

CLEAR_ERRORS = (ValueError, TypeError, FileNotFoundError)
SIZES = [5, 4, 3]  # small enough for many examples per second, deep enough for a hidden feedback chain
FUNCTION_SCOPED = [HealthCheck.function_scoped_fixture]


def is_bool(value) -> bool:
    return isinstance(value, (bool, np.bool_))


def assert_names(error: BaseException, *names: str) -> None:
    message = str(error)
    assert any(name in message for name in names), f"{type(error).__name__}: {message!r} names none of {names}"


# ----------------------------------------------------------------------------------------------
# Strategies


def any_value():
    """Python values of every kind a keyword argument might wrongly receive."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=12),
        st.binary(max_size=4),
        st.sampled_from([np.float16(1.5), np.int8(-3), np.uint64(2**63), np.bool_(True), 1 + 2j, object()]),
    )
    return st.one_of(scalars, st.lists(scalars, max_size=4), st.tuples(scalars, scalars))


def probably_valid(valid: list, extra=None):
    """Mostly values a keyword accepts, sometimes anything at all."""
    choices = [st.sampled_from(valid), any_value()]
    if extra is not None:
        choices.append(extra)
    return st.one_of(*choices)


MLP_VALUES = {
    "sizes": probably_valid(
        [[5, 4, 3], [5, 3], [5, 2, 2, 3]], st.lists(st.integers(min_value=-2, max_value=6), max_size=5)
    ),
    "activation": probably_valid(list(rbp.network.ACTIVATIONS)),
    "output": probably_valid(list(rbp.network.OUTPUTS)),
    "dtype": probably_valid(
        ["float32", "float64", np.float32, np.float64, "float16", "int32", "complex64", np.dtype("float64"), "f8"]
    ),
    "seed": probably_valid([0, 1, 2**63], st.integers(min_value=-5, max_value=2**65)),
    "bias": probably_valid([True, False]),
    "init": probably_valid(list(rbp.network.INITS)),
    "connectivity": probably_valid(
        [None, 1.0, 0.5, [1.0, 0.5]], st.lists(st.floats(min_value=-0.5, max_value=1.5), max_size=3)
    ),
}

TRAINER_VALUES = {
    "algorithm": probably_valid(list(rbp.ALGORITHMS)),
    "derivative": probably_valid([True, False, [True], [False]], st.lists(st.booleans(), max_size=3)),
    "lr": probably_valid([0.1, 1e-3], st.floats(min_value=-1, max_value=10)),
    "decay": probably_valid([0.0, 1e-6], st.floats(min_value=-1, max_value=1)),
    "momentum": probably_valid([0.0, 0.9], st.floats(min_value=-1, max_value=2)),
    "batch_size": probably_valid([1, 2, 7, 100], st.integers(min_value=-3, max_value=2**40)),
    "seed": probably_valid([0, 5], st.integers(min_value=-5, max_value=2**65)),
    "threads": probably_valid([None, 1, 2], st.integers(min_value=-2, max_value=2**40)),
    "feedback_scale": probably_valid(["glorot", "unit", 0.5], st.floats(min_value=-1, max_value=4)),
    "feedback_distribution": probably_valid(list(rbp.trainer.FEEDBACK_DISTRIBUTIONS)),
    "feedback_mean": probably_valid([0.0, 0.1], st.floats(min_value=-2, max_value=2)),
    "feedback_density": probably_valid([1.0, 0.5, 0.01], st.floats(min_value=-0.5, max_value=1.5)),
    "feedback_nonzeros": probably_valid([None, 1, 2.5], st.floats(min_value=-2, max_value=10)),
    "feedback_storage": probably_valid(list(rbp.trainer.FEEDBACK_STORAGES)),
    "congruent": probably_valid([False, True]),
    "resample": probably_valid([None, *rbp.trainer.RESAMPLE_MODES]),
    "sources": probably_valid([None, "above", "output", ["output"]]),
    "feedback_lr_scale": probably_valid([1.0, 0.0, 0.5], st.floats(min_value=-1, max_value=2)),
    "per_synapse": probably_valid([False, True]),
    "signal_transform": probably_valid(list(rbp.trainer.SIGNAL_TRANSFORMS)),
    "transform_target": probably_valid(list(rbp.trainer.TRANSFORM_TARGETS)),
    "channel_dropout": probably_valid([0.0, 0.5], st.floats(min_value=-0.5, max_value=1.5)),
    "dropout_inverted": probably_valid([False, True]),
    "frozen_layers": probably_valid(
        [(), [1], [2], [1, 2]], st.lists(st.integers(min_value=-1, max_value=4), max_size=3)
    ),
    "quantize": probably_valid([None, *rbp.trainer.QUANTIZE_MODES]),
    "quantize_bits": probably_valid([8, 1, 4, 64], st.integers(min_value=-1, max_value=70)),
    "quantize_alpha": probably_valid([None, 0.125], st.floats(min_value=-1, max_value=2)),
    "quantize_rounding": probably_valid(list(rbp.trainer.ROUNDINGS)),
}


def batch(rows: int, seed: int = 0, features: int = SIZES[0], classes: int = SIZES[-1]):
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((rows, features)).astype(np.float32),
        rng.integers(0, classes, size=rows).astype(np.int64),
    )


def check_usable(trainer: rbp.Trainer, expect_finite: bool = True) -> None:
    """A trainer that was built must train and evaluate with well-shaped results, finite unless an
    option was absurdly large (a feedback mean of 1e38 overflows float32 products), or stop with
    TrainingDiverged, the documented outcome of a loss that is not finite."""
    x, y = batch(6)
    signals = trainer.signals(x, y)
    assert len(signals) == trainer.net.num_layers
    for h, signal in enumerate(signals):
        if signal is not None:
            assert signal.shape == (6, trainer.net.sizes[h + 1])
            assert np.isfinite(signal).all() or not expect_finite
    try:
        trainer.step(x, y)
    except TrainingDiverged:
        return
    result = trainer.evaluate(x, y)
    assert 0.0 <= result["accuracy"] <= 1.0


# ----------------------------------------------------------------------------------------------
# Options of MLP and Trainer


@given(key=st.sampled_from(sorted(MLP_VALUES)), data=st.data())
@settings(deadline=None)
def test_mlp_rejects_a_bad_keyword_by_name(key, data):
    value = data.draw(MLP_VALUES[key], label=key)
    options = {"sizes": [5, 4, 3], "seed": 0}
    options[key] = value
    if key == "sizes" and isinstance(value, (list, tuple)) and all(isinstance(n, int) and n > 0 for n in value):
        assume(sum(a * b for a, b in zip(value, value[1:])) < 10**6)  # no multi-gigabyte valid networks
    try:
        net = rbp.MLP(**options)
    except CLEAR_ERRORS as error:
        assert_names(error, key, *({"sizes": ["width"], "seed": []}.get(key, [])))
        return
    # Accepted: the network holds exactly the value given (no silent coercion of 1.5 to 1 or "no" to True).
    stored = net.config()[key]
    if key == "dtype":
        assert net.dtype == np.dtype(value)
    elif key == "connectivity":
        given_densities = [1.0, 1.0] if value is None else [value] * 2 if np.isscalar(value) else list(value)
        assert net.connectivity == given_densities
    elif key == "sizes":
        assert stored == list(value)
    else:
        assert stored == value and is_bool(value) == is_bool(stored)
    x = np.ones((2, net.sizes[0]))
    out = net.forward(x)
    assert out.shape == (2, net.sizes[-1]) and out.dtype == net.dtype and np.isfinite(out).all()


@given(key=st.sampled_from(sorted(TRAINER_VALUES)), algorithm=st.sampled_from(rbp.ALGORITHMS), data=st.data())
@settings(deadline=None)
def test_trainer_rejects_a_bad_keyword_by_name(key, algorithm, data):
    value = data.draw(TRAINER_VALUES[key], label=key)
    net = rbp.MLP(SIZES, seed=0)
    options = {"algorithm": algorithm, "threads": 1}
    options[key] = value
    try:
        trainer = rbp.Trainer(net, **options)
    except CLEAR_ERRORS as error:
        # An option that applies only to some algorithms is rejected naming either.
        assert_names(
            error,
            key,
            *(["algorithm"] if algorithm not in FEEDBACK_ALGORITHMS else []),
            *({"sources": ["source"], "frozen_layers": ["frozen layer"]}.get(key, [])),
        )
        return
    # Accepted: the trainer holds exactly the value given (no silent coercion).
    stored = trainer.config()[key]
    if key == "threads":
        assert value is None or stored == value
    elif key == "quantize_alpha":
        assert value is None or stored == value
    elif key == "derivative":
        assert stored == ([bool(value)] if is_bool(value) else list(value))
    elif key == "sources":
        assert trainer.sources == (
            []
            if algorithm not in FEEDBACK_ALGORITHMS
            else ["above" if algorithm in ("rbp", "arbp") else "output"]
            if value is None
            else [value]
            if isinstance(value, str)
            else list(value)
        )
    elif isinstance(value, (list, tuple)):
        assert list(stored) == list(value)
    else:
        assert stored == value and is_bool(value) == is_bool(stored), (stored, value)
    check_usable(trainer, expect_finite=not isinstance(value, float) or abs(value) < 1e6)


@given(
    algorithm=st.sampled_from(rbp.ALGORITHMS),
    dtype=st.sampled_from(["float32", "float64"]),
    output=st.sampled_from(rbp.network.OUTPUTS),
    options=st.fixed_dictionaries(
        {},
        optional={
            key: st.sampled_from(values)
            for key, values in {
                "derivative": [True, False, [True, False]],
                "momentum": [0.0, 0.5],
                "feedback_distribution": list(rbp.trainer.FEEDBACK_DISTRIBUTIONS),
                "feedback_density": [1.0, 0.5],
                "feedback_nonzeros": [1, 2.5],
                "feedback_storage": list(rbp.trainer.FEEDBACK_STORAGES),
                "congruent": [True],
                "resample": list(rbp.trainer.RESAMPLE_MODES),
                "sources": ["above", "output"],
                "feedback_lr_scale": [0.0, 0.5],
                "per_synapse": [True],
                "signal_transform": list(rbp.trainer.SIGNAL_TRANSFORMS),
                "transform_target": list(rbp.trainer.TRANSFORM_TARGETS),
                "channel_dropout": [0.25],
                "dropout_inverted": [True],
                "frozen_layers": [[1], [2]],
                "quantize": list(rbp.trainer.QUANTIZE_MODES),
                "quantize_bits": [1, 3, 16],
                "quantize_rounding": list(rbp.trainer.ROUNDINGS),
            }.items()
        },
    ),
)
@settings(deadline=None)
def test_any_combination_of_valid_options_trains_or_is_refused(algorithm, dtype, output, options):
    net = rbp.MLP([5, 4, 4, 3], dtype=dtype, output=output, seed=1)
    try:
        trainer = rbp.Trainer(net, algorithm=algorithm, threads=1, seed=2, **options)
    except CLEAR_ERRORS as error:
        assert str(error)
        return
    check_usable(trainer)


# ----------------------------------------------------------------------------------------------
# Arrays handed to the network and the trainer

NUMERIC = st.sampled_from([np.float16, np.float32, np.float64, np.int8, np.int32, np.uint8, np.int64, np.uint64])
OTHER = st.sampled_from([np.bool_, np.complex64, np.complex128, object, "U3", "M8[s]"])


@st.composite
def arrays(draw, shape, *, numeric_only: bool = False):
    """Arrays of `shape` (a strategy or a tuple) in any dtype and memory layout: C or Fortran order,
    strided views, read-only, with NaN, infinity and huge values."""
    dtype = draw(NUMERIC if numeric_only else st.one_of(NUMERIC, NUMERIC, OTHER))
    shape = draw(shape) if isinstance(shape, st.SearchStrategy) else shape
    layout = draw(st.sampled_from(["c", "fortran", "strided", "reversed"]))
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        huge = float(np.finfo(dtype).max)  # 65504 in float16, 3.4e38 in float32
        elements = st.one_of(
            st.floats(-3, 3, width=min(dtype.itemsize * 8, 64)),
            st.sampled_from([np.nan, np.inf, -np.inf, huge, -huge, min(1e38, huge), 0.0]),
        )
        base = draw(hnp.arrays(dtype, shape, elements=elements))
    elif dtype.kind in "iu":
        base = draw(hnp.arrays(dtype, shape, elements=st.integers(0 if dtype.kind == "u" else -3, 3)))
    elif dtype.kind == "O":
        base = np.empty(shape, dtype=object)
        base.fill(draw(st.sampled_from([1.0, None, "x"])))
    elif dtype.kind == "M":
        base = np.zeros(shape, dtype=dtype)
    else:
        base = draw(hnp.arrays(dtype, shape))
    if layout == "fortran":
        array = np.asfortranarray(base)
    elif layout == "strided":
        # The same values as every other element of a twice-as-large array.
        wide = np.repeat(base, 2, axis=-1) if base.ndim else base
        array = wide[..., ::2] if base.ndim else wide
    elif layout == "reversed" and base.ndim:
        array = np.flip(np.flip(base, axis=0).copy(), axis=0)
    else:
        array = base
    if draw(st.booleans()):
        array = array.view()
        array.flags.writeable = False
    return array


def input_shapes(features: int):
    return st.one_of(
        st.tuples(st.integers(1, 6), st.just(features)),
        st.tuples(st.integers(0, 3), st.integers(0, 7)),
        st.lists(st.integers(0, 5), min_size=0, max_size=3).map(tuple),
    )


def canonical_inputs(x, dtype, features):
    """What the inputs should be once accepted, or None when they must be refused."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiu" or x.ndim != 2 or x.shape[1] != features or x.shape[0] == 0:
        return None
    with np.errstate(over="ignore"):
        result = np.ascontiguousarray(x, dtype=dtype)
    return result if np.isfinite(result).all() else None


@given(data=st.data(), dtype=st.sampled_from([np.float32, np.float64]))
@settings(deadline=None)
def test_forward_and_predict_accept_any_layout_or_refuse_by_name(data, dtype):
    net = rbp.MLP(SIZES, dtype=dtype, seed=3)
    x = data.draw(arrays(input_shapes(SIZES[0])), label="x")
    expected = canonical_inputs(x, dtype, SIZES[0])
    try:
        out = net.forward(x)
        classes = net.predict(x)
    except CLEAR_ERRORS as error:
        assert expected is None, f"refused valid inputs: {error}"
        assert_names(error, "x")
        return
    assert expected is not None, "accepted inputs that must be refused"
    np.testing.assert_array_equal(out, net.forward(expected))
    np.testing.assert_array_equal(classes, np.argmax(out, axis=1))
    assert np.isfinite(out).all()


def label_arrays(rows: int, classes: int):
    return st.one_of(
        arrays(
            st.sampled_from(
                [
                    (rows,),
                    (rows + 1,),
                    (max(rows - 1, 0),),
                    (rows, classes),
                    (rows, classes + 1),
                    (rows, 1),
                    (rows, classes, 1),
                    (),
                ]
            )
        ),
        hnp.arrays(np.int64, rows, elements=st.integers(-2, classes + 1)),
        hnp.arrays(np.int64, rows, elements=st.integers(0, classes - 1)),
        hnp.arrays(np.float64, rows, elements=st.integers(0, classes - 1).map(float)),
    )


def canonical_targets(y, dtype, outputs, rows):
    y = np.asarray(y)
    if y.ndim == 1:
        if y.dtype.kind not in "iu" or y.shape[0] != rows:
            return None
        classes = 2 if outputs == 1 else outputs
        if y.size and (y.min() < 0 or y.max() >= classes):
            return None
        return y.astype(np.int64)
    if y.ndim == 2 and y.dtype.kind in "fiu" and y.shape == (rows, outputs):
        with np.errstate(over="ignore"):
            result = np.ascontiguousarray(y, dtype=dtype)
        return result if np.isfinite(result).all() else None
    return None


def twin_trainers(dtype, algorithm, output="softmax", **options):
    """Two trainers with the same seeds: one gets odd arrays, the other their canonical copies."""

    def make():
        net = rbp.MLP(SIZES, dtype=dtype, output=output, seed=4)
        return rbp.Trainer(net, algorithm=algorithm, threads=1, seed=5, batch_size=3, **options)

    return make(), make()


def assert_same_parameters(a: rbp.Trainer, b: rbp.Trainer) -> None:
    for wa, wb in zip(a.net.weights, b.net.weights):
        np.testing.assert_array_equal(wa, wb)
    for ba, bb in zip(a.net.biases, b.net.biases):
        np.testing.assert_array_equal(ba, bb)
    for fa, fb in zip(a.feedback, b.feedback):
        np.testing.assert_array_equal(fa, fb)


def run_or_refuse(call, expected_valid: bool, names=("x", "y")):
    """The call's result when `expected_valid`, or None after checking that it was refused clearly."""
    try:
        result = call()
    except TrainingDiverged:
        assert expected_valid
        raise
    except CLEAR_ERRORS as error:
        assert not expected_valid, f"refused valid data: {type(error).__name__}: {error}"
        assert_names(error, *names)
        return None
    assert expected_valid, "accepted data that must be refused"
    return result


@given(
    data=st.data(),
    dtype=st.sampled_from([np.float32, np.float64]),
    algorithm=st.sampled_from(["bp", "srbp", "rbp"]),
    output=st.sampled_from(rbp.network.OUTPUTS),
    method=st.sampled_from(["step", "signals", "evaluate", "alignment"]),
)
@settings(deadline=None)
def test_batch_methods_accept_any_layout_or_refuse_by_name(data, dtype, algorithm, output, method):
    odd, plain = twin_trainers(dtype, algorithm, output)
    outputs = SIZES[-1]
    x = data.draw(
        st.one_of(
            arrays(input_shapes(SIZES[0])),
            arrays((data.draw(st.integers(1, 6), label="rows"), SIZES[0]), numeric_only=True),
        ),
        label="x",
    )
    rows = x.shape[0] if x.ndim == 2 else 1
    y = data.draw(label_arrays(rows, outputs), label="y")
    xs, ys = canonical_inputs(x, dtype, SIZES[0]), canonical_targets(y, dtype, outputs, rows)
    valid = xs is not None and ys is not None
    try:
        got = run_or_refuse(lambda: getattr(odd, method)(x, y), valid)
    except TrainingDiverged:
        with pytest.raises(TrainingDiverged):
            getattr(plain, method)(xs, ys)
        assert_same_parameters(odd, plain)
        return
    if not valid:
        return
    expected = getattr(plain, method)(xs, ys)
    if method == "signals":
        for g, e in zip(got, expected):
            np.testing.assert_array_equal(g, e)
    elif method == "step":
        assert got == expected or (np.isnan(got) and np.isnan(expected))
    else:
        assert got.keys() == expected.keys()
        np.testing.assert_array_equal(np.array(list(got.values())), np.array(list(expected.values())))
    assert_same_parameters(odd, plain)


@given(data=st.data(), dtype=st.sampled_from([np.float32, np.float64]), algorithm=st.sampled_from(["bp", "srbp"]))
@settings(deadline=None)
def test_fit_on_any_layout_is_bit_identical_to_fit_on_the_canonical_copy(data, dtype, algorithm):
    odd, plain = twin_trainers(dtype, algorithm, momentum=0.5)
    rows = data.draw(st.integers(1, 8), label="rows")
    x = data.draw(arrays((rows, SIZES[0]), numeric_only=True), label="x")
    y = data.draw(label_arrays(rows, SIZES[-1]), label="y")
    xs, ys = canonical_inputs(x, dtype, SIZES[0]), canonical_targets(y, dtype, SIZES[-1], rows)
    valid = xs is not None and ys is not None
    try:
        got = run_or_refuse(lambda: odd.fit((x, y), epochs=2, progress=False), valid)
    except TrainingDiverged as diverged:
        with pytest.raises(TrainingDiverged) as expected:
            plain.fit((xs, ys), epochs=2, progress=False)
        assert len(diverged.history) == len(expected.value.history)
        assert_same_parameters(odd, plain)
        return
    if valid:
        expected = plain.fit((xs, ys), epochs=2, progress=False)
        for g, e in zip(got.records, expected.records):
            assert {k: v for k, v in g.items() if k != "seconds"} == {k: v for k, v in e.items() if k != "seconds"}
        assert_same_parameters(odd, plain)


@given(
    data=st.data(),
    which=st.sampled_from(["train", "eval"]),
    form=st.sampled_from(["pair", "triple", "number", "string", "x only"]),
)
@settings(deadline=None)
def test_fit_refuses_bad_train_and_eval_arguments_by_name(data, which, form):
    trainer = rbp.Trainer(rbp.MLP(SIZES, seed=0), threads=1)
    good = batch(4)
    bad_x = data.draw(arrays(input_shapes(SIZES[0])), label="bad x")
    assume(canonical_inputs(bad_x, np.float32, SIZES[0]) is None)
    rows = bad_x.shape[0] if bad_x.ndim else 1
    argument = {
        "pair": (bad_x, np.zeros(rows, np.int64)),
        "triple": (good[0], good[1], good[1]),
        "number": 42,
        "string": "mnist",
        "x only": good[0],
    }[form]
    with pytest.raises(CLEAR_ERRORS) as info:
        if which == "train":
            trainer.fit(argument, progress=False)
        else:
            trainer.fit(good, eval=argument, progress=False)
    assert_names(info.value, which)
    assert trainer.updates == 0 and len(trainer.history) == 0  # refused before any training


# ----------------------------------------------------------------------------------------------
# Parameter setters


@given(
    data=st.data(),
    dtype=st.sampled_from([np.float32, np.float64]),
    connectivity=st.sampled_from([None, [0.5, 1.0]]),
    target=st.sampled_from(["weights", "biases", "feedback"]),
)
@settings(deadline=None)
def test_parameter_setters_take_any_layout_or_refuse_by_name(data, dtype, connectivity, target):
    net = rbp.MLP(SIZES, dtype=dtype, seed=6, connectivity=connectivity)
    trainer = rbp.Trainer(net, algorithm="rbp", threads=1)
    current = {"weights": net.weights, "biases": net.biases, "feedback": trainer.feedback}[target]
    count = data.draw(st.sampled_from([len(current), len(current), len(current) - 1, len(current) + 1]))
    new = []
    for h in range(count):
        shape = current[h].shape if h < len(current) else (2, 2)
        shape = data.draw(
            st.one_of(
                st.just(shape),
                st.just(shape),
                st.just(shape[::-1]),
                hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
            )
        )
        new.append(data.draw(arrays(shape), label=f"{target}[{h}]"))
    masks = net.masks
    valid = count == len(current)
    with np.errstate(over="ignore", invalid="ignore"):
        for h, array in enumerate(new[: len(current)] if valid else []):
            a = np.asarray(array)
            valid = valid and a.dtype.kind in "fiu" and a.shape == current[h].shape
            valid = valid and np.isfinite(a.astype(dtype)).all()
            if valid and target == "weights":
                valid = not ((a != 0) & ~masks[h]).any()
    setter = {"weights": net.set_weights, "biases": net.set_biases, "feedback": trainer.set_feedback}[target]
    before = copy.deepcopy(current)
    try:
        setter(new)
    except CLEAR_ERRORS as error:
        assert not valid, f"refused valid parameters: {error}"
        assert_names(error, target)
        after = {"weights": net.weights, "biases": net.biases, "feedback": trainer.feedback}[target]
        for a, b in zip(after, before):
            np.testing.assert_array_equal(a, b)  # nothing half-set
        return
    assert valid, "accepted parameters that must be refused"
    after = {"weights": net.weights, "biases": net.biases, "feedback": trainer.feedback}[target]
    for a, b in zip(after, new):
        np.testing.assert_array_equal(a, np.asarray(b).astype(dtype))


# ----------------------------------------------------------------------------------------------
# Checkpoints


class Content(bytes):
    """File content that hypothesis's failure reports show by name, not as 50 kB of bytes."""

    def __repr__(self) -> str:
        return f"<{len(self)} bytes of a good checkpoint>"


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory) -> bytes:
    """A real checkpoint taken mid-epoch (so every member kind is present: feedback, velocities,
    streams, an epoch order and the weights at the epoch's start)."""
    net = rbp.MLP([6, 5, 4, 3], seed=0)
    trainer = rbp.Trainer(net, algorithm="srbp", momentum=0.5, batch_size=4, threads=1, seed=1)
    x, y = batch(21, features=6)
    path = tmp_path_factory.mktemp("checkpoint") / "good.npz"
    trainer.fit((x, y), epochs=1, progress=False, diagnostics=True, diagnostics_batch=5)
    trainer._core.train_epoch(x, y, None, 10, 2)  # two batches of the next epoch: an epoch left pending
    trainer._epoch_start_weights = net.weights
    trainer.save(path)
    return Content(path.read_bytes())


def members_of(content: bytes) -> dict[str, np.ndarray]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.npz"
        path.write_bytes(content)
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}


def json_values():
    return st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=6)),
        lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
        max_leaves=6,
    )


def damages():
    """A damage to apply to a checkpoint, as plain choices (positions as fractions of the file,
    members as indices), so that the drawing never depends on the file's content."""
    fraction = st.floats(0, 1, exclude_max=True)
    return st.one_of(
        st.tuples(st.just("truncate"), fraction),
        st.tuples(st.just("flip"), st.lists(st.tuples(fraction, st.integers(1, 255)), min_size=1, max_size=3)),
        st.tuples(st.just("drop"), st.integers(0, 63)),
        st.tuples(
            st.just("replace"),
            st.integers(0, 63),
            st.one_of(st.none(), hnp.array_shapes(min_dims=0, max_dims=3, max_side=4)),
            st.sampled_from([None, np.float32, np.float64, np.int64, np.uint64, np.uint8, np.bool_, "U4"]),
            st.integers(0, 2**32 - 1),
        ),
        st.tuples(
            st.just("meta"),
            st.sampled_from(["network", "trainer", "state", "history", None]),
            st.one_of(st.integers(0, 63), st.text(max_size=5)),
            st.booleans(),
            json_values(),
        ),
    )


def damaged(content: bytes, damage: tuple) -> bytes:
    kind = damage[0]
    if kind == "truncate":
        return content[: int(damage[1] * len(content))]
    if kind == "flip":
        data = bytearray(content)
        for where, bits in damage[1]:
            data[int(where * len(data))] ^= bits
        return bytes(data)
    members = members_of(content)
    names = sorted(members)
    if kind == "drop":
        del members[names[damage[1] % len(names)]]
    elif kind == "replace":
        _, index, shape, dtype, seed = damage
        name = names[index % len(names)]
        old = members[name]
        shape = old.shape if shape is None else shape
        dtype = old.dtype if dtype is None else np.dtype(dtype)
        values = np.random.default_rng(seed).standard_normal(shape) * 10
        members[name] = values.astype(str).astype(dtype) if dtype.kind == "U" else values.astype(dtype)
    else:
        _, section, key, delete, value = damage
        meta = json.loads(str(members["meta"]))
        table = meta if section is None else meta[section]
        if isinstance(key, int):
            key = sorted(table)[key % len(table)]
        if delete:
            table.pop(key, None)
        else:
            table[key] = value
        members["meta"] = np.array(json.dumps(meta))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.npz"
        np.savez(path, **members)
        return path.read_bytes()


@given(damage=damages())
@settings(deadline=None, suppress_health_check=FUNCTION_SCOPED)
def test_damaged_checkpoints_load_or_raise_naming_the_file(damage, good_checkpoint):
    with np.errstate(invalid="ignore", over="ignore"):
        content = damaged(good_checkpoint, damage)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "damaged.npz"
        path.write_bytes(content)
        try:
            trainer = rbp.Trainer.load(path)
        except CLEAR_ERRORS as error:
            note(f"{type(error).__name__}: {error}")
            assert_names(error, str(path))
            return
        # Loaded: a change the format allows (a value replaced by another valid one, a flipped bit
        # in a zip field nothing reads). The trainer must still run cleanly.
        try:
            check_usable(trainer)
            trainer.fit(batch(9, features=trainer.net.sizes[0]), epochs=1, progress=False)
        except CLEAR_ERRORS as error:
            note(f"{type(error).__name__}: {error}")


# ----------------------------------------------------------------------------------------------
# IDX files


@st.composite
def damaged_idx(draw):
    """The four files of a small MNIST-format set, one of them damaged; (key, bytes, gzipped)."""
    key = draw(st.sampled_from(sorted(BASES)))
    raw = make_raw()
    plain = encode(raw)[key]
    kind = draw(st.sampled_from(["truncate", "flip", "magic", "count", "dims", "append", "gzip"]))
    data = bytearray(plain)
    if kind == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif kind == "flip":
        for _ in range(draw(st.integers(1, 3))):
            data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
    elif kind in ("magic", "count", "dims"):
        offset = {"magic": 0, "count": 4, "dims": 8}[kind]
        if kind == "dims" and key.endswith("labels"):
            offset = 4
        data[offset : offset + 4] = draw(st.integers(0, 2**32 - 1)).to_bytes(4, "big")
    elif kind == "append":
        data += draw(st.binary(min_size=1, max_size=8))
    blob = gzip.compress(bytes(data), mtime=0)
    if kind == "gzip":
        damaged = bytearray(blob)
        how = draw(st.sampled_from(["truncate", "flip"]))
        if how == "truncate":
            damaged = damaged[: draw(st.integers(0, len(damaged) - 1))]
        else:
            damaged[draw(st.integers(0, len(damaged) - 1))] ^= draw(st.integers(1, 255))
        blob = bytes(damaged)
    gzipped = draw(st.booleans()) or kind == "gzip"
    return key, (blob if gzipped else bytes(data)), gzipped


@given(damage=damaged_idx())
@settings(deadline=None)
def test_damaged_idx_files_load_correctly_or_raise_naming_the_file(damage):
    key, content, gzipped = damage
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder) / "mnist"
        write_set(directory)
        for name in BASES.values():  # keep exactly one copy of each file, the damaged one as given
            for suffix in ("", ".gz"):
                path = directory / (name + suffix)
                if path.exists():
                    path.unlink()
        write_set(directory, skip=(key,))
        damaged = directory / (BASES[key] + (".gz" if gzipped else ""))
        damaged.write_bytes(content)
        try:
            train, test = rbp.datasets.load("mnist", root=folder)
        except CLEAR_ERRORS as error:
            note(f"{type(error).__name__}: {error}")
            assert isinstance(error, DatasetError)
            assert_names(error, str(damaged))
            return
    # Loaded: the damage left a well-formed file (a changed pixel or label value); what was read
    # must still be a consistent data set.
    raw = make_raw()
    for split in (train, test):
        assert split.x.shape[0] == split.y.shape[0] and split.x.shape[1] == 784
        assert split.x.dtype == np.float32 and (split.x >= 0).all() and (split.x <= 1).all()
        assert split.y.dtype == np.int64 and (split.y >= 0).all() and (split.y <= 9).all()
    assert train.x.shape[0] == len(raw["train-images"]) and test.x.shape[0] == len(raw["test-images"])


# ----------------------------------------------------------------------------------------------
# Experiment configs


def toml_values():
    scalars = st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(), st.text(max_size=8))
    return st.recursive(
        scalars,
        lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
        max_leaves=5,
    )


CONFIG_KEYS = sorted(
    {
        *experiment_config.EXPERIMENT_KEYS,
        *experiment_config.NETWORK_KEYS,
        *experiment_config.trainer_keys(),
        *experiment_config.VARIANT_META_KEYS,
        *experiment_config.CHECK_KEYS,
    }
)


@given(experiment=st.sampled_from(experiment_config.list_experiments()), data=st.data())
@settings(deadline=None)
def test_mutated_experiment_configs_parse_or_raise_naming_the_file(experiment, data):
    path = experiment_config.config_path(experiment)
    document = experiment_config.tomllib.loads(path.read_text())
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        tables = [
            ("experiment", document.setdefault("experiment", {})),
            ("defaults", document.setdefault("defaults", {})),
        ]
        tables += [(f"variant {i}", v) for i, v in enumerate(document.get("variant", [])) if isinstance(v, dict)]
        tables += [(f"check {i}", c) for i, c in enumerate(document.get("check", [])) if isinstance(c, dict)]
        _, table = data.draw(st.sampled_from(tables), label="table")
        key = data.draw(st.one_of(st.sampled_from(CONFIG_KEYS), st.text(max_size=6)), label="key")
        if data.draw(st.booleans(), label="delete") and key in table:
            del table[key]
        else:
            table[key] = data.draw(toml_values(), label="value")
    source = f"fuzzed-{experiment}.toml"
    try:
        parsed = experiment_config.parse_experiment(document, source, epochs=1, seeds=1, limit=10)
        experiment_config.validate(parsed)
    except CLEAR_ERRORS as error:
        note(f"{type(error).__name__}: {error}")
        assert isinstance(error, experiment_config.ConfigError), f"{type(error).__name__}: {error}"
        assert_names(error, source)
        return
    assert parsed.runs()


@given(experiment=st.sampled_from(experiment_config.list_experiments()), data=st.data())
@settings(deadline=None)
def test_damaged_experiment_files_load_or_raise_naming_the_file(experiment, data):
    content = bytearray(experiment_config.config_path(experiment).read_bytes())
    kind = data.draw(st.sampled_from(["truncate", "flip", "insert"]))
    if kind == "truncate":
        content = content[: data.draw(st.integers(0, len(content)))]
    elif kind == "flip":
        content[data.draw(st.integers(0, len(content) - 1))] ^= data.draw(st.integers(1, 255))
    else:
        at = data.draw(st.integers(0, len(content)))
        content[at:at] = data.draw(st.binary(min_size=1, max_size=6))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{experiment}.toml"
        path.write_bytes(bytes(content))
        try:
            experiment_config.validate(experiment_config.load_experiment(path, epochs=1, seeds=1))
        except CLEAR_ERRORS as error:
            note(f"{type(error).__name__}: {error}")
            assert isinstance(error, experiment_config.ConfigError), f"{type(error).__name__}: {error}"
            assert_names(error, str(path))


# ----------------------------------------------------------------------------------------------
# Regression tests for what the fuzzing found (each also a plain example)


@pytest.mark.parametrize(
    "options,error,message",
    [
        ({"sizes": None}, TypeError, "sizes"),
        ({"sizes": "53"}, TypeError, "sizes"),
        ({"sizes": [5.7, 3]}, TypeError, "sizes"),  # was truncated to [5, 3]
        ({"sizes": [5, 2**40]}, ValueError, "sizes"),
        ({"seed": 1.5}, TypeError, "seed"),  # was truncated to 1
        ({"seed": None}, TypeError, "seed"),
        ({"seed": 2**64}, ValueError, "seed"),
        ({"bias": "no"}, TypeError, "bias"),  # was True
        ({"dtype": None}, ValueError, "dtype"),  # was float64
        ({"dtype": object()}, ValueError, "dtype"),
        ({"activation": ["tanh"]}, ValueError, "activation"),
    ],
)
def test_mlp_refuses_what_it_used_to_coerce(options, error, message):
    with pytest.raises(error, match=message):
        rbp.MLP(**{"sizes": [5, 4, 3], **options})


@pytest.mark.parametrize(
    "options,error,message",
    [
        ({"lr": "0.1"}, TypeError, "lr"),  # np.isfinite failed without naming it
        ({"lr": True}, TypeError, "lr"),  # was 1.0
        ({"decay": None}, TypeError, "decay"),
        ({"batch_size": 2.5}, TypeError, "batch_size"),  # was 2
        ({"threads": 2**31}, ValueError, "threads"),  # the core's int cast failed with a RuntimeError
        ({"threads": 1.0}, TypeError, "threads"),
        ({"quantize_bits": 8.9}, TypeError, "quantize_bits"),
        ({"congruent": "no", "algorithm": "rbp"}, TypeError, "congruent"),  # was True
        ({"derivative": "yes"}, TypeError, "derivative"),
        ({"derivative": [1]}, TypeError, "derivative"),
        ({"sources": ["output", "above"], "algorithm": "rbp"}, ValueError, "sources"),
        ({"sources": 3, "algorithm": "rbp"}, TypeError, "sources"),
        ({"frozen_layers": 1}, TypeError, "frozen_layers"),
        ({"feedback_nonzeros": "2", "algorithm": "rbp"}, TypeError, "feedback_nonzeros"),
        ({"feedback_scale": True, "algorithm": "rbp"}, ValueError, "feedback_scale"),
    ],
)
def test_trainer_refuses_what_it_used_to_coerce(options, error, message):
    with pytest.raises(error, match=message):
        rbp.Trainer(rbp.MLP(SIZES), **options)


def test_setter_count_errors_name_the_argument():
    net = rbp.MLP(SIZES, seed=0)
    trainer = rbp.Trainer(net, algorithm="rbp")
    with pytest.raises(ValueError, match="^weights: expected 2"):
        net.set_weights(net.weights[:1])
    with pytest.raises(ValueError, match="^biases: expected 2"):
        net.set_biases(net.biases[:1])
    with pytest.raises(ValueError, match="^feedback: expected 1"):
        trainer.set_feedback([])


def test_fit_errors_say_whether_train_or_eval_is_wrong():
    trainer = rbp.Trainer(rbp.MLP(SIZES, seed=0), threads=1)
    good = batch(4)
    with pytest.raises(ValueError, match=r"^eval\.x is empty"):
        trainer.fit(good, eval=(good[0][:0], good[1][:0]), progress=False)
    with pytest.raises(ValueError, match=r"^train\.y contains label 7"):
        trainer.fit((good[0], np.full(4, 7)), progress=False)
    assert trainer.updates == 0


def test_an_experiment_file_that_is_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('[experiment]\nname = "caf\u00e9"\n'.encode("latin-1"))
    with pytest.raises(experiment_config.ConfigError, match="not valid TOML") as info:
        experiment_config.load_experiment(path)
    assert str(path) in str(info.value)


def _rewritten(good: bytes, tmp_path: Path, damage: tuple) -> Path:
    path = tmp_path / "bad.npz"
    path.write_bytes(damaged(good, damage))
    return path


@pytest.mark.parametrize(
    "damage,message",
    [
        (("meta", "history", "config", False, True), "history's config is not a table"),  # was a bare TypeError
        (("meta", "history", "config", False, "0"), "history's config is not a table"),  # was a bare ValueError
        (("meta", "state", "updates", False, float("inf")), "inconsistent checkpoint"),  # was an OverflowError
    ],
)
def test_checkpoint_meta_damage_found_by_fuzzing_is_a_checkpoint_error(tmp_path, good_checkpoint, damage, message):
    path = _rewritten(good_checkpoint, tmp_path, damage)
    with pytest.raises(ckpt.CheckpointError, match=message) as info:
        rbp.Trainer.load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("field,offset", [("compression method", 10), ("flags (encrypted)", 8)])
def test_a_damaged_zip_header_field_is_a_checkpoint_error(tmp_path, good_checkpoint, field, offset):
    """zipfile raises NotImplementedError (compression method) or RuntimeError (encrypted member)."""
    content = bytearray(good_checkpoint)
    directory = content.rfind(b"PK\x01\x02")  # the central directory's last entry
    content[directory + offset] ^= 0x01 if "flags" in field else 0x0F
    path = tmp_path / "bad.npz"
    path.write_bytes(bytes(content))
    with pytest.raises(ckpt.CheckpointError, match="not a readable checkpoint") as info:
        rbp.Trainer.load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_inputs_beyond_the_network_precision_are_refused_by_name_without_a_numpy_warning(dtype):
    net = rbp.MLP(SIZES, dtype="float32", seed=0)
    huge = np.full((2, SIZES[0]), 1e39)  # finite in float64, infinite in float32
    with pytest.raises(ValueError, match="^x has values beyond the range of float32"):
        net.forward(huge)
    with pytest.raises(ValueError, match=r"^weights\[0\] has values beyond the range of float32"):
        net.set_weights([np.full((4, 5), -1e39), np.zeros((3, 4))])
    trainer = rbp.Trainer(net, threads=1)
    with pytest.raises(ValueError, match="^y has values beyond"):
        trainer.step(np.zeros((2, SIZES[0]), dtype=dtype), np.full((2, SIZES[-1]), 1e39))


@given(array=arrays(st.lists(st.integers(0, 5), min_size=0, max_size=3).map(tuple), numeric_only=True))
def test_finiteness_scan_agrees_with_numpy(array):
    from rbp_native._arrays import all_finite

    assert all_finite(array) == bool(np.isfinite(array).all())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(data=st.data())
def test_finiteness_scan_finds_one_bad_value_anywhere(dtype, data):
    """The core's scan runs in blocks of 2^14 values: a single NaN or infinity at any position of an
    array spanning several blocks (the first, a block edge, the last value) is found."""
    from rbp_native._native import _core

    size = data.draw(st.sampled_from([1, 2**14 - 1, 2**14, 2**14 + 1, 3 * 2**14 + 5]), label="size")
    array = np.full(size, data.draw(st.sampled_from([0.0, -0.0, 1.5, -3e38])), dtype=dtype)
    assert _core.all_finite(array)
    position = data.draw(st.sampled_from([0, size - 1, min(2**14, size - 1), size // 2]), label="position")
    array[position] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]), label="bad")
    assert not _core.all_finite(array)
    assert not _core.all_finite(array.reshape(1, size))


def test_finiteness_scan_refuses_arrays_it_cannot_read():
    from rbp_native._native import _core

    with pytest.raises(ValueError, match="C-contiguous"):
        _core.all_finite(np.zeros((4, 4), dtype=np.float32)[:, ::2])
    with pytest.raises(TypeError, match="float32 or float64, got int32"):
        _core.all_finite(np.zeros(3, dtype=np.int32))
