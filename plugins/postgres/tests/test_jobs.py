"""Jobs in the PostgreSQL index: records kept whole, compare-and-set, and claims by several servers at once that
never hand one job to two of them."""

from __future__ import annotations

import asyncio
import uuid

from isengard.model import FileInfo, JobOutput, JobRecord, JobState
from isengard_postgres import PostgresIndex

from .conftest import settings


def job(priority: int = 0, **values: object) -> JobRecord:
    return JobRecord(str(uuid.uuid4()), "Test", parameters={"n": 3}, priority=priority, **values)  # type: ignore[arg-type]


async def test_records_updates_and_outputs(index: PostgresIndex) -> None:
    output = JobOutput(FileInfo(str(uuid.uuid4()), 0, 12, "md5"), "application/zip", "a.zip")
    first, second = job(checkpoint={"Position": 2}, outputs={"archive": output}), job(state=JobState.PAUSED)
    for j in (first, second):
        await index.add_job(j)
    assert await index.get_job(first.id) == first
    assert [j.id for j in await index.list_jobs()] == [first.id, second.id]
    assert [j.id for j in await index.list_jobs({JobState.PAUSED})] == [second.id]
    first.progress = 0.5
    assert await index.update_job(first, expected_revision=0) and first.revision == 1
    assert not await index.update_job(first, expected_revision=0), "a stale revision writes nothing"
    assert output.info.uuid in await index.all_attachment_uuids()
    assert await index.delete_job(first.id) == first
    assert await index.get_job(first.id) is None and await index.delete_job(first.id) is None


async def test_three_servers_claiming_at_once_never_share_a_job(index: PostgresIndex, database: str) -> None:
    jobs = [job(priority=i % 3) for i in range(30)]
    for j in jobs:
        await index.add_job(j)
    others = [PostgresIndex(settings(database)) for _ in range(2)]
    for other in others:
        await other.start()
    servers = [index, *others]
    rounds: list[list[JobRecord | None]] = []
    try:
        # Rounds in which all three claim at once: each round is a real race on the same rows, and no server can
        # drain the queue before another one has connected (a loaded machine made that happen).
        while not rounds or any(rounds[-1]):
            rounds.append(
                list(await asyncio.gather(*(s.claim_job(f"owner{i}", 1.0, ["Test"]) for i, s in enumerate(servers))))
            )
    finally:
        for other in others:
            await other.stop()
    assert rounds.pop() == [None, None, None], "an empty queue hands out nothing"
    assert all(all(batch) for batch in rounds), "no server is told the queue is empty while jobs wait"
    claimed = [found for batch in rounds for found in batch if found is not None]
    for position, found in enumerate(claimed):
        assert found.state is JobState.RUNNING and found.owner == f"owner{position % 3}" and found.revision == 1
    assert sorted(found.id for found in claimed) == sorted(j.id for j in jobs), "every job claimed exactly once"
    assert {found.priority for found in rounds[0] if found is not None} == {2}, "highest priority first"
    await index.renew_jobs("owner0", 5.0)
    renewed = [j for j in await index.list_jobs({JobState.RUNNING}) if j.owner == "owner0"]
    assert renewed and all(j.heartbeat == 5.0 and j.revision == 1 for j in renewed)
