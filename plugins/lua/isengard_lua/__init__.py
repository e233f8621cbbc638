"""Lua scripting as in Orthanc: LuaScripts, Orthanc's callbacks and functions, POST /tools/execute-script.

Scripts written for Orthanc run unchanged (Orthanc Book, users/lua.rst): the callbacks keep their names and
arguments and each is wired to the kernel hook that sees the same event. See docs/lua.md.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import TYPE_CHECKING, Any

from pynetdicom.sop_class import ModalityWorklistInformationFind
from quart import Blueprint, Quart, Response, request

from isengard import hookimpl
from isengard.dicom.json import JsonFormat, dataset_to_json
from isengard.errors import ErrorCode, OrthancError
from isengard.model import ChangeType, JobState, ResourceType
from isengard.rest.common import text_answer

from .find import apply_table, query_table
from .runtime import in_lua_call
from .scripting import Scripting

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from isengard.auth import AccessRequest
    from isengard.context import ServerContext
    from isengard.dicom.parse import ParsedInstance
    from isengard.model import Change, JobRecord

log = logging.getLogger("isengard.lua")
bp = Blueprint("lua", __name__)
_scripting: Scripting | None = None
#: Simplified tags of the instances being received, by ``id()`` of their ParsedInstance, until it is collected:
#: the filters and OnStoredInstance see one conversion (about 1 ms for a CT header) instead of one each.
_simplified: dict[int, dict[str, Any]] = {}

#: Orthanc's ``origin["RequestOrigin"]`` for the kernel's reception origins; anything else came from a plugin.
_REQUEST_ORIGINS = {"RestApi": "RestApi", "DicomProtocol": "DicomProtocol", "Lua": "Lua"}


def _origin(origin: dict[str, str]) -> dict[str, str]:
    return {
        "RequestOrigin": _REQUEST_ORIGINS.get(origin.get("Origin", ""), "Plugins"),
        "RemoteIp": origin.get("RemoteIP", ""),
        "RemoteAet": origin.get("RemoteAET", ""),
        "CalledAet": origin.get("CalledAET", ""),
        "Username": origin.get("HttpUsername", ""),
    }


@hookimpl
def config_defaults() -> dict[str, Any]:
    return {
        "LuaScripts": [],
        "LuaHeartBeatPeriod": 0,
        # Isengard only: Orthanc has no limit; a loop that never ends would hold the Lua lock forever.
        "LuaMaxInstructions": 100_000_000,
    }


@hookimpl
async def startup(context: ServerContext) -> None:
    global _scripting
    _scripting = Scripting(context.config, asyncio.get_running_loop())
    await _scripting.start()


@hookimpl
async def shutdown(context: ServerContext) -> None:
    global _scripting
    if _scripting is not None:
        await _scripting.stop()
        _scripting = None


@hookimpl
def register_routes(app: Quart, context: ServerContext) -> None:
    app.register_blueprint(bp)
    if _scripting is not None:
        _scripting.functions.app = app
        app.before_serving(_scripting.serving)


@bp.post("/tools/execute-script")
async def execute_script() -> Response:
    """Run the body as a Lua script and answer what it printed (Orthanc Book, users/lua.rst)."""
    if _scripting is None or not _scripting.config.bool("ExecuteLuaEnabled"):
        # Orthanc answers a bare 403 and explains in its log; Isengard says it in its JSON error body too
        log.error("The URI /tools/execute-script is disallowed for security, check ExecuteLuaEnabled")
        raise OrthancError(
            ErrorCode.FORBIDDEN_ACCESS,
            "The URI /tools/execute-script is disallowed for security, check ExecuteLuaEnabled",
            http_status=403,
        )
    source = await request.get_data()
    try:
        output = await _scripting.execute(source)
    except Exception as e:
        details = str(e).split("\nstack traceback:")[0] or type(e).__name__  # LuaMemoryError has no text
        raise OrthancError(ErrorCode.CANNOT_EXECUTE_LUA, details) from None
    return text_answer(output)


@hookimpl
async def authorize(request: AccessRequest) -> bool | None:
    """IncomingHttpRequestFilter: the request passes only if it answers true; a failing filter refuses."""
    if _scripting is None or request.protocol != "http" or in_lua_call.get():
        return None
    if not _scripting.defines("IncomingHttpRequestFilter"):
        return None
    answer = await _scripting.callback(
        "IncomingHttpRequestFilter",
        request.method,
        request.path,
        request.remote_ip or "",
        request.user or "",
        request.headers,
        fallback=False,
    )
    return answer is True


async def _tags(instance: ParsedInstance) -> dict[str, Any]:
    """The instance's simplified tags, converted once per instance.

    Each callback still gets a Lua table of its own, so a filter that writes into its ``dicom`` table changes
    nothing OnStoredInstance sees; the instance itself cannot change between the filters and its storage.
    """
    key = id(instance)
    tags = _simplified.get(key)
    if tags is None:
        tags = await asyncio.to_thread(dataset_to_json, instance.dataset, JsonFormat.SIMPLIFY)
        _simplified[key] = tags
        weakref.finalize(instance, _simplified.pop, key, None)
    return tags


@hookimpl
async def accept_instance(instance: ParsedInstance, origin: dict[str, str]) -> bool | int | None:
    """ReceivedCStoreInstanceFilter(dicom, origin, info) for C-STORE, then ReceivedInstanceFilter(dicom,
    origin, info): kept only if the first answers 0 (a DIMSE status) and the second true. A failing filter keeps
    the instance."""
    if _scripting is None:
        return None
    if in_lua_call.get():
        # Stored by a script (RestApiPost("/instances", ...), ModifyInstance): Orthanc's origin is "Lua", and
        # the instance's Origin metadata says so too.
        origin["Origin"] = "Lua"
    c_store = origin.get("Origin") == "DicomProtocol" and _scripting.defines("ReceivedCStoreInstanceFilter")
    if not c_store and not _scripting.defines("ReceivedInstanceFilter"):
        return None
    tags = await _tags(instance)
    info = {"TransferSyntaxUID": instance.transfer_syntax, "HasPixelData": instance.pixel_data_offset is not None}
    if c_store:
        status = await _scripting.callback("ReceivedCStoreInstanceFilter", tags, _origin(origin), info, fallback=0)
        if status not in (0, None):  # the SCU is answered this status
            log.info("ReceivedCStoreInstanceFilter discarded an instance (status %s)", status)
            return int(status) if isinstance(status, int | float) and int(status) else False
    if not _scripting.defines("ReceivedInstanceFilter"):
        return None
    answer = await _scripting.callback("ReceivedInstanceFilter", tags, _origin(origin), info, fallback=True)
    return answer is True


@hookimpl
async def on_stored(context: ServerContext, instance_id: str, instance: ParsedInstance, origin: dict[str, str]) -> None:
    if _scripting is None or not _scripting.defines("OnStoredInstance"):
        return
    tags = await _tags(instance)
    metadata = await _scripting.get_json(f"/instances/{instance_id}/metadata?expand")
    await _scripting.callback("OnStoredInstance", instance_id, tags, metadata, _origin(origin))


@hookimpl
async def on_stable(context: ServerContext, level: ResourceType, public_id: str) -> None:
    """OnStablePatient/Study/Series(id, tags, metadata): tags are the resource's main DICOM tags."""
    name = f"OnStable{level.label}"
    if _scripting is None or level is ResourceType.INSTANCE or not _scripting.defines(name):
        return
    resource = await _scripting.get_json(f"/{level.plural}/{public_id}")
    tags = {**resource.get("PatientMainDicomTags", {}), **resource.get("MainDicomTags", {})}
    metadata = await _scripting.get_json(f"/{level.plural}/{public_id}/metadata?expand")
    await _scripting.callback(name, public_id, tags, metadata)


#: Orthanc's callbacks for changes of the log: OnDeleted<Level>(id) and OnUpdated<Level>(id).
_CHANGE_CALLBACKS = {
    ChangeType.DELETED: "OnDeleted",
    ChangeType.UPDATED_ATTACHMENT: "OnUpdated",
    ChangeType.UPDATED_METADATA: "OnUpdated",
}


@hookimpl
async def on_change(context: ServerContext, change: Change) -> None:
    """OnDeletedPatient/Study/Series/Instance(id) for each deleted resource, ancestors removed with it included;
    OnUpdated...(id) when a metadata or an attachment of the resource changed."""
    prefix = _CHANGE_CALLBACKS.get(change.change_type)
    if _scripting is not None and prefix is not None:
        await _scripting.callback(f"{prefix}{change.level.label}", change.public_id)


@hookimpl
async def filter_find_query(
    context: ServerContext, query: Dataset, model: str, requestor: dict[str, str]
) -> Dataset | None:
    """IncomingFindRequestFilter(query, origin), or IncomingWorklistRequestFilter for worklist queries."""
    worklist = model == ModalityWorklistInformationFind
    name = "IncomingWorklistRequestFilter" if worklist else "IncomingFindRequestFilter"
    if _scripting is None or not _scripting.defines(name):
        return None
    before = query_table(query, worklist=worklist)
    origin = {**_origin({"Origin": "DicomProtocol", **requestor}), "RemoteAet": requestor.get("RemoteAET", "")}
    answer = await _scripting.callback(name, before, origin)
    return apply_table(query, before, answer, worklist=worklist)


@hookimpl
async def filter_outgoing_find(context: ServerContext, query: Dataset, modality: str) -> Dataset | None:
    """OutgoingFindRequestFilter(query, modality): the query as a flat table, the modality's symbolic name."""
    name = "OutgoingFindRequestFilter"
    if _scripting is None or not _scripting.defines(name):
        return None
    before = query_table(query)
    return apply_table(query, before, await _scripting.callback(name, before, modality))


_JOB_CALLBACKS = {
    JobState.PENDING: "OnJobSubmitted",
    JobState.SUCCESS: "OnJobSuccess",
    JobState.FAILURE: "OnJobFailure",
}


@hookimpl
async def on_job_state(context: ServerContext, job: JobRecord) -> None:
    name = _JOB_CALLBACKS.get(job.state)
    if _scripting is not None and name is not None:
        await _scripting.callback(name, job.id)
