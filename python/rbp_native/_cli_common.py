"""Command-line pieces shared by ``rbp-native train`` (cli.py) and ``reproduce``/``run``
(experiments/cli.py), kept here so that neither command module imports the other."""

from __future__ import annotations

import argparse


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except for on/off flags, whose default is the flag's
    absence (argparse would print the value of its destination: ``--no-progress (default:
    True)`` reads as the opposite of the truth), and options whose help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.nargs == 0 or "default" in (action.help or ""):  # nargs 0: store_true/false/const
            return action.help
        return super()._get_help_string(action)


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data-root`` and ``--download``/``--no-download`` (dest ``download``, default on)."""
    parser.add_argument(
        "--data-root", default=None, help="data folder (default: $RBP_NATIVE_DATA, else ~/.cache/rbp_native)"
    )
    download = parser.add_mutually_exclusive_group()
    download.add_argument(
        "--download",
        dest="download",
        action="store_true",
        default=True,
        help="download a missing data set into the data folder, checksummed (the default)",
    )
    download.add_argument(
        "--no-download",
        dest="download",
        action="store_false",
        help="fail instead of downloading when the data set is missing (offline use)",
    )
