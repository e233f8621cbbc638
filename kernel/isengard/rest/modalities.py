"""/modalities: the known DICOM peers, and C-ECHO, C-STORE, C-MOVE and C-GET towards them (C-FIND: queries.py).

Bodies, answers and errors are Orthanc's (1.10, with the 1.12 additions /tools/dicom-echo and C-GET). C-STORE,
C-MOVE and C-GET run as jobs when asked ("Asynchronous": true or "Synchronous": false), answering {"ID", "Path"} of
the job; otherwise they run within the request, whose answer is the report.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from quart import Blueprint, Quart, Response, request

from .. import hookimpl
from ..context import ServerContext
from ..dicom import commitment, scu
from ..dicom.json import JsonFormat, dataset_to_json
from ..dicom.parse import dataset_text, read_header
from ..dicom.pool import POOL
from ..dicom.tags import keyword_of, parse_tag
from ..errors import ErrorCode, OrthancError, unknown_resource
from ..jobs import dicom_get, dicom_move, dicom_store
from ..jobs.dicom_move import retrieve_answer
from ..modalities import Modalities, Modality
from ..model import ResourceType
from .app import current_user
from .common import answer, context, text_answer
from .jobs import job_request, submitted
from .tools import unknown_tag

bp = Blueprint("modalities", __name__)

_PUBLIC_ID = re.compile(r"^[0-9a-f]{8}(-[0-9a-f]{8}){4}$")
_OPERATIONS = [
    "configuration",
    "echo",
    "find",
    "find-instance",
    "find-patient",
    "find-series",
    "find-study",
    "find-worklist",
    "get",
    "move",
    "query",
    "store",
    "store-straight",
]


# -- bodies ----------------------------------------------------------------------------------------------------
def bad_body(details: str | None = None) -> OrthancError:
    return OrthancError(ErrorCode.BAD_FILE_FORMAT, details)


async def raw_json(*, empty: Any = None) -> Any:
    """The body as JSON (``empty`` when there is none): Orthanc's "Bad file format" when it is not JSON."""
    raw = await request.get_data()
    if not raw.strip():
        return empty
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad_body("Cannot parse the JSON body") from None


async def object_body() -> dict[str, Any]:
    body = await raw_json()
    if not isinstance(body, dict):
        raise bad_body("Must provide a JSON object")
    return body


def bool_field(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise bad_body(f"Boolean value expected in field: {name}")
    return value


def int_field(body: dict[str, Any], name: str) -> int:
    value = body.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise bad_body(f"Integer value expected in field: {name}")
    return value


def str_field(body: dict[str, Any], name: str, default: str = "") -> str:
    value = body.get(name, default)
    if not isinstance(value, str):
        raise OrthancError(ErrorCode.BAD_PARAMETER_TYPE, f"String value expected in field: {name}")
    return value


def level_field(body: dict[str, Any]) -> ResourceType:
    try:
        return ResourceType.parse(body["Level"])
    except (ValueError, AttributeError):
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"Unknown resource level: {body['Level']}") from None


def tags_object(value: Any, error: OrthancError | None = None) -> dict[str, str]:
    """{tag name or "gggg,eeee": text} -> {keyword: text}; ``error`` replaces the default errors."""
    if not isinstance(value, dict):
        raise error or bad_body("Expected a JSON object mapping DICOM tags to strings")
    out: dict[str, str] = {}
    for name, text in value.items():
        if not isinstance(text, str):
            raise error or bad_body(f"The value of {name} must be a string")
        try:
            out[keyword_of(name)] = text
        except KeyError:
            raise error or unknown_tag(name) from None
    return out


def tags_json(ds: Dataset, fmt: JsonFormat) -> dict[str, Any]:
    """A dataset in one of Orthanc's JSON forms, keys sorted as Orthanc writes them."""
    return dict(sorted(dataset_to_json(ds, fmt).items()))


def echoed(ds: Dataset, fmt: JsonFormat) -> dict[str, Any]:
    """An identifier as Orthanc reports it after a retrieval (without its character set)."""
    copy = Dataset()
    for tag in sorted(ds.keys()):
        if tag != 0x00080005:
            copy[tag] = ds.get_item(tag)
    copy.set_original_encoding(ds.is_implicit_VR, ds.is_little_endian, ds._character_set)
    return tags_json(copy, fmt)


def values_of(ds: Dataset, keywords: list[str]) -> dict[str, str]:
    """The text of these elements of an answer, for those it has."""
    out = {}
    for keyword in keywords:
        tag = parse_tag(keyword)
        if tag in ds:
            out[keyword] = dataset_text(ds, tag) or ""
    return out


# -- the peer --------------------------------------------------------------------------------------------------
async def modality_named(name: str) -> Modality:
    return await Modalities(context()).get(name)


async def peer_for(name: str, body: dict[str, Any] | None = None) -> scu.Peer:
    body = body or {}
    modality = await modality_named(name)
    return scu.Peer.of(
        context().config, modality, local_aet=str_field(body, "LocalAet"), timeout=int_field(body, "Timeout")
    )


# -- configuration ---------------------------------------------------------------------------------------------
@bp.get("/modalities")
async def list_modalities() -> Response:
    """The known DICOM modalities (names, or their configurations with ``expand``)."""
    found = await Modalities(context()).all()
    if "expand" in request.args:
        return answer({name: m.to_json() for name, m in found.items()})
    return answer(list(found))


@bp.get("/modalities/<name>")
async def modality_operations(name: str) -> Response:
    """The operations available on one modality."""
    await modality_named(name)
    return answer(_OPERATIONS)


@bp.get("/modalities/<name>/configuration")
async def modality_configuration(name: str) -> Response:
    """The configuration of one modality, every field present."""
    return answer((await modality_named(name)).to_json())


@bp.put("/modalities/<name>")
async def put_modality(name: str) -> Response:
    """Define or replace a modality (kept in the index, so it survives restarts and is shared)."""
    modality = Modality.parse(await raw_json())
    await Modalities(context()).put(name, modality)
    return text_answer("")


@bp.delete("/modalities/<name>")
async def delete_modality(name: str) -> Response:
    """Forget a modality (one of the configuration file's included)."""
    await Modalities(context()).delete(name)
    return text_answer("")


# -- C-ECHO ----------------------------------------------------------------------------------------------------
async def _echo(peer: scu.Peer, body: dict[str, Any]) -> Response:
    await scu.run(scu.echo, peer, check_find=bool_field(body, "CheckFind", False))
    return answer({})


@bp.post("/modalities/<name>/echo")
async def echo(name: str) -> Response:
    """C-ECHO the modality (``Timeout``, ``CheckFind`` in the body); {} on success."""
    body = await raw_json(empty={})
    body = body if isinstance(body, dict) else {}
    return await _echo(await peer_for(name, body), body)


@bp.post("/tools/dicom-echo")
async def echo_definition() -> Response:
    """C-ECHO a peer defined in the body (as in /modalities/{id}), without declaring it."""
    body = await raw_json()
    if body is None:
        raise bad_body("Cannot parse the JSON body")
    modality = Modality.parse(body)
    options = body if isinstance(body, dict) else {}
    peer = scu.Peer.of(context().config, modality, timeout=int_field(options, "Timeout"))
    return await _echo(peer, options)


# -- C-STORE ---------------------------------------------------------------------------------------------------
def _store_request(body: Any) -> tuple[list[str], dict[str, Any]]:
    """Orthanc's three bodies: an identifier, a list of them, or {"Resources": [...], options}."""
    if isinstance(body, str):
        return [body.strip()], {}
    if isinstance(body, list):
        if not all(isinstance(v, str) for v in body):
            raise bad_body("Resources to be exported must be specified as a JSON array of strings")
        return [v.strip() for v in body], {}
    if not isinstance(body, dict):
        raise bad_body("Must provide a JSON object, or a JSON array of strings")
    if "Resources" not in body:
        raise bad_body('Missing field in JSON: "Resources"')
    resources = body["Resources"]
    if not isinstance(resources, list):
        raise bad_body('JSON field "Resources" must contain an array')
    if not all(isinstance(v, str) for v in resources):
        raise bad_body("Resources to be exported must be specified as a JSON array of strings")
    return [v.strip() for v in resources], body


async def _store_body() -> Any:
    raw = (await request.get_data()).strip()
    text = raw.decode("utf-8", "replace")
    if _PUBLIC_ID.match(text):  # a bare identifier, not quoted
        return text
    if not raw:
        raise bad_body("Must provide a JSON value")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad_body("Must provide a JSON value") from None


async def _instances_of(ctx: ServerContext, resources: list[str]) -> list[str]:
    instances: list[str] = []
    for public_id in resources:
        if not _PUBLIC_ID.match(public_id):
            raise bad_body(f"This string is not a valid Orthanc identifier: {public_id}")
        level = await ctx.index.lookup(public_id)
        if level is None:
            raise unknown_resource(public_id)
        instances += await ctx.index.instances_of(level, public_id)
    return instances


@bp.post("/modalities/<name>/store")
async def store(name: str) -> Response:
    """C-STORE patients, studies, series or instances to the modality, each file as it is stored (as a job with
    ``"Asynchronous": true``)."""
    ctx = context()
    resources, options = _store_request(await _store_body())
    peer = await peer_for(name, options)
    synchronous, priority = job_request(options)
    permissive = bool_field(options, "Permissive", False)
    commit = bool_field(options, "StorageCommitment", False)
    if commit and not synchronous:
        raise OrthancError(ErrorCode.NOT_IMPLEMENTED, "Storage commitment after an asynchronous C-STORE")
    originator_aet = str_field(options, "MoveOriginatorAet")
    originator_id = options.get("MoveOriginatorID", 0)
    if isinstance(originator_id, bool) or not isinstance(originator_id, int) or not 0 <= originator_id <= 0xFFFF:
        raise OrthancError(ErrorCode.BAD_PARAMETER_TYPE, "MoveOriginatorID must be an integer in [0..65535]")
    originator = (originator_aet, originator_id) if originator_aet else None
    instances = await _instances_of(ctx, resources)
    content = dicom_store.store_content(peer, resources, len(instances), originator)
    if not synchronous:
        ordered = await dicom_store.sending_order(ctx, instances)
        parameters = dicom_store.job_parameters(peer, name, ordered, originator, permissive)
        return submitted(await ctx.jobs.submit(dicom_store.JOB_TYPE, parameters, content, priority=priority))
    report = await dicom_store.send(ctx, peer, name, instances, originator=originator, permissive=permissive)
    content["FailedInstancesCount"] = report.failed
    if commit:  # of every instance asked for, as Orthanc does
        references = await commitment.references_of(ctx, instances)
        content["StorageCommitmentTransactionUID"] = await commitment.start(peer, references)
    return answer(content)


@bp.post("/modalities/<name>/store-straight")
async def store_straight(name: str) -> Response:
    """C-STORE the DICOM file of the body, without storing it here."""
    data = await request.get_data()
    peer = await peer_for(name)
    header, _ = read_header(data)
    if not header.get("SOPClassUID") or not header.get("SOPInstanceUID"):
        raise bad_body(f"Cannot parse an invalid DICOM file (size: {len(data)} bytes): no SOP class or instance")
    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    syntax = str(ds.file_meta.get("TransferSyntaxUID", ExplicitVRLittleEndian))
    ds.file_meta.TransferSyntaxUID = syntax  # pynetdicom picks the presentation context by it
    contexts = scu.file_contexts(str(ds.SOPClassUID), syntax)
    await scu.run(scu.store, peer, [(contexts, ["body"])], lambda _: ds)
    return answer({"SOPClassUID": str(ds.SOPClassUID), "SOPInstanceUID": str(ds.SOPInstanceUID)})


# -- C-MOVE and C-GET ------------------------------------------------------------------------------------------
def _retrieve_request(body: dict[str, Any]) -> tuple[ResourceType, list[Dataset]]:
    if not isinstance(body, dict) or "Level" not in body or "Resources" not in body:
        raise bad_body("Must provide a JSON body containing fields Resources and Level")
    level = level_field(body)
    if not isinstance(body["Resources"], list):
        raise bad_body('JSON field "Resources" must contain an array')

    identifiers = []
    for resource in body["Resources"]:
        values = tags_object(resource)
        missing = [k for k in scu.retrieve_keys(level) if not values.get(k)]
        if missing:
            raise OrthancError(ErrorCode.BAD_REQUEST, f"A resource at level {level.label} needs {', '.join(missing)}")
        identifiers.append(scu.retrieve_identifier(level, values))
    return level, identifiers


@bp.post("/modalities/<name>/move")
async def move(name: str) -> Response:
    """C-MOVE resources (by their DICOM identifiers) from the modality to ``TargetAet`` (default: this server)."""
    ctx = context()
    body = await raw_json()
    level, identifiers = _retrieve_request(body)
    peer = await peer_for(name, body)
    target = str_field(body, "TargetAet", ctx.config.str("DicomAet"))
    synchronous, priority = job_request(body)
    if not synchronous:
        query = [echoed(scu.unpack(scu.pack(i)), JsonFormat.SHORT) for i in identifiers]
        return submitted(await dicom_move.submit(ctx, peer, level, identifiers, target, query, priority=priority))
    await scu.run(scu.move, peer, level, identifiers, target)
    return answer({})


@bp.post("/modalities/<name>/get")
async def get(name: str) -> Response:
    """C-GET resources (by their DICOM identifiers) from the modality, storing what it sends here (as a job with
    ``"Asynchronous": true``)."""
    ctx = context()
    body = await raw_json()
    level, identifiers = _retrieve_request(body)
    peer = await peer_for(name, body)
    synchronous, priority = job_request(body)
    query = [echoed(scu.unpack(scu.pack(i)), JsonFormat.SHORT) for i in identifiers]
    username = current_user() or ""
    if not synchronous:
        job_id = await dicom_get.submit(ctx, peer, level, identifiers, query, username=username, priority=priority)
        return submitted(job_id)
    await dicom_get.get(ctx, peer, level, identifiers, username)
    return answer(retrieve_answer(peer, query))


@hookimpl
def register_routes(app: Quart, context: ServerContext) -> None:
    app.register_blueprint(bp)


@hookimpl
async def shutdown(context: ServerContext) -> None:
    """Release the C-STORE associations kept open for more instances (DicomAssociationCloseDelay)."""
    await asyncio.to_thread(POOL.close_all)
