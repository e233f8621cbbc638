"""What a job type's code sees of its job: parameters, checkpoint, content, outputs, and the step that may stop it.

A run is interrupted only between steps, by :meth:`JobRun.step` raising :class:`JobInterrupted`: for a pause
or a cancellation asked over REST (by this server, or another one on the same index), for a shutdown, or when
the job was taken over by another server. The engine then records the outcome; the job's code only has to let
the exception through, having kept in ``checkpoint`` what the next run needs to go on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..model import JobOutput, JobRecord, JobState

if TYPE_CHECKING:
    from ..context import ServerContext
    from .engine import JobEngine

#: Seconds between two writes of a running job's progress (a pause or a cancellation asked to another server
#: is seen at such a write).
SAVE_INTERVAL = 0.5
#: The storage content type of job outputs: 0, "unknown" in Orthanc's numbering, as they are no attachments.
OUTPUT_CONTENT_TYPE = 0


@dataclass(frozen=True)
class JobType:
    """A kind of job, as the ``register_job_types`` hook provides it.

    ``resumable``: a run cut short by a dead server can go on from its checkpoint (else the job fails).
    """

    run: Callable[[JobRun], Awaitable[None]]
    resumable: bool = True


class JobInterrupted(Exception):
    """The run must stop now. ``reason``: "pause", "cancel", "stop" (shutdown) or "lost" (another server has it)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RetryJob(Exception):
    """Raised by a job's code: the job goes to the Retry state and runs again after ``delay`` seconds."""

    def __init__(self, delay: float, details: str = "") -> None:
        super().__init__(details)
        self.delay = delay
        self.details = details


class JobRun:
    """One run of a job by this server: the record it works on, and the way it reports and stops."""

    def __init__(self, engine: JobEngine, record: JobRecord) -> None:
        self.engine = engine
        self.record = record
        self.loop = asyncio.get_running_loop()
        self._interrupt: str | None = None
        self._saved_at = time.monotonic()

    @property
    def context(self) -> ServerContext:
        return self.engine.context

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def parameters(self) -> dict[str, Any]:
        """What to do, as given at submission (never changed)."""
        return self.record.parameters

    @property
    def checkpoint(self) -> dict[str, Any]:
        """How far the job got: write here what a later run needs; empty on a first run or after a resubmission."""
        return self.record.checkpoint

    @property
    def content(self) -> dict[str, Any]:
        """Orthanc's public "Content" of the job, shown by /jobs/{id}."""
        return self.record.content

    def interrupt(self, reason: str) -> None:
        """Ask the run to stop at its next step (a cancellation overrides any earlier reason)."""
        if self._interrupt is None or reason == "cancel":
            self._interrupt = reason

    async def step(self, progress: float | None = None) -> None:
        """Between two steps: record the progress (0..1), save now and then, stop if asked to."""
        if progress is not None:
            self.record.progress = min(1.0, max(0.0, progress))
        if self._interrupt is not None:
            raise JobInterrupted(self._interrupt)
        if time.monotonic() - self._saved_at >= SAVE_INTERVAL:
            await self.save()

    def step_from_thread(self, progress: float | None = None) -> None:
        """:meth:`step` for code running in a worker thread (blocking DICOM operations)."""
        asyncio.run_coroutine_threadsafe(self.step(progress), self.loop).result()

    async def save(self) -> None:
        """Write progress, checkpoint and content to the index.

        Raises :class:`JobInterrupted` when another server asked for a pause or a cancellation meanwhile, or took
        the job over (its lease had expired).
        """
        self._saved_at = time.monotonic()
        index = self.context.index
        job = self.record
        while True:
            job.heartbeat = time.time()
            if await index.update_job(job, expected_revision=job.revision):
                return
            current = await index.get_job(job.id)
            if current is None or current.owner != self.engine.owner or current.state is not JobState.RUNNING:
                raise JobInterrupted("lost")
            job.revision = current.revision
            if current.request:
                raise JobInterrupted(current.request)

    async def add_output(self, key: str, data: bytes | Path, mime_type: str, filename: str = "") -> None:
        """Keep a file the job produced, served by /jobs/{id}/{key} until the job leaves the history.

        ``data`` is the content, or a file the job wrote (a large archive): it is then copied to the storage
        without being read into memory, where the storage allows it (:meth:`Store.write_attachment_file`).
        """
        store = self.context.store
        if isinstance(data, Path):
            info = await store.write_attachment_file(data, OUTPUT_CONTENT_TYPE)
        else:
            info = await store.write_attachment(data, OUTPUT_CONTENT_TYPE, compressed=False)
        replaced = self.record.outputs.get(key)
        self.record.outputs[key] = JobOutput(info, mime_type, filename)
        await self.save()
        if replaced is not None:
            await self.context.store.remove_files([replaced.info])
