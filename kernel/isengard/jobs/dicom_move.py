"""C-MOVE from a modality: the "DicomMoveScu" job of /queries/{id}/retrieve and /modalities/{id}/move.

One C-MOVE per identifier (each over its own association), a step between two: the checkpoint is the number of
identifiers done, so a paused or interrupted job goes on with the next one. Progress counts identifiers. The
C-GET job (dicom_get.py) runs the same way, with the helpers below.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset

from .. import hookimpl
from ..dicom import scu
from ..model import ResourceType
from .run import JobInterrupted, JobRun, JobType

if TYPE_CHECKING:
    from ..context import ServerContext

JOB_TYPE = "DicomMoveScu"
#: One retrieval of a job: (peer, level, identifier, progress within it) -> done.
Retrieval = Callable[[scu.Peer, ResourceType, Dataset, Callable[[float], None]], Awaitable[None]]


def retrieve_answer(peer: scu.Peer, query: list[dict[str, Any]]) -> dict[str, Any]:
    """Orthanc's report of a retrieval (and the Content of its job): who asked whom for what."""
    return {"Description": "REST API", "LocalAet": peer.local_aet, "Query": query, "RemoteAet": peer.aet}


def retrieve_parameters(peer: scu.Peer, level: ResourceType, identifiers: list[Dataset]) -> dict[str, Any]:
    """What a retrieval job keeps to run (again, after a restart)."""
    return {
        "Peer": dataclasses.asdict(peer),
        "Level": level.label,
        "Identifiers": [base64.b64encode(scu.pack(i)).decode("ascii") for i in identifiers],
    }


async def retrieve_each(job: JobRun, retrieve: Retrieval) -> None:
    """Run ``retrieve`` for each identifier from the checkpoint on, a step between two."""
    params = job.parameters
    peer = scu.Peer(**params["Peer"])
    level = ResourceType.parse(params["Level"])
    identifiers = [scu.unpack(base64.b64decode(i)) for i in params["Identifiers"]]
    for position in range(job.checkpoint.get("Position", 0), len(identifiers)):
        job.checkpoint["Position"] = position
        await job.step(position / len(identifiers))

        def progress(share: float, position: int = position) -> None:
            """From the retrieval's thread: the progress within one identifier (stopping waits for the next)."""
            with contextlib.suppress(JobInterrupted):
                job.step_from_thread((position + share) / len(identifiers))

        await retrieve(peer, level, identifiers[position], progress)
    job.checkpoint["Position"] = len(identifiers)


async def submit(
    ctx: ServerContext,
    peer: scu.Peer,
    level: ResourceType,
    identifiers: list[Dataset],
    target_aet: str,
    query: list[dict[str, Any]],
    *,
    priority: int = 0,
) -> str:
    """Queue the C-MOVE of ``identifiers`` to ``target_aet``; ``query`` is what the job's Content shows of them."""
    parameters = {**retrieve_parameters(peer, level, identifiers), "TargetAet": target_aet}
    content = {**retrieve_answer(peer, query), "TargetAet": target_aet}
    return await ctx.jobs.submit(JOB_TYPE, parameters, content, priority=priority)


async def run_job(job: JobRun) -> None:
    target = job.parameters["TargetAet"]

    async def move(peer: scu.Peer, level: ResourceType, identifier: Dataset, _: Callable[[float], None]) -> None:
        await scu.run(scu.move, peer, level, [identifier], target)

    await retrieve_each(job, move)


@hookimpl
def register_job_types() -> dict[str, JobType]:
    return {JOB_TYPE: JobType(run_job)}
