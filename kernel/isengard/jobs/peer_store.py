"""Sending stored instances to an Orthanc peer: the "OrthancPeerStore" job, and the sending both it and the
synchronous /peers/{id}/store use.

Each instance goes as its own ``POST /instances`` to the peer, in the order of the resources asked for, read
from the storage one at a time: while one is on the wire the next is read (and transcoded or gzipped), so at most
two files are in memory. ``Transcode`` converts each file first (a file that cannot be converted goes as stored,
as in Orthanc); ``Compress`` gzips each body, sent with ``Content-Encoding: gzip``. The checkpoint is the number
of instances sent and the bytes that took, so a paused or interrupted job goes on with the next instance.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import hookimpl
from ..dicom.transcode import lossy_quality, transcode
from ..errors import OrthancError
from ..model import ExportedResource, ResourceType, now_iso
from ..peers import OrthancPeer, call, client
from .run import JobRun, JobType

if TYPE_CHECKING:
    from ..context import ServerContext

log = logging.getLogger("isengard.peers")

JOB_TYPE = "OrthancPeerStore"
#: The identifier /exports shows for each level: (main DICOM tag, field of ExportedResource).
_EXPORTED = {
    ResourceType.PATIENT: ("PatientID", "patient_id"),
    ResourceType.STUDY: ("StudyInstanceUID", "study_uid"),
    ResourceType.SERIES: ("SeriesInstanceUID", "series_uid"),
    ResourceType.INSTANCE: ("SOPInstanceUID", "sop_uid"),
}


@dataclass
class Sent:
    """How far a transfer got: instances behind us (sent) and the bytes of their bodies, as transmitted."""

    position: int = 0
    size: int = 0


def store_content(
    peer: OrthancPeer, resources: list[str], count: int, transcode_to: str, compress: bool
) -> dict[str, Any]:
    """Orthanc's report of a transfer to a peer (the synchronous answer, and the job's Content)."""
    out: dict[str, Any] = {
        "Compress": compress,
        "Description": "REST API",
        "FailedInstancesCount": 0,
        "InstancesCount": count,
        "Peer": peer.job_json(),
        "Size": "0",
        "SizeMB": 0,
    }
    if resources:
        out["ParentResources"] = resources
    if transcode_to:
        out["Transcode"] = transcode_to
    return dict(sorted(out.items()))


def account(content: dict[str, Any], sent: Sent) -> None:
    """Orthanc shows the size as a decimal string, and in whole megabytes."""
    content["Size"] = str(sent.size)
    content["SizeMB"] = sent.size // (1024 * 1024)


async def log_exports(ctx: ServerContext, peer_name: str, resources: list[str]) -> None:
    """/exports records each resource asked for (LogExportedResources), at submission, as Orthanc does."""
    for public_id in resources:
        level = found_level = await ctx.index.lookup(public_id)
        values: dict[str, str] = {}
        current: str | None = public_id
        while current is not None and level is not None:
            found = await ctx.index.get_resources(level, [current])
            if not found:
                break
            tag, name = _EXPORTED[level]
            values[name] = found[0].main_tags.get(tag, "")
            current, level = found[0].parent, level.parent
        if found_level is not None:
            await ctx.index.log_export(ExportedResource(0, found_level, public_id, peer_name, now_iso(), **values))


def _body(data: bytes, transcode_to: str, compress: bool, quality: int) -> bytes:
    if transcode_to:
        try:
            data = transcode(data, transcode_to, quality=quality)
        except OrthancError as e:
            log.warning("sent as stored, cannot transcode to %s: %s", transcode_to, e.details or e.code.message)
    return gzip.compress(data, compresslevel=6) if compress else data


async def send(
    ctx: ServerContext,
    peer: OrthancPeer,
    instances: list[str],
    *,
    transcode_to: str = "",
    compress: bool = False,
    sent: Sent | None = None,
    before_each: Callable[[Sent], Awaitable[None]] | None = None,
) -> Sent:
    """POST ``instances[sent.position:]`` to the peer; ``sent`` is updated after each one.

    ``before_each`` is awaited before each instance is sent; it may raise to stop (a paused job).
    Raises Orthanc's NetworkProtocol error when the peer cannot be reached or refuses an instance.
    """
    sent = sent or Sent()
    quality = lossy_quality(ctx.config)
    headers = {"Content-Type": "application/dicom"}
    if compress:
        headers["Content-Encoding"] = "gzip"

    async def prepare(instance_id: str) -> bytes:
        data = await ctx.store.read_dicom(instance_id)
        if not transcode_to and not compress:
            return data
        return await asyncio.to_thread(_body, data, transcode_to, compress, quality)

    remaining = instances[sent.position :]
    if not remaining:
        return sent
    async with client(ctx.config, peer) as http:
        upcoming = asyncio.ensure_future(prepare(remaining[0]))
        try:
            for i in range(len(remaining)):
                body = await upcoming
                if i + 1 < len(remaining):
                    upcoming = asyncio.ensure_future(prepare(remaining[i + 1]))
                if before_each is not None:
                    await before_each(sent)
                await call(http, "POST", "instances", content=body, headers=headers)
                sent.position += 1
                sent.size += len(body)
        finally:
            upcoming.cancel()
            await asyncio.gather(upcoming, return_exceptions=True)
    return sent


def job_parameters(peer: OrthancPeer, instances: list[str], transcode_to: str, compress: bool) -> dict[str, Any]:
    """The whole definition of the peer (a later deletion of the peer does not stop a queued job)."""
    return {"Peer": peer.stored_json(), "Instances": instances, "Transcode": transcode_to, "Compress": compress}


async def run_job(job: JobRun) -> None:
    params = job.parameters
    instances: list[str] = params["Instances"]
    sent = Sent(job.checkpoint.get("Position", 0), job.checkpoint.get("Size", 0))

    async def before_each(progress: Sent) -> None:
        job.checkpoint.update(Position=progress.position, Size=progress.size)
        account(job.content, progress)
        await job.step(progress.position / len(instances))

    await send(
        job.context,
        OrthancPeer.parse(params["Peer"], check_files=False),
        instances,
        transcode_to=params["Transcode"],
        compress=params["Compress"],
        sent=sent,
        before_each=before_each,
    )
    job.checkpoint.update(Position=sent.position, Size=sent.size)
    account(job.content, sent)


@hookimpl
def register_job_types() -> dict[str, JobType]:
    return {JOB_TYPE: JobType(run_job)}
