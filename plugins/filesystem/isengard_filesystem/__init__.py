"""Filesystem storage area: Orthanc's layout of two levels of hexadecimal folders holding one file per uuid.

The default storage of Isengard. Files are written atomically (temporary file, fsync, rename), so that a crash
never leaves a half-written attachment behind a name the index knows.
"""

from __future__ import annotations

from isengard import hookimpl
from isengard.backends import StorageArea
from isengard.config import Config

from .storage import FilesystemStorage

__all__ = ["FilesystemStorage"]


@hookimpl(trylast=True)
def storage_area(config: Config) -> StorageArea:
    return FilesystemStorage(config.path("StorageDirectory"), sync=config.bool("SyncStorageArea"))
