"""Fixtures of the PostgreSQL plugin's tests: a scratch database per test, and an index started on it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from isengard.config import Config
from isengard_postgres import PostgresIndex, Settings
from isengard_postgres.testing import create_database, drop_database, require_postgres, section


@pytest.fixture
def database() -> Iterator[str]:
    """The name of an empty database, dropped after the test."""
    require_postgres()
    name = create_database(f"isengard_unit_{uuid.uuid4().hex[:12]}")
    yield name
    drop_database(name)


def settings(database: str, **options: object) -> Settings:
    return Settings.from_config(Config({"PostgreSQL": section(database, **options)}))


@pytest.fixture
async def index(database: str) -> AsyncIterator[PostgresIndex]:
    idx = PostgresIndex(settings(database))
    await idx.start()
    yield idx
    await idx.stop()
