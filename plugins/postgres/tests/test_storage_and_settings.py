"""Attachments in PostgreSQL ("EnableStorage": true), alone and behind a server; the "PostgreSQL" section: its
defaults, its types, and which plugin answers the index and storage hooks."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from isengard.config import Config, ConfigError
from isengard.testing import sample
from isengard_postgres import PostgresStorage, Settings, index_backend, storage_area
from isengard_postgres.settings import DEFAULTS
from isengard_postgres.testing import section

from .conftest import settings


@pytest.fixture
async def storage(database: str) -> AsyncIterator[PostgresStorage]:
    area = PostgresStorage(settings(database))
    yield area
    await area.close()


async def test_storage_area_round_trip(storage: PostgresStorage) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    before = time.time()
    await storage.create("u1", 1, data)
    assert await storage.read("u1", 1) == data
    assert await storage.read_range("u1", 1, 10, 1000) == data[10:1000]
    assert b"".join([chunk async for chunk in storage.stream("u1", 1, chunk_size=1 << 20)]) == data
    assert await storage.list_uuids(before - 60) == []
    assert await storage.list_uuids(time.time() + 60) == ["u1"]
    await storage.remove("u1", 1)
    await storage.remove("u1", 1)  # absent: not an error
    with pytest.raises(FileNotFoundError):
        await storage.read("u1", 1)
    with pytest.raises(FileNotFoundError):
        await storage.read_range("u1", 1, 0, 10)


def test_a_server_with_everything_in_postgresql(isengard: Any, database: str) -> None:
    server = isengard({"PostgreSQL": section(database, EnableStorage=True), "StorageCompression": True})
    path = sample("Brainix", "Flair", "IM-0001-0001.dcm")
    [stored] = server.upload(path)
    with server.client() as client:
        assert client.get(f"/instances/{stored['ID']}/file").content == path.read_bytes()
        assert client.get(f"/instances/{stored['ID']}/simplified-tags").json()["PatientName"]
        assert not any((server.workdir / "storage").glob("**/*-*")), "no file may reach the filesystem"
        assert client.delete(f"/instances/{stored['ID']}").status_code == 200
        assert client.get("/statistics").json()["CountInstances"] == 0


def test_section_defaults_types_and_hooks() -> None:
    partial = Config({"PostgreSQL": {"EnableIndex": True, "Port": 5433}})
    parsed = Settings.from_config(partial)
    assert (parsed.port, parsed.host, parsed.lock, parsed.pool_size) == (5433, "localhost", True, 10)
    assert Settings.from_config(Config({})) == Settings.from_config(Config({"PostgreSQL": DEFAULTS}))
    assert index_backend(Config({})) is None and storage_area(Config({})) is None  # SQLite stays the default
    assert index_backend(partial) is not None and storage_area(partial) is None
    for bad in ({"Port": "5432"}, {"Lock": 1}, {"IndexConnectionsCount": 0}):
        with pytest.raises(ConfigError, match="PostgreSQL"):
            Settings.from_config(Config({"PostgreSQL": bad}))
    uri = Settings.from_config(Config({"PostgreSQL": {"ConnectionUri": "postgresql://u:secret@db:6000/x"}}))
    assert uri.connect_arguments() == {"dsn": "postgresql://u:secret@db:6000/x"}
    assert "secret" not in uri.describe()
