"""Tests for the augmentation kernel (cpp/src/augment.cpp) and rbp.Augment, against numpy.

The draws are checked by replaying the core's random stream in pure Python (SplitMix64 seeding,
FNV-1a stream names, xoshiro256**, Lemire's bounded integers), and the images by applying the
reported draws with numpy slicing.
"""

from __future__ import annotations

import numpy as np
import pytest

import rbp_native as rbp
from rbp_native._native import _core

MASK = (1 << 64) - 1


# ----------------------------------------------------------------------------------------
# the core's random stream, re-derived


def _splitmix(state: int) -> tuple[int, int]:
    state = (state + 0x9E3779B97F4A7C15) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return state, z ^ (z >> 31)


def _derive_seed(seed: int, name: str) -> int:
    h = 0xCBF29CE484222325
    for byte in name.encode():
        h = ((h ^ byte) * 0x100000001B3) & MASK
    state, _ = _splitmix(seed ^ h)
    _, value = _splitmix(state)
    return value


class _Stream:
    def __init__(self, seed: int) -> None:
        self.s = []
        state = seed
        for _ in range(4):
            state, word = _splitmix(state)
            self.s.append(word)

    def next(self) -> int:
        s = self.s
        rotl = lambda x, k: ((x << k) | (x >> (64 - k))) & MASK  # noqa: E731
        result = (rotl((s[1] * 5) & MASK, 7) * 9) & MASK
        t = (s[1] << 17) & MASK
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return result

    def below(self, bound: int) -> int:
        m = self.next() * bound
        if (m & MASK) < bound:
            threshold = (-bound % (1 << 64)) % bound
            while (m & MASK) < threshold:
                m = self.next() * bound
        return m >> 64


def _round_half_away(value: float) -> int:
    return int(np.floor(abs(value) + 0.5)) * (1 if value >= 0 else -1)


def replay_draws(n: int, height: int, width: int, translate: float, flip: bool, seed: int) -> np.ndarray:
    stream = _Stream(_derive_seed(seed, "augment"))
    max_dx, max_dy = _round_half_away(translate * width), _round_half_away(translate * height)
    draws = []
    for _ in range(n):
        dx = stream.below(2 * max_dx + 1) - max_dx
        dy = stream.below(2 * max_dy + 1) - max_dy
        flipped = int(flip and stream.below(2) == 1)
        draws.append((dx, dy, flipped))
    return np.asarray(draws, dtype=np.int64).reshape(n, 3)


def apply_draws(x: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """out[:, y, x] = in[:, y - dy, x - dx] (zero outside), then mirrored when flipped."""
    out = np.zeros_like(x)
    height, width = x.shape[2], x.shape[3]
    for i, (dx, dy, flipped) in enumerate(draws):
        ys, xs = slice(max(0, dy), min(height, height + dy)), slice(max(0, dx), min(width, width + dx))
        src_y = slice(max(0, -dy), min(height, height - dy))
        src_x = slice(max(0, -dx), min(width, width - dx))
        if ys.start < ys.stop and xs.start < xs.stop:
            out[i][:, ys, xs] = x[i][:, src_y, src_x]
        if flipped:
            out[i] = out[i][:, :, ::-1]
    return out


def batch(n: int = 9, channels: int = 3, height: int = 8, width: int = 11, dtype=np.float32, seed: int = 0):
    # values away from zero, so zero fill is visible
    return np.random.default_rng(seed).uniform(1.0, 2.0, size=(n, channels, height, width)).astype(dtype)


# ----------------------------------------------------------------------------------------
# the kernel


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("translate, flip", [(0.1, True), (0.3, False), (0.5, True), (0.9, True), (0.0, True)])
def test_matches_numpy_replay(dtype, translate: float, flip: bool) -> None:
    x = batch(n=40, dtype=dtype)
    out, draws = _core.augment(x, translate, flip, 1234)
    assert out.dtype == dtype and out.shape == x.shape
    np.testing.assert_array_equal(draws, replay_draws(40, 8, 11, translate, flip, 1234))
    np.testing.assert_array_equal(out, apply_draws(x, draws))
    # the input is left alone
    np.testing.assert_array_equal(x, batch(n=40, dtype=dtype))


def test_draws_cover_the_range_uniformly() -> None:
    # translate 0.1 on 32x32: shifts in -3..3; flips with p = 1/2
    x = np.zeros((20000, 1, 32, 32), dtype=np.float32)
    _, draws = _core.augment(x, 0.1, True, 7)
    for column, values in ((0, range(-3, 4)), (1, range(-3, 4)), (2, range(2))):
        counts = np.array([(draws[:, column] == v).sum() for v in values])
        assert counts.sum() == len(draws)
        expected = len(draws) / len(values)
        # chi-square with 6 (or 1) degrees of freedom, far beyond the 99.99% quantile
        assert ((counts - expected) ** 2 / expected).sum() < 40.0


def test_bit_identical_for_the_same_seed_and_different_for_another() -> None:
    x = batch(n=64)
    first, d1 = _core.augment(x, 0.2, True, 99)
    again, d2 = _core.augment(x, 0.2, True, 99)
    other, d3 = _core.augment(x, 0.2, True, 100)
    assert first.tobytes() == again.tobytes()
    np.testing.assert_array_equal(d1, d2)
    assert not np.array_equal(d1, d3)
    assert first.tobytes() != other.tobytes()


def test_identity_without_translation_or_flip() -> None:
    x = batch()
    out, draws = _core.augment(x, 0.0, False, 5)
    assert out.tobytes() == x.tobytes()
    assert not draws.any()


def test_zero_fill_and_direction() -> None:
    x = np.arange(1, 1 + 2 * 4 * 5, dtype=np.float64).reshape(1, 2, 4, 5)
    # find a seed whose draw moves the image right and down without a flip
    for seed in range(200):
        out, draws = _core.augment(x, 0.45, True, seed)
        dx, dy, flipped = draws[0]
        if dx > 0 and dy > 0 and not flipped:
            break
    else:
        pytest.fail("no seed in 0..199 drew a right-and-down shift")
    assert (out[0, :, :dy, :] == 0).all() and (out[0, :, :, :dx] == 0).all()
    np.testing.assert_array_equal(out[0, :, dy:, dx:], x[0, :, : 4 - dy, : 5 - dx])


def test_flip_mirrors_each_row() -> None:
    x = batch(n=30)
    out, draws = _core.augment(x, 0.0, True, 11)
    flipped = draws[:, 2] == 1
    assert flipped.any() and (~flipped).any()
    np.testing.assert_array_equal(out[flipped], x[flipped][..., ::-1])
    np.testing.assert_array_equal(out[~flipped], x[~flipped])


def test_shift_of_the_whole_image_gives_zeros() -> None:
    # translate 0.9 on a 2-pixel side: max shift round(1.8) = 2, so some images move out entirely
    x = batch(n=50, height=2, width=2)
    out, draws = _core.augment(x, 0.9, False, 3)
    gone = (np.abs(draws[:, 0]) == 2) | (np.abs(draws[:, 1]) == 2)
    assert gone.any()
    assert (out[gone] == 0).all()
    np.testing.assert_array_equal(out, apply_draws(x, draws))


def test_non_contiguous_input_and_empty_batch() -> None:
    x = batch(n=6, width=12)[:, :, :, ::2]
    out, draws = _core.augment(x, 0.3, True, 2)
    np.testing.assert_array_equal(out, apply_draws(np.ascontiguousarray(x), draws))
    empty, none = _core.augment(np.zeros((0, 3, 4, 4), np.float32), 0.1, True, 0)
    assert empty.shape == (0, 3, 4, 4) and none.shape == (0, 3)


@pytest.mark.parametrize("translate", [-0.1, 1.0, 1.5, float("nan"), float("inf")])
def test_translate_outside_unit_interval(translate: float) -> None:
    with pytest.raises(ValueError, match="translate"):
        _core.augment(batch(), translate, True, 0)


@pytest.mark.parametrize("shape", [(3, 8, 8), (2, 3, 8, 8, 1), (8,)])
def test_not_four_dimensional(shape) -> None:
    with pytest.raises(ValueError, match="4-dimensional"):
        _core.augment(np.zeros(shape, np.float32), 0.1, True, 0)


def test_other_dtypes_rejected() -> None:
    with pytest.raises(TypeError, match="float32 or float64"):
        _core.augment(np.zeros((1, 1, 4, 4), np.int32), 0.1, True, 0)


def test_max_shift_rounds_half_away_from_zero() -> None:
    assert _core.augment_max_shift(0.1, 32) == 3
    assert _core.augment_max_shift(0.25, 10) == 3  # 2.5 -> 3 (Python's round() gives 2)
    assert _core.augment_max_shift(0.0, 32) == 0


# ----------------------------------------------------------------------------------------
# rbp.Augment


def test_augment_value_class() -> None:
    a = rbp.Augment()
    assert (a.translate, a.flip) == (0.1, True)
    assert a.config() == {"translate": 0.1, "flip": True}
    assert rbp.Augment(**a.config()) == a and hash(rbp.Augment(**a.config())) == hash(a)
    assert rbp.Augment(0.2, False) != a
    assert rbp.Augment(0.0, False).identity and not a.identity
    assert a.max_shift(32, 32) == (3, 3)
    assert repr(a) == "Augment(translate=0.1, flip=True)"


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"translate": 1.0}, ValueError),
        ({"translate": -0.01}, ValueError),
        ({"translate": float("nan")}, ValueError),
        ({"translate": "0.1"}, TypeError),
        ({"translate": True}, TypeError),
        ({"flip": 1}, TypeError),
        ({"flip": "yes"}, TypeError),
    ],
)
def test_augment_rejects_bad_arguments(kwargs, error) -> None:
    with pytest.raises(error):
        rbp.Augment(**kwargs)


def test_augment_apply_uses_the_kernel() -> None:
    x = batch(n=12)
    a = rbp.Augment(translate=0.2, flip=True)
    out, draws = a.apply_with_draws(x, seed=42)
    np.testing.assert_array_equal(draws, replay_draws(12, 8, 11, 0.2, True, 42))
    np.testing.assert_array_equal(a.apply(x, seed=42), out)
    with pytest.raises(ValueError, match="seed"):
        a.apply(x, seed=-1)


def test_trainer_augments_each_epoch_batch_with_its_own_stream(tmp_path):
    """The trainer's first batch is the Augment of its rows drawn from the "augment" stream of the
    trainer's seed: a trainer without augmentation stepping on that batch ends with the same weights."""
    net = lambda: rbp.Sequential(
        [  # noqa: E731
            rbp.layers.Conv2D(3, 3, padding="same", activation="tanh"),
            rbp.layers.Flatten(),
            rbp.layers.Dense(4, activation="softmax"),
        ],
        input_shape=(2, 6, 6),
        dtype="float64",
        seed=3,
    )
    rng = np.random.default_rng(0)
    x = rng.random((20, 2, 6, 6))
    y = rng.integers(0, 4, 20)
    augment = rbp.Augment(translate=0.34, flip=True)
    augmented = rbp.Trainer(net(), algorithm="srbp", batch_size=8, seed=11, augment=augment)
    augmented._core.train_epoch(x.reshape(20, -1), y, None, 10, 1)  # the first batch only
    rows = augmented._core.get_state()["epoch_order"][:8]
    batch = augment.apply(x[rows], seed=11)
    assert not np.array_equal(batch, x[rows])
    plain = rbp.Trainer(net(), algorithm="srbp", batch_size=8, seed=11)
    plain.step(batch, y[rows])
    for a, b in zip(augmented.net.weights, plain.net.weights):
        np.testing.assert_array_equal(a, b)
    # The stream goes on across epochs and checkpoints: resuming gives the uninterrupted run.
    path = tmp_path / "c.npz"
    augmented.save(path)
    resumed = rbp.Trainer.load(path)
    assert resumed.config()["augment"] == augment.config()
    straight = rbp.Trainer(net(), algorithm="srbp", batch_size=8, seed=11, augment=augment)
    straight.fit((x, y), epochs=2, progress=False)
    resumed.fit((x, y), epochs=2, progress=False)
    for a, b in zip(straight.net.weights, resumed.net.weights):
        np.testing.assert_array_equal(a, b)


def test_augment_needs_an_image_network():
    with pytest.raises(ValueError, match="augment needs a network whose input is an image"):
        rbp.Trainer(rbp.MLP([12, 4, 2]), augment=rbp.Augment())
    with pytest.raises(TypeError, match="augment must be an rbp_native.Augment"):
        rbp.Trainer(rbp.MLP([12, 4, 2]), augment=0.1)
