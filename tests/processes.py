"""For the tests that signal a child process: what SIGINT does in the child.

A process inherits an ignored SIGINT (a non-interactive shell starts its background jobs so, and
Python then leaves SIGINT ignored), so the tests set it in the child themselves, as `preexec_fn`:
otherwise a test suite started that way would send Ctrl-C's signal to children that ignore it."""

from __future__ import annotations

import signal


def sigint_default() -> None:
    """The child takes SIGINT as Python does by default: KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def sigint_ignored() -> None:
    """The child ignores SIGINT, as a background job of a script (`rbp-native ... &`) does."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
