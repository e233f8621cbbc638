"""Small helpers to build SQL with many parameters."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

#: Identifiers per IN (...) list: well under SQLite's limit on bound parameters.
CHUNK = 500


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def in_list(name: str, values: Sequence[Any]) -> tuple[str, dict[str, Any]]:
    """(":name0, :name1, ...", {"name0": v0, ...}) for an IN list of bound parameters."""
    keys = [f"{name}{i}" for i in range(len(values))]
    return ", ".join(f":{k}" for k in keys), dict(zip(keys, values, strict=True))
