"""The jobs engine: jobs live in the index, every server runs some of them.

Each server process has an owner id and ``ConcurrentJobs`` slots. A dispatcher claims the next pending job in the
index (highest priority, then oldest; the claim is atomic, so two servers never run the same job), and runs it in
an asyncio task. While running, the owner renews a lease (the job's heartbeat) and saves progress now and then.

Every change of state is a compare-and-set write of the job's record (``IndexBackend.update_job``), read again
and decided anew when another writer came first, so REST calls on any server and the running server agree:
a pause or a cancellation of a running job is a request written in the record, obeyed by its owner at the next
step. A job whose owner died (its process is gone on this host, or its lease expired) is put back to Pending,
or to Failure when its type cannot resume; a clean shutdown puts its running jobs back to Pending at once.
Finished jobs stay in the index as the history (``JobsHistorySize`` newest), with their output files.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import ErrorCode, OrthancError
from ..model import JobOutput, JobRecord, JobState, precise_time
from ..plugins import resolve
from .run import JobInterrupted, JobRun, JobType, RetryJob

if TYPE_CHECKING:
    from ..context import ServerContext

log = logging.getLogger("isengard.jobs")

#: Seconds between two claims while no job is pending (a submission to this server wakes it at once).
POLL_INTERVAL = 1.0
#: Seconds a shutdown waits for running jobs to reach a step before cutting them short.
STOP_TIMEOUT = 5.0
#: Attempts of a compare-and-set write before giving up (each one follows a concurrent write).
ATTEMPTS = 20
FINISHED = (JobState.SUCCESS, JobState.FAILURE)
_CUT = "The server running this job stopped, and this type of job cannot resume"
#: Owners of the engines running in this process (a stopped one, before /tools/reset, is no longer here).
_LIVE_OWNERS: set[str] = set()


def _unknown_job(job_id: str, *, http_status: int | None = None) -> OrthancError:
    return OrthancError(ErrorCode.INEXISTENT_ITEM, f"Unknown job: {job_id}", http_status=http_status)


def _refused(details: str) -> OrthancError:
    return OrthancError(ErrorCode.BAD_SEQUENCE_OF_CALLS, details)


def _stop_running(job: JobRecord, state: JobState) -> None:
    """Leave the Running state: the time spent counts, the owner lets go, any request is settled."""
    if job.started_at is not None:
        job.runtime += max(0.0, time.time() - job.started_at)
    job.started_at = None
    job.owner = None
    job.request = None
    job.state = state


def _retry_later(job: JobRecord, delay: float, details: str) -> None:
    _stop_running(job, JobState.RETRY)
    job.retry_at = time.time() + delay
    job.error_details = details


def _fail(job: JobRecord, code: ErrorCode, details: str = "") -> None:
    _stop_running(job, JobState.FAILURE)
    job.error_code = code.status
    job.error_details = details
    job.completion_time = precise_time()


class JobEngine:
    def __init__(self, context: ServerContext) -> None:
        config = context.config
        self.context = context
        self.owner = f"{socket.gethostname()}|{os.getpid()}|{uuid.uuid4().hex[:12]}"
        self.concurrency = config.int("ConcurrentJobs") or os.cpu_count() or 1
        self.history_size = max(0, config.int("JobsHistorySize"))
        self.save_jobs = config.bool("SaveJobs")
        self.lease = max(1.0, float(config.int("JobsLeaseDuration")))
        self.types: dict[str, JobType] = {}
        self._runs: dict[str, JobRun] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self._dispatcher: asyncio.Task[None] | None = None
        self._claiming = False  # the dispatcher awaits a claim: stopping must not cut it short
        self._maintenance: asyncio.Task[None] | None = None

    # -- life cycle ------------------------------------------------------------------------------------------
    async def start(self) -> None:
        # pluggy answers the plugin registered last first: it must win, so it is merged last
        for answer in reversed(self.context.pm.hook.register_job_types(context=self.context)):
            self.types.update(await resolve(answer) or {})
        _LIVE_OWNERS.add(self.owner)
        if not self.save_jobs:
            await self._forget_previous_runs()
        await self._recover()
        self._maintenance = asyncio.create_task(self._maintain(), name="isengard-jobs-lease")

    def open(self) -> None:
        """Start running jobs: once the servers listen (a C-MOVE to this server needs its DICOM server)."""
        if self._dispatcher is None and not self._stopping:
            self._dispatcher = asyncio.create_task(self._dispatch(), name="isengard-jobs")

    async def stop(self) -> None:
        """Running jobs go back to Pending (at their next step, or cut short after STOP_TIMEOUT). Idempotent."""
        if self._stopping:
            return
        self._stopping = True
        _LIVE_OWNERS.discard(self.owner)
        self._wake.set()
        for run in self._runs.values():
            run.interrupt("stop")
        if self._dispatcher is not None:
            if not self._claiming:  # waiting for a slot or for work: nothing to lose
                self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=STOP_TIMEOUT)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance

    # -- submission and control ------------------------------------------------------------------------------
    async def submit(
        self, job_type: str, parameters: dict[str, Any], content: dict[str, Any], *, priority: int = 0
    ) -> str:
        """Queue a job; its id (the caller answers {"ID", "Path"})."""
        if job_type not in self.types:
            raise OrthancError(ErrorCode.NOT_IMPLEMENTED, f"No job type {job_type!r} is installed")
        job = JobRecord(str(uuid.uuid4()), job_type, parameters, content, priority)
        await self.context.index.add_job(job)
        self._wake.set()
        self.context.events.publish("on_job_state", context=self.context, job=job)
        return job.id

    async def get(self, job_id: str) -> JobRecord:
        job = await self.context.index.get_job(job_id)
        if job is None:
            raise _unknown_job(job_id)
        return job

    async def cancel(self, job_id: str) -> None:
        def decide(job: JobRecord) -> bool:
            if job.state in FINISHED:
                return False
            if job.state is JobState.RUNNING:
                job.request = "cancel"
            else:
                _fail(job, ErrorCode.CANCELED_JOB)
            return True

        job = await self._change(job_id, decide)
        self._signal(job, "cancel")
        if job.state is JobState.FAILURE:
            await self._trim_history()

    async def pause(self, job_id: str) -> None:
        def decide(job: JobRecord) -> bool:
            if job.state in (JobState.PENDING, JobState.RETRY):
                job.state, job.retry_at = JobState.PAUSED, None
                return True
            if job.state is JobState.RUNNING and job.request is None:
                job.request = "pause"
                return True
            return False  # paused already, finished, or being cancelled: nothing to do, as in Orthanc

        self._signal(await self._change(job_id, decide), "pause")

    async def resume(self, job_id: str) -> None:
        def decide(job: JobRecord) -> bool:
            if job.state is not JobState.PAUSED:
                raise _refused(f"Cannot resume a job that is not paused: {job_id}")
            job.state = JobState.PENDING
            return True

        await self._change(job_id, decide)
        self._wake.set()

    async def resubmit(self, job_id: str) -> None:
        """Run a failed job again from its start."""

        def decide(job: JobRecord) -> bool:
            if job.state is not JobState.FAILURE:
                raise _refused(f"Cannot resubmit a job that has not failed: {job_id}")
            job.state, job.progress, job.checkpoint, job.runtime = JobState.PENDING, 0.0, {}, 0.0
            job.error_code, job.error_details, job.completion_time = 0, "", None
            return True

        await self._change(job_id, decide)
        self._wake.set()

    async def delete(self, job_id: str) -> None:
        """Forget a finished job and its outputs (a job still to finish must be cancelled first)."""
        job = await self.context.index.get_job(job_id)
        if job is None or job.state not in FINISHED:
            raise OrthancError(ErrorCode.INEXISTENT_ITEM, f"No finished job with this id (cancel it first): {job_id}")
        await self._forget(job_id)

    async def output(self, job_id: str, key: str) -> JobOutput:
        job = await self.context.index.get_job(job_id)
        if job is None or job.state is not JobState.SUCCESS or key not in job.outputs:
            raise OrthancError(ErrorCode.INEXISTENT_ITEM, f"Job has no such output: {key}")
        return job.outputs[key]

    async def delete_output(self, job_id: str, key: str) -> None:
        removed: list[JobOutput] = []

        def decide(job: JobRecord) -> bool:
            removed.clear()
            if job.state is not JobState.SUCCESS or key not in job.outputs:
                raise OrthancError(ErrorCode.INEXISTENT_ITEM, f"Job has no such output: {key}")
            removed.append(job.outputs.pop(key))
            return True

        await self._change(job_id, decide, unknown=OrthancError(ErrorCode.INEXISTENT_ITEM, f"Unknown job: {job_id}"))
        await self.context.store.remove_files([o.info for o in removed])

    async def _change(
        self, job_id: str, decide: Callable[[JobRecord], bool], *, unknown: OrthancError | None = None
    ) -> JobRecord:
        """Read, decide, compare-and-set, again while another writer comes first. ``decide`` changes the record
        and says whether to write it, or raises to refuse."""
        for _ in range(ATTEMPTS):
            job = await self.context.index.get_job(job_id)
            if job is None:
                raise unknown or _unknown_job(job_id, http_status=400)  # Orthanc: 400 for an unknown job here
            expected = job.revision
            if not decide(job) or await self.context.index.update_job(job, expected_revision=expected):
                return job
        raise OrthancError(ErrorCode.DATABASE, f"job {job_id} keeps changing: try again")

    def _signal(self, job: JobRecord, reason: str) -> None:
        """A request on a job this server runs: no need to wait for its next save to see it."""
        run = self._runs.get(job.id)
        if run is not None and job.request == reason:
            run.interrupt(reason)

    # -- running ---------------------------------------------------------------------------------------------
    async def _dispatch(self) -> None:
        slots = asyncio.Semaphore(self.concurrency)
        while not self._stopping:
            await slots.acquire()
            job = None
            while job is None and not self._stopping:
                self._wake.clear()
                self._claiming = True
                try:
                    job = await self.context.index.claim_job(self.owner, time.time(), list(self.types))
                except Exception:
                    log.exception("could not claim a job")
                finally:
                    self._claiming = False
                if job is None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), POLL_INTERVAL)
            if job is None:
                slots.release()
                break
            task = asyncio.create_task(self._run(job), name=f"isengard-job-{job.id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            task.add_done_callback(lambda _: slots.release())

    async def _run(self, job: JobRecord) -> None:
        run = JobRun(self, job)
        self._runs[job.id] = run
        if self._stopping:
            run.interrupt("stop")
        try:
            await self._execute(run)
        finally:
            del self._runs[job.id]
        if run.record.state in FINISHED:
            self.context.events.publish("on_job_state", context=self.context, job=run.record)
            await self._trim_history()

    async def _execute(self, run: JobRun) -> None:
        def started(job: JobRecord) -> None:
            job.started_at, job.retry_at = time.time(), None

        if not await self._settle(run, started):
            return
        if run.record.request:  # asked as it was being claimed
            run.interrupt(run.record.request)
        log.info("job %s (%s) starts", run.id, run.record.type)
        try:
            await self.types[run.record.type].run(run)
        except JobInterrupted as e:
            await self._interrupted(run, e.reason)
        except RetryJob as e:
            await self._settle(run, functools.partial(_retry_later, delay=e.delay, details=e.details))
        except OrthancError as e:
            log.warning("job %s failed: %s", run.id, e)
            await self._settle(run, functools.partial(_fail, code=e.code, details=e.details or ""))
        except asyncio.CancelledError:
            await self._settle(run, functools.partial(_stop_running, state=JobState.PENDING))
            raise
        except Exception as e:
            log.exception("job %s failed", run.id)
            await self._settle(run, functools.partial(_fail, code=ErrorCode.INTERNAL_ERROR, details=str(e)))
        else:

            def succeeded(job: JobRecord) -> None:
                _stop_running(job, JobState.SUCCESS)
                job.progress, job.completion_time = 1.0, precise_time()

            await self._settle(run, succeeded)
            log.info("job %s succeeded", run.id)

    async def _interrupted(self, run: JobRun, reason: str) -> None:
        if reason == "pause":
            await self._settle(run, lambda job: _stop_running(job, JobState.PAUSED))
        elif reason == "cancel":
            await self._settle(run, lambda job: _fail(job, ErrorCode.CANCELED_JOB))
        elif reason == "stop":
            await self._settle(run, lambda job: _stop_running(job, JobState.PENDING))
        log.info("job %s stopped (%s)", run.id, reason)

    async def _settle(self, run: JobRun, apply: Callable[[JobRecord], None]) -> bool:
        """Write a change of the running job, unless another server took it; True when written."""
        job = run.record
        for _ in range(ATTEMPTS):
            apply(job)
            job.heartbeat = time.time()
            if await self.context.index.update_job(job, expected_revision=job.revision):
                return True
            current = await self.context.index.get_job(job.id)
            if current is None or current.owner != self.owner or current.state is not JobState.RUNNING:
                log.warning("job %s was taken over by another server", job.id)
                return False
            job.revision, job.request = current.revision, current.request
        log.error("could not record the state of job %s", job.id)
        return False

    # -- history, leases and recovery ------------------------------------------------------------------------
    async def _forget(self, job_id: str) -> None:
        gone = await self.context.index.delete_job(job_id)
        if gone is not None:
            await self.context.store.remove_files([output.info for output in gone.outputs.values()])

    async def _trim_history(self) -> None:
        finished = sorted(await self.context.index.list_jobs(FINISHED), key=lambda j: j.completion_time or "")
        for job in finished[: max(0, len(finished) - self.history_size)]:
            await self._forget(job.id)

    async def _forget_previous_runs(self) -> None:
        """SaveJobs false: what earlier runs left (finished, waiting, or running for a dead server) is dropped."""
        now = time.time()
        for job in await self.context.index.list_jobs():
            if job.state is not JobState.RUNNING or self._owner_is_dead(job, now):
                await self._forget(job.id)

    def _owner_is_dead(self, job: JobRecord, now: float) -> bool:
        """Its lease expired, or its process is gone from this host (a previous run of this very process too)."""
        if now - job.heartbeat > self.lease:
            return True
        host, _, rest = (job.owner or "").partition("|")
        pid, _, _ = rest.partition("|")
        if host != socket.gethostname() or not pid.isdigit() or job.owner == self.owner:
            return False
        if int(pid) == os.getpid():
            return job.owner not in _LIVE_OWNERS  # an engine of this process that was stopped (/tools/reset)
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    async def _recover(self) -> None:
        """Running jobs of dead owners go back to Pending (or fail, when they cannot resume); due retries too."""
        now = time.time()
        woken = False
        for job in await self.context.index.list_jobs((JobState.RUNNING, JobState.RETRY)):
            if job.state is JobState.RETRY and (job.retry_at or 0) <= now:
                woken |= await self._requeue(job, lambda j: _stop_running(j, JobState.PENDING))
            elif job.state is JobState.RUNNING and job.owner != self.owner and self._owner_is_dead(job, now):
                kind = self.types.get(job.type)
                if kind is None or kind.resumable:
                    log.warning("job %s was left running by a server that stopped: it goes on", job.id)
                    woken |= await self._requeue(job, lambda j: _stop_running(j, JobState.PENDING))
                else:
                    log.warning("job %s was left running by a server that stopped: it cannot resume", job.id)
                    await self._requeue(job, functools.partial(_fail, code=ErrorCode.INTERNAL_ERROR, details=_CUT))
        if woken:
            self._wake.set()

    async def _requeue(self, seen: JobRecord, apply: Callable[[JobRecord], None]) -> bool:
        """One compare-and-set from what was seen: if someone else changed the job meanwhile, they decided."""
        expected = seen.revision
        apply(seen)
        return await self.context.index.update_job(seen, expected_revision=expected)

    async def _maintain(self) -> None:
        interval = max(0.5, self.lease / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                if self._runs:
                    await self.context.index.renew_jobs(self.owner, time.time())
                await self._recover()
            except Exception:
                log.exception("jobs maintenance failed")
