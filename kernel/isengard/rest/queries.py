"""C-FIND: /modalities/{id}/query and /queries (answers kept for browsing, narrowing and retrieving), and the
deprecated /modalities/{id}/find* routes that answer at once.

A query is kept in the index (one property per query, plus the list of their identifiers), so every server on
one database sees it; the QueryRetrieveSize newest are kept. Each answer is kept as the bytes of its dataset,
so it is shown exactly as the peer sent it, in any of Orthanc's three JSON forms.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from quart import Blueprint, Quart, Response, request

from .. import hookimpl
from ..context import ServerContext
from ..dicom import scu
from ..dicom.json import JsonFormat
from ..dicom.tags import keyword_of
from ..errors import ErrorCode, OrthancError
from ..jobs import dicom_get, dicom_move
from ..jobs.dicom_move import retrieve_answer
from ..modalities import Modality, retrieve_method
from ..model import ResourceType
from ..plugins import first_replacement
from .app import current_user
from .common import answer, context, text_answer
from .jobs import job_request, submitted
from .modalities import (
    bad_body,
    bool_field,
    echoed,
    int_field,
    level_field,
    modality_named,
    object_body,
    peer_for,
    raw_json,
    str_field,
    tags_json,
    tags_object,
    values_of,
)
from .tools import unknown_tag

bp = Blueprint("queries", __name__)

LIST_PROPERTY = "QueryRetrieve"
_CHILD_LEVELS = {"studies": ResourceType.STUDY, "series": ResourceType.SERIES, "instances": ResourceType.INSTANCE}
#: The keys of an answer a retrieval reports (it sends only the unique keys of the level).
_ECHOED_KEYS = ["AccessionNumber", "PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"]
#: Read-modify-write of the list of queries, one at a time in this process.
_list_lock = asyncio.Lock()
#: What the deprecated find-* routes ask for at each level, before the body's own filters.
_LEGACY_TEMPLATES = {
    ResourceType.PATIENT: ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "OtherPatientIDs"),
    ResourceType.STUDY: (
        "AccessionNumber",
        "PatientID",
        "ReferringPhysicianName",
        "StudyDate",
        "StudyDescription",
        "StudyID",
        "StudyInstanceUID",
        "StudyTime",
    ),
    ResourceType.SERIES: (
        "AccessionNumber",
        "BodyPartExamined",
        "Modality",
        "OperatorsName",
        "PatientID",
        "PerformedProcedureStepDescription",
        "ProtocolName",
        "SeriesDate",
        "SeriesDescription",
        "SeriesInstanceUID",
        "SeriesNumber",
        "SeriesTime",
        "StudyInstanceUID",
    ),
    ResourceType.INSTANCE: (
        "AccessionNumber",
        "InstanceCreationDate",
        "InstanceCreationTime",
        "InstanceNumber",
        "PatientID",
        "SOPInstanceUID",
        "SeriesInstanceUID",
        "StudyInstanceUID",
    ),
}
#: Keys the deprecated find-* routes insist on (more than 2 characters), so a typo cannot dump a whole PACS.
_LEGACY_REQUIRED = {
    ResourceType.STUDY: (),
    ResourceType.SERIES: ("StudyInstanceUID",),
    ResourceType.INSTANCE: ("StudyInstanceUID", "SeriesInstanceUID"),
}


def _property(query_id: str) -> str:
    return f"{LIST_PROPERTY}:{query_id}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass
class StoredQuery:
    modality: str  # the symbolic name
    remote: dict[str, Any]  # its definition when asked: retrieval works even if it is renamed or deleted
    level: ResourceType
    query: Dataset  # the filters as given, before normalization
    answers: list[Dataset]
    local_aet: str = ""
    timeout: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "Modality": self.modality,
            "Remote": self.remote,
            "Level": self.level.label,
            "Query": _b64(scu.pack(self.query)),
            "Answers": [_b64(scu.pack(a)) for a in self.answers],
            "LocalAet": self.local_aet,
            "Timeout": self.timeout,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StoredQuery:
        return cls(
            data["Modality"],
            data["Remote"],
            ResourceType.parse(data["Level"]),
            scu.unpack(base64.b64decode(data["Query"])),
            [scu.unpack(base64.b64decode(a)) for a in data["Answers"]],
            data.get("LocalAet", ""),
            data.get("Timeout", 0),
        )

    def peer(self, ctx: ServerContext, timeout: int = 0) -> scu.Peer:
        modality = Modality.parse(self.remote)
        return scu.Peer.of(ctx.config, modality, local_aet=self.local_aet, timeout=timeout or self.timeout)

    def answer_at(self, index: str) -> Dataset:
        try:
            position = int(index)
        except ValueError:
            raise OrthancError(ErrorCode.BAD_PARAMETER_TYPE, "Syntax error in some user-supplied data") from None
        if not 0 <= position < len(self.answers):
            raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"No answer {index} in this query")
        return self.answers[position]


class QueryArchive:
    def __init__(self, ctx: ServerContext) -> None:
        self.index = ctx.index
        self.size = max(1, ctx.config.int("QueryRetrieveSize"))

    async def ids(self) -> list[str]:
        raw = await self.index.get_property(LIST_PROPERTY)
        return json.loads(raw) if raw else []

    async def add(self, query: StoredQuery) -> str:
        query_id = str(uuid.uuid4())
        await self.index.set_property(_property(query_id), json.dumps(query.to_json()))
        async with _list_lock:
            ids = [*await self.ids(), query_id]
            dropped, ids = ids[: -self.size], ids[-self.size :]
            await self.index.set_property(LIST_PROPERTY, json.dumps(ids))
        for old in dropped:
            await self.index.set_property(_property(old), None)
        return query_id

    async def get(self, query_id: str) -> StoredQuery:
        raw = await self.index.get_property(_property(query_id)) if query_id in await self.ids() else None
        if raw is None:
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
        return StoredQuery.from_json(json.loads(raw))

    async def delete(self, query_id: str) -> None:
        async with _list_lock:
            ids = await self.ids()
            if query_id in ids:
                await self.index.set_property(LIST_PROPERTY, json.dumps([i for i in ids if i != query_id]))
        await self.index.set_property(_property(query_id), None)


# -- C-FIND (deprecated routes) --------------------------------------------------------------------------------
def _legacy_query(level: ResourceType, body: Any, extra: dict[str, str] | None = None) -> dict[str, str]:
    if not isinstance(body, dict):
        raise bad_body("Must provide a JSON object")

    template = _LEGACY_TEMPLATES[level]
    query = dict.fromkeys(template, "")
    query.update({k: v for k, v in tags_object(body).items() if k in template})  # others are ignored
    query.update(extra or {})
    return query


async def legacy_find(peer: scu.Peer, level: ResourceType, query: dict[str, str]) -> list[dict[str, Any]]:
    answers = await scu.run(scu.find, peer, level, scu.find_identifier(level, query))
    return [tags_json(a, JsonFormat.SIMPLIFY) for a in answers]


def _check_legacy(level: ResourceType, query: dict[str, str]) -> None:
    if level is ResourceType.PATIENT:
        return
    if len(query.get("PatientID", "")) <= 2 and len(query.get("AccessionNumber", "")) <= 2:
        raise OrthancError(ErrorCode.BAD_REQUEST, "PatientID or AccessionNumber must have more than 2 characters")
    for keyword in _LEGACY_REQUIRED[level]:
        if len(query.get(keyword, "")) <= 2:
            raise OrthancError(ErrorCode.BAD_REQUEST, f"{keyword} must have more than 2 characters")


def _legacy_route(level: ResourceType) -> Callable[[str], Any]:
    async def view(name: str) -> Response:
        query = _legacy_query(level, await raw_json())
        _check_legacy(level, query)
        return answer(await legacy_find(await peer_for(name), level, query))

    view.__name__ = f"find_{level.name.lower()}"
    view.__doc__ = f"C-FIND {level.plural} on the modality (deprecated for /query): their tags, simplified."
    return view


for _level, _route in (
    (ResourceType.PATIENT, "find-patient"),
    (ResourceType.STUDY, "find-study"),
    (ResourceType.SERIES, "find-series"),
    (ResourceType.INSTANCE, "find-instance"),
):
    bp.add_url_rule(f"/modalities/<name>/{_route}", view_func=_legacy_route(_level), methods=["POST"])


@bp.post("/modalities/<name>/find")
async def find_hierarchy(name: str) -> Response:
    """C-FIND patients, then their studies, then their series (deprecated): nested "Studies" and "Series"."""
    body = await raw_json()
    peer = await peer_for(name)
    patients = await legacy_find(peer, ResourceType.PATIENT, _legacy_query(ResourceType.PATIENT, body))
    out = []
    for patient in patients:
        ids = {"PatientID": patient.get("PatientID") or ""}
        studies = []
        for study in await legacy_find(peer, ResourceType.STUDY, _legacy_query(ResourceType.STUDY, body, ids)):
            keys = {**ids, "StudyInstanceUID": study.get("StudyInstanceUID") or ""}
            series = await legacy_find(peer, ResourceType.SERIES, _legacy_query(ResourceType.SERIES, body, keys))
            studies.append(dict(sorted({**study, "Series": series}.items())))
        out.append(dict(sorted({**patient, "Studies": studies}.items())))
    return answer(out)


def _worklist_filters(value: Any) -> dict[str, Any]:
    """{tag: text, or tag: [item, ...] for a sequence} -> the same by keyword."""
    if not isinstance(value, dict):
        raise bad_body("The worklist query must be a JSON object")
    out: dict[str, Any] = {}
    for name, item in value.items():
        try:
            keyword = keyword_of(name)
        except KeyError:
            raise unknown_tag(name) from None
        if isinstance(item, list):
            out[keyword] = [_worklist_filters(i) for i in item]
        elif isinstance(item, str):
            out[keyword] = item
        else:
            raise bad_body(f"The value of {name} must be a string, or a list of items for a sequence")
    return out


@bp.post("/modalities/<name>/find-worklist")
async def find_worklist(name: str) -> Response:
    """C-FIND in the modality's worklist ({"Query", "Full"?, "Short"?}); the answers' tags, simplified by default."""
    body = await object_body()
    filters = body["Query"] if "Query" in body else {k: v for k, v in body.items() if k not in ("Full", "Short")}
    fmt = JsonFormat.SIMPLIFY
    if bool_field(body, "Short", False):
        fmt = JsonFormat.SHORT
    elif bool_field(body, "Full", False):
        fmt = JsonFormat.FULL
    identifier = scu.dataset_of(_worklist_filters(filters))
    answers = await scu.run(scu.find_worklist, await peer_for(name, body), identifier)
    return answer([tags_json(a, fmt) for a in answers])


# -- asking ----------------------------------------------------------------------------------------------------
def _query_filters(value: Any) -> dict[str, str]:
    return tags_object(value, bad_body("Associative array of DICOM tags to strings expected in field: Query"))


async def _ask(
    name: str, modality: Modality, level: ResourceType, filters: dict[str, str], body: dict[str, Any]
) -> Response:
    """Run a C-FIND, keep its answers, answer where to find them."""
    ctx = context()
    if "Normalize" in body and not isinstance(body["Normalize"], bool):
        raise bad_body("The field Normalize must contain a Boolean")
    local_aet, timeout = str_field(body, "LocalAet"), int_field(body, "Timeout")
    peer = scu.Peer.of(ctx.config, modality, local_aet=local_aet, timeout=timeout)
    identifier = scu.find_identifier(level, filters, normalize=body.get("Normalize", True))
    rewritten = ctx.pm.hook.filter_outgoing_find(context=ctx, query=identifier, modality=name)
    replacement = await first_replacement(rewritten)
    identifier = identifier if replacement is None else replacement
    answers = await scu.run(scu.find, peer, level, identifier)
    kept = StoredQuery(name, modality.to_json(), level, scu.dataset_of(filters), answers, local_aet, timeout)
    query_id = await QueryArchive(ctx).add(kept)
    return answer({"ID": query_id, "Path": f"/queries/{query_id}"})


@bp.post("/modalities/<name>/query")
async def query(name: str) -> Response:
    """C-FIND on the modality ({"Level", "Query", "Normalize"}); the answers are kept under /queries/{id}."""
    body = await object_body()
    if "Level" not in body:
        raise bad_body("The JSON body must contain field Level")
    level = level_field(body)
    if not isinstance(body.get("Query", {}), dict):
        raise bad_body("The field Query must contain a JSON object")
    filters = _query_filters(body.get("Query", {}))
    return await _ask(name, await modality_named(name), level, filters, body)


@bp.post("/queries/<query_id>/answers/<index>/query-<children>")
async def query_children(query_id: str, index: str, children: str) -> Response:
    """C-FIND the child studies, series or instances of one answer, as a new query."""
    stored = await QueryArchive(context()).get(query_id)
    level = _CHILD_LEVELS.get(children)
    if level is None or level <= stored.level:
        raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, f"No query-{children} for a {stored.level.label} answer")
    parent = stored.answer_at(index)
    body = await object_body()
    filters = _query_filters(body.get("Query", {}))
    filters.update(values_of(parent, scu.retrieve_keys(stored.level)))
    return await _ask(stored.modality, Modality.parse(stored.remote), level, filters, body)


# -- browsing --------------------------------------------------------------------------------------------------
@bp.get("/queries")
async def list_queries() -> Response:
    """The kept queries (the QueryRetrieveSize newest)."""
    return answer(sorted(await QueryArchive(context()).ids()))


@bp.get("/queries/<query_id>")
async def query_operations(query_id: str) -> Response:
    """What can be asked of a kept query."""
    await QueryArchive(context()).get(query_id)
    return answer(["answers", "level", "modality", "query", "retrieve"])


@bp.delete("/queries/<query_id>")
async def delete_query(query_id: str) -> Response:
    """Forget a kept query."""
    await QueryArchive(context()).delete(query_id)
    return text_answer("")


@bp.get("/queries/<query_id>/answers")
async def query_answers(query_id: str) -> Response:
    """The answers' indices, or (``expand``) their tags, full unless ``simplify`` or ``short``."""
    stored = await QueryArchive(context()).get(query_id)
    if "expand" not in request.args:
        return answer([str(i) for i in range(len(stored.answers))])
    fmt = JsonFormat.from_args(request.args)
    return answer([tags_json(a, fmt) for a in stored.answers])


@bp.get("/queries/<query_id>/answers/<index>")
async def answer_operations(query_id: str, index: str) -> Response:
    """What can be asked of one answer (child queries down to the instances)."""
    stored = await QueryArchive(context()).get(query_id)
    stored.answer_at(index)
    children = [f"query-{name}" for name, level in _CHILD_LEVELS.items() if level > stored.level]
    return answer(["content", "retrieve", *children])


@bp.get("/queries/<query_id>/answers/<index>/content")
async def answer_content(query_id: str, index: str) -> Response:
    """The tags of one answer, full unless ``simplify`` or ``short``."""
    stored = await QueryArchive(context()).get(query_id)
    return answer(tags_json(stored.answer_at(index), JsonFormat.from_args(request.args)))


@bp.get("/queries/<query_id>/level")
async def query_level(query_id: str) -> Response:
    """The level of a kept query ("Patient", "Study", "Series" or "Instance")."""
    return text_answer((await QueryArchive(context()).get(query_id)).level.label)


@bp.get("/queries/<query_id>/modality")
async def query_modality(query_id: str) -> Response:
    """The symbolic name of the modality a kept query asked."""
    return text_answer((await QueryArchive(context()).get(query_id)).modality)


@bp.get("/queries/<query_id>/query")
async def query_filters(query_id: str) -> Response:
    """The filters of a kept query as they were given, full unless ``simplify`` or ``short``."""
    stored = await QueryArchive(context()).get(query_id)
    return answer(echoed(stored.query, JsonFormat.from_args(request.args)))


# -- retrieving ------------------------------------------------------------------------------------------------
async def _retrieve(stored: StoredQuery, answers: list[Dataset]) -> Response:
    """C-MOVE the answers to the body's AET (plain text, or {"TargetAet", "Timeout", "Full", "Simplify"}), or C-GET
    them here: as the body's "RetrieveMethod" says, else the modality's, else DicomDefaultRetrieveMethod (Orthanc
    1.12.6); as a job with ``"Asynchronous": true``."""
    ctx = context()
    raw = (await request.get_data()).strip()
    body: dict[str, Any] = {}
    target = raw.decode("utf-8", "replace")
    asked = "SystemDefault"
    if raw.startswith(b"{"):
        body = await object_body()
        target = str_field(body, "TargetAet")
        bool_field(body, "Permissive", False)
        asked = retrieve_method(body.get("RetrieveMethod", asked))
    method = Modality.parse(stored.remote).retrieves_by(asked, ctx.config.str("DicomDefaultRetrieveMethod"))
    synchronous, priority = job_request(body)
    if bool_field(body, "Full", False):
        fmt = JsonFormat.FULL
    elif bool_field(body, "Simplify", False):
        fmt = JsonFormat.SIMPLIFY
    else:
        fmt = JsonFormat.SHORT
    peer = stored.peer(ctx, int_field(body, "Timeout"))
    keys = scu.retrieve_keys(stored.level)
    identifiers = [scu.retrieve_identifier(stored.level, values_of(a, keys)) for a in answers]
    reported = []
    for found in answers:
        report = scu.dataset_of(values_of(found, _ECHOED_KEYS))
        report.QueryRetrieveLevel = scu.LEVEL_NAMES[stored.level]
        reported.append(echoed(report, fmt))
    if method == "C-GET":  # this server is the destination, whatever TargetAet says
        username = current_user() or ""
        if not synchronous:
            job_id = await dicom_get.submit(
                ctx, peer, stored.level, identifiers, reported, username=username, priority=priority
            )
            return submitted(job_id)
        await dicom_get.get(ctx, peer, stored.level, identifiers, username)
        return answer(retrieve_answer(peer, reported))
    target = target or ctx.config.str("DicomAet")
    if not synchronous:
        job_id = await dicom_move.submit(ctx, peer, stored.level, identifiers, target, reported, priority=priority)
        return submitted(job_id)
    await scu.run(scu.move, peer, stored.level, identifiers, target)
    return answer(retrieve_answer(peer, reported))


@bp.post("/queries/<query_id>/retrieve")
async def retrieve_all(query_id: str) -> Response:
    """C-MOVE every answer of a kept query to ``TargetAet`` (default: this server), or C-GET them here."""
    stored = await QueryArchive(context()).get(query_id)
    return await _retrieve(stored, stored.answers)


@bp.post("/queries/<query_id>/answers/<index>/retrieve")
async def retrieve_one(query_id: str, index: str) -> Response:
    """C-MOVE one answer of a kept query to ``TargetAet`` (default: this server), or C-GET it here."""
    stored = await QueryArchive(context()).get(query_id)
    return await _retrieve(stored, [stored.answer_at(index)])


@hookimpl
def register_routes(app: Quart, context: ServerContext) -> None:
    app.register_blueprint(bp)
