"""Readable differences between two option tables (a stored run's or checkpoint's, and the current ones)."""

from __future__ import annotations

from typing import Any


def describe_differences(stored: Any, current: Any, prefix: str = "") -> list[str]:
    """One line per key whose value differs, nested keys joined by dots (``trainer.lr: stored 0.1, now 0.05``)."""
    if isinstance(stored, dict) and isinstance(current, dict):
        lines = []
        for key in sorted(set(stored) | set(current), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in stored:
                lines.append(f"{path}: not stored, now {current[key]!r}")
            elif key not in current:
                lines.append(f"{path}: stored {stored[key]!r}, now not set")
            else:
                lines.extend(describe_differences(stored[key], current[key], path))
        return lines
    if isinstance(stored, (list, tuple)) and isinstance(current, (list, tuple)):
        stored, current = list(stored), list(current)
    if stored != current:
        return [f"{prefix or 'config'}: stored {stored!r}, now {current!r}"]
    return []
