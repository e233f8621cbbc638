"""The jobs engine in-process, on a real SQLite index and storage: the order jobs run in (priority, then
submission), ConcurrentJobs, outputs kept in the storage (safe from the orphan sweep, removed with the history),
failures, retries, two engines sharing one index (a request on one obeyed by the other), jobs left running by a
dead server, and SaveJobs.

The REST side, DICOM job types and real server processes are covered by tests/test_jobs.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from isengard import hookimpl
from isengard.context import ServerContext, create_context
from isengard.errors import ErrorCode, OrthancError
from isengard.jobs import JobRun, JobType, RetryJob
from isengard.model import JobRecord, JobState

MakeContext = Callable[..., Awaitable[ServerContext]]


class StepsJobs:
    """A test plugin: "Steps" jobs of ``Steps`` steps of ``Delay`` seconds, which may wait for ``gate``, write an
    output, fail, or ask to be retried once; "Fragile" is the same type, unable to resume."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.steps: list[tuple[str, int]] = []
        self.gate = asyncio.Event()
        self.at_gate = asyncio.Event()

    @hookimpl
    def register_job_types(self) -> dict[str, JobType]:
        return {"Steps": JobType(self.run), "Fragile": JobType(self.run, resumable=False)}

    async def run(self, job: JobRun) -> None:
        params = job.parameters
        self.started.append(job.id)
        for i in range(job.checkpoint.get("Done", 0), params.get("Steps", 1)):
            job.checkpoint["Done"] = i
            await job.step(i / params.get("Steps", 1))
            if params.get("Gate"):
                self.at_gate.set()
                await self.gate.wait()
            await asyncio.sleep(params.get("Delay", 0))
            self.steps.append((job.id, i))
        if "Output" in params:
            await job.add_output("archive", params["Output"].encode(), "application/zip", "archive.zip")
        if params.get("Fail"):
            raise OrthancError(ErrorCode.NETWORK_PROTOCOL, "the peer hung up")
        if params.get("Crash"):
            raise ZeroDivisionError("boom")
        if params.get("Retry") and not job.checkpoint.get("Retried"):
            job.checkpoint["Retried"] = True
            raise RetryJob(0.2, "not yet")
        job.content["Done"] = True


@pytest.fixture
async def make_context(tmp_path: Path) -> AsyncIterator[MakeContext]:
    """Contexts on one index and storage (several stand for several servers on one database)."""
    made: list[ServerContext] = []

    async def make(plugin: StepsJobs, **overrides: Any) -> ServerContext:
        config = {
            "StorageDirectory": str(tmp_path / "storage"),
            "IndexDirectory": str(tmp_path / "index"),
            "ConcurrentJobs": 1,
            "JobsLeaseDuration": 1,
            **overrides,
        }
        ctx = create_context(None, overrides=config, environ={})
        ctx.pm.register(plugin)
        await ctx.start()
        ctx.jobs.open()
        made.append(ctx)
        return ctx

    yield make
    for ctx in reversed(made):
        await ctx.stop()


async def wait_state(ctx: ServerContext, job_id: str, *states: JobState, within: float = 10) -> JobRecord:
    deadline = time.monotonic() + within
    while True:
        job = await ctx.index.get_job(job_id)
        if job is not None and job.state in states:
            return job
        assert time.monotonic() < deadline, f"job {job_id} is {job and job.state}, not in {states}"
        await asyncio.sleep(0.02)


async def test_priority_then_submission_order(make_context: MakeContext) -> None:
    plugin = StepsJobs()
    ctx = await make_context(plugin)
    blocker = await ctx.jobs.submit("Steps", {"Gate": True}, {})
    await wait_state(ctx, blocker, JobState.RUNNING)
    low = await ctx.jobs.submit("Steps", {}, {}, priority=-5)
    first_normal = await ctx.jobs.submit("Steps", {}, {})
    high = await ctx.jobs.submit("Steps", {}, {}, priority=10)
    second_normal = await ctx.jobs.submit("Steps", {}, {})
    assert (await ctx.jobs.get(high)).state is JobState.PENDING  # one slot: nothing else runs meanwhile
    plugin.gate.set()
    for job_id in (low, first_normal, high, second_normal):
        await wait_state(ctx, job_id, JobState.SUCCESS)
    assert plugin.started == [blocker, high, first_normal, second_normal, low]


async def test_concurrent_jobs_run_side_by_side(make_context: MakeContext) -> None:
    plugin = StepsJobs()
    ctx = await make_context(plugin, ConcurrentJobs=2)
    jobs = [await ctx.jobs.submit("Steps", {"Gate": True}, {}) for _ in range(3)]
    await wait_state(ctx, jobs[0], JobState.RUNNING)
    await wait_state(ctx, jobs[1], JobState.RUNNING)
    await asyncio.sleep(0.3)
    assert (await ctx.jobs.get(jobs[2])).state is JobState.PENDING
    plugin.gate.set()
    for job_id in jobs:
        done = await wait_state(ctx, job_id, JobState.SUCCESS)
        assert done.progress == 1.0 and done.content == {"Done": True} and done.completion_time


async def test_outputs_live_in_the_storage_until_the_job_leaves_the_history(make_context: MakeContext) -> None:
    plugin = StepsJobs()
    ctx = await make_context(plugin, JobsHistorySize=1)
    first = await ctx.jobs.submit("Steps", {"Output": "zip bytes"}, {})
    await wait_state(ctx, first, JobState.SUCCESS)
    output = await ctx.jobs.output(first, "archive")
    assert (output.mime_type, output.filename) == ("application/zip", "archive.zip")
    assert await ctx.store.read_attachment(output.info) == b"zip bytes"
    assert await ctx.store.sweep(grace=-1) == 0  # the orphan sweep keeps it
    with pytest.raises(OrthancError):
        await ctx.jobs.output(first, "other")
    second = await ctx.jobs.submit("Steps", {}, {})
    await wait_state(ctx, second, JobState.SUCCESS)
    await asyncio.sleep(0.1)
    assert await ctx.index.get_job(first) is None  # history of one: the older job is gone, and its file
    assert output.info.uuid not in await ctx.storage.list_uuids(time.time() + 10)


async def test_failures_and_retries(make_context: MakeContext) -> None:
    plugin = StepsJobs()
    ctx = await make_context(plugin)
    failed = await ctx.jobs.submit("Steps", {"Steps": 2, "Fail": True}, {})
    crashed = await ctx.jobs.submit("Steps", {"Crash": True}, {})
    retried = await ctx.jobs.submit("Steps", {"Retry": True}, {})
    job = await wait_state(ctx, failed, JobState.FAILURE)
    assert (job.error_code, job.error_details) == (ErrorCode.NETWORK_PROTOCOL.status, "the peer hung up")
    job = await wait_state(ctx, crashed, JobState.FAILURE)
    assert (job.error_code, job.error_details) == (ErrorCode.INTERNAL_ERROR.status, "boom")
    job = await wait_state(ctx, retried, JobState.RETRY)
    assert job.retry_at is not None and job.error_details == "not yet"
    await wait_state(ctx, retried, JobState.SUCCESS)
    with pytest.raises(OrthancError) as refused:
        await ctx.jobs.resume(failed)
    assert refused.value.code is ErrorCode.BAD_SEQUENCE_OF_CALLS
    await ctx.jobs.resubmit(failed)  # from the start: its checkpoint is forgotten
    await wait_state(ctx, failed, JobState.FAILURE)
    assert [step for job_id, step in plugin.steps if job_id == failed] == [0, 1, 0, 1]


async def test_two_servers_share_the_jobs_of_one_index(make_context: MakeContext) -> None:
    plugin_a, plugin_b = StepsJobs(), StepsJobs()
    a = await make_context(plugin_a)
    b = await make_context(plugin_b)
    job_id = await a.jobs.submit("Steps", {"Steps": 40, "Delay": 0.05}, {})
    running = await wait_state(b, job_id, JobState.RUNNING)
    runner, other = (a, b) if running.owner == a.jobs.owner else (b, a)
    await asyncio.sleep(0.3)
    await other.jobs.pause(job_id)  # asked of the server that does not run it
    paused = await wait_state(other, job_id, JobState.PAUSED, within=3)
    assert paused.owner is None and 0 < paused.checkpoint["Done"] < 40
    await other.jobs.resume(job_id)
    await wait_state(runner, job_id, JobState.SUCCESS)
    done = [step for _, step in plugin_a.steps + plugin_b.steps]
    assert sorted(done) == list(range(40))  # resumed where it stopped: no step twice, none skipped


async def test_jobs_left_running_by_a_dead_server(make_context: MakeContext) -> None:
    plugin = StepsJobs()
    ctx = await make_context(plugin)
    dead = {"state": JobState.RUNNING, "owner": "elsewhere|1|gone", "heartbeat": time.time() - 60}
    resumable = JobRecord("resumable-job", "Steps", {"Steps": 3}, checkpoint={"Done": 2}, **dead)  # type: ignore[arg-type]
    fragile = JobRecord("fragile-job", "Fragile", {}, **dead)  # type: ignore[arg-type]
    alive = JobRecord("alive-job", "Steps", {}, state=JobState.RUNNING, owner="elsewhere|1|alive", heartbeat=1e12)
    for job in (resumable, fragile, alive):
        await ctx.index.add_job(job)
    done = await wait_state(ctx, resumable.id, JobState.SUCCESS)
    assert [s for j, s in plugin.steps if j == resumable.id] == [2]  # went on from its checkpoint
    assert done.owner is None
    failed = await wait_state(ctx, fragile.id, JobState.FAILURE)
    assert failed.error_code == ErrorCode.INTERNAL_ERROR.status and "cannot resume" in failed.error_details
    assert (await ctx.jobs.get(alive.id)).state is JobState.RUNNING  # its server renews its lease: left alone


async def test_a_clean_stop_puts_running_jobs_back_and_save_jobs_false_forgets(make_context: MakeContext) -> None:
    plugin = StepsJobs()
    ctx = await make_context(plugin)
    running = await ctx.jobs.submit("Steps", {"Gate": True, "Steps": 2}, {})
    waiting = await ctx.jobs.submit("Steps", {}, {})
    await plugin.at_gate.wait()  # within its first step
    stopping = asyncio.create_task(ctx.jobs.stop())  # as when the server stops
    await asyncio.sleep(0.1)
    plugin.gate.set()  # the run reaches its next step after the stop request
    await stopping
    stopped = await ctx.jobs.get(running)
    assert stopped.state is JobState.PENDING and stopped.owner is None and stopped.checkpoint == {"Done": 1}
    assert plugin.steps == [(running, 0)]
    # SaveJobs false: a server starting on this index drops what earlier runs left
    fresh = await make_context(StepsJobs(), SaveJobs=False)
    assert await fresh.index.list_jobs() == []
    with pytest.raises(OrthancError):
        await fresh.jobs.get(waiting)
