"""The named options: one table per option in the core (_core.choices()), the Python constants and the
command line's choices taken from it, and one check of every value with errors that name the option."""

from __future__ import annotations

import argparse
import re

import numpy as np
import pytest

import rbp_native as rbp
from rbp_native import cli, network, trainer
from rbp_native._native import _core

CHOICES = _core.choices()
NETWORK_OPTIONS = ("activation", "output", "init")
# Arguments of a layer (rbp.layers), given on the command line inside --net's layer tables.
LAYER_OPTIONS = ("padding",)
# Options that only the feedback algorithms accept; their bad names are tried under srbp.
FEEDBACK_ONLY = ("sources", "feedback_distribution", "feedback_storage", "resample")


def _train_parser() -> argparse.ArgumentParser:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["train"]


def test_choices_are_tuples_of_distinct_names():
    assert CHOICES, "the core exports no options"
    for option, names in CHOICES.items():
        assert isinstance(names, tuple) and names, option
        assert all(isinstance(n, str) and n for n in names), option
        assert len(set(names)) == len(names), option


def test_python_constants_are_the_core_tables():
    assert trainer.ALGORITHMS == CHOICES["algorithm"] == rbp.ALGORITHMS
    assert trainer.FEEDBACK_SCALES == CHOICES["feedback_scale"]
    assert trainer.FEEDBACK_DISTRIBUTIONS == CHOICES["feedback_distribution"]
    assert trainer.FEEDBACK_STORAGES == CHOICES["feedback_storage"]
    assert trainer.SOURCES == CHOICES["sources"]
    assert trainer.RESAMPLE_MODES == CHOICES["resample"]
    assert trainer.SIGNAL_TRANSFORMS == CHOICES["signal_transform"]
    assert trainer.TRANSFORM_TARGETS == CHOICES["transform_target"]
    assert trainer.QUANTIZE_MODES == CHOICES["quantize"]
    assert trainer.ROUNDINGS == CHOICES["quantize_rounding"]
    assert network.ACTIVATIONS == CHOICES["activation"]
    assert network.OUTPUTS == CHOICES["output"]
    assert network.INITS == CHOICES["init"]
    assert trainer.INJECTIONS == CHOICES["injection"]
    assert rbp.layers.PADDINGS == CHOICES["padding"]


def test_command_line_choices_are_the_core_tables():
    offered = {a.dest: tuple(a.choices) for a in _train_parser()._actions if a.choices is not None}
    for option, names in CHOICES.items():
        if option == "feedback_scale" or option in LAYER_OPTIONS:  # free text / inside --net
            continue
        assert offered.get(option) == names, option
    # The command line's other choices are its own (data sets, dtypes, train metrics), not options.
    assert set(offered) - set(CHOICES) == {"dataset", "dtype", "train_metrics"}


def test_every_name_is_accepted():
    for option, names in CHOICES.items():
        for name in names:
            if option in LAYER_OPTIONS:
                layer = rbp.layers.Conv2D(2, 3, **{option: name})
                net = rbp.Sequential([layer, rbp.layers.Dense(2, "softmax")], input_shape=(1, 6, 6))
                assert getattr(net.layers[0], option) == name
                continue
            if option in NETWORK_OPTIONS:
                net = rbp.MLP([4, 3, 2], **{option: name})
                assert getattr(net, option) == name
                continue
            net = rbp.MLP([4, 3, 3, 2])
            if option == "injection":  # where srbp's error enters a convolution with max-pooling
                L = rbp.layers
                net = rbp.Sequential([L.Conv2D(2, 3), L.MaxPool2D(2), L.Dense(2, "softmax")], input_shape=(1, 6, 6))
            kwargs = {option: name}
            if option in FEEDBACK_ONLY or option in ("algorithm", "injection"):
                kwargs.setdefault("algorithm", "srbp")
            if option == "feedback_storage" and name == "sparse":
                kwargs["feedback_density"] = 0.5
            if option == "transform_target":
                kwargs["signal_transform"] = "sign"
            built = rbp.Trainer(net, **kwargs)
            if option == "algorithm":
                assert built.algorithm == name
            if option == "sources":
                assert built.sources == [name, name]


# A non-string is a bad name too, except for feedback_scale (a number is a scale) and sources (a list).
BAD_NAMES = [(option, "bogus") for option in sorted(CHOICES)] + [
    (option, 5) for option in sorted(CHOICES) if option not in ("feedback_scale", "sources")
]


@pytest.mark.parametrize("option,bad", BAD_NAMES)
def test_bad_name_raises_a_value_error_naming_the_option_and_its_choices(option, bad):
    if option in LAYER_OPTIONS:
        build = lambda: rbp.layers.Conv2D(2, 3, **{option: bad})  # noqa: E731
    elif option in NETWORK_OPTIONS:
        build = lambda: rbp.MLP([4, 3, 2], **{option: bad})  # noqa: E731
    else:
        net = rbp.MLP([4, 3, 3, 2])
        kwargs = {option: bad, "algorithm": "srbp"} if option != "algorithm" else {option: bad}
        build = lambda: rbp.Trainer(net, **kwargs)  # noqa: E731
    with pytest.raises(ValueError) as info:
        build()
    message = str(info.value)
    assert message.startswith(f"unknown {option} {str(bad)!r}; choose one of "), message
    assert message.endswith(", ".join(CHOICES[option])), message


def test_bad_entry_of_a_sources_list_names_the_option():
    net = rbp.MLP([4, 3, 3, 2])
    with pytest.raises(ValueError, match=re.escape("unknown sources 'sideways'; choose one of above, output")):
        rbp.Trainer(net, algorithm="rbp", sources=["above", "sideways"])


def test_the_removed_aliases_are_rejected():
    for option, alias in (
        ("activation", "sigmoid"),
        ("activation", "identity"),
        ("output", "sigmoid"),
        ("output", "identity"),
    ):
        with pytest.raises(ValueError, match=f"unknown {option} '{alias}'"):
            rbp.MLP([4, 3, 2], **{option: alias})


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"lr": 0}, "lr must be positive, got 0"),
        ({"lr": float("nan")}, "lr must be finite, got nan"),
        ({"decay": -1}, "decay must be non-negative, got -1"),
        ({"momentum": 1.0}, "momentum must lie in [0, 1), got 1"),
        ({"batch_size": 0}, "batch_size must be positive, got 0"),
        ({"seed": -1}, "seed must be non-negative, got -1"),
        ({"threads": 0}, "threads must be a positive integer or None, got 0"),
        ({"derivative": [True]}, "derivative needs one flag per hidden layer (2), got 1"),
        ({"algorithm": "srbp", "sources": ["above"]}, "sources needs one entry per hidden layer (2), got 1"),
        ({"sources": "above"}, "sources apply only to rbp, srbp, arbp, asrbp, not 'bp'"),
        (
            {"feedback_density": 0.5, "congruent": True},
            "feedback_density, congruent apply only to the feedback algorithms (rbp, srbp, arbp, asrbp), not 'bp'",
        ),
        (
            {"algorithm": "srbp", "feedback_scale": 0.0},
            "feedback_scale must be 'glorot', 'unit' or a positive number, got 0",
        ),
        ({"algorithm": "srbp", "feedback_nonzeros": -2}, "feedback_nonzeros must be a non-negative number, got -2"),
        (
            {"algorithm": "srbp", "feedback_density": 0.5, "feedback_nonzeros": 1},
            "give feedback_density or feedback_nonzeros, not both",
        ),
        ({"algorithm": "arbp", "feedback_lr_scale": -0.5}, "feedback_lr_scale must be non-negative, got -0.5"),
        ({"algorithm": "srbp", "quantize": "signal", "quantize_bits": 65}, "quantize_bits must lie in [1, 64], got 65"),
        ({"algorithm": "srbp", "quantize": "signal", "quantize_alpha": 0.0}, "quantize_alpha must be positive, got 0"),
        ({"frozen_layers": [0]}, "frozen layer 0 is outside 1..3 (paper numbering)"),
        (
            {"algorithm": "srbp", "quantize": "update", "per_synapse": True},
            "quantised updates cannot be combined with per_synapse",
        ),
    ],
)
def test_bad_values_are_reported_once_with_the_option_named(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        rbp.Trainer(rbp.MLP([4, 3, 3, 2]), **kwargs)


@pytest.mark.parametrize("quantize,alpha", [("signal", 2.0**-3), ("update", 2.0**-6)])
def test_quantize_alpha_defaults_by_mode_and_a_given_value_wins(quantize, alpha):
    net = rbp.MLP([4, 3, 3, 2])
    assert rbp.Trainer(net, algorithm="srbp", quantize=quantize).config()["quantize_alpha"] == alpha
    assert rbp.Trainer(net, algorithm="srbp", quantize=quantize, quantize_alpha=0.5).config()["quantize_alpha"] == 0.5


def test_the_core_checks_values_unless_told_they_were_checked():
    net = rbp.MLP([4, 3, 2])
    core = rbp.Trainer(net, threads=1)._core
    x = np.zeros((3, 4), np.float32)
    x[1, 2] = np.nan
    labels = np.array([0, 1, 1], np.int64)
    for call in (core.step, core.signals, core.evaluate, core.train_epoch):
        with pytest.raises(ValueError, match="x contains NaN"):
            call(x, labels)
        with pytest.raises(ValueError, match="label 5 at position 2"):
            call(np.zeros((3, 4), np.float32), np.array([0, 1, 5], np.int64))
    # Shapes and dtypes are checked either way.
    with pytest.raises(ValueError, match="columns"):
        core.train_epoch(np.zeros((3, 5), np.float32), labels, checked=True)
    with pytest.raises(TypeError, match="float32"):
        core.evaluate(np.zeros((3, 4)), labels, checked=True)
