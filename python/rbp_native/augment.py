"""Data augmentation for image batches: random translations with zero fill and horizontal flips.

The paper's CIFAR-10 runs (section 4.3) augment every training batch with random translations of up
to 10% of the width and height and horizontal flips with probability 1/2, through Keras'
``ImageDataGenerator(width_shift_range=0.1, height_shift_range=0.1, horizontal_flip=True)``.
:class:`Augment` describes that transformation; the work is done by the native core
(``cpp/src/augment.cpp``) on a ``(N, channels, height, width)`` batch:

* per example, in batch order, the shifts ``dx`` and ``dy`` are drawn uniformly from the integers of
  ``[-round(translate * width), round(translate * width)]`` and
  ``[-round(translate * height), round(translate * height)]`` (halves round away from zero), then,
  when ``flip`` is on, whether to mirror, with probability exactly 1/2;
* the image moves ``dx`` pixels right and ``dy`` pixels down (negative: left, up), the uncovered
  border is filled with zeros, and a flipped image is then mirrored left to right. All channels of an
  example move together.

Unlike Keras, which draws a real-valued shift, interpolates and by default fills the border with the
nearest edge pixel, the shifts here are whole pixels and the fill is zero, so every output value is
an input value or 0.  The draws come from the stream ``derive_seed(seed, "augment")``, so the same
seed gives bit-identical batches on any machine and with any thread count.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = ["Augment"]


class Augment:
    """Random translation (zero fill) and horizontal flip of image batches.

    Parameters
    ----------
    translate:
        Largest shift as a fraction of the width (horizontally) and of the height (vertically), in
        ``[0, 1)``; ``0.1`` is the paper's setting (3 pixels on a 32-pixel side). ``0`` turns
        translation off.
    flip:
        Whether to mirror each image left to right with probability 1/2.

    Instances are immutable values: ``Augment(**a.config()) == a``.
    """

    __slots__ = ("_translate", "_flip")
    # Declared rather than inferred from __init__: mypy defers __init__ (for its numbers.Real check)
    # and would meet the properties below first.
    _translate: float
    _flip: bool

    def __init__(self, translate: float = 0.1, flip: bool = True) -> None:
        if isinstance(translate, bool) or not isinstance(translate, numbers.Real):
            raise TypeError(f"translate must be a number in [0, 1), got {translate!r}")
        value = float(translate)
        if not (math.isfinite(value) and 0.0 <= value < 1.0):
            raise ValueError(f"translate must be a fraction of the image size in [0, 1), got {translate!r}")
        if not isinstance(flip, (bool, np.bool_)):
            raise TypeError(f"flip must be True or False, got {flip!r}")
        self._translate = value
        self._flip = bool(flip)

    @property
    def translate(self) -> float:
        return self._translate

    @property
    def flip(self) -> bool:
        return self._flip

    @property
    def identity(self) -> bool:
        """True when the augmentation leaves every image unchanged (no translation, no flip)."""
        return self._translate == 0.0 and not self._flip

    def max_shift(self, height: int, width: int) -> tuple[int, int]:
        """The largest vertical and horizontal shifts in pixels for images of this size."""
        from ._native import _core

        return (
            _core.augment_max_shift(self._translate, int(height)),
            _core.augment_max_shift(self._translate, int(width)),
        )

    def config(self) -> dict[str, Any]:
        """The constructor arguments, for saving and reproducing the augmentation."""
        return {"translate": self._translate, "flip": self._flip}

    def apply(self, x: Any, seed: int) -> np.ndarray:
        """An augmented copy of the ``(N, channels, height, width)`` float32/float64 batch ``x``.

        The draws come from ``derive_seed(seed, "augment")``; ``seed`` must be a non-negative integer.
        """
        return self.apply_with_draws(x, seed)[0]

    def apply_with_draws(self, x: Any, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`apply`, and also the ``(N, 3)`` int64 draws ``(dx, dy, flipped)`` per example."""
        from ._native import _core

        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= int(seed) < 2**64:
            raise ValueError(f"seed must be an integer in [0, 2**64), got {seed!r}")
        batch = np.asarray(x)
        return _core.augment(batch, self._translate, self._flip, int(seed))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Augment):
            return NotImplemented
        return self.config() == other.config()

    def __hash__(self) -> int:
        return hash((self._translate, self._flip))

    def __repr__(self) -> str:
        return f"Augment(translate={self._translate!r}, flip={self._flip!r})"
