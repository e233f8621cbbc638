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
    try:

        async def drain(server: PostgresIndex, owner: str) -> list[str]:
            claimed = []
            while (found := await server.claim_job(owner, 1.0, ["Test"])) is not None:
                assert found.state is JobState.RUNNING and found.owner == owner and found.revision == 1
                claimed.append(found.id)
            return claimed

        results = await asyncio.gather(*(drain(s, f"owner{i}") for i, s in enumerate([index, *others])))
    finally:
        for other in others:
            await other.stop()
    claimed = [i for r in results for i in r]
    assert sorted(claimed) == sorted(j.id for j in jobs), "every job claimed exactly once"
    assert all(results), "all three servers got work"
    first_claims = [r[0] for r in results]
    assert {j.priority for j in jobs if j.id in first_claims} == {2}, "highest priority first"
    await index.renew_jobs("owner0", 5.0)
    renewed = [j for j in await index.list_jobs({JobState.RUNNING}) if j.owner == "owner0"]
    assert renewed and all(j.heartbeat == 5.0 and j.revision == 1 for j in renewed)
