"""Attachments in the database ("EnableStorage": true): one bytea row per file, for sites that want a single
thing to back up. The filesystem storage stays faster for large archives (Orthanc's advice too).

The column is stored EXTERNAL (out of line, uncompressed: DICOM pixels rarely compress, and attachments arrive
already compressed when StorageCompression is on), which lets ``substring`` read a range without loading the
whole value: header reads and streamed downloads stay cheap.

The StorageArea contract has no start/stop: the pool opens on first use, and the plugin's ``shutdown`` hook
closes it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import asyncpg

from .db import LOCK_SCHEMA, Database
from .settings import Settings

SCHEMA = """
CREATE TABLE IF NOT EXISTS storage_area (
    uuid text PRIMARY KEY,
    content_type integer NOT NULL,
    data bytea NOT NULL,
    created timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE storage_area ALTER COLUMN data SET STORAGE EXTERNAL;
"""


async def _create_table(conn: asyncpg.Connection) -> None:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", *LOCK_SCHEMA)
        await conn.execute(SCHEMA)


class PostgresStorage:
    def __init__(self, settings: Settings) -> None:
        # the lock, when asked, is the index's business: the storage never holds one
        self.db = Database(dataclasses.replace(settings, lock=False, pool_size=min(settings.pool_size, 4)))
        self._opened = False
        self._opening = asyncio.Lock()

    async def _database(self) -> Database:
        if not self._opened:
            async with self._opening:
                if not self._opened:
                    await self.db.open(prepare=_create_table)
                    self._opened = True
        return self.db

    async def close(self) -> None:
        if self._opened:
            await self.db.close()
            self._opened = False

    async def create(self, uuid: str, content_type: int, data: bytes) -> None:
        sql = (
            "INSERT INTO storage_area (uuid, content_type, data) VALUES ($1, $2, $3) "
            "ON CONFLICT (uuid) DO UPDATE SET data = excluded.data, created = now()"
        )
        await (await self._database()).run(lambda conn: conn.execute(sql, uuid, content_type, data))

    async def read(self, uuid: str, content_type: int) -> bytes:
        sql = "SELECT data FROM storage_area WHERE uuid = $1"
        data = await (await self._database()).run(lambda conn: conn.fetchval(sql, uuid))
        if data is None:
            raise FileNotFoundError(uuid)
        return bytes(data)

    async def read_range(self, uuid: str, content_type: int, start: int, end: int) -> bytes:
        sql = "SELECT substring(data FROM $2 FOR $3) FROM storage_area WHERE uuid = $1"
        count = max(0, end - start)
        data = await (await self._database()).run(lambda conn: conn.fetchval(sql, uuid, start + 1, count))
        if data is None:
            raise FileNotFoundError(uuid)
        return bytes(data)

    async def stream(self, uuid: str, content_type: int, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        sql = "SELECT length(data) FROM storage_area WHERE uuid = $1"
        size = await (await self._database()).run(lambda conn: conn.fetchval(sql, uuid))
        if size is None:
            raise FileNotFoundError(uuid)
        for start in range(0, size, chunk_size):
            yield await self.read_range(uuid, content_type, start, min(size, start + chunk_size))

    async def remove(self, uuid: str, content_type: int) -> None:
        sql = "DELETE FROM storage_area WHERE uuid = $1"
        await (await self._database()).run(lambda conn: conn.execute(sql, uuid))

    async def list_uuids(self, older_than: float) -> list[str]:
        sql = "SELECT uuid FROM storage_area WHERE created < to_timestamp($1)"
        found = await (await self._database()).run(lambda conn: conn.fetch(sql, older_than))
        return [r[0] for r in found]
