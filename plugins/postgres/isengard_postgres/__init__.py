"""PostgreSQL index (and, optionally, storage area) of Isengard: Orthanc's "PostgreSQL" configuration section.

Off unless ``"PostgreSQL": {"EnableIndex": true}`` (or ``"EnableStorage": true``): the hooks below answer
``None`` otherwise, and the SQLite index and filesystem storage, whose hooks run last, stay in charge.
"""

from __future__ import annotations

from typing import Any

from isengard import hookimpl
from isengard.backends import IndexBackend, StorageArea
from isengard.config import Config

from .index import PostgresIndex
from .settings import DEFAULTS, SECTION, Settings
from .storage import PostgresStorage

__all__ = ["PostgresIndex", "PostgresStorage", "Settings"]


@hookimpl
def config_defaults() -> dict[str, Any]:
    return {SECTION: dict(DEFAULTS)}


@hookimpl
def index_backend(config: Config) -> IndexBackend | None:
    settings = Settings.from_config(config)
    return PostgresIndex(settings) if settings.enable_index else None


@hookimpl
def storage_area(config: Config) -> StorageArea | None:
    settings = Settings.from_config(config)
    return PostgresStorage(settings) if settings.enable_storage else None


@hookimpl
async def shutdown(context: Any) -> None:
    """The storage area has no stop() in its contract: close its pool with the server."""
    if isinstance(context.storage, PostgresStorage):
        await context.storage.close()
