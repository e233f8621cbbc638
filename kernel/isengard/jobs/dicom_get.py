"""C-GET from a modality: the "DicomGetScu" job of /queries/{id}/retrieve and /modalities/{id}/get (Orthanc
1.12.6), and the storing of what a C-GET brings back, in a job or within a request.

This server is the destination: the files come back over the C-GET's own association, so the peer needs no
C-MOVE destination. Runs as the C-MOVE job does (one identifier at a time, checkpointed); the progress also
follows the peer's counts of sub-operations within one identifier.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset

from .. import hookimpl
from ..dicom import scu
from ..dicom.network import accepted_transfer_syntaxes
from ..errors import ErrorCode, OrthancError
from ..model import ResourceType
from .dicom_move import retrieve_answer, retrieve_each, retrieve_parameters
from .run import JobRun, JobType

if TYPE_CHECKING:
    from ..context import ServerContext

JOB_TYPE = "DicomGetScu"


def receiver(ctx: ServerContext, peer: scu.Peer, username: str) -> Callable[[bytes], int]:
    """Stores each file a C-GET brings back, from the association's thread; answers a C-STORE status.

    To be made on the event loop the store runs on; ``username`` is the HTTP user who asked for the C-GET.
    """
    loop = asyncio.get_running_loop()
    origin = {
        "Origin": "DicomProtocol",
        "RemoteAET": peer.aet,
        "RemoteIP": peer.host,
        "CalledAET": peer.local_aet,
        "HttpUsername": username,
    }

    def receive(data: bytes) -> int:
        try:
            asyncio.run_coroutine_threadsafe(ctx.store.ingest(data, origin), loop).result()
        except OrthancError as e:
            return 0xA700 if e.code is ErrorCode.FULL_STORAGE else 0xC000
        return 0x0000

    return receive


async def get(
    ctx: ServerContext,
    peer: scu.Peer,
    level: ResourceType,
    identifiers: list[Dataset],
    username: str,
    progress: Callable[[float], None] | None = None,
) -> None:
    """C-GET ``identifiers`` into this server."""
    receive = receiver(ctx, peer, username)
    syntaxes = accepted_transfer_syntaxes(ctx.config)
    await scu.run(scu.get, peer, level, identifiers, syntaxes, receive, progress)


async def submit(
    ctx: ServerContext,
    peer: scu.Peer,
    level: ResourceType,
    identifiers: list[Dataset],
    query: list[dict[str, Any]],
    *,
    username: str,
    priority: int = 0,
) -> str:
    """Queue the C-GET of ``identifiers``; ``query`` is what the job's Content shows of them."""
    parameters = {**retrieve_parameters(peer, level, identifiers), "HttpUsername": username}
    return await ctx.jobs.submit(JOB_TYPE, parameters, retrieve_answer(peer, query), priority=priority)


async def run_job(job: JobRun) -> None:
    username = job.parameters.get("HttpUsername", "")

    async def one(peer: scu.Peer, level: ResourceType, identifier: Dataset, progress: Callable[[float], None]) -> None:
        await get(job.context, peer, level, [identifier], username, progress)

    await retrieve_each(job, one)


@hookimpl
def register_job_types() -> dict[str, JobType]:
    return {JOB_TYPE: JobType(run_job)}
