"""``python -m rbp_native.theory``: the theory checks (see :mod:`rbp_native.theory.cli`)."""

import sys

from .cli import main

sys.exit(main())
