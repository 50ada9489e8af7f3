"""The ``rbp-native`` command line."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

from ._cli_common import DefaultsHelpFormatter, add_data_arguments

PAPER_HIDDEN = [100, 100, 100, 100]
# Trainer keyword arguments mirrored one to one by `train` flags (--feedback-density -> feedback_density).
CHANNEL_OPTIONS = (
    "feedback_distribution",
    "feedback_mean",
    "feedback_density",
    "feedback_nonzeros",
    "feedback_storage",
    "congruent",
    "resample",
    "sources",
    "feedback_lr_scale",
    "per_synapse",
    "signal_transform",
    "transform_target",
    "channel_dropout",
    "dropout_inverted",
    "frozen_layers",
    "quantize",
    "quantize_bits",
    "quantize_alpha",
    "quantize_rounding",
    "injection",
    "precision",
)


def _add_train(sub: argparse._SubParsersAction) -> None:
    from .network import ACTIVATIONS, INITS, OUTPUTS
    from .trainer import ALGORITHMS, FEEDBACK_SCALES

    p = sub.add_parser(
        "train",
        help="train a network with a learning-channel algorithm",
        description="Train an MLP or a convolutional network on MNIST, Fashion-MNIST or CIFAR-10. Defaults are "
        "the paper's MNIST setup: 784-100-100-100-100-10 tanh, softmax, batch 100, lr 0.1, decay 1e-6, no "
        "momentum. The paper's CIFAR-10 setup (section 4.3): --dataset cifar10 --net paper-cifar10 "
        "--batch-size 128 --lr 0.01 --decay 1e-5 --momentum 0.9 --translate 0.1 --flip.",
        formatter_class=DefaultsHelpFormatter,
    )
    p.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist", "cifar10"])
    add_data_arguments(p)
    p.add_argument(
        "--net",
        default="mlp",
        metavar="NET",
        help="'mlp' (default: --hidden, --activation, --output, --connectivity), 'paper-cifar10' (the paper's "
        "CIFAR-10 network: 3 x [conv 64 5x5 tanh, max-pool 3x3 stride 2], dense 1024 tanh, softmax; the layers "
        "of the cifar10 experiment) or the layers as JSON, e.g. "
        '\'[{"type": "Conv2D", "filters": 8, "kernel_size": 3}, {"type": "Dense", "units": 10, '
        '"activation": "softmax"}]\' (types Conv2D, MaxPool2D, Flatten, Dense with the arguments of '
        "rbp_native.layers); a layer network reads the data set's images (MNIST 1x28x28, CIFAR-10 3x32x32)",
    )
    p.add_argument("--algorithm", default="bp", choices=ALGORITHMS)
    p.add_argument(
        "--no-derivative",
        dest="derivative",
        action="store_false",
        help="drop the local derivative f' in every hidden layer (the paper's 'no f'' variants)",
    )
    p.add_argument(
        "--hidden",
        type=int,
        nargs="+",
        default=PAPER_HIDDEN,
        metavar="N",
        action=_MlpOption,
        help="hidden layer widths",
    )
    p.add_argument("--activation", default="tanh", choices=ACTIVATIONS, action=_MlpOption)
    p.add_argument("--output", default="softmax", choices=OUTPUTS, action=_MlpOption)
    p.add_argument("--init", default="glorot_normal", choices=INITS)
    p.add_argument(
        "--connectivity",
        type=float,
        nargs="+",
        default=None,
        metavar="P",
        action=_MlpOption,
        help="forward connection density: one value for every layer or one per weight layer",
    )
    p.add_argument(
        "--feedback-scale", default="glorot", type=_scale, help=f"{' or '.join(FEEDBACK_SCALES)} or a positive number"
    )
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--decay", type=float, default=1e-6, help="lr_t = lr / (1 + decay * t), t = updates so far")
    p.add_argument("--momentum", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0, help="run seed (init, feedback and shuffling streams derive from it)")
    p.add_argument("--threads", type=int, default=None, help="native threads (default: all cores)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument(
        "--translate",
        type=float,
        default=None,
        metavar="F",
        help="augment every training batch: random shifts of up to F x the width and height, zero fill "
        "(the paper's CIFAR-10 runs: 0.1; default: no shifts); needs a layer network (--net)",
    )
    p.add_argument(
        "--flip",
        action="store_true",
        help="augment every training batch: mirror each image left to right with probability 1/2",
    )
    from .trainer import (
        FEEDBACK_DISTRIBUTIONS,
        FEEDBACK_STORAGES,
        INJECTIONS,
        PRECISIONS,
        QUANTIZE_MODES,
        RESAMPLE_MODES,
        ROUNDINGS,
        SIGNAL_TRANSFORMS,
        SOURCES,
        TRANSFORM_TARGETS,
    )

    c = p.add_argument_group("learning channel (docs/channels.md defines each option)")
    c.add_argument("--feedback-distribution", default="gaussian", choices=FEEDBACK_DISTRIBUTIONS)
    c.add_argument("--feedback-mean", type=float, default=0.0)
    c.add_argument("--feedback-density", type=float, default=1.0, help="probability that a feedback entry is non-zero")
    c.add_argument(
        "--feedback-nonzeros",
        type=float,
        default=None,
        help="expected non-zeros per receiving neuron (density n / N_source)",
    )
    c.add_argument(
        "--feedback-storage",
        default="auto",
        choices=FEEDBACK_STORAGES,
        help="storage of sparse feedback (auto: CSR up to density 0.3 from sources of 32+ units)",
    )
    c.add_argument("--congruent", action="store_true", help="feedback signs matched to the forward counterpart")
    c.add_argument("--resample", default=None, choices=RESAMPLE_MODES, help="redraw the feedback every mini-batch")
    c.add_argument(
        "--sources",
        nargs="+",
        default=None,
        choices=SOURCES,
        metavar="SOURCE",
        help="per hidden layer: 'above' (rbp-style) or 'output' (srbp-style); one value for all",
    )
    c.add_argument("--feedback-lr-scale", type=float, default=1.0, help="rho of arbp/asrbp")
    c.add_argument("--per-synapse", action="store_true", help="per-synapse random error (srbp)")
    c.add_argument("--signal-transform", default="none", choices=SIGNAL_TRANSFORMS)
    c.add_argument("--transform-target", default="signal", choices=TRANSFORM_TARGETS)
    c.add_argument("--channel-dropout", type=float, default=0.0, help="dropout rate of learning-channel neurons")
    c.add_argument("--dropout-inverted", action="store_true", help="scale kept channel signals by 1/(1-p)")
    c.add_argument(
        "--frozen-layers",
        type=int,
        nargs="+",
        default=[],
        metavar="H",
        help="layers (paper numbering 1..L) whose weights never change",
    )
    c.add_argument("--quantize", default=None, choices=QUANTIZE_MODES, help="low-bit error signals or weight updates")
    c.add_argument("--quantize-bits", type=int, default=8)
    c.add_argument("--quantize-alpha", type=float, default=None, help="default 2^-3 (signal) or 2^-6 (update)")
    c.add_argument("--quantize-rounding", default="nearest", choices=ROUNDINGS)
    c.add_argument(
        "--injection",
        default="pre_pool",
        choices=INJECTIONS,
        help="where output-sourced feedback enters a convolution with max-pooling (--net with pools; docs/conv.md)",
    )
    c.add_argument(
        "--precision",
        default="float32",
        choices=PRECISIONS,
        help="bf16: every matrix product and convolution rounds its operands to bfloat16 and sums in float32 "
        "(float32 nets of dense and conv2d layers; faster on CPUs with AVX512-BF16 or AMX; see Trainer)",
    )
    p.add_argument(
        "--diagnostics", action="store_true", help="record per-epoch alignment angles and norms (see Trainer.alignment)"
    )
    p.add_argument(
        "--train-metrics",
        default="full",
        choices=["full", "running"],
        help="full: evaluate the whole training set after each epoch; running: batch means",
    )
    p.add_argument(
        "--out",
        default=None,
        help="output folder (default: runs/<dataset>-<algorithm>-seed<seed>); "
        "it gets config.json, history.json/.csv and checkpoint.npz after every epoch, model.npz and done.json "
        "at the end",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="N",
        help="also checkpoint every N batches within an epoch (default: after every epoch only)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/checkpoint.npz (the same options as the run that wrote it, epochs "
        "aside); the final model and history equal an uninterrupted run's, timings aside",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="with --resume: continue even if options differ from the checkpoint's; without: overwrite "
        "the run already in OUT",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(handler=_train)


class _MlpOption(argparse._StoreAction):
    """An option of ``--net mlp`` only: remembers that it was given, so that another --net refuses it."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: Any = None):
        super().__call__(parser, namespace, values, option)
        namespace.mlp_options_given = [*getattr(namespace, "mlp_options_given", []), option]


PAPER_CIFAR10_NET = "paper-cifar10"


def _network_options(args: argparse.Namespace, train: Any) -> dict[str, Any]:
    """The resolved network options (as an experiment run's, see ``build_network``) of the network
    `--net` asks for, on the training set `train` (flattened inputs)."""
    from .experiments.config import IMAGE_SHAPES

    if args.net == "mlp":
        connectivity = args.connectivity
        if connectivity and len(connectivity) == 1:
            connectivity = connectivity[0]
        return {
            "sizes": [train.x.shape[1], *args.hidden, train.num_classes],
            "activation": args.activation,
            "output": args.output,
            "dtype": args.dtype,
            "init": args.init,
            "connectivity": connectivity,
        }
    given = getattr(args, "mlp_options_given", [])
    if given:
        raise ValueError(f"{', '.join(given)} describe(s) an MLP (--net mlp); --net {args.net!r} gives its own layers")
    if args.net == PAPER_CIFAR10_NET:
        from .experiments import load_experiment

        layers = load_experiment("cifar10").shared["layers"]
    else:
        try:
            layers = json.loads(args.net)
        except ValueError as error:
            raise ValueError(
                f"--net must be 'mlp', {PAPER_CIFAR10_NET!r} or a JSON list of layer tables; not JSON: {error}"
            ) from None
        if not isinstance(layers, list) or not all(isinstance(layer, dict) for layer in layers):
            raise ValueError(f"--net: the layers must be a JSON list of tables (objects), got {args.net}")
    return {"layers": layers, "input_shape": list(IMAGE_SHAPES[args.dataset]), "dtype": args.dtype, "init": args.init}


def _scale(text: str) -> str | float:
    try:
        return float(text)
    except ValueError:
        return text


def _train(args: argparse.Namespace) -> int:
    """One run, trained by the experiment runner's :func:`~rbp_native.experiments.runner.execute` into
    ``--out`` (which gets the files of a sweep's run folder, and model.npz)."""
    from . import datasets
    from .augment import Augment
    from .experiments.runner import CHECKPOINT, execute
    from .trainer import DIAGNOSTICS_BATCH, Trainer

    variant = args.algorithm + ("" if args.derivative else "-nofprime")
    out = Path(args.out or f"runs/{args.dataset}-{variant}-seed{args.seed}")
    checkpoint = out / CHECKPOINT
    if args.checkpoint_every is not None and args.checkpoint_every <= 0:
        raise ValueError(f"--checkpoint-every must be a positive number of batches, got {args.checkpoint_every}")
    if args.resume and checkpoint.exists():
        resume = "force" if args.force else "exact"
    elif checkpoint.exists() and not args.force:
        raise ValueError(
            f"{out} holds a checkpoint of an earlier run: pass --resume to continue it, --force to "
            "train again from scratch over it, or another --out"
        )
    else:
        if args.resume:
            print(f"rbp-native: no checkpoint in {out}: starting from scratch")
        resume = "restart"
    train, test = datasets.load(args.dataset, root=args.data_root, download=args.download, flatten=True)
    network = _network_options(args, train)
    channel = {name: getattr(args, name) for name in CHANNEL_OPTIONS}
    if channel["sources"] is not None and len(channel["sources"]) == 1:
        channel["sources"] = channel["sources"][0]
    resolved = {
        "dataset": {"name": args.dataset},
        "seed": args.seed,
        "epochs": args.epochs,
        "train_metrics": args.train_metrics,
        "diagnostics": DIAGNOSTICS_BATCH if args.diagnostics else False,  # the probe batch, or off
        "network": network,
        "trainer": {
            "algorithm": args.algorithm,
            "derivative": args.derivative,
            "lr": args.lr,
            "decay": args.decay,
            "momentum": args.momentum,
            "batch_size": args.batch_size,
            "feedback_scale": args.feedback_scale,
            **channel,
        },
    }
    if args.translate is not None or args.flip:
        augment = Augment(translate=0.0 if args.translate is None else args.translate, flip=args.flip)
        resolved["trainer"]["augment"] = augment.config()
    task = {
        "run_dir": str(out),
        "resolved": resolved,
        "threads": args.threads,
        "data_root": args.data_root,
        "resume": resume,
        "checkpoint_every": args.checkpoint_every,
        "progress": args.progress,
        "save_model": True,
    }
    trained: list[Trainer] = []  # the trainer, once training starts

    def start(trainer: Trainer) -> None:
        trained.append(trainer)
        if resume != "restart":
            print(
                f"rbp-native: resuming {checkpoint}: {len(trainer.history)} epoch(s) done"
                + (", one in progress" if trainer.epoch_pending else "")
            )
        remaining = max(0, args.epochs - len(trainer.history))
        print(
            f"rbp-native: {trainer.net!r}, algorithm {variant}, {remaining} of {args.epochs} epochs to train, "
            f"{trainer.threads} threads -> {out}"
        )
        if not args.progress:
            print("epoch,train_loss,train_accuracy,test_loss,test_accuracy", flush=True)

    def epoch_done(record: dict) -> None:
        if not args.progress:
            print(
                f"{record['epoch']},{record['train_loss']:.6f},{record['train_accuracy']:.6f},"
                f"{record['test_loss']:.6f},{record['test_accuracy']:.6f}",
                flush=True,
            )

    try:
        result = execute(task, epoch_done, on_start=start, data=(train, test))
    except KeyboardInterrupt:
        if not trained:  # before training: nothing of this run to keep
            raise
        print(
            f"rbp-native: interrupted after {len(trained[0].history)} epoch(s); the state is saved in {checkpoint}: "
            "continue with the same command and --resume",
            file=sys.stderr,
        )
        return 130
    if result["status"] == "diverged":
        print(
            f"rbp-native: {result['message']}; the epochs before it are in {out}, the last good checkpoint in "
            f"{checkpoint}",
            file=sys.stderr,
        )
        return 3
    if result["final"] is not None:
        last = result["final"]
        print(f"final: test accuracy {last['test_accuracy']:.4f}, train accuracy {last['train_accuracy']:.4f}")
    return 0


def _add_theory(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "theory",
        help="integrate the paper's ODE systems and check its theorems",
        description="Integrate the averaged learning dynamics of the paper's section 7 and compare each "
        "integrated limit with the theorem's prediction.",
    )
    try:
        from .theory import cli as theory_cli
    except ImportError as error:  # optional dependencies missing
        message = str(error)
        p.set_defaults(handler=lambda args: _missing(message))
        return
    theory_cli.add_arguments(p)
    p.set_defaults(handler=theory_cli.run)


def _missing(message: str) -> int:
    print(f"rbp-native: {message}", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="rbp-native",
        description="Random backpropagation and the deep learning channel (Baldi, Sadowski & Lu 2018).",
    )
    parser.add_argument("--version", action="version", version=f"rbp-native {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(sub)
    _add_theory(sub)
    from .experiments import cli as experiments_cli

    experiments_cli.add_subcommands(sub)  # reproduce, run
    return parser


def _terminate_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .datasets import DatasetError, DownloadError

    # SIGTERM (a scheduler's or `kill`'s stop) stops as Ctrl-C does: within a batch, keeping what was
    # done. Only in the main thread of the main interpreter, where Python delivers signals.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        return int(args.handler(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, DatasetError, DownloadError) as error:
        print(f"rbp-native: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rbp-native: interrupted; completed runs and checkpoints are saved", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
