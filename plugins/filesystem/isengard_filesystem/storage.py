"""The files themselves: ``root/ab/cd/abcd....`` for uuid ``abcd...``, as Orthanc lays them out."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

# Only uuids the kernel generated may become paths: nothing a client sends can reach the filesystem.
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")  # fullmatch: no "\n"
_TEMP_SUFFIX = ".tmp"


class FilesystemStorage:
    def __init__(self, root: Path, *, sync: bool = True) -> None:
        self.root = Path(root)
        self.sync = sync

    def path(self, uuid: str) -> Path:
        if not _UUID.fullmatch(uuid):
            raise ValueError(f"not a storage uuid: {uuid!r}")
        return self.root / uuid[0:2] / uuid[2:4] / uuid

    # -- blocking primitives, run in threads -----------------------------------------------------------------
    def _write(self, uuid: str, data: bytes) -> None:
        target = self.path(uuid)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(target.name + _TEMP_SUFFIX)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self.sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)

    def _copy_in(self, uuid: str, source: Path) -> None:
        """A file made elsewhere (a job's archive) copied in, by the kernel (no user data in memory)."""
        target = self.path(uuid)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(target.name + _TEMP_SUFFIX)
        shutil.copyfile(source, temp)
        if self.sync:
            fd = os.open(temp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(temp, target)

    def _read_range(self, uuid: str, start: int, end: int) -> bytes:
        with open(self.path(uuid), "rb") as f:
            f.seek(start)
            return f.read(max(0, end - start))

    def _remove(self, uuid: str) -> None:
        path = self.path(uuid)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        for folder in (path.parent, path.parent.parent):  # keep the tree tidy, as Orthanc does
            try:
                folder.rmdir()
            except OSError:
                break

    def _list(self, older_than: float) -> list[str]:
        found: list[str] = []
        if not self.root.is_dir():
            return found
        for first in os.scandir(self.root):
            if not (first.is_dir() and len(first.name) == 2):
                continue
            for second in os.scandir(first.path):
                if not second.is_dir():
                    continue
                for entry in os.scandir(second.path):
                    name = entry.name
                    if name.endswith(_TEMP_SUFFIX):
                        # a write that never finished: nobody can refer to it
                        if entry.stat().st_mtime < older_than:
                            os.unlink(entry.path)
                    elif _UUID.fullmatch(name) and entry.stat().st_mtime < older_than:
                        found.append(name)
        return found

    # -- the StorageArea contract ----------------------------------------------------------------------------
    async def create(self, uuid: str, content_type: int, data: bytes) -> None:
        await asyncio.to_thread(self._write, uuid, data)

    async def create_from_file(self, uuid: str, content_type: int, source: Path) -> None:
        """Optional part of the contract: ``create`` from a file, without reading it into memory."""
        await asyncio.to_thread(self._copy_in, uuid, source)

    async def read(self, uuid: str, content_type: int) -> bytes:
        return await asyncio.to_thread(self.path(uuid).read_bytes)

    async def read_range(self, uuid: str, content_type: int, start: int, end: int) -> bytes:
        return await asyncio.to_thread(self._read_range, uuid, start, end)

    async def stream(self, uuid: str, content_type: int, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        f = await asyncio.to_thread(open, self.path(uuid), "rb")
        try:
            while chunk := await asyncio.to_thread(f.read, chunk_size):
                yield chunk
        finally:
            f.close()

    async def remove(self, uuid: str, content_type: int) -> None:
        await asyncio.to_thread(self._remove, uuid)

    async def list_uuids(self, older_than: float) -> list[str]:
        return await asyncio.to_thread(self._list, older_than)
