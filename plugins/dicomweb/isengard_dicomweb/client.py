"""The DICOMweb client routes of Orthanc's plugin, under ``Root``: ``servers/...`` (Orthanc Book, "DICOMweb
plugin", REST API of the Orthanc DICOMweb client).

Bodies, answers and errors are those of Orthanc's plugin: an unknown server is 404 "Inexistent server" (400
"Unknown DICOMweb server" when deleting), PUT and DELETE answer ``{}``, a server that cannot be reached is
"Error in the network protocol" (500), and a remote 400/401/404 becomes Orthanc's Bad request, Unauthorized and
Unknown resource. ``/get`` and ``/post`` pass the remote answer on as it comes (streamed, with its Content-Type).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
from quart import Blueprint, Response

from isengard.errors import ErrorCode, OrthancError
from isengard.model import ResourceType
from isengard.peers import OrthancPeer, client
from isengard.rest.common import answer, context, flag
from isengard.rest.jobs import job_request, submitted
from isengard.rest.modalities import _instances_of, _store_request, level_field, raw_json

from . import transfers
from .resources import PATH_LEVELS, resource_path
from .servers import DicomWebServers, merged_headers, send, server_flag

bp = Blueprint("dicomweb_client", __name__)

#: What GET servers/{name} lists: the operations this plugin serves on a server ("delete" too with HasDelete).
OPERATIONS = ["get", "post", "retrieve", "stow"]
#: The members of a servers/{name}/delete body that name the resource, down to its "Level" (Orthanc's plugin).
DELETE_UIDS = {
    ResourceType.STUDY: "StudyInstanceUID",
    ResourceType.SERIES: "SeriesInstanceUID",
    ResourceType.INSTANCE: "SOPInstanceUID",
}


@bp.get("/servers")
async def list_servers() -> Response:
    """The known DICOMweb servers (names, or their definitions without secrets with ``expand``)."""
    found = await DicomWebServers(context()).all()
    if flag("expand"):
        return answer({name: server.public_json() for name, server in found.items()})
    return answer(list(found))


@bp.get("/servers/<name>")
async def server_operations(name: str) -> Response:
    """The operations this server can run against a known DICOMweb server."""
    server = await DicomWebServers(context()).get(name)
    return answer([*OPERATIONS, "delete"] if server_flag(server, "HasDelete", False) else OPERATIONS)


@bp.put("/servers/<name>")
async def put_server(name: str) -> Response:
    """Define or replace a server, in Orthanc's short or object form (kept in the index)."""
    registry = DicomWebServers(context())
    await registry.put(name, registry.parse(name, await raw_json(), stored=False))
    return answer({})


@bp.delete("/servers/<name>")
async def delete_server(name: str) -> Response:
    """Forget a server (one of the configuration stays forgotten: the deletion is kept in the index)."""
    await DicomWebServers(context()).delete(name)
    return answer({})


async def _request_body() -> dict[str, Any]:
    body = await raw_json(empty={})
    if not isinstance(body, dict):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "A JSON object is expected")
    return body


def _arguments(body: dict[str, Any]) -> dict[str, str]:
    value = body.get("Arguments", {})
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "Arguments must be a JSON object mapping names to strings")
    return dict(value)


def _uri(body: dict[str, Any]) -> httpx.URL:
    """The "Uri" relative to the server's Url, its query merged with the "Arguments" (Orthanc encodes them)."""
    uri = body.get("Uri")
    if not isinstance(uri, str):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, 'The field "Uri" must be a string')
    return httpx.URL(uri.lstrip("/")).copy_merge_params(_arguments(body))


async def _proxy(server: OrthancPeer, method: str, body: dict[str, Any], content: bytes | None) -> Response:
    """Forward one request; the answer is streamed back while it arrives, the connection closed at its end."""
    http = client(context().config, server)
    try:
        response = await send(http, method, _uri(body), content=content, headers=merged_headers(body), stream=True)
    except BaseException:
        await http.aclose()
        raise

    async def forward() -> AsyncIterator[bytes]:
        try:
            async for chunk in response.aiter_bytes():
                yield chunk
        finally:
            await response.aclose()
            await http.aclose()

    return Response(forward(), content_type=response.headers.get("Content-Type", "application/octet-stream"))


@bp.post("/servers/<name>/get")
async def get(name: str) -> Response:
    """A GET (QIDO-RS, WADO-RS...) against the server: ``{"Uri", "HttpHeaders", "Arguments"}``."""
    server = await DicomWebServers(context()).get(name)
    return await _proxy(server, "GET", await _request_body(), None)


@bp.post("/servers/<name>/post")
async def post(name: str) -> Response:
    """A POST against the server: ``{"Uri", "Body" (text), "HttpHeaders", "Arguments"}``."""
    server = await DicomWebServers(context()).get(name)
    body = await _request_body()
    content = body.get("Body", "")
    if not isinstance(content, str):
        raise OrthancError(ErrorCode.BAD_FILE_FORMAT, 'The field "Body" must be a string')
    return await _proxy(server, "POST", body, content.encode("utf-8"))


@bp.post("/servers/<name>/stow")
async def stow(name: str) -> Response:
    """STOW-RS of local patients, studies, series or instances (Orthanc ids) to the server; a job when asked."""
    ctx = context()
    server = await DicomWebServers(ctx).get(name)
    resources, options = _store_request(await raw_json())
    synchronous, priority = job_request(options)
    headers = merged_headers(options)
    instances = await _instances_of(ctx, resources)
    if not synchronous:
        parameters = {"Server": server.stored_json(), "Instances": instances, "HttpHeaders": headers}
        content = transfers.stow_content(len(instances))
        return submitted(await ctx.jobs.submit(transfers.STOW_JOB, parameters, content, priority=priority))
    size = await transfers.stow(ctx, server, instances, headers)
    return answer(transfers.stow_content(len(instances), size))


@bp.post("/servers/<name>/retrieve")
async def retrieve(name: str) -> Response:
    """WADO-RS of remote studies, series or instances (DICOM UIDs), stored here; a job when asked."""
    ctx = context()
    server = await DicomWebServers(ctx).get(name)
    body = await _request_body()
    synchronous, priority = job_request(body)
    paths = transfers.retrieve_paths(body.get("Resources"))
    headers, arguments = merged_headers(body), _arguments(body)
    if not synchronous:
        parameters = transfers.retrieve_parameters(server, paths, headers, arguments)
        content = transfers.Received().content()
        return submitted(await ctx.jobs.submit(transfers.RETRIEVE_JOB, parameters, content, priority=priority))
    received = await transfers.retrieve(ctx, server, paths, headers, arguments, transfers.Received())
    return answer({**received.content(), "Instances": received.instances})


def _deleted_path(body: Any) -> str:
    """The remote path a delete body names (errors and messages as Orthanc's plugin 1.7 answers them)."""
    if not isinstance(body, dict) or not isinstance(body.get("Level"), str) or "StudyInstanceUID" not in body:
        raise OrthancError(
            ErrorCode.BAD_FILE_FORMAT,
            'The request body must contain a JSON object with fields "Level" and "StudyInstanceUID"',
        )
    level = level_field(body)
    if level not in PATH_LEVELS:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"Cannot delete at the {level.label} level")
    uids: dict[ResourceType, str] = {}
    for lvl in PATH_LEVELS[: PATH_LEVELS.index(level) + 1]:
        member = DELETE_UIDS[lvl]
        value = body.get(member)
        if not isinstance(value, str):
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT, f'The request body must contain the field "{member}"')
        uids[lvl] = value
    return resource_path(uids, level)


@bp.post("/servers/<name>/delete")
async def delete(name: str) -> Response:
    """HTTP DELETE of a remote study, series or instance: ``{"Level", "StudyInstanceUID", "SeriesInstanceUID",
    "SOPInstanceUID"}``, on a server defined with ``HasDelete`` (Orthanc's plugin 1.7 sends no other header)."""
    ctx = context()
    server = await DicomWebServers(ctx).get(name)
    if not server_flag(server, "HasDelete", False):
        raise OrthancError(
            ErrorCode.BAD_FILE_FORMAT, f'Cannot delete on DICOMweb server, check out property "HasDelete": {name}'
        )
    path = _deleted_path(await raw_json(empty={}))
    async with client(ctx.config, server) as http:
        await send(http, "DELETE", path)
    return answer({})
