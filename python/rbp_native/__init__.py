"""rbp-native: random backpropagation and the deep learning channel, with a fast C++ core.

Implements the learning-channel algorithms of Baldi, Sadowski & Lu, "Learning in the Machine:
Random Backpropagation and the Deep Learning Channel" (Artificial Intelligence 260, 2018):

>>> import rbp_native as rbp
>>> train, test = rbp.datasets.load("mnist")
>>> net = rbp.MLP([784, 100, 100, 100, 100, 10], seed=0)
>>> trainer = rbp.Trainer(net, algorithm="srbp", lr=0.1, decay=1e-6, batch_size=100, seed=0)
>>> history = trainer.fit(train, epochs=5, eval=test)
"""

from __future__ import annotations

from . import datasets, layers
from ._native import isa
from .augment import Augment
from .checkpoint import CheckpointError
from .history import History
from .network import MLP, Sequential
from .trainer import ALGORITHMS, Trainer, TrainingDiverged

__all__ = [
    "ALGORITHMS",
    "MLP",
    "Augment",
    "CheckpointError",
    "History",
    "Sequential",
    "Trainer",
    "TrainingDiverged",
    "__version__",
    "datasets",
    "isa",
    "layers",
]


def __getattr__(name: str) -> str:
    # The version is read from the installed metadata on first use: importlib.metadata pulls in
    # email, zipfile and socket, a few MB resident that training processes have no use for.
    if name == "__version__":
        from ._version import __version__

        return __version__
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
