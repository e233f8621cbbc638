"""Scratch databases for tests and benchmarks, on the PostgreSQL server named by the libpq variables (PGHOST,
PGPORT, PGUSER, PGPASSWORD; default: 127.0.0.1:5432, user postgres, as on the CI machine).

``isengard.testing`` calls :func:`server_config` for every test server when the suite runs with
``--index=postgres``: each distinct IndexDirectory gets its own database, so servers that share an index folder
on SQLite share a database here. Databases are named after the pytest process and dropped when it ends (and
those of dead processes at the next run).
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import os
import re
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import asyncpg

from isengard.testing import unavailable

T = TypeVar("T")
PREFIX = "isengard_t"
_created: set[str] = set()
_lock = threading.Lock()
_swept = False


def connection_arguments(database: str | None = None) -> dict[str, Any]:
    return {
        "host": os.environ.get("PGHOST", "127.0.0.1"),
        "port": int(os.environ.get("PGPORT", "5432")),
        "user": os.environ.get("PGUSER", "postgres"),
        "password": os.environ.get("PGPASSWORD") or None,
        "database": database or os.environ.get("PGDATABASE", "postgres"),
    }


def section(database: str, **options: Any) -> dict[str, Any]:
    """The "PostgreSQL" configuration section of a server using ``database``."""
    args = connection_arguments(database)
    return {
        "EnableIndex": True,
        "Host": args["host"],
        "Port": args["port"],
        "Username": args["user"],
        "Password": args["password"] or "",
        "Database": database,
        "Lock": False,
        "MaximumConnectionRetries": 3,
        "ConnectionRetryInterval": 1,
        **options,
    }


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from synchronous code, even inside a running event loop (a thread)."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coroutine))
        except BaseException as e:
            error.append(e)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


async def _admin(sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(**connection_arguments(), timeout=5)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


def problem() -> str | None:
    """Why PostgreSQL cannot be used, or ``None`` when it can."""
    try:
        run_sync(_admin("SELECT 1"))
    except Exception as e:
        args = connection_arguments()
        return f"PostgreSQL is not reachable at {args['host']}:{args['port']} as {args['user']} ({e})"
    return None


def require_postgres() -> None:
    """Skip the test on a developer's machine without PostgreSQL; fail it in CI, which must provide one."""
    reason = problem()
    if reason is not None:
        unavailable(reason + " (scripts/test starts the local cluster)")


def create_database(name: str) -> str:
    """An empty database (dropped first if it exists), dropped when this process ends."""
    if not re.fullmatch(r"[a-z0-9_]+", name):
        raise ValueError(name)
    _sweep_dead()
    run_sync(_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    run_sync(_admin(f"CREATE DATABASE {name}"))
    with _lock:
        _created.add(name)
    return name


def drop_database(name: str) -> None:
    with _lock:
        _created.discard(name)
    run_sync(_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def scratch_name(key: str) -> str:
    return f"{PREFIX}{os.getpid()}_{hashlib.sha1(key.encode()).hexdigest()[:12]}"


def server_config(key: str) -> dict[str, Any]:
    """Configuration that makes a test server use PostgreSQL: one database per ``key`` (its IndexDirectory)."""
    name = scratch_name(key)
    with _lock:
        exists = name in _created
    if not exists:
        require_postgres()
        create_database(name)
    return {"PostgreSQL": section(name)}


def release(key: str) -> None:
    """Drop the database of ``key`` (after its servers stopped)."""
    name = scratch_name(key)
    with _lock:
        exists = name in _created
    if exists:
        drop_database(name)


def _sweep_dead() -> None:
    """Drop the scratch databases of test processes that are gone (killed before their clean-up)."""
    global _swept
    if _swept:
        return
    _swept = True
    for row in run_sync(_admin("SELECT datname FROM pg_database WHERE datname LIKE $1", PREFIX + "%")):
        match = re.fullmatch(PREFIX + r"(\d+)_\w+", row[0])
        if match and not _alive(int(match.group(1))):
            run_sync(_admin(f"DROP DATABASE IF EXISTS {row[0]} WITH (FORCE)"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@atexit.register
def _drop_all() -> None:
    for name in sorted(_created):
        try:
            drop_database(name)
        except Exception:  # the server may be gone already: nothing left to clean
            pass
