"""Sending to and fetching from a remote DICOMweb server: STOW-RS and WADO-RS as a client, inline or as jobs.

- STOW-RS (PS3.18 10.5): the instances go in one ``POST {Url}studies`` of multipart/related application/dicom,
  read from the storage one at a time while the body is on the wire (chunked transfer encoding; with
  ``"ChunkedTransfers": false`` the body is assembled first, for servers that need a Content-Length). A remote
  answer listing failures (202, or a FailedSOPSequence) is a failure, as in Orthanc's plugin.
- WADO-RS (PS3.18 10.4): each resource ``{"Study", "Series", "Instance"}`` is one GET of
  multipart/related application/dicom (``transfer-syntax=*`` unless HasWadoRsUniversalTransferSyntax is
  false), each part stored through the normal ingest as it arrives, with Origin "Plugins" as in Orthanc.

Job types and Content are Orthanc's plugin's: "DicomWebStowClient" ({"InstancesCount", "NetworkSizeMB"}) and
"DicomWebWadoRetrieveClient" ({"ReceivedInstancesCount", "NetworkUsageMB"}), numbers as strings.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from isengard.context import ServerContext
from isengard.errors import ErrorCode, OrthancError
from isengard.jobs import JobRun, JobType
from isengard.model import ResourceType
from isengard.peers import OrthancPeer, client

from .multipart import content_type, new_boundary, parse_media_type, read_parts, stream_parts
from .servers import megabytes, send, server_flag
from .wado import DICOM

STOW_JOB = "DicomWebStowClient"
RETRIEVE_JOB = "DicomWebWadoRetrieveClient"
#: Reception metadata of retrieved instances: Orthanc's plugin stores them through the REST API of plugins.
ORIGIN = {"Origin": "Plugins", "RemoteIP": "", "RemoteAET": "", "HttpUsername": ""}

Progress = Callable[[float], Awaitable[None]]


# -- STOW-RS client --------------------------------------------------------------------------------------------
def stow_content(count: int, size: int = 0) -> dict[str, Any]:
    return {"InstancesCount": str(count), "NetworkSizeMB": megabytes(size)}


async def stow(
    ctx: ServerContext,
    server: OrthancPeer,
    instances: list[str],
    headers: dict[str, str],
    progress: Progress | None = None,
) -> int:
    """Send the instances in one STOW-RS request; the size of the DICOM files sent (none: no request)."""
    if not instances:
        return 0
    boundary = new_boundary()
    sent = 0

    async def parts() -> AsyncIterator[tuple[bytes, dict[str, str]]]:
        nonlocal sent
        for position, instance in enumerate(instances):
            if progress is not None:
                await progress(position / len(instances))
            data = await ctx.store.read_dicom(instance)
            sent += len(data)
            yield data, {"Content-Type": DICOM}

    body: AsyncIterator[bytes] | bytes = stream_parts(parts(), boundary)
    if not server_flag(server, "ChunkedTransfers", True):
        body = b"".join([chunk async for chunk in body])
    request_headers = {"Accept": "application/dicom+json", **headers, "Content-Type": content_type(boundary, DICOM)}
    async with client(ctx.config, server) as http:
        response = await send(http, "POST", "studies", content=body, headers=request_headers)
    failed = _failed_count(response.content)
    if response.status_code == 202 or failed:
        raise OrthancError(
            ErrorCode.NETWORK_PROTOCOL, f"The DICOMweb server refused {failed or 'some'} of {len(instances)} instances"
        )
    return sent


def _failed_count(answer: bytes) -> int:
    """How many items the FailedSOPSequence (0008,1198) of a STOW-RS answer lists (0 when it says nothing)."""
    try:
        body = json.loads(answer)
    except ValueError:
        return 0
    failed = body.get("00081198", {}) if isinstance(body, dict) else {}
    return len(failed.get("Value", [])) if isinstance(failed, dict) else 0


async def run_stow(job: JobRun) -> None:
    """Resumed after a restart, the job sends everything again: one request cannot be continued half-way."""
    params = job.parameters
    instances: list[str] = params["Instances"]
    size = await stow(
        job.context, OrthancPeer.parse(params["Server"], check_files=False), instances, params["HttpHeaders"], job.step
    )
    job.content.update(stow_content(len(instances), size))


# -- WADO-RS retrieve client -----------------------------------------------------------------------------------
@dataclass
class Received:
    """What a retrieval got so far: resources done, instances stored (their ids) and bytes received."""

    position: int = 0
    size: int = 0
    instances: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._seen = set(self.instances)

    def add(self, instance: str, size: int) -> None:
        """A resource received again after a resumption counts once."""
        self.size += size
        if instance not in self._seen:
            self._seen.add(instance)
            self.instances.append(instance)

    def content(self) -> dict[str, Any]:
        return {"NetworkUsageMB": megabytes(self.size), "ReceivedInstancesCount": str(len(self.instances))}


def _uid(value: Any, field_name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, f"A DICOM UID is expected in field: {field_name}")
    return value.strip()


def retrieve_paths(resources: Any) -> list[str]:
    """The WADO-RS paths of Orthanc's "Resources": ``{"Study"}``, ``{"Study", "Series"}`` (one series or a list),
    ``{"Study", "Series", "Instance"}``."""
    if not isinstance(resources, list):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, 'The field "Resources" must be a JSON array')
    paths: list[str] = []
    for item in resources:
        if not isinstance(item, dict) or "Study" not in item:
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT, 'Each resource to retrieve is an object with a "Study"')
        study = f"studies/{_uid(item['Study'], 'Study')}"
        series = item.get("Series")
        if series is None:
            paths.append(study)
            continue
        many = series if isinstance(series, list) else [series]
        if "Instance" in item:
            if len(many) != 1:
                raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "An Instance is retrieved from one Series")
            paths.append(f"{study}/series/{_uid(many[0], 'Series')}/instances/{_uid(item['Instance'], 'Instance')}")
        else:
            paths += [f"{study}/series/{_uid(s, 'Series')}" for s in many]
    return paths


async def retrieve(
    ctx: ServerContext,
    server: OrthancPeer,
    paths: list[str],
    headers: dict[str, str],
    arguments: dict[str, str],
    received: Received,
    progress: Progress | None = None,
) -> Received:
    """GET ``paths[received.position:]`` and store what comes; ``received`` is updated after each path."""
    syntax = "; transfer-syntax=*" if server_flag(server, "HasWadoRsUniversalTransferSyntax", True) else ""
    request_headers = {"Accept": f'multipart/related; type="{DICOM}"{syntax}', **headers}
    async with client(ctx.config, server) as http:
        for path in paths[received.position :]:
            if progress is not None:
                await progress(received.position / len(paths))
            response = await send(http, "GET", path, params=arguments, headers=request_headers, stream=True)
            try:
                media = parse_media_type(response.headers.get("Content-Type", ""))
                boundary = media.params.get("boundary")
                if media.media_type != "multipart/related" or not boundary:
                    raise OrthancError(
                        ErrorCode.NETWORK_PROTOCOL, f"WADO-RS {path} answered {media.media_type}, not multipart/related"
                    )
                async for _, data in read_parts(response.aiter_bytes(), boundary):
                    result = await ctx.store.ingest(data, ORIGIN)
                    received.add(result.instance.identifiers.public_ids()[ResourceType.INSTANCE], len(data))
                    if progress is not None:  # a pause or a cancellation need not wait for the whole study
                        await progress(received.position / len(paths))
            finally:
                await response.aclose()
            received.position += 1
    return received


def retrieve_parameters(
    server: OrthancPeer, paths: list[str], headers: dict[str, str], arguments: dict[str, str]
) -> dict[str, Any]:
    """The whole server definition goes in the job: deleting the server later does not break a queued job."""
    return {"Server": server.stored_json(), "Paths": paths, "HttpHeaders": headers, "Arguments": arguments}


async def run_retrieve(job: JobRun) -> None:
    """Goes on after the last resource fully received (the instances of a cut-short one come again, harmlessly:
    a second copy of an instance is "AlreadyStored")."""
    params, point = job.parameters, job.checkpoint
    received = Received(point.get("Position", 0), point.get("Size", 0), list(point.get("Instances", [])))

    async def progress(fraction: float) -> None:
        job.checkpoint.update(Position=received.position, Size=received.size, Instances=received.instances)
        job.content.update(received.content())
        await job.step(fraction)

    server = OrthancPeer.parse(params["Server"], check_files=False)
    await retrieve(job.context, server, params["Paths"], params["HttpHeaders"], params["Arguments"], received, progress)
    job.content.update(received.content())


JOB_TYPES = {STOW_JOB: JobType(run_stow), RETRIEVE_JOB: JobType(run_retrieve)}
