"""Per-epoch training records, written atomically to JSON and CSV."""

from __future__ import annotations

import csv
import io
import json
import os
from typing import Any, Iterator

from ._io import atomic_write_text


class History:
    """One record (a dict) per epoch: ``epoch``, ``train_loss``, ``train_accuracy``, ``test_loss``,
    ``test_accuracy`` (when evaluation data was given), ``lr`` (the rate the next update will use),
    ``updates`` and ``seconds``."""

    def __init__(self, records: list[dict[str, Any]] | None = None, config: dict[str, Any] | None = None) -> None:
        self.records: list[dict[str, Any]] = list(records or [])
        self.config: dict[str, Any] = dict(config or {})

    def append(self, record: dict[str, Any]) -> None:
        self.records.append(dict(record))

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records)

    def __getitem__(self, key: str | int) -> Any:
        """``history["test_accuracy"]`` is a column (list); ``history[-1]`` is a record."""
        if isinstance(key, str):
            return [record.get(key) for record in self.records]
        return self.records[key]

    @property
    def last(self) -> dict[str, Any]:
        if not self.records:
            raise IndexError("the history is empty")
        return self.records[-1]

    def columns(self) -> list[str]:
        names: list[str] = []
        for record in self.records:
            names.extend(k for k in record if k not in names)
        return names

    def to_json(self, path: str | os.PathLike[str]) -> None:
        payload = {"config": self.config, "epochs": self.records}
        atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns(), lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.records)
        atomic_write_text(path, buffer.getvalue())

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> "History":
        with open(path, encoding="utf-8") as handle:
            try:
                payload = json.load(handle)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path} is not a valid history file: {error}") from error
        if not isinstance(payload, dict) or not isinstance(payload.get("epochs"), list):
            raise ValueError(f"{path} is not a valid history file (no 'epochs' list)")
        return cls(payload["epochs"], payload.get("config"))

    def __repr__(self) -> str:
        return f"History({len(self.records)} epochs)"
