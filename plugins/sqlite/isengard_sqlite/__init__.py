"""SQLite index: the embedded default index of Isengard, one file under ``IndexDirectory``."""

from __future__ import annotations

from isengard import hookimpl
from isengard.backends import IndexBackend
from isengard.config import Config

from .index import SqliteIndex

#: Not Orthanc's "index" file name: pointing Isengard at an Orthanc folder must never touch Orthanc's index.
INDEX_FILE = "isengard-index.sqlite"

__all__ = ["SqliteIndex"]


@hookimpl(trylast=True)
def index_backend(config: Config) -> IndexBackend:
    return SqliteIndex(config.path("IndexDirectory") / INDEX_FILE)
