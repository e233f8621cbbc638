"""Jobs in the PostgreSQL index: one row per job, the whole record as jsonb, and as columns the fields the engine
selects on (the columns win over the JSON, as in the SQLite plugin).

Several servers on one database share the jobs. A claim is one UPDATE whose sub-query picks the job with
``FOR UPDATE SKIP LOCKED``: two servers claiming at once take two different jobs, neither waits for the other,
and a job is never claimed twice.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

import asyncpg

from isengard.model import JobRecord, JobState

from .db import Database

_COLUMNS = "id, type, state, priority, owner, heartbeat, revision, data"

#: Applied by schema.MIGRATIONS (version 2).
SCHEMA = """
CREATE TABLE jobs (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- submission order
    id text NOT NULL UNIQUE,
    type text NOT NULL,
    state text NOT NULL,
    priority integer NOT NULL,
    owner text,
    heartbeat double precision NOT NULL DEFAULT 0,
    revision integer NOT NULL,
    data jsonb NOT NULL
);
CREATE INDEX jobs_claim ON jobs (state, priority DESC, seq);
CREATE INDEX jobs_owner ON jobs (owner) WHERE owner IS NOT NULL;
"""

#: The uuids of job output files, for the orphan sweep.
OUTPUT_UUIDS = "SELECT jsonb_path_query(data, '$.outputs.*.File.uuid') #>> '{}' FROM jobs"


def _record(row: asyncpg.Record) -> JobRecord:
    job = JobRecord.from_json(json.loads(row["data"]))
    job.state = JobState(row["state"])
    job.priority = row["priority"]
    job.owner = row["owner"]
    job.heartbeat = row["heartbeat"]
    job.revision = row["revision"]
    return job


def _values(job: JobRecord, revision: int) -> tuple[Any, ...]:
    data = json.dumps({**job.to_json(), "revision": revision})
    return job.id, job.type, job.state.value, job.priority, job.owner, job.heartbeat, revision, data


class JobsMixin:
    """The job methods of :class:`~isengard_postgres.index.PostgresIndex` (kept apart to keep modules small)."""

    db: Database

    async def add_job(self, job: JobRecord) -> None:
        sql = f"INSERT INTO jobs ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)"
        values = _values(job, job.revision)
        await self.db.run(lambda conn: conn.execute(sql, *values))

    async def get_job(self, job_id: str) -> JobRecord | None:
        row = await self.db.run(lambda conn: conn.fetchrow(f"SELECT {_COLUMNS} FROM jobs WHERE id = $1", job_id))
        return None if row is None else _record(row)

    async def list_jobs(self, states: Collection[JobState] | None = None) -> list[JobRecord]:
        if states is None:
            found = await self.db.run(lambda conn: conn.fetch(f"SELECT {_COLUMNS} FROM jobs ORDER BY seq"))
        else:
            sql = f"SELECT {_COLUMNS} FROM jobs WHERE state = ANY($1::text[]) ORDER BY seq"
            wanted = [s.value for s in states]
            found = await self.db.run(lambda conn: conn.fetch(sql, wanted))
        return [_record(r) for r in found]

    async def update_job(self, job: JobRecord, *, expected_revision: int) -> bool:
        sql = (
            "UPDATE jobs SET type = $2, state = $3, priority = $4, owner = $5, heartbeat = $6, revision = $7, "
            "data = $8::jsonb WHERE id = $1 AND revision = $9"
        )
        values = _values(job, expected_revision + 1)
        status = await self.db.run(lambda conn: conn.execute(sql, *values, expected_revision))
        if status != "UPDATE 1":
            return False
        job.revision = expected_revision + 1
        return True

    async def claim_job(self, owner: str, now: float, types: Collection[str]) -> JobRecord | None:
        if not types:
            return None
        sql = (
            "UPDATE jobs SET state = $1, owner = $2, heartbeat = $3, revision = revision + 1, "
            "data = data || jsonb_build_object('state', $1::text, 'owner', $2::text, 'heartbeat', $3::float8, "
            "'revision', revision + 1) "
            "WHERE seq = (SELECT seq FROM jobs WHERE state = $4 AND type = ANY($5::text[]) "
            "ORDER BY priority DESC, seq LIMIT 1 FOR UPDATE SKIP LOCKED) "
            f"RETURNING {_COLUMNS}"
        )
        args = (JobState.RUNNING.value, owner, now, JobState.PENDING.value, list(types))
        row = await self.db.run(lambda conn: conn.fetchrow(sql, *args))
        return None if row is None else _record(row)

    async def renew_jobs(self, owner: str, now: float) -> None:
        sql = "UPDATE jobs SET heartbeat = $1 WHERE owner = $2 AND state = $3"
        await self.db.run(lambda conn: conn.execute(sql, now, owner, JobState.RUNNING.value))

    async def delete_job(self, job_id: str) -> JobRecord | None:
        sql = f"DELETE FROM jobs WHERE id = $1 RETURNING {_COLUMNS}"
        row = await self.db.run(lambda conn: conn.fetchrow(sql, job_id))
        return None if row is None else _record(row)
