"""C-MOVE from a modality: the "DicomMoveScu" job of /queries/{id}/retrieve and /modalities/{id}/move.

One C-MOVE per identifier (each over its own association), a step between two: the checkpoint is the number of
identifiers done, so a paused or interrupted job goes on with the next one. Progress counts identifiers.
"""

from __future__ import annotations

import base64
import dataclasses
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset

from .. import hookimpl
from ..dicom import scu
from ..model import ResourceType
from .run import JobRun, JobType

if TYPE_CHECKING:
    from ..context import ServerContext

JOB_TYPE = "DicomMoveScu"


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
    parameters = {
        "Peer": dataclasses.asdict(peer),
        "Level": level.label,
        "Identifiers": [base64.b64encode(scu.pack(i)).decode("ascii") for i in identifiers],
        "TargetAet": target_aet,
    }
    content = {
        "Description": "REST API",
        "LocalAet": peer.local_aet,
        "Query": query,
        "RemoteAet": peer.aet,
        "TargetAet": target_aet,
    }
    return await ctx.jobs.submit(JOB_TYPE, parameters, content, priority=priority)


async def run_job(job: JobRun) -> None:
    params = job.parameters
    peer = scu.Peer(**params["Peer"])
    level = ResourceType.parse(params["Level"])
    identifiers = [scu.unpack(base64.b64decode(i)) for i in params["Identifiers"]]
    for position in range(job.checkpoint.get("Position", 0), len(identifiers)):
        job.checkpoint["Position"] = position
        await job.step(position / len(identifiers))
        await scu.run(scu.move, peer, level, [identifiers[position]], params["TargetAet"])
    job.checkpoint["Position"] = len(identifiers)


@hookimpl
def register_job_types() -> dict[str, JobType]:
    return {JOB_TYPE: JobType(run_job)}
