"""Jobs in the SQLite index: one row per job, claimed and compare-and-set through the group-commit writer.

A claim is one UPDATE statement whose subquery picks the job: SQLite runs it atomically, and another process
that wrote meanwhile makes it fail (busy snapshot) rather than claim twice; the engine then tries again.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Collection
from typing import Any, TypeVar

from sqlalchemy import Connection, bindparam, text

from isengard.model import JobRecord, JobState

T = TypeVar("T")
_COLUMNS = "id, type, state, priority, owner, heartbeat, revision, data"


def _record(row: Any) -> JobRecord:
    """The JSON record, with the columns (authoritative for the fields they hold) laid over it."""
    job = JobRecord.from_json(json.loads(row.data))
    job.state = JobState(row.state)
    job.priority = row.priority
    job.owner = row.owner
    job.heartbeat = row.heartbeat
    job.revision = row.revision
    return job


def _values(job: JobRecord) -> dict[str, Any]:
    return {
        "id": job.id,
        "type": job.type,
        "state": job.state.value,
        "priority": job.priority,
        "owner": job.owner,
        "heartbeat": job.heartbeat,
        "revision": job.revision,
        "data": json.dumps(job.to_json()),
    }


class JobsMixin:
    """The job methods of :class:`~isengard_sqlite.index.SqliteIndex` (kept apart to keep modules small)."""

    _read: Callable[[Callable[[Connection], Any]], Awaitable[Any]]
    _write: Callable[[Callable[[Connection], Any]], Awaitable[Any]]

    async def add_job(self, job: JobRecord) -> None:
        values = _values(job)
        await self._write(
            lambda conn: conn.execute(
                text(
                    f"INSERT INTO jobs ({_COLUMNS}) "
                    "VALUES (:id, :type, :state, :priority, :owner, :heartbeat, :revision, :data)"
                ),
                values,
            )
        )

    async def get_job(self, job_id: str) -> JobRecord | None:
        def run(conn: Connection) -> JobRecord | None:
            row = conn.execute(text(f"SELECT {_COLUMNS} FROM jobs WHERE id = :i"), {"i": job_id}).first()
            return None if row is None else _record(row)

        return await self._read(run)

    async def list_jobs(self, states: Collection[JobState] | None = None) -> list[JobRecord]:
        def run(conn: Connection) -> list[JobRecord]:
            if states is None:
                rows = conn.execute(text(f"SELECT {_COLUMNS} FROM jobs ORDER BY seq")).all()
            else:
                sql = text(f"SELECT {_COLUMNS} FROM jobs WHERE state IN :s ORDER BY seq")
                sql = sql.bindparams(bindparam("s", expanding=True))
                rows = conn.execute(sql, {"s": [s.value for s in states]}).all()
            return [_record(r) for r in rows]

        return await self._read(run)

    async def update_job(self, job: JobRecord, *, expected_revision: int) -> bool:
        values = _values(job)
        values["revision"] = expected_revision + 1
        values["data"] = json.dumps({**job.to_json(), "revision": expected_revision + 1})
        values["expected"] = expected_revision

        def run(conn: Connection) -> bool:
            changed = conn.execute(
                text(
                    "UPDATE jobs SET type = :type, state = :state, priority = :priority, owner = :owner, "
                    "heartbeat = :heartbeat, revision = :revision, data = :data "
                    "WHERE id = :id AND revision = :expected"
                ),
                values,
            ).rowcount
            return bool(changed)

        if not await self._write(run):
            return False
        job.revision = expected_revision + 1
        return True

    async def claim_job(self, owner: str, now: float, types: Collection[str]) -> JobRecord | None:
        if not types:
            return None
        params = {"o": owner, "n": now, "p": JobState.PENDING.value, "r": JobState.RUNNING.value, "t": list(types)}
        sql = text(
            "UPDATE jobs SET state = :r, owner = :o, heartbeat = :n, revision = revision + 1 "
            "WHERE seq = (SELECT seq FROM jobs WHERE state = :p AND type IN :t ORDER BY priority DESC, seq LIMIT 1) "
            f"RETURNING {_COLUMNS}"
        ).bindparams(bindparam("t", expanding=True))

        def run(conn: Connection) -> JobRecord | None:
            row = conn.execute(sql, params).first()
            if row is None:
                return None
            job = _record(row)
            # keep the JSON copy in step with the columns the claim changed
            conn.execute(text("UPDATE jobs SET data = :d WHERE id = :i"), {"d": json.dumps(job.to_json()), "i": job.id})
            return job

        return await self._write(run)

    async def renew_jobs(self, owner: str, now: float) -> None:
        await self._write(
            lambda conn: conn.execute(
                text("UPDATE jobs SET heartbeat = :n WHERE owner = :o AND state = :r"),
                {"n": now, "o": owner, "r": JobState.RUNNING.value},
            )
        )

    async def delete_job(self, job_id: str) -> JobRecord | None:
        def run(conn: Connection) -> JobRecord | None:
            row = conn.execute(text(f"DELETE FROM jobs WHERE id = :i RETURNING {_COLUMNS}"), {"i": job_id}).first()
            return None if row is None else _record(row)

        return await self._write(run)

    @staticmethod
    def _job_output_uuids(conn: Connection) -> set[str]:
        """The files of job outputs (the orphan sweep must keep them)."""
        uuids: set[str] = set()
        for (data,) in conn.execute(text("SELECT data FROM jobs WHERE data LIKE '%\"File\"%'")):
            outputs = json.loads(data).get("outputs", {})
            uuids.update(output["File"]["uuid"] for output in outputs.values())
        return uuids
