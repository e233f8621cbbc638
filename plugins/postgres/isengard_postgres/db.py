"""Connections to PostgreSQL: the pool, transactions retried on conflicts between servers, errors a client can
read, and the optional single-server lock.

Several Isengard processes may write to one database at once. Their conflicts surface as serialization failures,
deadlocks, or a unique / foreign key violation when two of them create or delete the same row at the same time
(a patient created twice, an instance written under a series another server is deleting). Every write runs in
one transaction that is simply run again on those errors: the second run sees what the other server committed.

A lost connection (PostgreSQL restarted, network cut) becomes Orthanc's ``DatabaseUnavailable`` (HTTP 503). The
pool replaces dead connections by itself, so the server recovers as soon as PostgreSQL is back. A transaction
that failed before its COMMIT was sent is tried once more on a fresh connection (the common case: a pooled
connection that died while idle); one that failed during COMMIT is not, since it may have been applied.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
from asyncpg import exceptions as pgerr

from isengard.config import ConfigError
from isengard.errors import ErrorCode, OrthancError

from .settings import Settings

log = logging.getLogger("isengard.postgres")

T = TypeVar("T")
Connection = asyncpg.Connection
Work = Callable[[Connection], Awaitable[T]]

#: Conflicts between concurrent writers: the transaction is rolled back and run again.
CONFLICTS = (
    pgerr.SerializationError,
    pgerr.DeadlockDetectedError,
    pgerr.UniqueViolationError,
    pgerr.ForeignKeyViolationError,
)
CONFLICT_ATTEMPTS = 8
#: Advisory lock keys (two-int form, so they never meet the one-bigint keys of patients): "IS" + a purpose.
LOCK_SERVER = (0x4953, 1)
LOCK_SCHEMA = (0x4953, 2)


class DatabaseLocked(ConfigError):
    """Another Isengard holds the database ("Lock": true) and this one must not start."""


def is_connection_error(error: BaseException) -> bool:
    """Whether an error means "no usable connection" rather than a problem with the statement."""
    if isinstance(
        error,
        pgerr.PostgresConnectionError  # class 08, and "connection was closed in the middle of operation"
        | pgerr.OperatorInterventionError  # 57P01 admin shutdown, 57P03 cannot connect now (starting up)
        | pgerr.TooManyConnectionsError
        | OSError
        | TimeoutError
        # asyncpg's protocol left in a broken state by a session killed while idle in the pool
        | pgerr.InternalClientError,
    ):
        return True
    # a pooled connection whose session died is closed, or detached from its proxy ("released back to the pool")
    return isinstance(error, pgerr.InterfaceError) and ("closed" in str(error) or "released" in str(error))


def unavailable(error: BaseException) -> OrthancError:
    return OrthancError(ErrorCode.DATABASE_UNAVAILABLE, f"PostgreSQL is not available: {error}")


class Database:
    """A pool of connections to one database, and the two ways of using it: :meth:`run` and :meth:`write`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pool: asyncpg.Pool | None = None
        self._lock_connection: Connection | None = None
        self._lock_lost = False
        self._relock: asyncio.Task[None] | None = None
        self._closing = False

    # -- life cycle ------------------------------------------------------------------------------------------
    async def open(self, *, prepare: Work[None] | None = None) -> None:
        """Connect (retrying while PostgreSQL starts: MaximumConnectionRetries x ConnectionRetryInterval),
        take the server lock when asked, run ``prepare`` (schema upgrades) once, then open the pool."""
        first = await self._connect_with_retries()
        try:
            if self.settings.lock:
                await self._take_lock(first)
                self._lock_connection, first = first, await self._connect_with_retries()
            if prepare is not None:
                await prepare(first)
        finally:
            await first.close()
        self._pool = await asyncpg.create_pool(
            **self.settings.connect_arguments(),
            min_size=1,
            max_size=self.settings.pool_size,
        )

    async def close(self) -> None:
        self._closing = True
        if self._relock is not None:
            self._relock.cancel()
        if self._pool is not None:
            await self._pool.close()
        if self._lock_connection is not None and not self._lock_connection.is_closed():
            await self._lock_connection.close()  # closing the session releases the advisory lock

    async def _connect_with_retries(self) -> Connection:
        attempts = max(1, self.settings.retries + 1)
        for attempt in range(1, attempts + 1):
            try:
                return await asyncpg.connect(**self.settings.connect_arguments(), timeout=10)
            except Exception as e:
                if not is_connection_error(e) or attempt == attempts:
                    raise ConfigError(f"cannot connect to PostgreSQL at {self.settings.describe()}: {e}") from e
                log.warning(
                    "PostgreSQL at %s is not reachable (%s): attempt %d of %d, next in %.0fs",
                    self.settings.describe(),
                    e,
                    attempt,
                    attempts,
                    self.settings.retry_interval,
                )
                await asyncio.sleep(self.settings.retry_interval)
        raise AssertionError("unreachable")

    # -- the single-server lock ("Lock": true) ---------------------------------------------------------------
    async def _take_lock(self, conn: Connection) -> None:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", *LOCK_SERVER):
            raise DatabaseLocked(
                f"the PostgreSQL database {self.settings.describe()} is locked by another Isengard (or Orthanc-like "
                'server): set "PostgreSQL": {"Lock": false} on every server that shares it'
            )
        conn.add_termination_listener(self._lock_connection_lost)

    def _lock_connection_lost(self, _conn: Connection) -> None:
        """PostgreSQL dropped the session holding the lock: refuse writes until it is taken again."""
        if self._closing:
            return
        self._lock_lost = True
        log.error("the connection holding the PostgreSQL lock was lost: writes are refused until it is retaken")
        self._relock = asyncio.get_running_loop().create_task(self._retake_lock())

    async def _retake_lock(self) -> None:
        while not self._closing:
            try:
                conn = await asyncpg.connect(**self.settings.connect_arguments(), timeout=10)
            except Exception as e:
                if not is_connection_error(e):
                    raise
                await asyncio.sleep(min(self.settings.retry_interval, 1.0))
                continue
            try:
                await self._take_lock(conn)
            except DatabaseLocked as e:
                log.error("%s", e)
                await conn.close()
                await asyncio.sleep(self.settings.retry_interval)
                continue
            self._lock_connection, self._lock_lost = conn, False
            log.warning("the PostgreSQL lock is held again")
            return

    # -- using the pool --------------------------------------------------------------------------------------
    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the PostgreSQL index is not started")
        return self._pool

    async def run(self, work: Work[T]) -> T:
        """Run statements on one connection outside any explicit transaction (reads, or one-statement writes)."""
        for attempt in (1, 2):
            conn = await self._acquire()
            broken = False
            try:
                return await work(conn)
            except Exception as e:
                if not is_connection_error(e):
                    raise
                broken = True
                if attempt == 2:
                    raise unavailable(e) from e
                log.warning("PostgreSQL connection lost (%s): trying once more", e)
            finally:
                await self._release(conn, broken)
        raise AssertionError("unreachable")

    async def _release(self, conn: Connection, broken: bool) -> None:
        """Give a connection back; a broken one is closed first, so that the pool opens a new one."""
        try:
            if broken:
                conn.terminate()
            await self.pool.release(conn)
        except Exception as e:  # the session died meanwhile: the pool has detached it, or closes and replaces it
            log.debug("releasing a dead connection: %s", e)

    async def _acquire(self) -> Connection:
        """A pooled connection; any failure to open one (server down, starting, refusing) is "unavailable"."""
        try:
            return await self.pool.acquire()
        except Exception as e:
            raise unavailable(e) from e

    async def write(self, work: Work[T]) -> T:
        """Run ``work`` in one transaction: all its effects or none, run again on conflicts with other writers."""
        if self._lock_lost:
            raise OrthancError(ErrorCode.DATABASE_UNAVAILABLE, "the PostgreSQL lock of this server was lost")
        conflicts = 0
        lost = 0
        while True:
            committing = broken = False
            conn = await self._acquire()
            try:
                tx = conn.transaction()
                await tx.start()
                try:
                    result = await work(conn)
                except BaseException as e:
                    if not is_connection_error(e):
                        await tx.rollback()
                    raise
                committing = True
                await tx.commit()
                return result
            except CONFLICTS as e:
                conflicts += 1
                if conflicts >= CONFLICT_ATTEMPTS:
                    raise OrthancError(ErrorCode.DATABASE, f"too many conflicts with other writers: {e}") from e
                log.debug("write conflict (%s), attempt %d", type(e).__name__, conflicts)
                await asyncio.sleep(random.uniform(0, 0.005 * conflicts))
            except Exception as e:
                if not is_connection_error(e):
                    raise
                broken = True
                lost += 1
                if committing or lost > 1:
                    raise unavailable(e) from e
                log.warning("PostgreSQL connection lost (%s): trying once more", e)
            finally:
                await self._release(conn, broken)
