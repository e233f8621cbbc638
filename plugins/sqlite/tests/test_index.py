"""The SQLite index on a real database file: the shared index contract (isengard.index_contract), and what only
SQLite has: group commit isolating a failing write from the rest of its batch.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from isengard.backends import IndexBackend
from isengard.index_contract import TABLES, IndexContract
from isengard_sqlite import SqliteIndex
from isengard_sqlite.writer import GroupCommitWriter


@pytest.fixture
async def index(tmp_path: Path) -> AsyncIterator[SqliteIndex]:
    idx = SqliteIndex(tmp_path / "index.sqlite")
    await idx.start()
    yield idx
    await idx.stop()


class TestSqliteIndexContract(IndexContract):
    async def table_counts(self, index: IndexBackend) -> dict[str, int]:
        assert isinstance(index, SqliteIndex)
        with sqlite3.connect(index.path) as db:
            return {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}


async def test_group_commit_rolls_back_only_the_failing_write(index: SqliteIndex) -> None:
    """Many writes in one transaction: the one that fails after writing leaves no trace, the others commit."""
    writer = GroupCommitWriter(index.engine)
    gate = threading.Event()

    def blocker(conn: Connection) -> None:
        gate.wait(10)  # holds the writer thread so that the writes below queue into one batch

    def put(name: str, fail: bool = False):  # type: ignore[no-untyped-def]
        def run(conn: Connection) -> str:
            conn.execute(text("INSERT INTO properties (name, value) VALUES (:n, 'v')"), {"n": name})
            if fail:
                raise ValueError(f"{name} failed after writing")
            return name

        return run

    try:
        first = asyncio.ensure_future(writer.submit(blocker))
        await asyncio.sleep(0.05)
        names = [f"batch-{i}" for i in range(30)]
        futures = [writer.submit(put(n, fail=(n == "batch-13"))) for n in names]
        gathered = asyncio.gather(*futures, return_exceptions=True)
        await asyncio.sleep(0.05)
        gate.set()
        await first
        results = await gathered
    finally:
        gate.set()
        await asyncio.to_thread(writer.stop)
    assert isinstance(results[13], ValueError)
    assert [r for i, r in enumerate(results) if i != 13] == [n for n in names if n != "batch-13"]
    for n in names:
        expected = None if n == "batch-13" else "v"
        assert await index.get_property(n) == expected, n
