"""Group commit: one thread owns the write connection and commits whatever writes are waiting in one transaction.

SQLite serializes writers anyway; funnelling them through one thread removes lock contention, and committing a
batch at once turns N ingests arriving together into one transaction. Each write runs in its own savepoint, so a
failing write is rolled back alone and reported to its caller only.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine

log = logging.getLogger("isengard.sqlite")

T = TypeVar("T")
MAX_BATCH = 128
#: Marks the writer's connection (in ``Connection.info``), whose transactions begin IMMEDIATE.
WRITER = "isengard_writer"
_STOP = object()
_SAVEPOINT, _ROLLBACK_TO, _RELEASE = "SAVEPOINT write", "ROLLBACK TO write", "RELEASE write"


class GroupCommitWriter:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="isengard-sqlite-writer", daemon=True)
        self._thread.start()

    async def submit(self, fn: Callable[[Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, future, loop))
        return await future

    def stop(self) -> None:
        self._queue.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        with self._engine.connect() as conn:
            conn.info[WRITER] = True
            stopping = False
            while not stopping:
                item = self._queue.get()
                if item is _STOP:
                    break
                batch = [item]
                while len(batch) < MAX_BATCH:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is _STOP:
                        stopping = True
                        break
                    batch.append(nxt)
                self._commit(conn, batch)

    @staticmethod
    def _commit(conn: Connection, batch: list[Any]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        try:
            with conn.begin():
                # Savepoints on the driver's cursor: SQLAlchemy's begin_nested() cost more than a whole ingest's
                # statements. SQLAlchemy need not know of them: each is released or rolled back before the next
                # write, and a failure to roll one back fails the whole batch, as below.
                cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                for fn, _, _ in batch:
                    cursor.execute(_SAVEPOINT)
                    try:
                        value = fn(conn)
                    except Exception as e:
                        cursor.execute(_ROLLBACK_TO)
                        cursor.execute(_RELEASE)
                        outcomes.append((False, e))
                        continue
                    cursor.execute(_RELEASE)
                    outcomes.append((True, value))
        except Exception as e:  # the commit itself failed: nothing of the batch is stored
            log.exception("index commit failed")
            outcomes = [(False, e)] * len(batch)
        for (_, future, loop), (ok, value) in zip(batch, outcomes, strict=True):
            loop.call_soon_threadsafe(_settle, future, ok, value)


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.cancelled():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
