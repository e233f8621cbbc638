"""Losing PostgreSQL: the server answers Orthanc's DatabaseUnavailable (HTTP 503) while it is gone, stores nothing
by halves, and serves again as soon as it is back, without a restart. And the "Lock" option: one server per
database, kept across a lost connection.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from pydicom.uid import generate_uid

from isengard.config import ConfigError
from isengard.errors import ErrorCode
from isengard.testing import ServerProcess, assert_orthanc_error, dicom_variant, require_tool, sample, storage_files
from isengard_postgres import PostgresIndex
from isengard_postgres.db import DatabaseLocked
from isengard_postgres.testing import connection_arguments, run_sync, section

from .conftest import settings

UNAVAILABLE = ErrorCode.DATABASE_UNAVAILABLE


def new_instance() -> bytes:
    return dicom_variant(sample("Brainix", "Flair", "IM-0001-0001.dcm"), SOPInstanceUID=generate_uid())


def terminate_backends(database: str, *, where: str = "TRUE") -> int:
    """Kill the server-side sessions of a database, as a network cut or a crashed backend would."""

    async def run() -> int:
        conn = await asyncpg.connect(**connection_arguments())
        try:
            return int(
                await conn.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    f"WHERE datname = $1 AND pid <> pg_backend_pid() AND {where}",
                    database,
                )
            )
        finally:
            await conn.close()

    return run_sync(run())


async def advisory_locks(database: str) -> int:
    conn = await asyncpg.connect(**connection_arguments())
    try:
        sql = (
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE d.datname = $1 AND l.locktype = 'advisory' AND l.granted"
        )
        return int(await conn.fetchval(sql, database))
    finally:
        await conn.close()


@pytest.fixture
def cluster_control() -> Iterator[Any]:
    """``control("stop")``/``control("start")`` on the local cluster; always started again afterwards."""
    executable = require_tool("pg_ctlcluster", "the connection-loss tests stop and start PostgreSQL")
    version = sorted(os.listdir("/etc/postgresql"))[-1]

    def control(action: str, check: bool = True) -> None:
        subprocess.run([executable, "--skip-systemctl-redirect", version, "main", action], check=check)

    yield control
    control("start", check=False)  # "already running" is a failure for pg_ctlcluster


@pytest.fixture
def server(isengard: Any, database: str) -> ServerProcess:
    return isengard({"PostgreSQL": section(database), "StableAge": 3600})


@pytest.mark.serial
def test_postgresql_stopped_then_started_again(server: ServerProcess, cluster_control: Any) -> None:
    stored = server.upload(sample("Brainix", "Flair", "IM-0001-0001.dcm"))[0]["ID"]
    files_before = storage_files(server)
    cluster_control("stop")
    with server.client() as client:
        for response in (
            client.get("/instances"),
            client.get(f"/instances/{stored}/file"),
            client.post("/tools/find", json={"Level": "Study", "Query": {"PatientName": "*"}}),
            client.post("/instances", content=new_instance()),
        ):
            body = assert_orthanc_error(response, 503)
            assert body["OrthancStatus"] == UNAVAILABLE.status
        assert client.get("/system").status_code == 200, "the server itself keeps serving"
    assert storage_files(server) == files_before, "a refused upload must leave no file behind"

    cluster_control("start")
    deadline = time.monotonic() + 30
    with server.client() as client:
        while (answer := client.get("/instances")).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert answer.json() == [stored]
        assert client.post("/instances", content=new_instance()).json()["Status"] == "Success"
        assert len(client.get("/instances").json()) == 2


def test_connections_cut_during_traffic(server: ServerProcess, database: str) -> None:
    """Backends killed again and again under load: every answer is a success or a 503, never a 500."""
    stop = threading.Event()

    def cut() -> None:
        while not stop.is_set():
            terminate_backends(database)
            time.sleep(0.05)

    cutter = threading.Thread(target=cut)
    statuses: Counter[int] = Counter()
    cutter.start()
    try:
        with server.client() as client:
            for _ in range(60):
                statuses[client.post("/instances", content=new_instance()).status_code] += 1
                statuses[client.get("/instances").status_code] += 1
                body = {"Level": "Instance", "Query": {"PatientName": "*"}}
                statuses[client.post("/tools/find", json=body).status_code] += 1
    finally:
        stop.set()
        cutter.join()
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[200] > 0
    with server.client() as client:
        ids = client.get("/instances").json()
        assert len(ids) == len(set(ids))
        for instance in ids:
            assert client.get(f"/instances/{instance}/file").status_code == 200
        indexed = {client.get(f"/instances/{i}/attachments/dicom/info").json()["Uuid"] for i in ids}
    # an upload refused during a COMMIT cut short may have been applied (that one is announced), never
    # the reverse: whatever the index holds has its file
    assert indexed <= storage_files(server)


async def test_lock_keeps_a_second_server_out(database: str) -> None:
    first = PostgresIndex(settings(database, Lock=True))
    await first.start()
    try:
        with pytest.raises(DatabaseLocked, match='"Lock": false'):
            await PostgresIndex(settings(database, Lock=True)).start()
        shared = PostgresIndex(settings(database, Lock=False))  # Lock false: the operator's choice, allowed
        await shared.start()
        await shared.stop()

        # the session holding the lock is killed: the server takes the lock again by itself
        assert await advisory_locks(database) == 1
        assert terminate_backends(database, where="pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory')")
        deadline = time.monotonic() + 10
        while not await advisory_locks(database):
            assert time.monotonic() < deadline, "the lock was not taken again"
            await asyncio.sleep(0.05)
        await first.set_property("after", "relock")
        assert await first.get_property("after") == "relock"
        with pytest.raises(DatabaseLocked):
            await PostgresIndex(settings(database, Lock=True)).start()
    finally:
        await first.stop()
    again = PostgresIndex(settings(database, Lock=True))  # released with the first server
    await again.start()
    await again.stop()


def test_second_locked_server_refuses_to_start(isengard: Any, database: str) -> None:
    isengard({"PostgreSQL": section(database, Lock=True)})
    with pytest.raises(RuntimeError, match="locked by another Isengard"):
        isengard({"PostgreSQL": section(database, Lock=True)})


async def test_unreachable_database_is_a_clear_start_up_error() -> None:
    unreachable = settings("nowhere", Port=1, MaximumConnectionRetries=1, ConnectionRetryInterval=0)
    with pytest.raises(ConfigError, match=r"cannot connect to PostgreSQL at 127\.0\.0\.1:1/nowhere"):
        await PostgresIndex(unreachable).start()
