"""Where worklists come from: the .wl files of the Database folder, and those created over REST.

The folder is read at each query, as Orthanc's plugin and dcmtk's ``wlmscpfs`` do, so whatever a RIS or a script
drops there or removes is served at once; headers are parsed in a worker thread and kept while a file's mtime and
size stay the same. A worklist's identifier is its file name without ".wl".

Worklists created over REST go to the folder as ``<uuid>.wl`` files when Database is set (so that dcmtk tools
and Orthanc read the same folder), else into the index (one property, as the kernel keeps modalities), so every
server on one database serves the same ones.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import io
import json
import logging
import os
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pydicom
from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from isengard.dicom.create import encode
from isengard.dicom.parse import ENCODINGS
from isengard.errors import unknown_resource

from .settings import WorklistSettings

if TYPE_CHECKING:
    from isengard.context import ServerContext

log = logging.getLogger("isengard.worklist")
EXTENSION = ".wl"
#: The index property holding the worklists created over REST when there is no folder:
#: {id: {"CreatedAt": "YYYYMMDDTHHMMSS" (UTC), "Dicom": base64 of the file}}, as Orthanc's plugin keeps them.
PROPERTY = "Worklists"
_write_lock = asyncio.Lock()


def _loaded(ds: Dataset, default_charset: str) -> Dataset:
    """Every element converted now, in the reading thread: a malformed file fails here rather than in a query,
    and the queries that share the cached dataset, each in its own thread, then only read it.

    A worklist that declares no character set is read in the DefaultEncoding, as Orthanc reads any file, and
    then declares it, so that its answers say how their text is encoded."""
    if "SpecificCharacterSet" not in ds:
        ds.SpecificCharacterSet = default_charset
    for _ in ds.iterall():
        pass
    return ds


def decode(data: bytes, default_charset: str) -> Dataset:
    return _loaded(pydicom.dcmread(io.BytesIO(data), force=True), default_charset)


def read_file(path: str, default_charset: str) -> Dataset:
    """A worklist file: a DICOM file, or a bare dataset (no preamble nor meta header) whose tags are all known,
    so that a stray file with a .wl name is skipped rather than served as garbage."""
    try:
        return _loaded(pydicom.dcmread(path), default_charset)
    except InvalidDicomError:
        ds = pydicom.dcmread(path, force=True)
    if not len(ds) or any(elem.tag.is_private or keyword_for_tag(elem.tag) == "" for elem in ds):
        raise InvalidDicomError("neither a DICOM file nor a dataset of known tags")
    return _loaded(ds, default_charset)


class WorklistStore:
    """The worklists one server serves; one per server (it holds the parsed-file cache)."""

    def __init__(self, ctx: ServerContext, settings: WorklistSettings) -> None:
        self.ctx = ctx
        self.folder = settings.database
        self.default_charset = ENCODINGS.get(ctx.config.str("DefaultEncoding"), "ISO_IR 100")
        self._files: dict[str, tuple[int, int, Dataset]] = {}  # path -> (mtime_ns, size, dataset)
        self._stored: dict[str, Dataset] = {}  # base64 of a file -> dataset, for the index's worklists
        self._folder_lock = threading.Lock()  # queries read the folder in worker threads, maybe several at once

    # -- reading ---------------------------------------------------------------------------------------------
    async def all(self) -> dict[str, Dataset]:
        """Every worklist by identifier: the folder's files, then the index's."""
        found = await asyncio.to_thread(self._read_folder) if self.folder is not None else {}
        stored = {worklist_id: entry["Dicom"] for worklist_id, entry in (await self._index_items()).items()}
        if set(stored.values()) != set(self._stored):
            known, charset = self._stored, self.default_charset
            self._stored = {t: known.get(t) or decode(base64.b64decode(t), charset) for t in stored.values()}
        for worklist_id, text in stored.items():
            found.setdefault(worklist_id, self._stored[text])
        return found

    async def creation_dates(self) -> dict[str, str]:
        """When each worklist kept in the index was created (files have no such date)."""
        return {worklist_id: entry["CreatedAt"] for worklist_id, entry in (await self._index_items()).items()}

    async def get(self, worklist_id: str) -> Dataset:
        found = (await self.all()).get(worklist_id)
        if found is None:
            raise unknown_resource(worklist_id)
        return found

    def _read_folder(self) -> dict[str, Dataset]:
        with self._folder_lock:
            return self._read_folder_locked()

    def _read_folder_locked(self) -> dict[str, Dataset]:
        assert self.folder is not None
        try:
            entries = [e for e in os.scandir(self.folder) if e.name.lower().endswith(EXTENSION) and e.is_file()]
        except OSError as e:
            log.warning("cannot list the worklist folder %s: %s", self.folder, e)
            return {}
        found: dict[str, Dataset] = {}
        seen: set[str] = set()
        for entry in sorted(entries, key=lambda e: e.name):
            seen.add(entry.path)
            try:
                stat = entry.stat()
                cached = self._files.get(entry.path)
                if cached is None or cached[:2] != (stat.st_mtime_ns, stat.st_size):
                    cached = (stat.st_mtime_ns, stat.st_size, read_file(entry.path, self.default_charset))
                    self._files[entry.path] = cached
            except Exception as e:  # whatever is wrong with one file, the others are still served
                log.warning("worklist file %s skipped: %s", entry.path, e)
                continue
            found[entry.name[: -len(EXTENSION)]] = cached[2]
        for gone in set(self._files) - seen:
            del self._files[gone]
        return found

    async def _index_items(self) -> dict[str, dict[str, str]]:
        raw = await self.ctx.index.get_property(PROPERTY)
        return json.loads(raw) if raw else {}

    # -- writing ---------------------------------------------------------------------------------------------
    async def put(self, ds: Dataset, worklist_id: str | None = None) -> str:
        """Store a worklist (a new one unless ``worklist_id`` names one to replace); returns its identifier."""
        worklist_id = worklist_id or str(uuid.uuid4())
        data = encode(ds)
        if self.folder is not None:
            await asyncio.to_thread(self._write_file, self.folder / (worklist_id + EXTENSION), data)
            return worklist_id
        async with _write_lock:
            items = await self._index_items()
            created = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S")
            items[worklist_id] = {"CreatedAt": created, "Dicom": base64.b64encode(data).decode("ascii")}
            await self.ctx.index.set_property(PROPERTY, json.dumps(items))
        return worklist_id

    @staticmethod
    def _write_file(path: Path, data: bytes) -> None:
        """Written aside then renamed, so that a query never reads half a file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".tmp")
        partial.write_bytes(data)
        os.replace(partial, path)

    async def delete(self, worklist_id: str) -> None:
        if self.folder is not None and "/" not in worklist_id and not worklist_id.startswith("."):
            path = self.folder / (worklist_id + EXTENSION)
            try:
                await asyncio.to_thread(path.unlink)
                return
            except FileNotFoundError:
                pass
        async with _write_lock:
            items = await self._index_items()
            if items.pop(worklist_id, None) is None:
                raise unknown_resource(worklist_id)
            await self.ctx.index.set_property(PROPERTY, json.dumps(items))
