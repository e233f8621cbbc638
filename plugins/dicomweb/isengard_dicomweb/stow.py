"""STOW-RS (PS3.18 10.5): storing instances sent as multipart/related; type="application/dicom".

Each part is stored on its own through the kernel's ingest (filters, transcoding, quotas and events apply as for
any upload); the answer lists the stored ones in ReferencedSOPSequence and the others in FailedSOPSequence with a
FailureReason (PS3.18 10.5.3.2): 0xC000 for a part that is not DICOM (or not typed application/dicom), 0x0110
(processing failure) for an instance of another study than the one the path names -- the reason Orthanc's
plugin gives -- or one the server refused, 0xA700 when the storage is full. The status follows PS3.18 table
10.5.3-1: 200 when everything was stored, 202 when some parts failed, 409 when all did; a body that is not
multipart/related of application/dicom is a 415. Orthanc's plugin answers 400 rather than 409/202.

Parts are stored as they arrive: the body is never held whole, and the first instances are indexed while the
last ones are still on the wire. A body cut short keeps the parts that arrived whole (the last one fails).
"""

from __future__ import annotations

import asyncio
from typing import Any

from quart import Blueprint, Response, request

from isengard.dicom.parse import read_header
from isengard.errors import ErrorCode, OrthancError
from isengard.model import ResourceType
from isengard.rest.body import body_chunks
from isengard.rest.common import context
from isengard.rest.upload import rest_origin

from .dicom_json import json_answer
from .multipart import parse_media_type, read_parts
from .resources import resource_path
from .settings import public_root
from .wado import DICOM

bp = Blueprint("dicomweb_stow", __name__)

PROCESSING_FAILURE = 0x0110
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000


def _uid(value: str) -> dict[str, Any]:
    return {"vr": "UI", "Value": [value]} if value else {"vr": "UI"}


def _url(value: str) -> dict[str, Any]:
    return {"vr": "UR", "Value": [value]}


def _sequence(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}


def _failure(sop_class: str, sop_instance: str, reason: int) -> dict[str, Any]:
    return {"00081150": _uid(sop_class), "00081155": _uid(sop_instance), "00081197": {"vr": "US", "Value": [reason]}}


def _identifiers(data: bytes) -> tuple[str, str, str, str]:
    """(StudyInstanceUID, SeriesInstanceUID, SOPClassUID, SOPInstanceUID) of a part; OrthancError if not DICOM."""
    ds, _ = read_header(data)
    return tuple(
        str(ds.get(k, "") or "") for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID", "SOPInstanceUID")
    )  # type: ignore[return-value]


async def _store_part(
    headers: dict[str, str], content: bytes, study: str | None, origin: Any
) -> tuple[str, str, str, str] | dict[str, Any]:
    """Store one part: its (study, series, SOP class, SOP instance) UIDs, or its FailedSOPSequence item."""
    part_type = parse_media_type(headers.get("content-type", DICOM)).media_type
    try:
        if part_type != DICOM:
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT, f"part of type {part_type}")
        uids = await asyncio.to_thread(_identifiers, content)
    except OrthancError:
        return _failure("", "", CANNOT_UNDERSTAND)
    study_uid, _, sop_class, sop_instance = uids
    if study is not None and study_uid != study:
        return _failure(sop_class, sop_instance, PROCESSING_FAILURE)
    try:
        await context().store.ingest(content, origin)
    except OrthancError as error:
        reason = OUT_OF_RESOURCES if error.code is ErrorCode.FULL_STORAGE else PROCESSING_FAILURE
        return _failure(sop_class, sop_instance, reason)
    return uids


def _reference(root: str, study: str, series: str, sop_class: str, sop_instance: str) -> dict[str, Any]:
    """The ReferencedSOPSequence item of a stored instance."""
    uids = {ResourceType.STUDY: study, ResourceType.SERIES: series, ResourceType.INSTANCE: sop_instance}
    return {
        "00081150": _uid(sop_class),
        "00081155": _uid(sop_instance),
        "00081190": _url(root + resource_path(uids, ResourceType.INSTANCE)),
    }


@bp.post("/studies", defaults={"study": None})
@bp.post("/studies/<study>")
async def store(study: str | None) -> Response:
    """STOW-RS: store the instances of a multipart/related application/dicom body, each as soon as it arrives."""
    media = parse_media_type(request.headers.get("Content-Type", ""))
    if media.media_type != "multipart/related" or media.params.get("type", DICOM).lower() != DICOM:
        raise OrthancError(
            ErrorCode.BAD_FILE_FORMAT,
            'STOW-RS expects a body of type multipart/related; type="application/dicom"',
            http_status=415,
        )
    boundary = media.params.get("boundary")
    if not boundary:
        raise OrthancError(ErrorCode.BAD_REQUEST, "The multipart/related body has no boundary")
    root, origin = public_root(), rest_origin()
    stored: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    studies: set[str] = set()
    try:
        async for headers, content in read_parts(body_chunks(), boundary):
            result = await _store_part(headers, content, study, origin)
            if isinstance(result, tuple):
                studies.add(result[0])
                stored.append(_reference(root, *result))
            else:
                failed.append(result)
    except OrthancError as error:
        if error.code is not ErrorCode.NETWORK_PROTOCOL:
            raise
        if not stored and not failed:  # not a multipart body at all: nothing was stored
            raise OrthancError(ErrorCode.BAD_REQUEST, str(error.details or error)) from None
        failed.append(_failure("", "", CANNOT_UNDERSTAND))  # the truncated last part
    if not stored and not failed:
        raise OrthancError(ErrorCode.BAD_REQUEST, "The multipart/related body has no part")
    out: dict[str, Any] = {}
    target = study or (next(iter(studies)) if len(studies) == 1 else None)
    if target:
        out["00081190"] = _url(root + resource_path({ResourceType.STUDY: target}, ResourceType.STUDY))
    out["00081198"] = _sequence(failed)
    out["00081199"] = _sequence(stored)
    status = 200 if not failed else 202 if stored else 409
    return json_answer(dict(sorted(out.items())), status)
