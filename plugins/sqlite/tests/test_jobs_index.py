"""Jobs in the SQLite index: records kept whole, compare-and-set updates, the atomic claim (by priority, then
submission order, never twice even between two connections on one file), leases, deletion, and job output
files counted as referenced by the orphan sweep.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from isengard.backends import IndexBackend
from isengard.model import FileInfo, JobOutput, JobRecord, JobState
from isengard_sqlite import SqliteIndex


@pytest.fixture
async def index(tmp_path: Path) -> AsyncIterator[SqliteIndex]:
    idx = SqliteIndex(tmp_path / "index.sqlite")
    await idx.start()
    yield idx
    await idx.stop()


def job(priority: int = 0, kind: str = "Test", **values: Any) -> JobRecord:
    return JobRecord(str(uuid.uuid4()), kind, {"n": 3}, {"Description": "test"}, priority, **values)


async def test_records_are_kept_whole_and_listed_in_submission_order(index: SqliteIndex) -> None:
    assert isinstance(index, IndexBackend)
    info = FileInfo(str(uuid.uuid4()), 0, 12, "md5")
    first = job(checkpoint={"Position": 2}, outputs={"archive": JobOutput(info, "application/zip", "a.zip")})
    second, third = job(state=JobState.PAUSED), job(state=JobState.SUCCESS, completion_time="20240101T000000.0")
    for j in (first, second, third):
        await index.add_job(j)
    assert await index.get_job(first.id) == first
    assert await index.get_job("nonexistent") is None
    assert [j.id for j in await index.list_jobs()] == [first.id, second.id, third.id]
    assert [j.id for j in await index.list_jobs({JobState.SUCCESS, JobState.PAUSED})] == [second.id, third.id]
    assert await index.list_jobs(()) == []


async def test_update_is_a_compare_and_set(index: SqliteIndex) -> None:
    j = job()
    await index.add_job(j)
    j.progress = 0.5
    assert await index.update_job(j, expected_revision=0)
    assert j.revision == 1
    stale = await index.get_job(j.id)
    assert stale is not None and stale.progress == 0.5 and stale.revision == 1
    j.progress = 0.75
    assert await index.update_job(j, expected_revision=1)
    stale.progress = 0.1  # a writer that read revision 1 lost the race: nothing of it is written
    assert not await index.update_job(stale, expected_revision=1)
    stored = await index.get_job(j.id)
    assert stored is not None and (stored.progress, stored.revision) == (0.75, 2)
    assert not await index.update_job(job(), expected_revision=0)  # unknown job


async def test_claim_by_priority_then_submission_order(index: SqliteIndex) -> None:
    low, normal_1, high, normal_2 = job(-1), job(0), job(5), job(0)
    other_type, paused = job(9, kind="Other"), job(9, state=JobState.PAUSED)
    for j in (low, normal_1, high, normal_2, other_type, paused):
        await index.add_job(j)
    claimed = [await index.claim_job("me", 100.0, {"Test"}) for _ in range(5)]
    assert [c.id if c else None for c in claimed] == [high.id, normal_1.id, normal_2.id, low.id, None]
    first = claimed[0]
    assert first is not None
    assert (first.state, first.owner, first.heartbeat, first.revision) == (JobState.RUNNING, "me", 100.0, 1)
    assert await index.get_job(first.id) == first
    assert (await index.claim_job("me", 1.0, {"Other", "Test"})).id == other_type.id  # type: ignore[union-attr]
    assert await index.claim_job("me", 1.0, set()) is None


async def test_two_connections_never_claim_the_same_job(index: SqliteIndex, tmp_path: Path) -> None:
    """Two index objects on one file stand for two server processes (separate connections and writers)."""
    other = SqliteIndex(tmp_path / "index.sqlite")
    await other.start()
    try:
        jobs = [job(priority=i % 3) for i in range(40)]
        for j in jobs:
            await index.add_job(j)

        async def drain(idx: SqliteIndex, owner: str) -> list[str]:
            got = []
            while (claimed := await idx.claim_job(owner, 1.0, {"Test"})) is not None:
                got.append(claimed.id)
            return got

        a1, b1, a2, b2 = await asyncio.gather(
            drain(index, "a"), drain(other, "b"), drain(index, "a2"), drain(other, "b2")
        )
        a, b = a1 + a2, b1 + b2
        claimed = a + b
        assert sorted(claimed) == sorted(j.id for j in jobs)  # each exactly once
        # (which side wins how many is up to the database lock: a writer may drain them all)
        owners = {j.id: j.owner for j in await index.list_jobs()}
        assert all(owners[i] in ("a", "a2") for i in a) and all(owners[i] in ("b", "b2") for i in b)
    finally:
        await other.stop()


async def test_renewing_a_lease_touches_only_the_owners_running_jobs(index: SqliteIndex) -> None:
    mine, theirs, waiting = job(2), job(1), job(0)
    for j in (mine, theirs, waiting):
        await index.add_job(j)
    await index.claim_job("me", 1.0, {"Test"})
    await index.claim_job("them", 1.0, {"Test"})
    await index.renew_jobs("me", 50.0)
    found = {j.id: j for j in await index.list_jobs()}
    assert (found[mine.id].heartbeat, found[mine.id].revision) == (50.0, 1)  # no revision change
    assert found[theirs.id].heartbeat == 1.0
    assert found[waiting.id].heartbeat == 0.0


async def test_delete_returns_the_record_and_outputs_count_as_referenced(index: SqliteIndex) -> None:
    uuid_ = str(uuid.uuid4())
    j = job(state=JobState.SUCCESS, outputs={"archive": JobOutput(FileInfo(uuid_, 0, 5, ""), "application/zip")})
    await index.add_job(j)
    await index.add_job(job())
    assert uuid_ in await index.all_attachment_uuids()
    deleted = await index.delete_job(j.id)
    assert deleted is not None and deleted.outputs["archive"].info.uuid == uuid_
    assert await index.delete_job(j.id) is None
    assert uuid_ not in await index.all_attachment_uuids()
    assert len(await index.list_jobs()) == 1
