"""Loads the compiled core built for the best instruction set this machine supports.

A portable build compiles the core once per x86-64 instruction set into separate extension
modules: ``_core_sse2`` (the x86-64 baseline), ``_core_avx2`` (AVX2 + FMA) and ``_core_avx512``
(AVX-512 F/CD/VL/BW/DQ). This module imports the widest one that the CPU *and* the operating system
support (asked of the ``_cpu`` probe, which uses the compiler's ``__builtin_cpu_supports``: CPUID
plus XGETBV) and exposes it as ``_core``; ``isa`` names it. A single-module build (the
``RBP_NATIVE_MARCH_NATIVE`` option, non-x86 machines, other development builds) provides a plain
``_core``, which is used when no variant is present.

The environment variable ``RBP_NATIVE_ISA`` (``sse2``, ``avx2``, ``avx512``; ``auto`` or empty for
the default) forces a variant; forcing one that this CPU cannot run or that was not built raises
ImportError. Only one variant can live in a process: never import ``_core_*`` modules directly.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType
from typing import TYPE_CHECKING

__all__ = ["ISAS", "_core", "available", "cpu_features", "isa", "supported"]

# Widest first, with the CPU features each variant is compiled for (see CMakeLists.txt).
ISAS = ("avx512", "avx2", "sse2")
_REQUIRES = {
    "avx512": ("avx512f", "avx512cd", "avx512vl", "avx512bw", "avx512dq", "avx2", "fma", "f16c"),
    "avx2": ("avx2", "fma", "f16c", "avx"),
    "sse2": (),  # part of x86-64
}
ENV = "RBP_NATIVE_ISA"


def cpu_features() -> frozenset[str]:
    """x86 instruction-set extensions usable on this machine (empty when the probe is missing)."""
    try:
        from . import _cpu  # type: ignore[attr-defined]
    except ImportError:
        return frozenset()
    return frozenset(_cpu.features())


def supported(isa: str, features: frozenset[str] | None = None) -> bool:
    """Whether this CPU and OS can run the variant compiled for `isa`."""
    feats = cpu_features() if features is None else features
    return all(f in feats for f in _REQUIRES[isa])


def available() -> list[str]:
    """The variants present in this installation, widest first (``"_core"`` for a single module).

    Found through the import system, not by listing the package folder, so that editable installs
    (whose compiled modules live outside the source tree) are found too."""
    from importlib.util import find_spec

    present = []
    for stem in [f"_core_{i}" for i in ISAS] + ["_core"]:
        name = f"{__package__}.{stem}"
        try:
            spec = find_spec(name)
        except (ImportError, ValueError):
            spec = None
        found = spec is not None and spec.name == name  # not an alias registered after loading
        if found:
            present.append(stem[len("_core_") :] if stem != "_core" else stem)
    return present


def _load() -> tuple[ModuleType, str]:
    requested = os.environ.get(ENV, "").strip().lower()
    present = available()
    if requested not in ("", "auto"):
        if requested not in ISAS:
            raise ImportError(
                f"{ENV}={requested!r} is not an instruction set of rbp-native; use one of {', '.join(ISAS)} or auto"
            )
        if requested not in present:
            raise ImportError(
                f"{ENV}={requested}: this installation has no _core_{requested} module "
                f"(built: {', '.join(present) or 'none'})"
            )
        if not supported(requested):
            raise ImportError(
                f"{ENV}={requested}: this CPU or operating system does not support "
                f"{requested} (usable features: {', '.join(sorted(cpu_features())) or 'unknown'})"
            )
        return importlib.import_module(f"._core_{requested}", __package__), requested
    variants = [i for i in ISAS if i in present]
    if variants:
        features = cpu_features()
        for candidate in variants:
            if supported(candidate, features):
                return importlib.import_module(f"._core_{candidate}", __package__), candidate
    if "_core" in present or not variants:
        module = importlib.import_module("._core", __package__)
        return module, str(getattr(module, "isa", "unknown"))
    raise ImportError(
        f"no compiled core of rbp-native runs on this CPU (built: {', '.join(present)}; "
        f"usable features: {', '.join(sorted(cpu_features())) or 'unknown'})"
    )


if TYPE_CHECKING:
    # Every variant has the same API, described by _core.pyi.
    from . import _core

    isa: str
else:
    _core, isa = _load()
    # `import rbp_native._core` and `from rbp_native import _core` give the loaded variant too.
    sys.modules.setdefault(f"{__package__}._core", _core)
"""The loaded compiled module, and the instruction set it was built for (``"sse2"``,
``"avx2"``, ``"avx512"``; ``"native"`` for a ``-march=native`` build, ``"baseline"`` on non-x86)."""
